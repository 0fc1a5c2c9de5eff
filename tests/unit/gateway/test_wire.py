"""The gateway's SSH connections write the packets of one event-loop callback in one
socket write, and drop asyncssh's empty SSH_MSG_IGNORE unless the cipher is CBC
(gateway/ssh/wire.py). The peer-visible half is tested with the real OpenSSH client in
tests/e2e/test_algorithms.py; this pins the mechanism on asyncssh's internals."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import asyncssh.connection
import asyncssh.logging
import asyncssh.packet
from asyncssh.constants import MSG_CHANNEL_DATA, MSG_IGNORE
from asyncssh.packet import String
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ssh import wire


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)


class _Base:
    """What the mixin needs of asyncssh's SSHConnection (the real one has these)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, cipher: str) -> None:
        self._loop = loop
        self._transport: Any = _Transport()
        self.cipher = cipher
        self.packets: list[int] = []

    def get_extra_info(self, name: str) -> str | None:
        return self.cipher if name == "send_cipher" else None

    def send_packet(self, pkttype: int, *args: bytes, handler: Any = None) -> None:
        if pkttype != MSG_IGNORE:  # as asyncssh: a padding packet before each one
            self.send_packet(MSG_IGNORE, String(b""))
        self.packets.append(pkttype)
        self._send(bytes([pkttype]) + b"".join(args))  # type: ignore[attr-defined]


class _Conn(wire.FewerWrites, _Base):
    _transport: Any


def test_the_overridden_methods_exist_in_asyncssh() -> None:
    for name in ("_send", "send_packet", "get_extra_info"):
        assert callable(getattr(asyncssh.connection.SSHConnection, name))
    assert "_transport" in asyncssh.connection.SSHConnection.__init__.__code__.co_names


def test_packets_of_one_callback_are_one_write() -> None:
    async def main() -> tuple[list[bytes], list[bytes], list[int]]:
        conn = _Conn(asyncio.get_running_loop(), "aes128-gcm@openssh.com")
        for i in range(8):
            conn.send_packet(MSG_CHANNEL_DATA, bytes([i]) * 10)
        before = list(conn._transport.writes)  # nothing written yet
        await asyncio.sleep(0)
        return before, conn._transport.writes, conn.packets

    before, writes, packets = asyncio.run(main())
    assert before == []
    assert len(writes) == 1 and len(writes[0]) == 8 * 11
    assert packets == [MSG_CHANNEL_DATA] * 8  # no padding packets


def test_cbc_keeps_the_padding_packets() -> None:
    async def main() -> list[int]:
        conn = _Conn(asyncio.get_running_loop(), "aes128-cbc")
        conn.send_packet(MSG_CHANNEL_DATA, b"x")
        await asyncio.sleep(0)
        return conn.packets

    assert asyncio.run(main()) == [MSG_IGNORE, MSG_CHANNEL_DATA]


def test_a_replaced_transport_gets_its_own_bytes() -> None:
    """A connection whose transport changes (closed, then None) never writes one
    transport's packets to another, and writes nothing once it has none."""
    async def main() -> tuple[list[bytes], list[bytes]]:
        conn = _Conn(asyncio.get_running_loop(), "aes128-gcm@openssh.com")
        first = conn._transport
        conn.send_packet(MSG_CHANNEL_DATA, b"a")
        conn._transport = _Transport()
        conn.send_packet(MSG_CHANNEL_DATA, b"b")
        second = conn._transport
        conn._transport = None
        conn.send_packet(MSG_CHANNEL_DATA, b"c")
        await asyncio.sleep(0)
        return first.writes, second.writes

    first, second = asyncio.run(main())
    assert first == [bytes([MSG_CHANNEL_DATA]) + b"a"]
    assert second == [bytes([MSG_CHANNEL_DATA]) + b"b"]


# ---------------------------------------------------------------- keepalive, packet logs


