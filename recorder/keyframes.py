"""Keyframes (terminal snapshots) for seeking, and rendered screen lines for the index.

One pass of the guarded pyte terminal (:mod:`recorder.screen`) over a recording's output
produces a snapshot every ``interval`` seconds of session time and the distinct lines
that appeared on screen. This never runs on the relay's hot path: it runs after a
session closes (background thread) or lazily in a reader, and the result is cached in
``data_dir/keyframes/<session_id>.kf`` (derived data; rebuildable).

Seeking to time T: take the last keyframe at or before T, restore it and apply the
events after it up to T (at most one interval of events).

Sampling (documented limit): within one keyframe interval at most ``BURST_CAP`` bytes of
output are fed to pyte; beyond that only the last ``BURST_CAP`` bytes of the burst are
fed (screens after bulk output such as ``cat bigfile`` depend on its tail). Keyframes
and screen lines of such intervals are marked approximate, and lines from the skipped
middle of a burst are not in the text index. The same rule applies when seeking, so a
seek and a replay from the start agree.
"""

from __future__ import annotations

import bisect
import json
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from common.safefiles import private_dir, read_nofollow, safe_id, write_private
from recorder import events as ev
from recorder.errors import FormatError
from recorder.reader import Recording
from recorder.screen import Terminal

BURST_CAP = 64 * 1024  # bytes of output fed to pyte per keyframe interval at most
MAX_LINES = 100_000  # distinct screen lines kept per session
_CLEARS = (b"\x1b[2J", b"\x1b[J", b"\x1b[0J", b"\x1bc", b"\x1b[?1049h", b"\x1b[?47h")
# the same sequences in one pass over an event (six substring scans cost ~4 ms per MiB)
_CLEAR_RE = re.compile(rb"\x1b(?:\[[02]?J|c|\[\?1049h|\[\?47h)")


class Feeder:
    """Applies events to a terminal with the per-interval burst cap."""

    def __init__(self, term: Terminal, cap: int = BURST_CAP) -> None:
        self.term = term
        self.cap = cap
        self.fed = 0
        self.tail: deque[bytes] = deque()
        self.tail_bytes = 0
        self.approx = False

    def holds(self, e: ev.Event) -> bool:
        """Is this output event held back (past the burst cap: not drawn until the
        drain) rather than fed?"""
        return e.type in (ev.OUTPUT, ev.STDERR) and self.fed + len(e.data) > self.cap

    def apply(self, e: ev.Event) -> None:
        if e.type in (ev.OUTPUT, ev.STDERR):
            if not self.holds(e):
                self.fed += len(e.data)
                self.term.feed(e.data)
                return
            self.approx = True
            self.tail.append(e.data)
            self.tail_bytes += len(e.data)
            while self.tail and self.tail_bytes - len(self.tail[0]) >= self.cap:
                self.tail_bytes -= len(self.tail.popleft())
        elif e.type == ev.RESIZE:
            self.drain()
            f = e.fields()
            if f:
                self.term.resize(int(f["cols"]), int(f["rows"]))

    def drain(self) -> None:
        """Feed the held-back tail (the last ``cap`` bytes of a burst)."""
        if not self.tail:
            return
        data = b"".join(self.tail)[-self.cap :]
        self.tail.clear()
        self.tail_bytes = 0
        self.term.feed(data)

    def new_interval(self) -> None:
        self.drain()
        self.fed = 0


@dataclass
class Keyframe:
    """Terminal state valid at ``time``; replay resumes at event ``skip`` of chunk ``seq``."""

    time: float
    seq: int
    skip: int
    snapshot: dict[str, Any]
    approx: bool = False


@dataclass
class KeyframeIndex:
    """Keyframes and screen lines of one recording."""

    session_id: str
    interval: float
    source_size: int
    keyframes: list[Keyframe] = field(default_factory=list)
    lines: list[tuple[float, str]] = field(default_factory=list)
    errors: int = 0

    def to_bytes(self) -> bytes:
        body = {
            "v": 1,
            "session_id": self.session_id,
            "interval": self.interval,
            "source_size": self.source_size,
            "keyframes": [[k.time, k.seq, k.skip, k.approx, k.snapshot] for k in self.keyframes],
            "lines": self.lines,
            "errors": self.errors,
        }
        return zstandard.ZstdCompressor(level=3).compress(json.dumps(body).encode())

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyframeIndex:
        try:
            raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=512 << 20)
            body = json.loads(raw)
            kfi = cls(str(body["session_id"]), float(body["interval"]), int(body["source_size"]))
            kfi.keyframes = [Keyframe(t, s, k, snap, a) for t, s, k, a, snap in body["keyframes"]]
            kfi.lines = [(float(t), str(x)) for t, x in body["lines"]]
            kfi.errors = int(body.get("errors", 0))
        except (zstandard.ZstdError, ValueError, KeyError, TypeError) as exc:
            raise FormatError(f"bad keyframe cache: {exc}") from exc
        return kfi

    def keyframe_at(self, t: float) -> Keyframe | None:
        times = [k.time for k in self.keyframes]
        i = bisect.bisect_right(times, t) - 1
        return self.keyframes[i] if i >= 0 else None


