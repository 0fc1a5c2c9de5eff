"""What the gateway writes on its SSH connections: fewer, fuller writes.

asyncssh (2.24) writes each SSH packet to its socket as soon as it is made, and before
every packet after the key exchange it sends an empty ``SSH_MSG_IGNORE``: the
countermeasure for the predictable IVs of CBC ciphers (RFC 4251 9.3.1). So a relayed
32 KiB of data costs two packets, two encryptions, two ``send`` calls, and the peer
decrypts two packets. The gateway's connections (both legs) do two things instead:

* **No padding packet without CBC.** The gateway negotiates AES-GCM, chacha20-poly1305
  or AES-CTR with an encrypt-then-MAC or plain HMAC (``gateway.ssh.algorithms``), never
  CBC; OpenSSH sends no such packets either. Should a CBC cipher ever be negotiated,
  the packets are sent as before.
* **One write per event-loop turn.** The packets one callback makes (a read from the
  target becomes up to eight 32 KiB packets to the user) are written to the socket
  together, once, when the callback is done, instead of one ``send`` per packet. Nothing
  waits for a timer: the write happens in the same loop iteration.

And less work per packet, for the same behaviour:

* **One keepalive timer, not one per read.** asyncssh cancels and re-creates its
  keepalive timer on every read from the socket. The gateway's connections note the
  time of the read instead; when the timer fires after data came in, it is set again for
  ``keepalive_interval`` after that read. A peer is still asked after
  ``keepalive_interval`` seconds of silence and dropped after ``keepalive_count_max``
  unanswered requests, as before.
* **No packet log line is built unless packets are logged.** asyncssh formats a log
  message for every packet sent and received (name, size, payload) and only then finds
  that its debug level (below 3) logs none of it; :func:`quiet_packet_logs` makes it
  look at the level first.
* **The receive buffer is not copied for every packet.** asyncssh keeps what it has
  read in one ``bytes`` object and slices off each packet, copying everything after it
  twice: a 256 KiB read holding eight 32 KiB packets cost ~1.8 MiB of copies. The
  gateway's connections keep it in a :class:`RecvBuffer` (a ``bytearray`` and an
  offset), which copies each packet once.
* **An AES-GCM packet is built with one join.** asyncssh builds a packet in four
  concatenations (type, payload, padding); on a keyed, authenticated AES-GCM connection
  with nothing due (no rekey, no compression) the gateway's connections build the same
  packet (same padding rule, random padding, sequence numbers, rekey byte count) with
  one, and encrypt it with ``gateway.ssh.gcm``; its 4-byte length header and its
  ciphertext go to the turn's write as two pieces (no copy of the packet to put the
  header in front). Anything else goes through asyncssh.
* **Relayed data is copied once on its way out.** asyncssh's ``SSHChannel.write``
  copies the data into its send buffer, slices each packet off it and prefixes the
  length and the channel number: three copies before the packet's own join.
  :func:`write_data` (what the relay writes with) builds the same
  ``SSH_MSG_CHANNEL_DATA`` packets from views of the data when nothing is buffered and
  the peer's window takes it all, and counts the window down as asyncssh does; anything
  else is ``chan.write``.
* **Random padding is drawn a block at a time.** asyncssh calls ``os.urandom`` (a
  ``getrandom`` system call) for the 4-19 padding bytes of every packet; the AES-GCM
  path above takes them from a 4 KiB block of ``os.urandom`` per connection
  (:class:`RandomPadding`), each byte used once.
* **The padding decision is made once per key.** Whether the send cipher is CBC is
  looked up once per new key, not for every packet.

Known limits: these are overrides of asyncssh internals (``_send``, ``send_packet`` and
the connection state it reads, a channel's send buffer, window, packet size, state and
number for :func:`write_data`, ``data_received`` and the slicing of ``_inpbuf``, the
keepalive timer's three methods, ``SSHPacketLogger``'s two log methods), pinned by
``tests/unit/gateway/test_wire.py`` and the e2e suite; a new asyncssh release that
renames them fails those tests rather than silently losing the change; ``pyproject.toml``
accepts the 2.24 releases only, so an install never picks an untested one.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import asyncssh.connection
import asyncssh.logging
import asyncssh.packet
from asyncssh.constants import MSG_CHANNEL_DATA, MSG_IGNORE, MSG_USERAUTH_LAST
from asyncssh.packet import String, UInt32

from gateway.ssh.gcm import FastGcmEncryption

_EMPTY = (String(b""),)


class RecvBuffer:
    """What asyncssh has read and not parsed yet, as its ``_inpbuf`` is used: ``len``,
    truth, ``find``, ``buf[a:b]`` (a copy, as ``bytes``) and ``buf = buf[n:]`` (drops
    the first n bytes *in place*, no copy, and returns the same object: asyncssh only
    ever assigns that result back to ``_inpbuf``)."""

    __slots__ = ("_b", "_off")

    def __init__(self, data: bytes = b"") -> None:
        self._b = bytearray(data)
        self._off = 0

    def append(self, data: bytes) -> None:
        if self._off:
            del self._b[: self._off]  # what is left of the last read: under one packet
            self._off = 0
        self._b += data

    def __len__(self) -> int:
        return len(self._b) - self._off

    def __bool__(self) -> bool:
        return len(self._b) > self._off

    def __getitem__(self, key: slice) -> Any:
        if not isinstance(key, slice) or key.step is not None:
            raise TypeError("RecvBuffer takes plain slices only")
        n = len(self._b) - self._off
        start, stop, _ = key.indices(n)
        if key.stop is None:  # buf = buf[start:]: drop the bytes before start
            self._off += start
            return self
        if stop <= start:
            return b""
        return bytes(memoryview(self._b)[self._off + start : self._off + stop])

    def find(self, sub: bytes, start: int = 0, end: int | None = None) -> int:
        n = len(self._b) - self._off
        stop = n if end is None else min(end, n)
        i = self._b.find(sub, self._off + start, self._off + stop)
        return i - self._off if i >= 0 else -1

    def __bytes__(self) -> bytes:
        return bytes(memoryview(self._b)[self._off :])


class RandomPadding:
    """Random padding bytes for one connection, drawn from ``os.urandom`` a block at a
    time: every byte comes from the kernel's CSPRNG and is used once, but one
    ``getrandom`` call serves ~300 packets instead of one (the syscall, and the GIL it
    releases and takes back, were 2.5% of the gateway's CPU on bulk transfers)."""

    __slots__ = ("_buf", "_pos")
    BLOCK = 4096

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0

    def take(self, n: int) -> bytes:
        pos = self._pos
        if pos + n > len(self._buf):
            self._buf, pos = os.urandom(max(self.BLOCK, n)), 0
        self._pos = pos + n
        return self._buf[pos : pos + n]


class FewerWrites:
    """Mixin for an asyncssh connection class (see the module doc)."""

    _transport: asyncio.Transport | None
    _loop: asyncio.AbstractEventLoop
    _pending: list[bytes] | None = None
    _pending_to: asyncio.Transport | None = None
    _cbc: tuple[object, bool] | None = None  # (send encryption, it is CBC)
    _padding: RandomPadding | None = None  # made at the first AES-GCM packet
    _keepalive_seen = 0.0  # loop time of the last read (keepalive)
    # asyncssh's (see the module doc)
    _auth_complete: bool
    _keepalive_interval: float
    _keepalive_timer: asyncio.TimerHandle | None
    _inpbuf: Any
    _send_encryption: Any = None  # asyncssh sets it (None: no keys yet)
    _kex_complete: bool
    _compressor: Any
    _rekey_bytes_sent: int
    _rekey_bytes: int
    _rekey_seconds: float
    _rekey_time: float
    _send_enchdrlen: int
    _send_blocksize: int
    _send_seq: int

    def data_received(self, data: bytes, datatype: Any = None) -> None:
        buf = self._inpbuf
        if type(buf) is not RecvBuffer:  # bytes after connection_made / a reset
            buf = self._inpbuf = RecvBuffer(buf)
        buf.append(data)
        self._recv_data()  # type: ignore[attr-defined]

    def _send(self, data: bytes) -> None:
        transport = self._transport
        if not transport:
            return
        pending = self._pending
        if pending is not None and self._pending_to is transport:
            pending.append(data)
            return
        if pending:
            self._write_pending()
        self._pending = [data]
        self._pending_to = transport
        self._loop.call_soon(self._write_pending)

    def _write_pending(self) -> None:
        pending, transport = self._pending, self._pending_to
        self._pending = self._pending_to = None
        if not pending or transport is None:
            return
        try:
            transport.write(b"".join(pending) if len(pending) > 1 else pending[0])
        except ConnectionError:  # pragma: no cover (asyncssh ignores these too)
            pass

    def send_packet(self, pkttype: int, *args: bytes, handler: Any = None) -> None:
        if pkttype == MSG_IGNORE and args == _EMPTY and not self._sends_cbc():
            return  # asyncssh's padding packet (see the module doc)
        enc = self.gcm_ready() if pkttype > MSG_USERAUTH_LAST else None
        if enc is not None:
            self._send_gcm(enc, pkttype, args, handler)
            return
        super().send_packet(pkttype, *args, handler=handler)  # type: ignore[misc]

    def gcm_ready(self) -> FastGcmEncryption | None:
        """The send cipher, when the next (non-auth) packet can take the AES-GCM path:
        keyed and authenticated, no compression, no rekey due."""
        enc = self._send_encryption
        if (type(enc) is FastGcmEncryption and self._kex_complete and self._auth_complete
                and self._compressor is None and self._rekey_bytes_sent < self._rekey_bytes
                and not (self._rekey_seconds and time.monotonic() >= self._rekey_time)):
            return enc
        return None

    def _send_gcm(self, enc: FastGcmEncryption, pkttype: int,
                  args: tuple[bytes | memoryview, ...], handler: Any) -> None:
        """asyncssh's ``send_packet`` for a keyed, authenticated AES-GCM connection with
        nothing due (no rekey, no compression): the same packet, built with one join."""
        size = 1 + sum(map(len, args))
        padlen = -(self._send_enchdrlen + size) % self._send_blocksize
        if padlen < 4:
            padlen += self._send_blocksize
        padding = self._padding
        if padding is None:
            padding = self._padding = RandomPadding()
        body = b"".join((bytes((padlen, pkttype)), *args, padding.take(padlen)))
        seq = self._send_seq
        header = len(body).to_bytes(4, "big")
        sealed = enc.seal(header, body)
        self._send(header)  # two pieces of one write: no copy to prefix the header
        self._send(sealed)
        self._send_seq = (seq + 1) & 0xFFFFFFFF
        self._rekey_bytes_sent += len(body)
        if _SSHLogger._debug_level >= 3:
            logger: Any = handler or self
            logger.log_sent_packet(pkttype, seq, bytes((pkttype,)) + b"".join(args))

    def _sends_cbc(self) -> bool:
        enc = self._send_encryption  # a new object for each new key
        cached = self._cbc
        if cached is not None and enc is not None and cached[0] is enc:
            return cached[1]
        name = self.get_extra_info("send_cipher")  # type: ignore[attr-defined]
        cbc = not name or "cbc" in str(name).lower()  # not known yet: as asyncssh does
        self._cbc = (enc, cbc)
        return cbc

    def _reset_keepalive_timer(self) -> None:
        if not self._auth_complete:
            return
        if not self._keepalive_interval:  # keepalives turned off
            self._cancel_keepalive_timer()  # type: ignore[attr-defined]
            return
        self._keepalive_seen = self._loop.time()
        if self._keepalive_timer is None:
            self._set_keepalive_timer()  # type: ignore[attr-defined]

    def _keepalive_timer_callback(self) -> None:
        due = self._keepalive_seen + self._keepalive_interval
        if self._keepalive_interval and due > self._loop.time():
            # data came in since this timer was set: silence counts from that read
            self._keepalive_timer = self._loop.call_at(due, self._keepalive_timer_callback)
            return
        super()._keepalive_timer_callback()  # type: ignore[misc]


class FewerWritesClientConnection(FewerWrites, asyncssh.connection.SSHClientConnection):
    """The gateway's connections to targets."""


_SSHLogger = asyncssh.logging.SSHLogger
_log_received = asyncssh.packet.SSHPacketLogger.log_received_packet
_log_sent = asyncssh.packet.SSHPacketLogger.log_sent_packet


def _log_received_if_logged(self: asyncssh.packet.SSHPacketLogger, pkttype: int,
                            pktid: int | None, packet: Any, note: str = "") -> None:
    if _SSHLogger._debug_level >= 3:  # asyncssh logs packets at debug level 3 only
        _log_received(self, pkttype, pktid, packet, note)


def _log_sent_if_logged(self: asyncssh.packet.SSHPacketLogger, pkttype: int,
                        pktid: int | None, packet: Any, note: str = "") -> None:
    if _SSHLogger._debug_level >= 3:
        _log_sent(self, pkttype, pktid, packet, note)


def quiet_packet_logs() -> None:
    """Make asyncssh build a packet's log line only when its debug level logs it."""
    logger = asyncssh.packet.SSHPacketLogger
    logger.log_received_packet = _log_received_if_logged  # type: ignore[method-assign]
    logger.log_sent_packet = _log_sent_if_logged  # type: ignore[method-assign]


def write_data(chan: Any, data: bytes | memoryview) -> None:
    """``chan.write(data)`` on an asyncssh channel of the gateway's connections: the same
    ``SSH_MSG_CHANNEL_DATA`` packets, built from ``data`` with one copy.

    asyncssh copies written data into its send buffer, slices each packet off it, then
    prefixes the length and the channel number (three copies before the packet's own
    join). When nothing is buffered and the send window takes all of ``data``, the
    packets are made here, ``data`` sliced by views, and the window counted down as
    asyncssh does. Otherwise (buffered data, a short window, a channel with an encoding,
    no AES-GCM or a rekey due: before any packet) it is ``chan.write``; the rest of a
    write that a rekey interrupts goes there too, in order. Raises ``BrokenPipeError``
    as ``chan.write`` does when the channel is not open for sending.
    """
    conn = getattr(chan, "_conn", None)
    size = len(data)
    if (not isinstance(conn, FewerWrites) or chan._send_state != "open"
            or chan._send_buf or chan._encoding or chan._send_chan is None
            or size > chan._send_window or not size):
        chan.write(data)
        return
    view = memoryview(data)
    step = chan._send_pktsize
    head = UInt32(chan._send_chan)
    pos = 0
    while pos < size:
        enc = conn.gcm_ready()
        if enc is None:
            break
        piece = view[pos : pos + step]
        conn._send_gcm(enc, MSG_CHANNEL_DATA, (head, UInt32(len(piece)), piece), chan)
        chan._send_window -= len(piece)
        pos += len(piece)
    if pos < size:
        chan.write(bytes(view[pos:]))


def fewer_writes_to_targets() -> None:
    """Make asyncssh clients of this process use :class:`FewerWritesClientConnection`."""
    asyncssh.connection.SSHClientConnection = FewerWritesClientConnection  # type: ignore[misc]