class _KeepaliveBase:
    """asyncssh's keepalive timer methods, as in asyncssh 2.24 (connection.py)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self._loop = loop
        self._auth_complete = True
        self._keepalive_interval = interval
        self._keepalive_timer: asyncio.TimerHandle | None = None
        self.timers_set = 0
        self.asked: list[float] = []

    def _cancel_keepalive_timer(self) -> None:
        if self._keepalive_timer:
            self._keepalive_timer.cancel()
            self._keepalive_timer = None

    def _set_keepalive_timer(self) -> None:
        if self._keepalive_interval:
            self.timers_set += 1
            self._keepalive_timer = self._loop.call_later(
                self._keepalive_interval, self._keepalive_timer_callback)

    def _reset_keepalive_timer(self) -> None:
        if self._auth_complete:
            self._cancel_keepalive_timer()
            self._set_keepalive_timer()

    def _keepalive_timer_callback(self) -> None:
        self.asked.append(self._loop.time())  # asyncssh sends a keepalive request here
        self._set_keepalive_timer()


class _KeepaliveConn(wire.FewerWrites, _KeepaliveBase):
    pass


def test_reads_do_not_make_a_timer_each_and_silence_still_counts_from_the_last() -> None:
    async def main() -> tuple[int, list[float], float, float]:
        loop = asyncio.get_running_loop()
        conn = _KeepaliveConn(loop, 0.2)
        start = loop.time()
        last = start
        for _ in range(40):  # 0.4 s of reads, one every 10 ms
            last = loop.time()
            conn._reset_keepalive_timer()
            await asyncio.sleep(0.01)
        assert conn.asked == []  # never silent for 0.2 s
        await asyncio.sleep(0.35)
        return conn.timers_set, conn.asked, start, last

    timers, asked, _start, last = asyncio.run(main())
    assert timers <= 4  # asyncssh alone: one per read (40)
    assert len(asked) == 1 and 0.199 <= asked[0] - last <= 0.45  # 0.2 s after the last read


def test_keepalives_turned_off_cancel_the_timer() -> None:
    async def main() -> list[float]:
        conn = _KeepaliveConn(asyncio.get_running_loop(), 0.05)
        conn._reset_keepalive_timer()
        conn._keepalive_interval = 0
        conn._reset_keepalive_timer()  # what asyncssh's set_keepalive(0) calls
        await asyncio.sleep(0.15)
        return conn.asked

    assert asyncio.run(main()) == []


def test_packet_log_lines_are_built_only_at_debug_level_3(caplog: Any) -> None:
    wire.quiet_packet_logs()
    built: list[int] = []

    class Handler(asyncssh.packet.SSHPacketLogger):
        _handler_names = {MSG_CHANNEL_DATA: "MSG_CHANNEL_DATA"}

        def _log_packet(self, *args: Any) -> None:  # type: ignore[override]
            built.append(args[1])

    h = Handler()
    level = asyncssh.logging.SSHLogger._debug_level
    try:
        asyncssh.set_debug_level(2)
        h.log_received_packet(MSG_CHANNEL_DATA, 1, b"x" * 100)
        h.log_sent_packet(MSG_CHANNEL_DATA, 2, b"y")
        assert built == []
        asyncssh.set_debug_level(3)
        h.log_received_packet(MSG_CHANNEL_DATA, 3, b"x")
        h.log_sent_packet(MSG_CHANNEL_DATA, 4, b"y")
        assert built == [MSG_CHANNEL_DATA, MSG_CHANNEL_DATA]
    finally:
        asyncssh.set_debug_level(level)


def test_the_keepalive_and_logging_internals_exist_in_asyncssh() -> None:
    conn = asyncssh.connection.SSHConnection
    for name in ("_reset_keepalive_timer", "_set_keepalive_timer", "_cancel_keepalive_timer",
                 "_keepalive_timer_callback", "_recv_data"):
        assert callable(getattr(conn, name))
    assert "_reset_keepalive_timer" in conn._recv_data.__code__.co_names
    init_names = conn.__init__.__code__.co_names
    for attr in ("_keepalive_timer", "_keepalive_interval", "_auth_complete",
                 "_send_encryption"):
        assert attr in init_names
    logger = asyncssh.packet.SSHPacketLogger
    assert callable(logger._log_packet)
    assert isinstance(asyncssh.logging.SSHLogger._debug_level, int)


def test_a_real_asyncssh_target_leg_still_drops_a_silent_server() -> None:
    """asyncssh server and the gateway's client connection class, in this process: a
    server that stops answering is dropped after about interval x (count_max + 1)."""
    wire.fewer_writes_to_targets()

    async def main() -> tuple[float, str]:
        servers: list[asyncssh.SSHServerConnection] = []

        class Server(asyncssh.SSHServer):
            def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
                servers.append(conn)

            def begin_auth(self, username: str) -> bool:
                return False  # no authentication

        key = asyncssh.generate_private_key("ssh-ed25519")
        acceptor = await asyncssh.listen("127.0.0.1", 0, server_host_keys=[key],
                                         server_factory=Server)
        port = acceptor.sockets[0].getsockname()[1]
        conn = await asyncssh.connect("127.0.0.1", port, known_hosts=None, username="u",
                                      keepalive_interval=0.2, keepalive_count_max=2)
        assert isinstance(conn, wire.FewerWritesClientConnection)
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.7)  # idle: asked 3 times, answered, not dropped
        assert not conn._close_event.is_set()  # type: ignore[attr-defined]
        servers[0]._transport.pause_reading()  # type: ignore[attr-defined]  # silent now
        start = loop.time()
        await asyncio.wait_for(conn.wait_closed(), 5)
        took = loop.time() - start
        acceptor.close()
        return took, str(conn._close_event.is_set())  # type: ignore[attr-defined]

    took, closed = asyncio.run(main())
    assert closed == "True" and 0.35 <= took <= 2.5  # asked at 0.2 s or less, then twice more


# ---------------------------------------------------------------- receive buffer


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["append", "drop", "slice", "find"]),
                          st.binary(max_size=40), st.integers(0, 50), st.integers(0, 50)),
                max_size=40))
def test_the_receive_buffer_reads_as_asyncssh_bytes_would(
        ops: list[tuple[str, bytes, int, int]]) -> None:
    model, buf = b"", wire.RecvBuffer()
    for op, data, a, b in ops:
        if op == "append":
            model += data
            buf.append(data)
        elif op == "drop":
            model = model[a:]
            assert buf[a:] is buf
        elif op == "slice":
            assert buf[a:b] == model[a:b] and type(buf[a:b]) is bytes
            assert buf[:b] == model[:b]
        else:
            sub = data[:2] or b"\n"
            assert buf.find(sub, a, b) == model.find(sub, a, b)
            assert buf.find(sub) == model.find(sub)
        assert len(buf) == len(model) and bool(buf) == bool(model)
        assert bytes(buf) == model


def test_a_real_asyncssh_connection_receives_bulk_data_exactly() -> None:
    """8 MiB from an asyncssh server to the gateway's client connection class (the
    target leg), read through RecvBuffer: every byte, in order."""
    wire.fewer_writes_to_targets()
    payload = os.urandom(8 << 20)

    async def main() -> bytes:
        class Server(asyncssh.SSHServer):
            def begin_auth(self, username: str) -> bool:
                return False

        async def serve(process: asyncssh.SSHServerProcess[bytes]) -> None:
            for i in range(0, len(payload), 300_000):  # writes that straddle packets
                process.stdout.write(payload[i:i + 300_000])
                await process.stdout.drain()
            process.exit(0)

        key = asyncssh.generate_private_key("ssh-ed25519")
        acceptor = await asyncssh.listen("127.0.0.1", 0, server_host_keys=[key],
                                         server_factory=Server, process_factory=serve,
                                         encoding=None)
        port = acceptor.sockets[0].getsockname()[1]
        async with asyncssh.connect("127.0.0.1", port, known_hosts=None,
                                    username="u") as conn:
            assert isinstance(conn, wire.FewerWritesClientConnection)
            result = await conn.run("send", encoding=None, check=True)
            assert type(conn._inpbuf) is wire.RecvBuffer  # type: ignore[attr-defined]
        acceptor.close()
        out = result.stdout
        assert isinstance(out, bytes)
        return out

    got = asyncio.run(main())
    assert len(got) == len(payload) and got == payload


class _CountingUrandom:
    """``os.urandom`` stand-in: a stream of distinct bytes (a counter), so that reuse of
    any byte shows."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.made = bytearray()

    def __call__(self, n: int) -> bytes:
        self.calls.append(n)
        start = len(self.made)
        out = b"".join((start + i).to_bytes(4, "big") for i in range(0, n, 4))[:n]
        self.made += out
        return out


