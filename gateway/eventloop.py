"""The event loop a gateway process runs on, and how much it reads per socket.

* ``[gateway] event_loop``: ``"asyncio"`` (the standard loop, the default), ``"uvloop"``
  (libuv; the optional extra ``bastille[speed]``), or ``"auto"`` (uvloop when it is
  installed). The same code and the same tests run on both. The standard loop is the
  default because of its adaptive reads (below): on uvloop a bulk session served by the
  same process pushes keystroke echo to p50 ~15 ms, p99 ~40-190 ms (bench/latency.py,
  docs/performance.md), for a bulk throughput gain of a few percent.
* Adaptive reads (standard loop): one event-loop turn handles everything one ``recv``
  returned, and the gateway spends ~5-15 ms of CPU per MiB on it. While at most one
  session moves data (its two sockets, the user's and the target's), reads are large
  (256 KiB: fewer loop turns and packets per MiB); as soon as more sockets read within
  :data:`WINDOW` seconds, each read is capped at 16 KiB, so that a bulk transfer cannot
  hold the loop for milliseconds while someone else's keystroke waits (echo p99 under
  load: 256 KiB reads 9.8 ms, 16 KiB 1.3-2.1 ms; docs/performance.md).

Known limits: uvloop reads up to its own buffer size (256 KiB) whatever the contention,
so under load the standard loop keeps keystroke latency lower; the cap is per read, not a
scheduler (a session that is the only one busy still gets its large reads).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("bastille.loop")

BULK_READ = 256 * 1024  # one session busy: read what is there (asyncio's own default)
FAIR_READ = 16 * 1024  # several sessions busy: at most this per socket per loop turn
WINDOW = 0.05  # seconds over which the sockets that read are counted
ONE_SESSION = 2  # sockets one relayed session reads: the user's and the target's


class ReadSizer:
    """How much the next ``recv`` of a socket transport may take (see the module doc).

    Args:
        clock: monotonic seconds (injected in tests).
    """

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._window_end = 0.0
        self._readers: set[int] = set()
        self.contended = False

    def size(self, transport: object) -> int:
        now = self._clock()
        if now >= self._window_end:
            self.contended = len(self._readers) > ONE_SESSION
            self._readers.clear()
            self._window_end = now + WINDOW
        self._readers.add(id(transport))
        if not self.contended and len(self._readers) > ONE_SESSION:
            self.contended = True  # a third socket reads now: fair from this read on
        return FAIR_READ if self.contended else BULK_READ


SIZER = ReadSizer()


def adaptive_reads() -> None:
    """Make the standard loop's socket transports size their reads with :data:`SIZER`."""
    import asyncio.selector_events as selector_events

    transport = getattr(selector_events, "_SelectorSocketTransport", None)
    if transport is not None and hasattr(transport, "max_size"):
        transport.max_size = property(lambda self: SIZER.size(self))


def choose(event_loop: str) -> str:
    """The loop ``[gateway] event_loop`` asks for, as available here: "uvloop" or
    "asyncio" ("auto": uvloop when installed)."""
    if event_loop == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if event_loop == "uvloop":
            log.warning("event_loop = \"uvloop\" but uvloop is not installed: using asyncio")
        return "asyncio"
    return "uvloop"


def run(main: Coroutine[Any, Any, None], event_loop: str = "asyncio") -> str:
    """Run ``main`` to completion on the chosen loop; returns the loop's name."""
    name = choose(event_loop)
    if name == "uvloop":
        import uvloop

        uvloop.run(main)
    else:
        adaptive_reads()
        asyncio.run(main)
    return name
