"""The writer thread: framing, zstd, hashing and sink writes for every open recording.

The event loop only appends ``(type, time_us, payload)`` tuples to a per-session deque
(see :mod:`recorder.service`); one writer thread drains them, encodes events, compresses
(zstandard releases the GIL), appends chunks to the sink and fsyncs. A chunk is written
when a session's backlog reaches ``flush_bytes`` or ``flush_interval`` seconds after the
previous one; the sink is made durable (``flush()``) at most once per ``flush_interval``
and at close, so a crash loses at most about one interval of data.

Known limits: one writer thread for all sessions (compression of all sessions shares one
core); a sink call that blocks (rather than failing) stalls every recording, and the
sessions then see backpressure through ``wait_writable``.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from recorder import events as ev
from recorder.errors import RecorderError, RecordingFailed, SinkError
from recorder.format import v1
from recorder.settings import RecorderSettings
from recorder.signing import Signer
from recorder.sinks.base import Sink, SinkStream

log = logging.getLogger(__name__)
T = TypeVar("T")

SPLIT = 256 * 1024  # big writes are split into events of this size (<= v1.MAX_EVENT)
MAX_COMMANDS = 10_000  # commands kept in memory per session for the index


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
        self.want_writable = False  # set by the loop, cleared by the writer
        self.on_writable: Callable[[], None] = lambda: None  # thread-safe notifier
        self.on_failed: Callable[[RecorderError], None] = lambda e: None  # thread-safe
        # statistics for the trailer and the index
        self.counts: dict[str, int] = {}
        self.output_sha = hashlib.sha256()
        self.output_bytes = 0
        self.input_bytes = 0
        self.commands: list[tuple[float, str, str]] = []
        self.policy_events = 0
        self.max_t = 0

    def _stat(self, etype: int, payload: bytes, t_us: int) -> None:
        name = ev.NAMES.get(etype, str(etype))
        if t_us > self.max_t:
            self.max_t = t_us
        self.counts[name] = self.counts.get(name, 0) + 1
        if etype in (ev.OUTPUT, ev.STDERR):
            self.output_sha.update(payload)
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

    def write_pending(self, flush_bytes: int, *, final: bool = False) -> None:
        """Drain the deque into data chunks (writer thread). Raises SinkError."""
        assert self.stream is not None
        raw = bytearray()
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
            self._stat(etype, data, t_us)
            if t_first < 0:
                t_first = t_us
            t_last = t_us
            if len(data) <= SPLIT:
                raw += v1.EVENT_HDR.pack(etype, t_us, len(data))
                raw += data
            else:
                for i in range(0, len(data), SPLIT):
                    piece = data[i : i + SPLIT]
                    raw += v1.EVENT_HDR.pack(etype, t_us, len(piece))
                    raw += piece
            if len(raw) >= flush_bytes:
                self._emit(raw, t_first, t_last, final=False)
                self.written += consumed
                consumed = 0
                raw = bytearray()
                t_first = -1
        if raw or (final and self.encoder.frame_open):
            self._emit(raw, max(t_first, 0), t_last, final=final)
        self.written += consumed

    def _emit(self, raw: bytearray, t_first: int, t_last: int, *, final: bool) -> None:
        assert self.stream is not None
        self.stream.write(self.encoder.data(bytes(raw), t_first, t_last, final=final))
        self.dirty = True

    def sync(self, now: float) -> None:
        assert self.stream is not None
        self.stream.flush()
        self.dirty = False
        self.last_sync = now


class Writer:
    """One thread serving every open recording of a :class:`recorder.service.Recorder`."""

    def __init__(self, settings: RecorderSettings, sink: Sink, signer: Signer | None) -> None:
        self.settings = settings
        self.sink = sink
        self.signer = signer
        self._sessions: dict[str, SessionState] = {}
        # Control operations (open/close of a recording). Capacity 1024: one entry per
        # session starting or ending at the same instant; when full, open_session fails
        # closed instead of queueing without bound behind a stuck sink.
        self._ops: queue.Queue[Callable[[], None]] = queue.Queue(maxsize=1024)
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="recorder-writer", daemon=True)
        self.busy_since: float | None = None  # monotonic time of the current sink call

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

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
        if s.error is not None or s.finished:
            s.pending.clear()
            return
        st = self.settings
        backlog = s.enqueued - s.written
        if s.pending and (backlog >= st.flush_bytes or now - s.last_flush >= st.flush_interval):

            def work() -> None:
                s.write_pending(st.flush_bytes)
                s.last_flush = now
                if now - s.last_sync >= st.flush_interval:
                    s.sync(now)

            self._guard(s, work)
        elif s.dirty and now - s.last_sync >= st.flush_interval:
            self._guard(s, lambda: s.sync(now))
        if s.want_writable and s.enqueued - s.written < st.queue_bytes // 2:
            s.want_writable = False
            s.on_writable()

    def fail(self, s: SessionState, exc: BaseException) -> None:
        """Mark a recording failed (writer thread) and notify the loop."""
        if s.error is not None:
            return
        s.error = RecordingFailed(f"recording {s.name} can no longer be written: {exc}")
        s.pending.clear()
        self._sessions.pop(s.session_id, None)
        log.error("recorder: %s", s.error)
        s.on_failed(s.error)

    # ----------------------------------------------------------- open / finish

    def open(self, s: SessionState) -> None:
        """Create the sink object and make the header durable (writer thread)."""
        stream = self.sink.create(s.name)
        s.stream = stream
        stream.write(s.encoder.begin())
        stream.flush()
        self._sessions[s.session_id] = s

    def finish(
        self, s: SessionState, end_time: float, exit_status: int | None, exit_signal: str | None
    ) -> dict[str, Any]:
        """Write what is left, the trailer and the signature; close the sink stream."""
        self._sessions.pop(s.session_id, None)
        summary: dict[str, Any] = {
            "end_time": end_time,
            "exit_status": exit_status,
            "exit_signal": exit_signal,
            "signed": False,
        }
        if s.error is None and s.stream is not None:

            def work() -> None:
                assert s.stream is not None
                s.write_pending(self.settings.flush_bytes, final=True)
                info = {
                    "end_time": end_time,
                    "duration": s.max_t / 1e6,
                    "exit_status": exit_status,
                    "exit_signal": exit_signal,
                    "counts": s.counts,
                    "output_bytes": s.output_bytes,
                    "output_sha256": s.output_sha.hexdigest(),
                    "input_bytes": s.input_bytes,
                }
                s.stream.write(s.encoder.trailer(info))
                if self.signer is not None:
                    signer = self.signer
                    s.stream.write(
                        s.encoder.signature(signer.sign, signer.public_raw, signer.key_id)
                    )
                    summary["signed"] = True
                s.stream.flush()
                s.stream.close()

            self._guard(s, work)
        s.finished = True
        s.pending.clear()
        summary["status"] = "failed" if s.error is not None else "ended"
        return summary
