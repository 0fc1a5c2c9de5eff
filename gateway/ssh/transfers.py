"""Passive taps that turn SFTP and legacy SCP streams into file-transfer events.

The relay feeds every byte in each direction; the taps parse packets incrementally and
report ``Transfer(path, direction, size, sha256)`` when a file handle is closed.
Modern OpenSSH ``scp`` speaks SFTP, so the SFTP tap covers scp too; ``scp -O`` (the old
protocol) is covered by :class:`ScpTap`.

Known limits: the sha256 is of the bytes in offset order; if a client reads or writes a
file out of order (seeks), the digest is reported as ``""`` (size still reported).
rsync's own protocol is not parsed: rsync sessions are recorded as exec sessions with the
command line and byte counts.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_PACKET = 256 * 1024 + 1024  # OpenSSH sftp-server's own limit; larger ones stop the tap

_INIT, _OPEN, _CLOSE, _READ, _WRITE = 1, 3, 4, 5, 6
_REMOVE, _MKDIR, _RMDIR, _RENAME = 13, 14, 15, 18
_STATUS, _HANDLE, _DATA = 101, 102, 103
_FXF_READ, _FXF_WRITE = 0x1, 0x2


@dataclass(frozen=True)
class Transfer:
    path: str
    direction: str  # "upload" | "download"
    size: int
    sha256: str  # "" when the file was not transferred in order
    protocol: str  # "sftp" | "scp"


@dataclass(frozen=True)
class FileOp:
    op: str  # "remove" | "mkdir" | "rmdir" | "rename"
    path: str
    new_path: str = ""


@dataclass
class _Handle:
    path: str
    direction: str = ""
    size: int = 0
    next_offset: int = 0
    in_order: bool = True
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)

    def add(self, offset: int, data: bytes | memoryview, direction: str) -> None:
        self.direction = self.direction or direction
        if offset == self.next_offset and self.in_order:
            self.digest.update(data)
            self.next_offset += len(data)
        else:
            self.in_order = False
        self.size = max(self.size, offset + len(data))


def _string(buf: memoryview, pos: int) -> tuple[bytes, int]:
    (n,) = struct.unpack_from(">I", buf, pos)
    pos += 4
    if pos + n > len(buf):
        raise ValueError("truncated string")
    return bytes(buf[pos:pos + n]), pos + n


_FX_PERMISSION_DENIED = 3
_POLICY_OPS = {_OPEN: "open", _REMOVE: "remove", _MKDIR: "mkdir", _RMDIR: "rmdir",
               _RENAME: "rename", 17: "stat", 7: "stat", 9: "setstat",
               20: "symlink", 19: "readlink", 16: "realpath", 11: "list"}


@dataclass(frozen=True)
class Hold:
    """A gate's answer: this request waits for a human decision (see ``SftpTap.release``)."""

    op: str
    path: str


# Decides one client request: (op, path) -> None to let it through, a refusal message,
# or a Hold (the request and everything after it wait until ``release``).
Gate = Callable[[str, str], "str | Hold | None"]


