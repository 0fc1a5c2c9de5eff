"""The gateway's SSH connections write the packets of one event-loop callback in one
socket write, and drop asyncssh's empty SSH_MSG_IGNORE unless the cipher is CBC
(gateway/ssh/wire.py). The peer-visible half is tested with the real OpenSSH client in
tests/e2e/test_algorithms.py; this pins the mechanism on asyncssh's internals."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncssh.connection
from asyncssh.constants import MSG_CHANNEL_DATA, MSG_IGNORE
from asyncssh.packet import String

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
