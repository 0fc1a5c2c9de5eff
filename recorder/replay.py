"""Replay a recording's output in the current terminal with its original timing.

What a target sent goes through :class:`common.safetext.TerminalFilter` first (unless
``raw``): colours and drawing are kept, but window titles, clipboard writes (OSC 52),
report requests, mouse and keyboard modes never reach the auditor's terminal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO

from common.safetext import TerminalFilter
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
    raw: bool = False,
) -> int:
    """Write the output bytes to ``out``, sleeping between events.

    Args:
        rec: the recording.
        out: a binary stream (``sys.stdout.buffer``).
        speed: playback speed factor; 0 means no delays at all.
        max_idle: longest pause in recording time (idle gaps are capped to this).
        start: skip (write without delay) everything before this session time.
        sleep: injected for tests.
        raw: write the bytes exactly as recorded (for a file or a pipe, never a terminal
            a person looks at).

    Returns:
        The number of output bytes written.
    """
    written = 0
    prev: float | None = None
    safe = None if raw else TerminalFilter()
    for e in rec.events((ev.OUTPUT, ev.STDERR)):
        if speed > 0 and e.time >= start:
            if prev is not None:
                gap = min(max(e.time - max(prev, start), 0.0), max_idle)
                if gap > 0:
                    out.flush()
                    sleep(gap / speed)
            prev = e.time
        data = e.data if safe is None else safe.feed(e.data)
        out.write(data)
        written += len(data)
    if safe is not None:
        out.write(safe.flush())
    out.flush()
    return written
