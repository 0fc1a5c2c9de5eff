"""Replay a recording's output in the current terminal with its original timing."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO

from recorder import events as ev
from recorder.reader import Recording


def play(
    rec: Recording,
    out: IO[bytes],
    *,
    speed: float = 1.0,
    max_idle: float = 2.0,
    start: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Write the output bytes to ``out``, sleeping between events.

    Args:
        rec: the recording.
        out: a binary stream (``sys.stdout.buffer``).
        speed: playback speed factor; 0 means no delays at all.
        max_idle: longest pause in recording time (idle gaps are capped to this).
        start: skip (write without delay) everything before this session time.
        sleep: injected for tests.

    Returns:
        The number of output bytes written.
    """
    written = 0
    prev: float | None = None
    for e in rec.events((ev.OUTPUT, ev.STDERR)):
        if speed > 0 and e.time >= start:
            if prev is not None:
                gap = min(max(e.time - max(prev, start), 0.0), max_idle)
                if gap > 0:
                    out.flush()
                    sleep(gap / speed)
            prev = e.time
        out.write(e.data)
        written += len(e.data)
    out.flush()
    return written