def build(rec: Recording, interval: float = 10.0, *, lines: bool = True,
          observe: Callable[[ev.Event], None] | None = None) -> KeyframeIndex:
    """One pass over the recording: keyframes every ``interval`` s and screen lines.
    ``observe`` sees every event of that pass, in order (the index's own summary reads
    the recording once instead of twice)."""
    cols, rows = rec.size
    term = Terminal(cols, rows)
    feeder = Feeder(term)
    kfi = KeyframeIndex(rec.session_id, interval, rec.src.size())
    seen: dict[str, float] = {}
    newlines = 0
    next_kf = interval
    last_t = 0.0

    def capture(t: float) -> None:
        if not lines or len(seen) >= MAX_LINES:
            return
        dirty = term.screen.dirty  # pyte's set of rows changed since the last capture
        if not dirty:
            return  # the same screen: nothing new to see (output past BURST_CAP is not fed)
        dirty.clear()
        for line in term.text_lines():
            if line not in seen:
                seen[line] = t

    first = True
    for chunk, events in rec.iter_chunk_events():
        for i, e in enumerate(events):
            if observe is not None:
                observe(e)
            if first:
                kfi.keyframes.append(Keyframe(0.0, chunk.seq, i, term.snapshot()))
                first = False
            if e.time >= next_kf:
                feeder.new_interval()
                capture(last_t)
                kfi.keyframes.append(Keyframe(last_t, chunk.seq, i, term.snapshot(), feeder.approx))
                feeder.approx = False
                while next_kf <= e.time:
                    next_kf += interval
            out = lines and e.type in (ev.OUTPUT, ev.STDERR)
            # output past the burst cap is held back, not fed: the screen stays as it
            # is until the drain, so it is captured now and the held bytes are not
            # scanned (a bulk transfer's after-close pass: ~1.2 ms per MiB saved)
            held = out and feeder.holds(e)
            if held:
                capture(e.time)
                newlines = 0
            elif out and _CLEAR_RE.search(e.data) is not None:
                capture(e.time)
                newlines = 0
            feeder.apply(e)
            if out and not held:
                newlines += e.data.count(b"\n")
                if newlines >= rows - 1:
                    capture(e.time)
                    newlines = 0
            last_t = e.time
    feeder.drain()
    capture(last_t)
    kfi.lines = [(t, line) for line, t in seen.items()]
    kfi.errors = term.errors
    return kfi


def screen_at(rec: Recording, kfi: KeyframeIndex, t: float) -> Terminal:
    """The terminal as it was at session time ``t`` (seconds)."""
    kf = kfi.keyframe_at(t)
    if kf is None:
        cols, rows = rec.size
        term = Terminal(cols, rows)
        start_seq: int | None = None
        skip = 0
    else:
        term = Terminal.from_snapshot(kf.snapshot)
        start_seq, skip = kf.seq, kf.skip
    feeder = Feeder(term)
    for chunk, events in rec.iter_chunk_events(from_seq=start_seq):
        first = skip if chunk.seq == start_seq else 0
        if chunk.t_first / 1e6 > t and first == 0:
            break
        for e in events[first:]:
            if e.time > t:
                feeder.drain()
                return term
            feeder.apply(e)
    feeder.drain()
    return term


def cache_path(data_dir: Path, session_id: str) -> Path:
    """The cache file of a session; the id (read from a recording header, so untrusted)
    must be a plain id.

    Raises:
        UnsafePath: ``session_id`` is not a plain id (e.g. ``../../x``).
    """
    return Path(data_dir) / "keyframes" / f"{safe_id(session_id)}.kf"


def save(data_dir: Path, kfi: KeyframeIndex) -> Path:
    """Write the cache file 0600 in a 0700 directory, never through a symbolic link."""
    path = cache_path(data_dir, kfi.session_id)
    private_dir(path.parent)
    return write_private(path, kfi.to_bytes())


def load_or_build(rec: Recording, data_dir: Path | None, interval: float = 10.0) -> KeyframeIndex:
    """Keyframes from the cache when it matches the recording, else built (and cached)."""
    if data_dir is not None and rec.session_id:
        try:
            path = cache_path(data_dir, rec.session_id)
            kfi = KeyframeIndex.from_bytes(read_nofollow(path))
            if kfi.source_size == rec.src.size() and kfi.session_id == rec.session_id:
                return kfi
        except (OSError, FormatError):
            pass
    kfi = build(rec, interval)
    if data_dir is not None and rec.session_id and rec.finished:
        try:
            save(data_dir, kfi)
        except OSError:
            pass  # cache only: a read-only data dir still lets the player seek
    return kfi
