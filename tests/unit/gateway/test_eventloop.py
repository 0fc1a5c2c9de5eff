"""The gateway's event loop: large reads while one session moves data, fair (16 KiB)
reads as soon as several sockets read at once, and the same code on uvloop."""

from __future__ import annotations

import asyncio
import asyncio.selector_events as selector_events
import socket

import pytest

from gateway import eventloop
from gateway.eventloop import BULK_READ, FAIR_READ, WINDOW, ReadSizer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_session_reads_in_bulk_and_a_third_socket_makes_reads_fair() -> None:
    clock = Clock()
    sizer = ReadSizer(clock)
    user, target, other = object(), object(), object()
    assert sizer.size(user) == BULK_READ
    assert sizer.size(target) == BULK_READ  # one session: its two sockets
    assert sizer.size(user) == BULK_READ
    assert sizer.size(other) == FAIR_READ  # someone else reads too: fair from now on
    assert sizer.size(user) == FAIR_READ
    clock.now += WINDOW * 1.1
    assert sizer.size(user) == FAIR_READ  # the last window was contended
    clock.now += WINDOW * 1.1
    assert sizer.size(user) == BULK_READ  # a quiet window: bulk again


async def _echo_roundtrip(nbytes: int) -> tuple[bytes, list[int]]:
    """Send ``nbytes`` through a loopback socket pair read by the running loop; return
    what arrived and the size of each delivery."""
    loop = asyncio.get_running_loop()
    got = bytearray()
    sizes: list[int] = []
    done = loop.create_future()

    class Reader(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            got.extend(data)
            sizes.append(len(data))
            if len(got) >= nbytes and not done.done():
                done.set_result(None)

    a, b = socket.socketpair()
    a.setblocking(False)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    transport, _ = await loop.connect_accepted_socket(Reader, a)
    payload = bytes(range(256)) * (nbytes // 256)
    await asyncio.to_thread(b.sendall, payload)
    await asyncio.wait_for(done, 10)
    transport.close()
    b.close()
    return bytes(got), sizes


def test_adaptive_reads_deliver_every_byte_in_order_on_the_standard_loop() -> None:
    transport = selector_events._SelectorSocketTransport
    own = "max_size" in transport.__dict__
    before = transport.__dict__.get("max_size")
    try:
        eventloop.adaptive_reads()
        got, sizes = asyncio.run(_echo_roundtrip(1024 * 1024))
    finally:
        if own:
            transport.max_size = before
        else:
            del transport.max_size
    assert got == bytes(range(256)) * 4096
    assert max(sizes) <= BULK_READ


def test_the_same_code_runs_on_uvloop() -> None:
    pytest.importorskip("uvloop")
    result: list[bytes] = []

    async def main() -> None:
        got, _ = await _echo_roundtrip(256 * 1024)
        result.append(got)
        result.append(type(asyncio.get_running_loop()).__module__.encode())

    assert eventloop.run(main(), "uvloop") == "uvloop"
    assert result[0] == bytes(range(256)) * 1024
    assert result[1].startswith(b"uvloop")


def test_choose_falls_back_to_asyncio() -> None:
    assert eventloop.choose("asyncio") == "asyncio"