class SftpTap:
    """Watches an SFTP session; calls ``on_transfer``/``on_op`` as files complete.

    With a ``gate``, client requests that name a path (open, remove, rename, mkdir...) are
    decided before they reach the target: a refused request is dropped and answered with
    ``SSH_FX_PERMISSION_DENIED`` and the reason. Use :meth:`filter_client` then, which
    returns the bytes to forward (whole packets only) and the replies for the client.
    A request the gate holds (:class:`Hold`) stops the stream: it and every later client
    byte stay in the tap (``held`` is set) until :meth:`release` says yes or no, so the
    order of requests is kept. The caller stops reading from the client meanwhile.
    """

    def __init__(self, on_transfer: Callable[[Transfer], None],
                 on_op: Callable[[FileOp], None] | None = None, gate: Gate | None = None
                 ) -> None:
        self._on_transfer = on_transfer
        self._on_op = on_op
        self._gate = gate
        self._pending = bytearray()  # client bytes not yet forming a whole packet
        self._bufs = (bytearray(), bytearray())  # client->server, server->client
        self._opens: dict[int, str] = {}
        self._reads: dict[int, tuple[bytes, int]] = {}
        self._handles: dict[bytes, _Handle] = {}
        self.broken = False  # set when the stream could not be parsed; the tap stops
        self.held: Hold | None = None  # a request waiting for a decision

    def from_client(self, data: bytes) -> None:
        self._feed(0, data)

    def filter_client(self, data: bytes) -> tuple[bytes, bytes]:
        """Gate whole client packets: return (bytes for the target, replies for the user)."""
        if self._gate is None or self.broken:
            self._feed(0, data)
            return data, b""
        buf = self._pending
        buf += data
        forward = bytearray()
        replies = bytearray()
        while len(buf) >= 4 and self.held is None:
            (length,) = struct.unpack_from(">I", buf, 0)
            if length < 1 or length > MAX_PACKET:
                self.broken = True  # not SFTP as we know it: fail closed, forward nothing
                buf.clear()
                raise ValueError("unparseable SFTP stream")
            if len(buf) < 4 + length:
                break
            packet = bytes(buf[:4 + length])
            refusal = self._check(packet)
            if isinstance(refusal, Hold):
                self.held = refusal  # the packet stays first in the buffer
                break
            del buf[:4 + length]
            if refusal is None:
                forward += packet
                self._feed(0, packet)
            else:
                replies += _status(packet, refusal)
        return bytes(forward), bytes(replies)

    def release(self, refusal: str | None) -> tuple[bytes, bytes]:
        """Decide the held request (None: forward it; else refuse it with this message)
        and go on with the bytes that queued behind it; returns like ``filter_client``
        (``held`` may be set again by a later request)."""
        if self.held is None:
            return b"", b""
        self.held = None
        buf = self._pending
        (length,) = struct.unpack_from(">I", buf, 0)
        packet = bytes(buf[:4 + length])
        del buf[:4 + length]
        if refusal is None:
            self._feed(0, packet)
            head, tail = packet, b""
        else:
            head, tail = b"", _status(packet, refusal)
        forward, replies = self.filter_client(b"")
        return head + forward, tail + replies

    def _check(self, packet: bytes) -> str | Hold | None:
        assert self._gate is not None
        kind = packet[4]
        op = _POLICY_OPS.get(kind)
        if op is None or len(packet) < 13:
            return None
        try:
            path, pos = _string(memoryview(packet)[4:], 5)
        except (ValueError, struct.error):
            return "malformed request"
        text = path.decode("utf-8", "replace")
        if kind == _OPEN:
            try:
                (pflags,) = struct.unpack_from(">I", packet, 4 + pos)
            except struct.error:
                return "malformed request"
            op = "put" if pflags & _FXF_WRITE else "get"
        return self._gate(op, text)

    def from_server(self, data: bytes) -> None:
        self._feed(1, data)

    def close(self) -> None:
        """End of session: report files left open (a client that vanished mid-transfer)."""
        for handle in list(self._handles):
            self._finish(handle)

    def _feed(self, side: int, data: bytes) -> None:
        if self.broken:
            return
        buf = self._bufs[side]
        buf += data
        while len(buf) >= 4:
            (length,) = struct.unpack_from(">I", buf, 0)
            if length < 1 or length > MAX_PACKET:
                self.broken = True
                buf.clear()
                return
            if len(buf) < 4 + length:
                return
            packet = memoryview(buf)[4:4 + length]
            try:
                (self._client_packet if side == 0 else self._server_packet)(packet)
            except (ValueError, struct.error):
                pass  # one odd packet must not stop the session; skip it
            finally:
                packet.release()
            del buf[:4 + length]

    def _client_packet(self, p: memoryview) -> None:
        kind = p[0]
        if kind == _INIT:
            return
        (req,) = struct.unpack_from(">I", p, 1)
        if kind == _OPEN:
            path, _ = _string(p, 5)
            self._opens[req] = path.decode("utf-8", "replace")
        elif kind == _WRITE:
            handle, pos = _string(p, 5)
            (offset,) = struct.unpack_from(">Q", p, pos)
            (n,) = struct.unpack_from(">I", p, pos + 8)
            h = self._handles.get(handle)
            if h is not None:
                h.add(offset, p[pos + 12:pos + 12 + n], "upload")
        elif kind == _READ:
            handle, pos = _string(p, 5)
            (offset,) = struct.unpack_from(">Q", p, pos)
            if len(self._reads) < 4096:  # bounded: a client cannot grow this forever
                self._reads[req] = (handle, offset)
        elif kind == _CLOSE:
            handle, _ = _string(p, 5)
            self._finish(handle)
        elif kind in (_REMOVE, _MKDIR, _RMDIR, _RENAME) and self._on_op is not None:
            path, pos = _string(p, 5)
            new = _string(p, pos)[0] if kind == _RENAME else b""
            op = {_REMOVE: "remove", _MKDIR: "mkdir", _RMDIR: "rmdir", _RENAME: "rename"}[kind]
            self._on_op(FileOp(op, path.decode("utf-8", "replace"),
                               new.decode("utf-8", "replace")))

    def _server_packet(self, p: memoryview) -> None:
        kind = p[0]
        if kind not in (_HANDLE, _DATA, _STATUS):
            return
        (req,) = struct.unpack_from(">I", p, 1)
        if kind == _HANDLE:
            path = self._opens.pop(req, None)
            if path is not None and len(self._handles) < 1024:
                handle, _ = _string(p, 5)
                self._handles[handle] = _Handle(path)
        elif kind == _DATA:
            read = self._reads.pop(req, None)
            if read is not None:
                h = self._handles.get(read[0])
                if h is not None:
                    (n,) = struct.unpack_from(">I", p, 5)
                    h.add(read[1], p[9:9 + n], "download")
        else:
            self._opens.pop(req, None)
            self._reads.pop(req, None)

    def _finish(self, handle: bytes) -> None:
        h = self._handles.pop(handle, None)
        if h is not None and h.direction:
            self._on_transfer(Transfer(h.path, h.direction, h.size,
                                       h.digest.hexdigest() if h.in_order else "", "sftp"))