def test_random_padding_uses_each_kernel_byte_once_a_block_at_a_time(
        monkeypatch: Any) -> None:
    fake = _CountingUrandom()
    monkeypatch.setattr(wire.os, "urandom", fake)
    pool = wire.RandomPadding()
    sizes = [4 + (i * 7) % 16 for i in range(2000)] + [5000, 4]  # and one above a block
    taken = [pool.take(n) for n in sizes]
    assert [len(t) for t in taken] == sizes
    # in order, from the kernel's bytes, never the same byte twice (the tail of a block
    # too short for the next request is dropped)
    pos = 0
    for t in taken:
        at = fake.made.find(t, pos)
        assert at >= pos, "a padding byte was not fresh"
        pos = at + len(t)
    assert len(fake.calls) <= sum(sizes) // wire.RandomPadding.BLOCK + 3
    assert all(n >= wire.RandomPadding.BLOCK for n in fake.calls)


async def _write_in_pieces(chan: Any, payload: bytes, sizes: list[int]) -> None:
    """``payload`` by ``write_data`` in pieces of ``sizes`` (in turn); every 4th piece,
    as the relay does, waits until asyncssh has sent what it buffered."""
    pos = i = 0
    while pos < len(payload):
        n = sizes[i % len(sizes)]
        wire.write_data(chan, payload[pos:pos + n])
        pos += n
        i += 1
        if i % 4 == 0:
            for _ in range(100_000):
                if not chan.get_write_buffer_size():
                    break
                await asyncio.sleep(0.001)


