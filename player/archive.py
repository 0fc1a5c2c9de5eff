"""The player's data layer (no Textual here): the archive, a session's timeline, reviews.

Everything in this module is blocking (SQLite, sink reads, zstd, pyte) and is meant to
run in worker threads, never on the UI thread.

:class:`Archive` opens the recorder's index and storage, the review store and the
appliance's other records (:mod:`player.sources`); :meth:`Archive.open` returns a
:class:`SessionData`: the recording, its keyframes, its timeline
(:mod:`recorder.timeline`) and its reviews (:mod:`state.reviews`).

Known limits: the screen model is the recorder's guarded pyte terminal (see
``recorder.screen``: an alternate screen, no scrollback of its own).
"""

from __future__ import annotations

import bisect
import getpass
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from player import sources
from player.cursor import appeared_at
from recorder import events as ev
from recorder import keyframes
from recorder import timeline as tl
from recorder.errors import FormatError, RecorderError, SinkError
from recorder.format import v1
from recorder.index import SessionRow
from recorder.reader import Recording
from recorder.settings import RecorderSettings
from recorder.sinks.base import Sink
from recorder.verify import VerifyReport, verify_recording
from state.approvals import Approvals
from state.backend import StateBackend
from state.reviews import Review, ReviewError, ReviewStore, Summary, summarize
from state.settings import StateSettings

if TYPE_CHECKING:
    from state.pg.livetail import LiveTail

TRANSFER_KINDS = frozenset({"sftp", "scp"})
_TRANSFER_EXEC = re.compile(r"^\s*(scp\s|rsync\s+--server|\S*sftp-server)")
COMMAND_KINDS = frozenset({"command", "allowed", "denied", "held", "policy"})
INTEGRITY_LABELS = {
    "ok": "verified",
    "unsigned": "unsigned",
    "truncated": "truncated",
    "unreadable": "unreadable",
}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def integrity_label(report: VerifyReport, *, live: bool = False) -> str:
    """Short text for the integrity column: verified / unsigned / live / tampered@N / ...

    A live session has no trailer yet: it is ``live`` (not ``truncated``) as long as
    its hash chain is intact so far.
    """
    if live and report.status == "truncated":
        return "live"
    if report.status in INTEGRITY_LABELS:
        if report.status == "truncated" and report.first_bad_chunk is not None:
            return f"truncated@{report.first_bad_chunk}"
        return INTEGRITY_LABELS[report.status]
    if report.first_bad_chunk is not None:
        return f"tampered@{report.first_bad_chunk}"
    return "tampered"


def session_kind(kind: str, command: str | None) -> str:
    """The kind to show: the recorded kind, ``scp``/``rsync`` for exec transfers."""
    if kind == "exec" and command:
        if re.match(r"^\s*rsync\s+--server", command):
            return "rsync"
        if re.match(r"^\s*scp\s", command):
            return "scp"
    return kind or "?"


def is_transfer_only(kind: str, command: str | None) -> bool:
    """Sessions that move files and show no terminal (sftp, scp, rsync)."""
    return kind in TRANSFER_KINDS or (kind == "exec" and bool(command)
                                      and bool(_TRANSFER_EXEC.match(command or "")))


@dataclass(frozen=True)
class Mark:
    """A moment drawn on the timeline bar: a timeline entry, a search hit, a review."""

    time: float
    kind: str
    text: str


