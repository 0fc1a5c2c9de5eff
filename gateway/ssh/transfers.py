"""Passive taps that turn SFTP and legacy SCP streams into file-transfer events.

The relay feeds every byte in each direction; the taps parse packets incrementally and
report ``Transfer(path, direction, size, sha256)`` when a file handle is closed.
Modern OpenSSH ``scp`` speaks SFTP, so the SFTP tap covers scp too; ``scp -O`` (the old
protocol) is covered by :class:`ScpTap`. The file's SHA-256 keeps references to its
bytes for the recorder's writer to hash alongside its own (:mod:`common.shared_sha256`);
it is complete when the handle closes, whatever the writer did.

Known limits: the sha256 is of the bytes in offset order; if a client reads or writes a
file out of order (seeks), the digest is reported as ``""`` (size still reported).
rsync's own protocol is not parsed: rsync sessions are recorded as exec sessions with the
command line and byte counts.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from common.shared_sha256 import SharedSha256

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
    digest: SharedSha256 = field(default_factory=SharedSha256)

    def add(self, offset: int, data: bytes | memoryview, direction: str) -> None:
        self.direction = self.direction or direction
        if offset == self.next_offset and self.in_order:
            self.digest.add(data)
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


def _whole_data(h: _Handle, offset: int, p: memoryview, pos: int, direction: str) -> None:
    """The data string at ``pos`` of a whole packet, for ``h``; a string that does not fit
    its packet makes the file's digest unknown (the size still counts what came)."""
    (n,) = struct.unpack_from(">I", p, pos)
    if pos + 4 + n != len(p):
        h.in_order = False
        n = max(0, min(n, len(p) - pos - 4))
    h.add(offset, p[pos + 4:pos + 4 + n], direction)


