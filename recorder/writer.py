"""The writer thread: framing, zstd, hashing and sink writes for every open recording.

The event loop only appends ``(type, time_us, payload)`` tuples to a per-session deque
(see :mod:`recorder.service`); one writer thread drains them, encodes events, compresses
(zstandard releases the GIL), appends chunks to the sink. A chunk is written
when a session's backlog reaches ``flush_bytes`` or ``flush_interval`` seconds after the
previous one; the sink is made durable (``flush()``) at most once per ``flush_interval``
and at close, so a crash loses at most about one interval of data (plus the time one
fsync takes).

The periodic fsyncs run on a second thread (``recorder-sync``), not on this one: an
fsync of a second of bulk data took 0.12-0.54 s on the machines measured (the file
system commits the target's own writes with it), and while the writer waited every
session of the process filled its queue and paused. The writer goes on encoding and
writing while the syncer makes the earlier bytes durable; a session's next fsync is
asked for only when its last one is done, its close waits for it, and a failed fsync
fails that recording as an inline one did. The watchdog (``stall_timeout``) watches
both threads.

Back-pressure, not failure: an encoded chunk the sink refuses with
:class:`~recorder.errors.SinkFullError` (spool cap, disk low-water mark, disk full) is
kept in the session's *outbox* and written, in order, when the sink takes it; meanwhile
nothing more is drained, the session's backlog grows and the producer is told to pause
(``congested``). Under ``on_failure = "continue"`` a session paused longer than
``max_pause`` goes on: what it produces meanwhile is dropped, and when the sink takes
data again the recording gets a ``gap`` event (``{reason, dropped_bytes}``) and goes on.

Recordings are opened (sink ``create`` and the header) by the caller's thread, not this
one (see ``Recorder.open_session``), so a slow sink call here never delays a session
start. Known limits: one writer thread for all sessions (compression of all sessions
shares one core); a sink call that blocks (rather than failing) stalls every recording:
the sessions see back-pressure, and after ``stall_timeout`` the recorder fails them.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from recorder import events as ev
from recorder.digests import OutputDigests
from recorder.errors import RecorderError, RecordingFailed, SinkError, SinkFullError
from recorder.format import v1
from recorder.settings import RecorderSettings
from recorder.signing import Signer
from recorder.sinks.base import Sink, SinkStream

log = logging.getLogger(__name__)
T = TypeVar("T")

SPLIT = 256 * 1024  # big writes are split into events of this size (<= v1.MAX_EVENT)
BIG_PIECE = 4096  # events at least this big go to the sink as they are, not copied
MAX_COMMANDS = 10_000  # commands kept in memory per session for the index
DELIVERED = -1  # pseudo event type: bytes the user received, hashed, never stored


class SessionState:
    """One recording, shared by the loop thread (producer) and the writer thread.

    Loop thread only: ``pending.append``, ``enqueued``. Writer thread only: everything
    else except the flags documented as cross-thread. deque append/popleft are atomic.
    """

    def __init__(
        self, name: str, header: dict[str, Any], settings: RecorderSettings, window_log: int
    ) -> None:
        self.name = name
        self.session_id = str(header["session_id"])
        self.header = header
        # Unbounded container, bounded in bytes: the producer fails the recording when
        # enqueued - written exceeds the hard cap (2 x queue_bytes); see service.py.
        self.pending: deque[tuple[int, int, bytes]] = deque()
        self.enqueued = 0  # bytes appended (loop thread)
        self.written = 0  # bytes consumed (writer thread)
        self.encoder = v1.Encoder(header, level=settings.zstd_level, window_log=window_log)
        self.stream: SinkStream | None = None
        self.error: RecorderError | None = None  # set by the writer thread once
        self.finished = False
        self.last_flush = time.monotonic()
        self.last_sync = self.last_flush
        self.dirty = False
        self.syncing = False  # a periodic fsync is queued or running (recorder-sync)
        self.sync_error: BaseException | None = None  # what that fsync raised
        self.want_writable = False  # set by the loop, cleared by the writer
        # set by the loop when it wakes the writer for this session, cleared by the writer
        # before it looks at the session: one wake per drain, not one per event
        self.wake_sent = False
        self.on_writable: Callable[[], None] = lambda: None  # thread-safe notifier
        self.on_failed: Callable[[RecorderError], None] = lambda e: None  # thread-safe
        self.on_state: Callable[[str, str], None] = lambda state, reason: None  # thread-safe
        # Encoded chunks the sink has not taken yet, with the raw bytes they consumed.
        # At most one drain's worth: nothing more is encoded while it is not empty.
        self.outbox: deque[tuple[bytes | list[v1.Piece], int]] = deque()
        self.blocked: str | None = None  # why the sink refuses (cross-thread, read-only)
        self.blocked_since: float | None = None  # monotonic
        self.dropping = False  # continue mode: dropping events while storage is full
        self.dropped = 0  # bytes dropped (by the writer) since the last gap event
        self.dropped_total = 0
        self.dropped_live = 0  # bytes the producer did not queue while dropping (loop)
        self.dropped_live_seen = 0  # ...of which already counted in a gap (writer)
        self.last_t = 0
        self.closing: tuple[float, int | None, str | None] | None = None
        self.close_future: concurrent.futures.Future[dict[str, Any]] | None = None
        self.trailer_posted = False
        self.truncated = False
        # statistics for the trailer and the index
        self.counts: dict[str, int] = {}
        self.digests = OutputDigests()  # output_sha256, delivered_sha256
        # each chunk's chain hash and the output it holds: one pass for both (two streams)
        self.encoder.hash_partner = self.digests.partner
        self.output_bytes = 0
        self.input_bytes = 0
        self.delivered_bytes = 0
        self.commands: list[tuple[float, str, str]] = []
        self.policy_events = 0
        self.max_t = 0

    def _stat(self, etype: int, payload: bytes, t_us: int) -> None:
        name = ev.NAMES.get(etype, str(etype))
        if t_us > self.max_t:
            self.max_t = t_us
        self.counts[name] = self.counts.get(name, 0) + 1
        if etype in (ev.OUTPUT, ev.STDERR):
            self.digests.output(payload)
            self.output_bytes += len(payload)
        elif etype == ev.INPUT:
            self.input_bytes += len(payload)
        elif etype == ev.COMMAND and len(self.commands) < MAX_COMMANDS:
            fields = ev.Event(etype, t_us / 1e6, payload).fields()
            self.commands.append(
                (t_us / 1e6, str(fields.get("text", "")), str(fields.get("source", "")))
            )
        elif etype in (ev.POLICY, ev.APPROVAL):
            self.policy_events += 1

    def _deliver(self, payload: bytes) -> None:
        if not payload:  # the session will report what it delivers (before any output)
            self.digests.pair()
            return
        self.digests.delivered(payload)
        self.delivered_bytes += len(payload)

    def write_pending(self, flush_bytes: int, *, final: bool = False) -> None:
        """Drain the deque into data chunks (writer thread).

        Raises SinkError on a failure; a SinkFullError leaves the refused chunks in the
        outbox (and nothing more is drained until they are written).
        """
        assert self.stream is not None
        self.drain_outbox()
        parts: list[v1.Piece] = []  # event headers and small events (copied), big data
        run = bytearray()  # headers and small events, gathered (big ones are not copied)
        size = 0
        t_first = -1
        t_last = 0
        pending = self.pending
        consumed = 0  # counted as written only once in the sink (backpressure is honest)
        for _ in range(len(pending)):  # only what is queued now: a fast producer cannot
            try:  # keep this loop (and the next fsync) from ever ending
                etype, t_us, data = pending.popleft()
            except IndexError:
                break
            consumed += len(data)
            if etype == DELIVERED:
                self._deliver(data)
                continue
            self._stat(etype, data, t_us)
            self.last_t = max(self.last_t, t_us)
            if t_first < 0:
                t_first = t_us
            t_last = t_us
            view = memoryview(data)
            for i in range(0, max(len(data), 1), SPLIT):
                piece = view[i : i + SPLIT]
                run += v1.EVENT_HDR.pack(etype, t_us, len(piece))
                if len(piece) < BIG_PIECE:
                    run += piece
                else:
                    parts.append(bytes(run))
                    run.clear()
                    parts.append(piece)
                size += v1.EVENT_HDR.size + len(piece)
            if size >= flush_bytes:
                if run:
                    parts.append(bytes(run))
                    run.clear()
                self._emit(parts, t_first, t_last, consumed, final=False)
                consumed = 0
                parts = []
                size = 0
                t_first = -1
        if run:
            parts.append(bytes(run))
        if parts or (final and self.encoder.frame_open):
            self._emit(parts, max(t_first, 0), t_last, consumed, final=final)
        elif consumed:
            self._post(b"", consumed)
        self.drain_outbox()

    def _emit(self, parts: list[v1.Piece], t_first: int, t_last: int, consumed: int, *,
              final: bool) -> None:
        self._post(self.encoder.data_parts(parts, t_first, t_last, final=final), consumed)

    def _post(self, chunk: bytes | list[v1.Piece], consumed: int) -> None:
        """Queue an encoded chunk (and the raw bytes it consumed) for the sink."""
        if self.outbox or not chunk:
            self.outbox.append((chunk, consumed))
            return
        self.outbox.append((chunk, consumed))
        self.drain_outbox()

    def drain_outbox(self) -> None:
        """Write queued chunks in order; stop (keeping the rest) at a SinkFullError."""
        assert self.stream is not None
        while self.outbox:
            chunk, consumed = self.outbox[0]
            if chunk:
                try:
                    self.stream.write_parts([chunk] if isinstance(chunk, bytes) else chunk)
                except SinkFullError as exc:
                    if self.blocked is None:
                        self.blocked_since = time.monotonic()
                        self.blocked = str(exc)
                        self.on_state("paused", self.blocked)
                    return
                self.dirty = True
            self.outbox.popleft()
            self.written += consumed
        if self.blocked is not None:
            waited = time.monotonic() - (self.blocked_since or time.monotonic())
            self.blocked = None
            self.blocked_since = None
            self.on_state("resumed", f"storage took data again after {waited:.1f} s")

    def drop_pending(self, reason: str) -> None:
        """Continue mode, storage still full: drop what is queued (a gap is noted later)."""
        n = 0
        for _ in range(len(self.pending)):
            try:
                etype, t_us, data = self.pending.popleft()
            except IndexError:
                break
            n += len(data)
            if etype == DELIVERED:
                self._deliver(data)
                continue
            self.last_t = max(self.last_t, t_us)
            if etype in (ev.OUTPUT, ev.STDERR, ev.INPUT, ev.RDP):
                self.dropped += len(data)
                self.dropped_total += len(data)
        self.written += n
        if not self.dropping:
            self.dropping = True
            self.on_state("dropping", reason)

    def note_gap(self) -> None:
        """Storage takes data again after dropping: queue the gap event first."""
        live = self.dropped_live
        self.dropped += live - self.dropped_live_seen
        self.dropped_total += live - self.dropped_live_seen
        self.dropped_live_seen = live
        payload = ev.dumps({"reason": "recording storage was full", "dropped_bytes": self.dropped})
        self.pending.appendleft((ev.GAP, self.last_t, payload))
        self.enqueued += 0  # the gap event is the writer's own: not counted as the producer's
        self.written -= len(payload)  # ...so that written stays <= enqueued after it drains
        self.on_state("resumed", f"recording resumed; {self.dropped} bytes were not recorded")
        self.dropped = 0
        self.dropping = False


class Writer:
    """One thread serving every open recording of a :class:`recorder.service.Recorder`."""

    def __init__(self, settings: RecorderSettings, sink: Sink, signer: Signer | None) -> None:
        self.settings = settings
        self.sink = sink
        self.signer = signer
        self._sessions: dict[str, SessionState] = {}
        # Control operations (attach/close of a recording). Capacity 1024: one entry per
        # session starting or ending at the same instant; when full, the caller fails
        # closed instead of queueing without bound behind a stuck sink.
        self._ops: queue.Queue[Callable[[], None]] = queue.Queue(maxsize=1024)
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="recorder-writer", daemon=True)
        self.busy_since: float | None = None  # monotonic time of the current sink call
        # periodic fsyncs, off the writer thread (see the module's docstring)
        self._syncs: queue.SimpleQueue[SessionState | None] = queue.SimpleQueue()
        self._sync_thread = threading.Thread(target=self._sync_run, name="recorder-sync",
                                             daemon=True)
        self.sync_busy_since: float | None = None  # monotonic time of the current fsync

    def start(self) -> None:
        self._thread.start()
        self._sync_thread.start()

    @property
    def stalled_since(self) -> float | None:
        """Since when a storage call of either thread has been running (None: none)."""
        busy = [t for t in (self.busy_since, self.sync_busy_since) if t is not None]
        return min(busy) if busy else None

    def wake(self) -> None:
        self._wake.set()

    @property
    def sessions(self) -> list[SessionState]:
        return list(self._sessions.values())

    def call(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``fn`` on the writer thread; the future holds its result or exception."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def op() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn())
            except BaseException as exc:  # handed to the awaiting caller, never lost
                fut.set_exception(exc)

        if self._stop or not self._thread.is_alive():
            raise RecordingFailed("the recorder is not running")
        try:
            self._ops.put_nowait(op)
        except queue.Full as exc:
            raise RecordingFailed("the recorder is overloaded (control queue full)") from exc
        self._wake.set()
        return fut

    def stop(self, timeout: float) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(timeout)
        self._syncs.put(None)
        self._sync_thread.join(timeout)

    def _sync_run(self) -> None:
        """The syncer thread: one session's fsync at a time, in the order asked."""
        while True:
            s = self._syncs.get()
            if s is None:
                return
            self.sync_busy_since = time.monotonic()
            try:
                if s.stream is not None and s.error is None and not s.finished:
                    s.stream.flush()
            except Exception as exc:  # SinkError, or a bug: that recording fails
                s.sync_error = exc
            finally:
                self.sync_busy_since = None
                s.syncing = False
                self._wake.set()  # a close may wait for it; a failure is handled there

    def _sync_later(self, s: SessionState, now: float) -> None:
        """Ask the syncer to make what ``s`` wrote so far durable (unless it is at it)."""
        if s.syncing:
            return
        s.syncing = True
        s.dirty = False
        s.last_sync = now
        self._syncs.put(s)

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        interval = self.settings.flush_interval
        tick = max(0.01, min(0.2, interval / 5))
        while True:
            self._wake.wait(tick)
            self._wake.clear()
            while True:
                try:
                    op = self._ops.get_nowait()
                except queue.Empty:
                    break
                op()
            if self._stop:
                for s in list(self._sessions.values()):
                    if s.closing is not None:
                        self._step_closing(s, force=True)
                return
            now = time.monotonic()
            for s in list(self._sessions.values()):
                self._service(s, now)

    def _guard(self, s: SessionState, fn: Callable[[], None]) -> None:
        self.busy_since = time.monotonic()
        try:
            fn()
        except SinkError as exc:
            self.fail(s, exc)
        except Exception as exc:  # a bug must not kill the writer thread for everyone
            log.exception("recorder: unexpected error in recording %s", s.name)
            self.fail(s, exc)
        finally:
            self.busy_since = None

    def _service(self, s: SessionState, now: float) -> None:
        s.wake_sent = False  # before reading its backlog: a later event wakes us again
        if s.sync_error is not None and s.error is None:
            log.debug("recorder: the fsync of %s failed", s.name)
            self.fail(s, s.sync_error)
        if s.error is not None or s.finished:
            s.pending.clear()
            return
        if s.closing is not None:
            if s.outbox:
                self._while_blocked(s, now)
            self._step_closing(s, force=self._stop)
            return
        st = self.settings
        if s.outbox:  # storage refused earlier: retry the refused chunks first
            self._guard(s, s.drain_outbox)
            if s.outbox:
                self._while_blocked(s, now)
                self._notify_writable(s)
                return
            if s.dropping:
                s.note_gap()
        backlog = s.enqueued - s.written
        if s.pending and (backlog >= st.flush_bytes or now - s.last_flush >= st.flush_interval):

            def work() -> None:
                s.write_pending(st.flush_bytes)
                s.last_flush = now
                if s.dirty and now - s.last_sync >= st.flush_interval:
                    self._sync_later(s, now)

            self._guard(s, work)
        elif s.dirty and now - s.last_sync >= st.flush_interval:
            self._sync_later(s, now)
        self._notify_writable(s)

    def _while_blocked(self, s: SessionState, now: float) -> None:
        st = self.settings
        if s.dirty and now - s.last_sync >= st.flush_interval:
            self._sync_later(s, now)  # what was written stays durable
        since = s.blocked_since
        if st.on_failure == "continue" and since is not None and now - since >= st.max_pause:
            s.drop_pending(
                f"recording storage has been full for {now - since:.0f} s: the session goes "
                f"on and what it shows is not recorded until storage takes data again"
            )

    def _notify_writable(self, s: SessionState) -> None:
        if s.want_writable and s.enqueued - s.written < self.settings.queue_bytes // 2:
            s.want_writable = False
            s.on_writable()

    def fail(self, s: SessionState, exc: BaseException) -> None:
        """Mark a recording failed (writer thread), close what was stored, notify the loop.

        The sink stream is closed (best effort) so that what was stored is finished and,
        for a spooled sink, uploaded now rather than at the next start.
        """
        if s.error is not None:
            return
        s.error = RecordingFailed(f"recording {s.name} can no longer be written: {exc}")
        s.pending.clear()
        s.outbox.clear()
        self._sessions.pop(s.session_id, None)
        log.error("recorder: %s", s.error)
        if s.stream is not None:
            try:
                s.stream.close()
            except SinkError as close_exc:
                log.warning("recorder: cannot close failed recording %s: %s", s.name, close_exc)
        s.on_failed(s.error)
        if s.closing is not None and s.close_future is not None and not s.close_future.done():
            end_time, exit_status, exit_signal = s.closing
            s.finished = True
            s.close_future.set_result({"end_time": end_time, "exit_status": exit_status,
                                       "exit_signal": exit_signal, "signed": False,
                                       "status": "failed"})

    # ----------------------------------------------------------- open / finish

    def open_stream(self, s: SessionState) -> None:
        """Create the sink object and make the header durable (any thread but this one's
        sessions: the recording is not attached yet). Removes the object on failure."""
        stream = self.sink.create(s.name)
        try:
            stream.write(s.encoder.begin())
            stream.flush()
        except BaseException:
            try:
                stream.abort()
            except SinkError as exc:
                log.warning("recorder: cannot remove unstarted recording %s: %s", s.name, exc)
            raise
        s.stream = stream

    def attach(self, s: SessionState) -> None:
        """Start serving an opened recording (writer thread)."""
        self._sessions[s.session_id] = s

    def open(self, s: SessionState) -> None:
        """``open_stream`` and ``attach`` in one (tests and tools without a loop)."""
        self.open_stream(s)
        self.attach(s)

    def finish(
        self, s: SessionState, end_time: float, exit_status: int | None, exit_signal: str | None
    ) -> dict[str, Any]:
        """Write what is left, the trailer and the signature, and close the sink stream,
        now (writer thread, or a thread-less tool). If storage still refuses data, the
        recording is closed without its trailer (it reads as truncated)."""
        s.closing = (end_time, exit_status, exit_signal)
        result = self._finish_step(s, force=True)
        assert result is not None
        return result

    def close_session(
        self, s: SessionState, end_time: float, exit_status: int | None, exit_signal: str | None
    ) -> concurrent.futures.Future[dict[str, Any]]:
        """Start closing a recording (writer thread); the future gets the summary once the
        trailer is stored. While storage refuses data (full) it is retried every tick;
        at :meth:`stop` what is left is closed without its trailer."""
        fut: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        fut.set_running_or_notify_cancel()
        s.closing = (end_time, exit_status, exit_signal)
        s.close_future = fut
        self._step_closing(s, force=self._stop)
        return fut

    def _step_closing(self, s: SessionState, *, force: bool) -> None:
        result = self._finish_step(s, force=force)
        fut = s.close_future
        if result is not None and fut is not None and not fut.done():
            fut.set_result(result)

    def _finish_step(self, s: SessionState, *, force: bool) -> dict[str, Any] | None:
        assert s.closing is not None
        end_time, exit_status, exit_signal = s.closing
        summary: dict[str, Any] = {
            "end_time": end_time,
            "exit_status": exit_status,
            "exit_signal": exit_signal,
            "signed": False,
            "status": "ended",
        }
        if s.error is None and s.stream is not None and not s.finished:
            done = False

            def work() -> None:
                nonlocal done
                assert s.stream is not None
                if s.dropping and not s.outbox:
                    s.note_gap()
                s.write_pending(self.settings.flush_bytes, final=True)
                if not s.outbox and not s.trailer_posted:
                    s.trailer_posted = True
                    s._post(s.encoder.trailer(self._trailer(s, end_time, exit_status,
                                                            exit_signal)), 0)
                    if self.signer is not None:
                        signer = self.signer
                        s._post(
                            s.encoder.signature(signer.sign, signer.public_raw, signer.key_id), 0
                        )
                if s.outbox and not force:
                    return  # still full: try again at the next tick
                if s.outbox:
                    log.error(
                        "recorder: %s closed without its trailer: storage is still full (%s)",
                        s.name, s.blocked,
                    )
                    s.truncated = True
                if s.syncing and not force:
                    return  # the syncer is at this stream: close after it
                s.stream.flush()
                s.stream.close()
                done = True

            self._guard(s, work)
            if not done and s.error is None:
                return None
        self._sessions.pop(s.session_id, None)
        s.finished = True
        s.pending.clear()
        s.outbox.clear()
        if s.error is not None:
            summary["status"] = "failed"
        elif s.truncated:
            summary["status"] = "truncated"
        else:
            summary["signed"] = self.signer is not None and s.trailer_posted
        return summary

    @staticmethod
    def _trailer(
        s: SessionState, end_time: float, exit_status: int | None, exit_signal: str | None
    ) -> dict[str, Any]:
        info: dict[str, Any] = {
            "end_time": end_time,
            "duration": s.max_t / 1e6,
            "exit_status": exit_status,
            "exit_signal": exit_signal,
            "counts": s.counts,
            "output_bytes": s.output_bytes,
            "output_sha256": s.digests.output_hex(),
            "input_bytes": s.input_bytes,
        }
        delivered = s.digests.delivered_hex()
        if delivered is not None:
            info["delivered_bytes"] = s.delivered_bytes
            info["delivered_sha256"] = delivered
        if s.dropped_total:
            info["dropped_bytes"] = s.dropped_total
        return info