@dataclass
class SessionData:
    """A recording opened for replay: keyframes, timeline, reviews and output times."""

    row: SessionRow | None
    rec: Recording
    kfi: keyframes.KeyframeIndex
    entries: list[tl.Entry] = field(default_factory=list)
    reviews: list[Review] = field(default_factory=list)
    output_times: list[float] = field(default_factory=list)  # distinct, sorted
    io_events: int = 0
    duration: float = 0.0
    _cached: tuple[tuple[int, int, int, int],
                   tuple[list[tl.Entry], list[float], list[Mark]]] | None = None

    @property
    def session_id(self) -> str:
        return self.rec.session_id

    @property
    def live(self) -> bool:
        return self.row is not None and self.row.status == "live" and self.rec.trailer is None

    @property
    def kind(self) -> str:
        h = self.rec.header
        command = h.get("command") if isinstance(h.get("command"), str) else None
        return session_kind(str(h.get("kind", "")), command)

    @property
    def transfer_only(self) -> bool:
        h = self.rec.header
        command = h.get("command") if isinstance(h.get("command"), str) else None
        return is_transfer_only(str(h.get("kind", "")), command)

    @property
    def head(self) -> str:
        """The recording's chain head (hex) once finished; reviews are bound to it."""
        for c in self.rec.chunks:
            if c.type == v1.TRAILER:
                return c.digest.hex()
        return ""

    @property
    def commands(self) -> list[tl.Entry]:
        return self._cache()[0]

    @property
    def transfers(self) -> list[tl.Entry]:
        return [e for e in self.entries if e.kind in ("transfer", "file_op")]

    @property
    def review_summary(self) -> Summary:
        return summarize(self.reviews)

    @property
    def marks(self) -> list[Mark]:
        """Timeline entries, notes and flags as marks for the bar (computed once per
        change of entries or reviews: the bar is redrawn ten times a second)."""
        return self._cache()[2]

    def _cache(self) -> tuple[list[tl.Entry], list[float], list[Mark]]:
        key = (id(self.entries), len(self.entries), id(self.reviews), len(self.reviews))
        if self._cached is None or self._cached[0] != key:
            commands = [e for e in self.entries if e.kind in COMMAND_KINDS]
            marks = [Mark(e.time, e.kind, e.text) for e in self.entries]
            for r in self.reviews:
                if r.at is not None and r.kind in ("note", "flag"):
                    marks.append(Mark(r.at, r.kind, r.text))
            marks.sort(key=lambda m: m.time)
            self._cached = (key, (commands, [c.time for c in commands], marks))
        return self._cached[1]

    def next_output_after(self, t: float) -> float | None:
        i = bisect.bisect_right(self.output_times, t + 1e-6)
        return self.output_times[i] if i < len(self.output_times) else None

    def output_before(self, t: float) -> float | None:
        i = bisect.bisect_left(self.output_times, t - 1e-6)
        return self.output_times[i - 1] if i > 0 else None

    def command_at(self, t: float) -> tl.Entry | None:
        """The last command entered at or before ``t``."""
        commands, times, _marks = self._cache()
        i = bisect.bisect_right(times, t + 1e-6) - 1
        return commands[i] if i >= 0 else None

    def entry_at(self, t: float) -> int | None:
        """Index of the last timeline entry at or before ``t``."""
        times = [e.time for e in self.entries]
        i = bisect.bisect_right(times, t + 1e-6) - 1
        return i if i >= 0 else None