class _Forward:
    """What a call forwards: ranges of the caller's buffer (contiguous ones merged), and
    bytes kept from earlier calls. One range covering the whole buffer is the buffer
    itself: the bulk of an upload is forwarded without a copy."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._parts: list[bytes | memoryview] = []
        self._a = self._b = -1

    def span(self, a: int, b: int) -> None:
        if a == self._b:
            self._b = b
            return
        self._close()
        self._a, self._b = a, b

    def extra(self, blob: bytes) -> None:
        if blob:
            self._close()
            self._parts.append(blob)

    def _close(self) -> None:
        if self._b > self._a:
            self._parts.append(memoryview(self.data)[self._a:self._b])
        self._a = self._b = -1

    def result(self) -> bytes:
        if not self._parts and self._a == 0 and self._b == len(self.data):
            return self.data
        self._close()
        return b"".join(self._parts)


_BULK = ((_WRITE,), (_DATA,))  # per side (client, server): packets whose data is streamed
_MAX_HANDLE = 256  # SFTP handles are at most 256 bytes (draft-ietf-secsh-filexfer-02 3)


class SftpTap:
    """Watches an SFTP session; calls ``on_transfer``/``on_op`` as files complete.

    With a ``gate``, client requests that name a path (open, remove, rename, mkdir...) are
    decided before they reach the target: a refused request is dropped and answered with
    ``SSH_FX_PERMISSION_DENIED`` and the reason. Use :meth:`filter_client` then, which
    returns the bytes to forward and the replies for the client. A request the gate
    decides is forwarded only whole, once decided; other packets are forwarded as their
    bytes arrive (their kind, in their first five bytes, says they need no decision).
    A request the gate holds (:class:`Hold`) stops the stream: it and every later client
    byte stay in the tap (``held`` is set) until :meth:`release` says yes or no, so the
    order of requests is kept. The caller stops reading from the client meanwhile.

    File data (client ``WRITE``, server ``DATA``) is not copied: only packet headers and
    small packets are gathered; the data goes from the caller's buffer to the file's
    digest.
    """

    def __init__(self, on_transfer: Callable[[Transfer], None],
                 on_op: Callable[[FileOp], None] | None = None, gate: Gate | None = None
                 ) -> None:
        self._on_transfer = on_transfer
        self._on_op = on_op
        self._gate = gate
        self._head = (bytearray(), bytearray())  # per side: the packet (or header) so far
        self._need = [5, 5]  # per side: bytes of the head to gather before the next step
        self._left = [0, 0]  # per side: bytes of streamed file data still to come
        self._into: list[_Handle | None] = [None, None]  # per side: whose data it is
        self._at = [0, 0]  # per side: the file offset of the next streamed byte
        self._passing = False  # client side: its current packet is forwarded as it comes
        self._queued = bytearray()  # client bytes behind a held request
        self._opens: dict[int, str] = {}
        self._reads: dict[int, tuple[bytes, int]] = {}
        self._handles: dict[bytes, _Handle] = {}
        self.broken = False  # set when the stream could not be parsed; the tap stops
        self.held: Hold | None = None  # a request waiting for a decision

    def from_client(self, data: bytes) -> None:
        if not self.broken:
            self._feed(0, data, None)

    def from_server(self, data: bytes) -> None:
        if not self.broken:
            self._feed(1, data, None)

    def filter_client(self, data: bytes) -> tuple[bytes, bytes]:
        """Gate client packets: return (bytes for the target, replies for the user)."""
        if self._gate is None or self.broken:
            self.from_client(data)
            return data, b""
        if self.held is not None:
            self._queued += data
            return b"", b""
        out = _Forward(data)
        replies = bytearray()
        rest = self._feed(0, data, out, replies)
        if rest < len(data):  # a request is held: the bytes after it wait
            self._queued += memoryview(data)[rest:]
        return out.result(), bytes(replies)

    def release(self, refusal: str | None) -> tuple[bytes, bytes]:
        """Decide the held request (None: forward it; else refuse it with this message)
        and go on with the bytes that queued behind it; returns like ``filter_client``
        (``held`` may be set again by a later request)."""
        if self.held is None:
            return b"", b""
        self.held = None
        packet = bytes(self._head[0])
        self._reset(0)
        if refusal is None:
            self._packet(0, packet)
            head, tail = packet, b""
        else:
            head, tail = b"", _status(packet, refusal)
        queued, self._queued = bytes(self._queued), bytearray()
        forward, replies = self.filter_client(queued)
        return head + forward, tail + replies

    def close(self) -> None:
        """End of session: report files left open (a client that vanished mid-transfer)."""
        for handle in list(self._handles):
            self._finish(handle)

    # ------------------------------------------------------------------ parsing

    def _reset(self, side: int) -> None:
        self._head[side].clear()
        self._need[side] = 5
        if side == 0:
            self._passing = False

    def _feed(self, side: int, data: bytes, out: _Forward | None,
              replies: bytearray | None = None) -> int:
        """Parse ``data`` (one side); with ``out``, decide and forward client packets.
        Returns how far it got: ``len(data)``, or where a held request stopped it."""
        view = memoryview(data)
        head = self._head[side]
        n = len(view)
        pos = 0
        while pos < n:
            if self._left[side]:
                pos = self._file_data(side, view, pos, out)
                continue
            take = min(self._need[side] - len(head), n - pos)
            head += view[pos:pos + take]
            if out is not None and self._passing:  # (out: the client side)
                out.span(pos, pos + take)
            pos += take
            if len(head) < self._need[side]:
                break
            try:
                done = self._step(side, head, out, pos, take)
            except ValueError:
                self.broken = True
                head.clear()
                if out is not None:
                    raise ValueError("unparseable SFTP stream") from None
                return n
            if done and out is not None and replies is not None:
                if not self._decide(out, replies):
                    return pos  # held: the request stays in the head
        return n

    def _file_data(self, side: int, view: memoryview, pos: int, out: _Forward | None) -> int:
        """File data of a WRITE or DATA: from the buffer to the file's digest (and the
        target), no copy. Returns the position after it."""
        left = self._left[side]
        take = min(left, len(view) - pos)
        h = self._into[side]
        if h is not None:
            h.add(self._at[side], view[pos:pos + take], "upload" if side == 0 else "download")
            self._at[side] += take
        if out is not None:
            out.span(pos, pos + take)
        self._left[side] = left - take
        if take == left:
            self._into[side] = None
        return pos + take

    def _step(self, side: int, head: bytearray, out: _Forward | None, pos: int,
              take: int) -> bool:
        """The head holds ``need`` bytes: go on. True when it holds a whole packet that
        waits for the gate's decision (client side, with ``out``)."""
        if len(head) == 5:
            (length,) = struct.unpack_from(">I", head, 0)
            if length < 1 or length > MAX_PACKET:
                raise ValueError("bad packet length")
            kind = head[4]
            bulk = kind in _BULK[side] and length > 9
            self._need[side] = 13 if bulk else 4 + length
            if out is not None and _POLICY_OPS.get(kind) is None:
                self._passing = True  # no decision needed: forward it as it comes
                out.extra(bytes(head[:5 - take]))  # its first bytes came in an earlier call
                out.span(pos - take, pos)
            if self._need[side] > 5:
                return False
        (length,) = struct.unpack_from(">I", head, 0)
        kind = head[4]
        if len(head) < 4 + length and kind in _BULK[side]:
            if self._bulk_header(side, head, length):
                return False
        if len(head) < 4 + length:  # not streamable after all: gather it whole
            self._need[side] = 4 + length
            return False
        if out is not None and not self._passing:
            return True  # a whole request for the gate
        self._packet(side, head)
        self._reset(side)
        return False

    def _bulk_header(self, side: int, head: bytearray, length: int) -> bool:
        """A WRITE/DATA header is in: stream the rest. False: gather the packet whole."""
        (req,) = struct.unpack_from(">I", head, 5)
        (n,) = struct.unpack_from(">I", head, 9)
        if side == 1:  # DATA: id, data
            if 9 + n != length:
                return False
            read = self._reads.pop(req, None)
            h = self._handles.get(read[0]) if read is not None else None
            at = read[1] if read is not None else 0
        else:  # WRITE: id, handle, offset, data
            if n > _MAX_HANDLE or 25 + n > 4 + length:
                return False
            if len(head) < 25 + n:
                self._need[side] = 25 + n
                return True
            handle = bytes(head[13:13 + n])
            (at,) = struct.unpack_from(">Q", head, 13 + n)
            (size,) = struct.unpack_from(">I", head, 21 + n)
            if 21 + n + size != length:
                return False
            h = self._handles.get(handle)
            n = size
        self._into[side] = h
        self._at[side] = at
        self._left[side] = n
        if n == 0 and h is not None:
            h.add(at, b"", "upload" if side == 0 else "download")
        self._reset(side)
        return True

    def _decide(self, out: _Forward, replies: bytearray) -> bool:
        """The client's head is a whole request the gate decides; False if it holds."""
        packet = bytes(self._head[0])
        refusal = self._check(packet)
        if isinstance(refusal, Hold):
            self.held = refusal  # the packet stays in the head
            return False
        self._reset(0)
        if refusal is None:
            out.extra(packet)
            self._packet(0, packet)
        else:
            replies += _status(packet, refusal)
        return True

    def _packet(self, side: int, head: bytes | bytearray) -> None:
        packet = memoryview(head)[4:]
        try:
            (self._client_packet if side == 0 else self._server_packet)(packet)
        except (ValueError, struct.error):
            pass  # one odd packet must not stop the session; skip it
        finally:
            packet.release()

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

    def _client_packet(self, p: memoryview) -> None:
        kind = p[0]
        if kind == _INIT:
            return
        (req,) = struct.unpack_from(">I", p, 1)
        if kind == _OPEN:
            path, _ = _string(p, 5)
            self._opens[req] = path.decode("utf-8", "replace")
        elif kind == _WRITE:  # a small or odd WRITE, gathered whole
            handle, pos = _string(p, 5)
            (offset,) = struct.unpack_from(">Q", p, pos)
            h = self._handles.get(handle)
            if h is not None:
                _whole_data(h, offset, p, pos + 8, "upload")
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
        elif kind == _DATA:  # a small or odd DATA, gathered whole
            read = self._reads.pop(req, None)
            h = self._handles.get(read[0]) if read is not None else None
            if h is not None and read is not None:
                _whole_data(h, read[1], p, 5, "download")
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
        pos, n = 0, len(data)
        while pos < n:
            if self._remaining > 0 and self._current is not None:
                take = min(self._remaining, n - pos)
                self._current.add(self._current.next_offset, view[pos:pos + take],
                                  self.direction)
                self._remaining -= take
                pos += take
                if self._remaining == 0:
                    h, self._current = self._current, None
                    self._on_transfer(Transfer(h.path, self.direction, h.size,
                                               h.digest.hexdigest(), "scp"))
                    self._skip_ack = True
                continue
            if self._skip_ack:  # the \0 after file content
                self._skip_ack = False
                pos += 1
                continue
            nl = data.find(b"\n", pos)
            if nl < 0:
                if len(self._line) < 4096:
                    self._line += view[pos:pos + 4096 - len(self._line)]
                return
            if len(self._line) < 4096:
                self._line += view[pos:min(nl, pos + 4096 - len(self._line))]
            pos = nl + 1
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
