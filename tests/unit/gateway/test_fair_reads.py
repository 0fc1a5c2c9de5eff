"""The gateway caps what one socket read hands the event loop (keystroke latency of other
sessions while one streams; see gateway/cli/serve.py and docs/performance.md)."""

from __future__ import annotations

import asyncio.selector_events as selector_events

from gateway.cli import READ_CHUNK, _fair_reads


def test_fair_reads_caps_asyncio_socket_reads() -> None:
    transport = selector_events._SelectorSocketTransport
    before = transport.max_size
    try:
        _fair_reads()
        assert transport.max_size == READ_CHUNK <= 64 * 1024
    finally:
        transport.max_size = before
