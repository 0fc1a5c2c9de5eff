"""Playback positions in one recording: seeking, search placement and scrollback.

Everything here is blocking (zstd, pyte) and runs in worker threads. :class:`Cursor`
seeks with keyframes (``recorder.keyframes``) and then feeds the events after the
keyframe, exactly like ``recorder.keyframes.screen_at``, but it keeps its place so that
playing forward only feeds the new events.

:func:`scrollback` recovers the lines that scrolled off the top of the screen before a
given time: it replays from a keyframe up to ``SCROLLBACK_INTERVALS`` intervals earlier
with a terminal that keeps each line leaving the top (the keyframes have no history).

Known limits: the burst cap of ``recorder.keyframes`` applies (after more than 64 KiB of
output within one keyframe interval the screen shows the tail of the burst, and the
middle of the burst is not in the scrollback either); lines scrolled by a full-screen
program (alternate screen) or inside a scrolling region are not kept.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Protocol

import pyte

from player.render import Row
from recorder import events as ev
from recorder import keyframes
from recorder.reader import Recording
from recorder.screen import Terminal

SCROLLBACK_LINES = 2000  # lines kept above the screen
SCROLLBACK_INTERVALS = 30  # keyframe intervals replayed to recover them


class SessionData(Protocol):
    """What a cursor needs of an opened session (``player.archive.SessionData``)."""

    @property
    def rec(self) -> Recording: ...

    @property
    def kfi(self) -> keyframes.KeyframeIndex: ...

    @property
    def duration(self) -> float: ...


class Cursor:
    """A playback position in one recording: a terminal and the events after it.

    Not thread-safe: the caller serialises access (the replay screen holds ``lock``).
    """

    def __init__(self, data: SessionData, *,
                 on_terminal: Callable[[Terminal], None] | None = None) -> None:
        self.data = data
        self.time = 0.0
        self._on_terminal = on_terminal
        cols, rows = data.rec.size
        self.term = self._new(Terminal(cols, rows))
        self._feeder = keyframes.Feeder(self.term)
        self._events: Iterator[ev.Event] = iter(())
        self._pending: ev.Event | None = None
        self._interval_end = 0.0
        self.lock = threading.Lock()
        self.seek(0.0)

    def _new(self, term: Terminal) -> Terminal:
        if self._on_terminal is not None:
            self._on_terminal(term)
        return term

    def _stream(self, start_seq: int | None, skip: int) -> Iterator[ev.Event]:
        for chunk, events in self.data.rec.iter_chunk_events(from_seq=start_seq):
            first = skip if chunk.seq == start_seq else 0
            yield from events[first:]

    def seek(self, t: float, *, keyframe: keyframes.Keyframe | None = None,
             from_start: bool = False) -> None:
        """Restore the screen as it was at session time ``t`` (keyframe + events).

        ``keyframe`` starts from that keyframe, ``from_start`` from the first event,
        instead of the nearest keyframe before ``t``.
        """
        t = min(max(t, 0.0), max(self.data.duration, 0.0))
        kf = keyframe if keyframe is not None or from_start else self.data.kfi.keyframe_at(t)
        if kf is None:
            cols, rows = self.data.rec.size
            self.term = self._new(Terminal(cols, rows))
            self._events = self._stream(None, 0)
            base = 0.0
        else:
            self.term = self._new(Terminal.from_snapshot(kf.snapshot))
            self._events = self._stream(kf.seq, kf.skip)
            base = kf.time
        self._feeder = keyframes.Feeder(self.term)
        self._pending = None
        interval = self.data.kfi.interval
        self._interval_end = (int(base / interval) + 1) * interval if interval > 0 else 1e18
        self.time = base
        for _e in self.iter_until(t):
            pass
        self.time = t

    def iter_until(self, t: float) -> Iterator[ev.Event]:
        """Apply (and yield) every event with time <= ``t``; the position becomes ``t``."""
        while True:
            e = self._pending
            if e is None:
                e = next(self._events, None)
                if e is None:
                    break
            if e.time > t:
                self._pending = e
                break
            self._pending = None
            # same sampling rule as keyframes.build / screen_at: a burst cap per interval
            if e.time >= self._interval_end:
                self._feeder.new_interval()
                interval = self.data.kfi.interval
                while self._interval_end <= e.time:
                    self._interval_end += interval
            self._feeder.apply(e)
            yield e
        self._feeder.drain()
        self.time = max(self.time, t)

    def advance(self, t: float) -> None:
        """Play forward to ``t`` (seeks when ``t`` is behind the position)."""
        if t < self.time or t - self.time > max(self.data.kfi.interval, 1.0):
            self.seek(t)  # backwards, or far ahead: a keyframe is quicker than the events
            return
        for _e in self.iter_until(t):
            pass


def keep_history(term: Terminal, history: deque[Row]) -> None:
    """Make ``term`` append every line scrolled off the top of its main screen."""
    screen = term.screen
    index = screen.index

    def index_keeping() -> None:
        margins = screen.margins
        top, bottom = (margins.top, margins.bottom) if margins else (0, screen.lines - 1)
        if screen.cursor.y == bottom and top == 0 and screen.saved_main is None:
            history.append(dict(screen.buffer[0]))
        index()

    screen.index = index_keeping  # type: ignore[method-assign]
    term.stream = pyte.Stream(screen)  # the parser binds the screen's methods: rebind


def scrollback(data: SessionData, t: float, *, max_lines: int = SCROLLBACK_LINES,
               ) -> tuple[Terminal, list[Row]]:
    """The screen at ``t`` and the lines that scrolled off it before (oldest first)."""
    history: deque[Row] = deque(maxlen=max_lines)
    kfs = data.kfi.keyframes
    start = None
    before = [k for k in kfs if k.time <= t]
    if len(before) > SCROLLBACK_INTERVALS:
        start = before[-SCROLLBACK_INTERVALS - 1]
    cursor = Cursor(data, on_terminal=lambda term: keep_history(term, history))
    history.clear()
    if start is None:
        cursor.seek(t, from_start=True)
    else:
        cursor.seek(t, keyframe=start)
    return cursor.term, list(history)


def appeared_at(data: SessionData, text: str, t: float) -> float:
    """The first moment at or before ``t`` (within one keyframe interval before it, or the
    previous keyframe) at which ``text`` is visible on screen; ``t`` when not found."""
    low = text.lower()
    kf = data.kfi.keyframe_at(max(0.0, t - 1e-6))
    cur = Cursor(data)
    cur.seek(kf.time if kf else 0.0)
    if _visible(cur.term, low):
        return cur.time
    for e in cur.iter_until(t + 1e-6):
        if e.is_output and _visible(cur.term, low):
            return e.time
    return t


def _visible(term: Terminal, low: str) -> bool:
    return any(low in line.lower() for line in term.display())