def test_write_data_sends_exactly_what_chan_write_would_through_windows_and_rekeys(
        monkeypatch: Any) -> None:
    """The gateway's target-leg connection class writes 12 MiB with ``write_data`` in
    pieces of odd sizes (some larger than the peer's window, so asyncssh's buffer takes
    them) to a plain asyncssh server on AES-GCM that rekeys every 2 MiB: the server reads
    every byte in order, and much of it took the one-copy path (the rest: writes larger
    than the window, and what came while asyncssh still held some)."""
    from gateway.ssh import gcm

    gcm.faster_gcm()
    wire.fewer_writes_to_targets()
    fast: list[int] = []
    send_gcm = wire.FewerWrites._send_gcm

    def counting(self: wire.FewerWrites, enc: Any, pkttype: int, args: tuple[Any, ...],
                 handler: Any) -> None:
        if pkttype == MSG_CHANNEL_DATA and isinstance(args[-1], memoryview):
            fast.append(len(args[-1]))
        send_gcm(self, enc, pkttype, args, handler)

    monkeypatch.setattr(wire.FewerWrites, "_send_gcm", counting)
    payload = os.urandom(12 << 20)
    sizes = [1, 31, 32768, 32769, 100_000, 300_001, 2_500_000, 7]

    async def main() -> bytes:
        got = bytearray()

        class Server(asyncssh.SSHServer):
            def begin_auth(self, username: str) -> bool:
                return False

        async def serve(process: asyncssh.SSHServerProcess[bytes]) -> None:
            while len(got) < len(payload):
                chunk = await process.stdin.read(1 << 20)
                if not chunk:
                    break
                got.extend(chunk)
            process.stdout.write(b"done")
            process.exit(0)

        key = asyncssh.generate_private_key("ssh-ed25519")
        acceptor = await asyncssh.listen("127.0.0.1", 0, server_host_keys=[key],
                                         server_factory=Server, process_factory=serve,
                                         encoding=None, rekey_bytes=2 << 20,
                                         encryption_algs=["aes128-gcm@openssh.com"])
        port = acceptor.sockets[0].getsockname()[1]
        async with asyncssh.connect("127.0.0.1", port, known_hosts=None, username="u",
                                    rekey_bytes=2 << 20,
                                    encryption_algs=["aes128-gcm@openssh.com"]) as conn:
            chan, _session = await conn.create_session(asyncssh.SSHClientSession, "recv",
                                                       encoding=None)
            await _write_in_pieces(chan, payload, sizes)
            chan.write_eof()
            await chan.wait_closed()
        acceptor.close()
        return bytes(got)

    got = asyncio.run(main())
    assert got == payload
    assert sum(fast) > len(payload) // 20  # and not all: the fallbacks were taken too
    assert sum(fast) < len(payload)


def test_write_data_on_a_closed_channel_raises_as_write_does() -> None:
    class _Chan:
        _conn = None

        def __init__(self) -> None:
            self.calls: list[bytes] = []

        def write(self, data: bytes) -> None:
            raise BrokenPipeError("Channel not open for sending")

    try:
        wire.write_data(_Chan(), b"x")
    except BrokenPipeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("no BrokenPipeError")