class Archive:
    """The recorder's index and sink, the review store and the appliance's records.

    Nothing is written but the keyframe cache and review records (like ``bastille
    play``, the recordings are only read).

    Args:
        settings: recorder settings (``data_dir``, file or S3 storage, signing key).
        audit_file: the gateway's audit log (default ``data_dir/audit.jsonl``), read
            for forwards and evasion signals.
    """

    def __init__(self, settings: RecorderSettings, *, audit_file: Path | None = None,
                 state: StateBackend | None = None) -> None:
        from recorder.index import open_index
        from recorder.service import open_sink

        self.settings = settings
        # the stores: the data directory's SQLite files, or the shared database
        self.state = state or StateBackend(StateSettings(), settings.data_dir)
        self.audit_file = audit_file or settings.data_dir / "audit.jsonl"
        self._audit = sources.AuditReader(self.audit_file)
        self.index = open_index(settings, checked=False)
        self._approvals: Approvals | None = None
        self._tail: LiveTail | None = None  # live sessions of other nodes (shared state)
        self._relays: dict[str, bytes] = {}  # name -> relayed bytes, last read
        self._sink: Sink | None = None
        self._open_sink = open_sink
        self._lock = threading.Lock()
        self._verified: dict[tuple[str, int], VerifyReport] = {}
        self._trusted: list[bytes] | None = self._load_trusted()
        self._reviews: ReviewStore | None = None
        self.review_error = ""

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

    @property
    def reviews(self) -> ReviewStore:
        """The review store (opened on first use; ReviewError if it cannot be)."""
        with self._lock:
            if self._reviews is None:
                self._reviews = self._open_reviews()
            return self._reviews

    def _open_reviews(self) -> ReviewStore:
        from recorder.signing import load_signer

        key = self.settings.signing_key
        signer = None
        if key is not None:
            try:
                signer = load_signer(key)
            except (RecorderError, OSError) as exc:
                self.review_error = f"reviews cannot be signed: {exc}"
        return self.state.reviews(signer=signer, trusted=self._trusted,
                                  signing_required=key is not None)

    def approvals(self) -> Approvals:
        """The approval store (kill requests, the approvals pane); opened once."""
        with self._lock:
            if self._approvals is None:
                self._approvals = self.state.approvals()
            return self._approvals

    def close(self) -> None:
        self.index.close()
        if self._approvals is not None:
            self._approvals.close()
        if self._tail is not None:
            self._tail.close()
        with self._lock:
            if self._sink is not None:
                self._sink.close()
                self._sink = None
            if self._reviews is not None:
                self._reviews.close()
                self._reviews = None

    # ------------------------------------------------------------------ lists

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

    def review_summaries(self, ids: Sequence[str]) -> dict[str, Summary]:
        """Review state of these sessions ({} when the store cannot be read)."""
        try:
            return self.reviews.summaries(ids)
        except ReviewError:
            return {}

    def first_match(self, session_id: str, text: str) -> tuple[float, str, str] | None:
        hits = self.index.matches(session_id, text, limit=1)
        return hits[0] if hits else None

    def _recording(self, row: SessionRow) -> Recording:
        """The recording of ``row``: from the storage, or, for a session live on another
        gateway (its recording is still in that node's spool), the bytes that node relays
        while it is watched (``state.pg.livetail``)."""
        try:
            return Recording.from_sink(self.sink, row.name)
        except SinkError:
            data = self._relayed(row)
            if data is None:
                raise
            return Recording.from_bytes(data, row.name)

    def _relayed(self, row: SessionRow, wait: float = 3.0) -> bytes | None:
        """The relayed bytes of a live session held by another node; None if there is no
        such relay (one gateway, or the session is not live)."""
        from state.errors import StateError

        if row.status != "live" or not self.state.shared:
            return None
        with self._lock:
            if self._tail is None:
                self._tail = self.state.live_tail()
            tail = self._tail
        if tail is None:
            return None
        try:
            tail.watch(row.id)  # renewed at every reload of the live view
            deadline = time.monotonic() + wait
            data = tail.read(row.id)
            while not data and time.monotonic() < deadline:
                time.sleep(0.1)
                data = tail.read(row.id)
        except StateError:
            return None
        if not data:
            return None
        self._relays[row.name] = data
        return data

    def verify(self, row: SessionRow) -> VerifyReport:
        """Integrity of one recording (cached by name and size; blocking)."""
        try:
            size = self.sink.size(row.name)
        except SinkError as exc:
            relayed = self._relays.get(row.name)
            if relayed is None:
                return VerifyReport(row.name, row.id, "unreadable", False, str(exc))
            from recorder.sinks.memory import MemorySink

            memory = MemorySink()
            stream = memory.create(row.name)
            stream.write(relayed)
            return verify_recording(memory, row.name, trusted=self._trusted)
        key = (row.name, size)
        if key not in self._verified:
            self._verified[key] = verify_recording(self.sink, row.name, trusted=self._trusted)
        return self._verified[key]

    def resolve(self, session_id: str) -> SessionRow:
        """The index row of an id or unique prefix (RecorderError with a clear message)."""
        row = self.index.get(session_id)
        if row is not None:
            return row
        if not _ID.match(session_id):
            raise RecorderError(f"not a session id: {session_id!r}")
        rows = self.index.find(session_id)
        if len(rows) == 1:
            return rows[0]
        if len(rows) > 1:
            ids = ", ".join(r.id for r in rows[:5])
            raise RecorderError(f"session id prefix {session_id!r} is ambiguous: {ids}")
        raise RecorderError(f"no session {session_id!r} in {self.settings.data_dir}")

    # ------------------------------------------------------------------ one session

    def open(self, session_id: str) -> SessionData:
        """Open a session for replay (RecorderError with a clear message when it cannot)."""
        row = self.resolve(session_id)
        try:
            rec = self._recording(row)
        except (FormatError, SinkError) as exc:
            raise RecorderError(f"session {row.id}: cannot read the recording: {exc}") from exc
        interval = float(rec.header.get("keyframe_interval") or 10.0)
        kfi = keyframes.load_or_build(rec, self.settings.data_dir, max(interval, 0.5))
        data = SessionData(row, rec, kfi)
        builder = tl.Builder(rec.header, rec.start_time)
        times: list[float] = []
        last_t = 0.0
        for e in rec.events():
            last_t = e.time
            if e.is_output:
                data.io_events += 1
                if not times or times[-1] != e.time:
                    times.append(e.time)
            elif e.type == ev.INPUT:
                data.io_events += 1
            builder.add(e)
        data.output_times = times
        data.duration = max(rec.duration, last_t)
        context = sources.gather(self.settings.data_dir, self._audit, row, row.id,
                                 self.approvals() if self.state.shared else None)
        data.entries = builder.finish(context, data.duration)
        data.reviews = self.reviews_of(row.id)
        return data

    def reviews_of(self, session_id: str) -> list[Review]:
        try:
            return self.reviews.records(session_id)
        except ReviewError as exc:
            self.review_error = str(exc)
            return []

    def add_review(self, data: SessionData, kind: str, author: str, *, text: str = "",
                   at: float | None = None, entry: str | None = None,
                   ref: str | None = None) -> Review:
        """Store a review record for ``data``'s session (ReviewError when refused)."""
        review = self.reviews.add(data.session_id, kind, author, text=text, at=at,
                                  entry=entry, ref=ref, recording=data.head)
        data.reviews = self.reviews_of(data.session_id)
        return review

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
            rows += [(m.time, "command", str(m.fields.get("command", "")))
                     for m in data.commands if low in str(m.fields.get("command", "")).lower()]
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


def os_user() -> str:
    """The operating-system user, for reviews made without ``--as``."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