class ScpTap:
    """Watches a legacy scp stream (``scp -t`` upload or ``scp -f`` download)."""

    def __init__(self, command: str, on_transfer: Callable[[Transfer], None]) -> None:
        words = command.split()
        self.direction = "upload" if "-t" in words else "download" if "-f" in words else ""
        self._dirs: list[str] = []
        self._base = words[-1] if words else ""
        self._on_transfer = on_transfer
        self._line = bytearray()
        self._remaining = -1  # bytes of file content still expected; -1 = reading a header
        self._current: _Handle | None = None
        self._skip_ack = False

    @property
    def active(self) -> bool:
        return bool(self.direction)

    def feed(self, data: bytes) -> None:
        """Feed the direction that carries file data (client for -t, server for -f)."""
        view = memoryview(data)
        while view:
            if self._remaining > 0 and self._current is not None:
                take = view[:self._remaining]
                self._current.add(self._current.next_offset, take, self.direction)
                self._remaining -= len(take)
                view = view[len(take):]
                if self._remaining == 0:
                    h, self._current = self._current, None
                    self._on_transfer(Transfer(h.path, self.direction, h.size,
                                               h.digest.hexdigest(), "scp"))
                    self._skip_ack = True
                continue
            if self._skip_ack:  # the \0 after file content
                self._skip_ack = False
                view = view[1:]
                continue
            nl = bytes(view).find(b"\n")
            if nl < 0:
                if len(self._line) < 4096:
                    self._line += view
                return
            self._line += view[:nl]
            view = view[nl + 1:]
            self._header(self._line.decode("utf-8", "replace"))
            self._line.clear()

    def _header(self, line: str) -> None:
        if line.startswith("C"):
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[1].isdigit():
                name = parts[2]
                base = "/".join([self._base.rstrip("/"), *self._dirs]) if self._dirs else self._base
                path = f"{base.rstrip('/')}/{name}" if self._dirs or self.direction == "download" \
                    else base
                self._current = _Handle(path if self.direction == "upload" else
                                        "/".join([*self._dirs, name]) or name)
                self._remaining = int(parts[1])
                if self._remaining == 0:
                    h, self._current = self._current, None
                    self._on_transfer(Transfer(h.path, self.direction, 0,
                                               h.digest.hexdigest(), "scp"))
                    self._skip_ack = True
        elif line.startswith("D"):
            parts = line.split(" ", 2)
            if len(parts) == 3:
                self._dirs.append(parts[2])
        elif line.startswith("E") and self._dirs:
            self._dirs.pop()


def _status(request: bytes, message: str) -> bytes:
    """An SSH_FXP_STATUS permission-denied reply to ``request`` (a whole packet)."""
    req_id = request[5:9]
    msg = message.encode()
    body = (bytes([_STATUS]) + req_id + struct.pack(">I", _FX_PERMISSION_DENIED)
            + struct.pack(">I", len(msg)) + msg + struct.pack(">I", 2) + b"en")
    return struct.pack(">I", len(body)) + body
