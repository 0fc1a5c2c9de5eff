"""The player's data layer (no Textual here): the archive, timelines, seeking and search.

Everything in this module is blocking (SQLite, sink reads, zstd, pyte) and is meant to
run in worker threads, never on the UI thread. :class:`Cursor` is the playback position
in one recording: it seeks with keyframes (``recorder.keyframes``) and then feeds the
events after the keyframe, exactly like ``recorder.keyframes.screen_at``, but it keeps
its place so that playing forward only feeds the new events.

Known limits: the screen model is the recorder's guarded pyte terminal, so there is no
alternate screen (full-screen programs draw on the main screen) and no scrollback; the
burst cap of ``recorder.keyframes`` applies (after more than 64 KiB of output within one
keyframe interval the screen shows the tail of the burst).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from recorder import events as ev
from recorder import keyframes
from recorder.errors import FormatError, RecorderError, SinkError
from recorder.index import Index, SessionRow
from recorder.reader import Recording
from recorder.screen import Terminal
from recorder.settings import RecorderSettings
from recorder.sinks.base import Sink
from recorder.verify import VerifyReport, verify_recording

MARKER_TYPES = (ev.COMMAND, ev.POLICY, ev.APPROVAL, ev.FILE_TRANSFER, ev.MARKER, ev.GAP)
INTEGRITY_LABELS = {
    "ok": "verified",
    "unsigned": "unsigned",
    "truncated": "truncated",
    "unreadable": "unreadable",
}


def integrity_label(report: VerifyReport) -> str:
    """Short text for the integrity column: verified / unsigned / tampered@N / ..."""
    if report.status in INTEGRITY_LABELS:
        if report.status == "truncated" and report.first_bad_chunk is not None:
            return f"truncated@{report.first_bad_chunk}"
        return INTEGRITY_LABELS[report.status]
    if report.first_bad_chunk is not None:
        return f"tampered@{report.first_bad_chunk}"
    return "tampered"


@dataclass(frozen=True)
class Mark:
    """One notable moment of a session (a timeline marker).

    Attributes:
        time: seconds since the session start.
        kind: "command" | "deny" | "allow" | "approval" | "transfer" | "marker" | "gap".
        text: what to show (the command line, the file path, ...).
    """

    time: float
    kind: str
    text: str


def _mark(e: ev.Event) -> Mark | None:
    f = e.fields()
    if e.type == ev.COMMAND:
        return Mark(e.time, "command", str(f.get("text", "")))
    if e.type == ev.POLICY:
        action = str(f.get("action", ""))
        kind = "allow" if action == "allow" else "deny"
        return Mark(e.time, kind, f"{action}: {f.get('command', '')} ({f.get('reason', '')})")
    if e.type == ev.APPROVAL:
        return Mark(
            e.time,
            "approval",
            f"{f.get('decision', '')} by {f.get('approver', '')}: {f.get('command', '')}",
        )
    if e.type == ev.FILE_TRANSFER:
        text = f"{f.get('direction', '')} {f.get('path', '')} ({f.get('size', '?')} bytes)"
        return Mark(e.time, "transfer", text)
    if e.type == ev.MARKER:
        return Mark(e.time, "marker", str(f.get("text", "")))
    if e.type == ev.GAP:
        return Mark(e.time, "gap", f"recorder gap: {f.get('reason', '')}")
    return None


@dataclass
class SessionData:
    """A recording opened for replay: its keyframes, marks and output times."""

    row: SessionRow | None
    rec: Recording
    kfi: keyframes.KeyframeIndex
    marks: list[Mark] = field(default_factory=list)
    output_times: list[float] = field(default_factory=list)  # distinct, sorted
    duration: float = 0.0

    @property
    def session_id(self) -> str:
        return self.rec.session_id

    @property
    def commands(self) -> list[Mark]:
        return [m for m in self.marks if m.kind == "command"]

    def next_output_after(self, t: float) -> float | None:
        i = bisect.bisect_right(self.output_times, t)
        return self.output_times[i] if i < len(self.output_times) else None

    def command_at(self, t: float) -> Mark | None:
        """The last command entered at or before ``t``."""
        found = None
        for m in self.commands:
            if m.time <= t + 1e-6:
                found = m
        return found


class Archive:
    """The recorder's index and sink, opened read-only in spirit (nothing is written but
    the keyframe cache, like ``bastille play``).

    Args:
        settings: recorder settings (``data_dir``, file or S3 storage).
    """

    def __init__(self, settings: RecorderSettings) -> None:
        from recorder.service import open_sink

        self.settings = settings
        self.index = Index(settings.data_dir / "index.sqlite3")
        self._sink: Sink | None = None
        self._open_sink = open_sink
        self._lock = threading.Lock()
        self._verified: dict[tuple[str, int], VerifyReport] = {}
        self._trusted: list[bytes] | None = self._load_trusted()

    @property
    def sink(self) -> Sink:
        with self._lock:
            if self._sink is None:
                self._sink = self._open_sink(self.settings)
            return self._sink

    def _load_trusted(self) -> list[bytes] | None:
        key = self.settings.signing_key
        if key is None:
            return None
        from recorder.signing import load_public_key, load_signer

        try:
            return [load_public_key(Path(str(key) + ".pub"))]
        except (RecorderError, OSError):
            pass
        try:
            return [load_signer(key).public_raw]
        except (RecorderError, OSError):
            return None  # an auditor may not read the private key: embedded key then

    def close(self) -> None:
        self.index.close()
        with self._lock:
            if self._sink is not None:
                self._sink.close()
                self._sink = None

    def sessions(
        self,
        *,
        user: str | None = None,
        target: str | None = None,
        since: float | None = None,
        until: float | None = None,
        text: str | None = None,
        limit: int = 1000,
    ) -> list[SessionRow]:
        """Sessions matching the filters, newest first (blocking: call from a worker)."""
        return self.index.list_sessions(
            user=user or None,
            target=target or None,
            since=since,
            until=until,
            text=text or None,
            limit=limit,
        )

    def first_match(self, session_id: str, text: str) -> tuple[float, str, str] | None:
        hits = self.index.matches(session_id, text, limit=1)
        return hits[0] if hits else None

    def verify(self, row: SessionRow) -> VerifyReport:
        """Integrity of one recording (cached by name and size; blocking)."""
        try:
            size = self.sink.size(row.name)
        except SinkError as exc:
            return VerifyReport(row.name, row.id, "unreadable", False, str(exc))
        key = (row.name, size)
        if key not in self._verified:
            self._verified[key] = verify_recording(self.sink, row.name, trusted=self._trusted)
        return self._verified[key]

    def open(self, session_id: str) -> SessionData:
        """Open a session for replay (RecorderError with a clear message when it cannot)."""
        row = self.index.get(session_id)
        if row is None:
            rows = self.index.find(session_id)
            if len(rows) != 1:
                raise RecorderError(f"no session {session_id!r} in {self.settings.data_dir}")
            row = rows[0]
        try:
            rec = Recording.from_sink(self.sink, row.name)
        except (FormatError, SinkError) as exc:
            raise RecorderError(f"session {row.id}: cannot read the recording: {exc}") from exc
        interval = float(rec.header.get("keyframe_interval") or 10.0)
        kfi = keyframes.load_or_build(rec, self.settings.data_dir, max(interval, 0.5))
        data = SessionData(row, rec, kfi)
        times: list[float] = []
        last_t = 0.0
        for e in rec.events():
            last_t = e.time
            if e.is_output:
                if not times or times[-1] != e.time:
                    times.append(e.time)
            elif e.type in MARKER_TYPES:
                m = _mark(e)
                if m is not None:
                    data.marks.append(m)
        data.output_times = times
        data.duration = max(rec.duration, last_t)
        return data

    def search(self, data: SessionData, text: str, limit: int = 200) -> list[Mark]:
        """Hits of ``text`` in one session's commands and screen text, each at the moment
        the text appeared on screen (or the command was entered). Blocking."""
        if not text:
            return []
        hits: list[Mark] = []
        rows = self.index.matches(data.session_id, text, limit=limit)
        if not rows:  # not indexed (yet): search the keyframe pass's lines and commands
            low = text.lower()
            rows = [(t, "screen", line) for t, line in data.kfi.lines if low in line.lower()]
            rows += [(m.time, "command", m.text) for m in data.commands if low in m.text.lower()]
            rows.sort()
            rows = rows[:limit]
        seen: set[float] = set()
        for t, kind, line in rows:
            when = t
            if kind == "screen":
                when = appeared_at(data, text, t)
            if round(when, 3) in seen:
                continue
            seen.add(round(when, 3))
            hits.append(Mark(when, "hit", line))
        hits.sort(key=lambda m: m.time)
        return hits


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


class Cursor:
    """A playback position in one recording: a terminal and the events after it.

    Not thread-safe: the caller serialises access (the replay screen holds a lock).
    """

    def __init__(self, data: SessionData) -> None:
        self.data = data
        self.time = 0.0
        cols, rows = data.rec.size
        self.term = Terminal(cols, rows)
        self._feeder = keyframes.Feeder(self.term)
        self._events: Iterator[ev.Event] = iter(())
        self._pending: ev.Event | None = None
        self._interval_end = 0.0
        self.lock = threading.Lock()
        self.seek(0.0)

    def _stream(self, start_seq: int | None, skip: int) -> Iterator[ev.Event]:
        for chunk, events in self.data.rec.iter_chunk_events(from_seq=start_seq):
            first = skip if chunk.seq == start_seq else 0
            yield from events[first:]

    def seek(self, t: float) -> None:
        """Restore the screen as it was at session time ``t`` (keyframe + events)."""
        t = min(max(t, 0.0), max(self.data.duration, 0.0))
        kf = self.data.kfi.keyframe_at(t)
        if kf is None:
            cols, rows = self.data.rec.size
            self.term = Terminal(cols, rows)
            self._events = self._stream(None, 0)
            base = 0.0
        else:
            self.term = Terminal.from_snapshot(kf.snapshot)
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
