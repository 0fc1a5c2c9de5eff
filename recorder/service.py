"""The recorder API the gateway calls: :class:`Recorder` and :class:`SessionRecording`.

Hot-path calls (``output``, ``input``, ...) only append a tuple to a per-session deque;
framing, compression, hashing and sink writes happen on the writer thread
(:mod:`recorder.writer`). Screen text and keyframes are built after a session closes by
a background thread (:mod:`recorder.postprocess`).

Back-pressure before failure: ``congested`` is true above ``settings.queue_bytes`` of
unwritten data, because the producer is faster than the writer or because storage
refuses data for now (spool cap, disk low-water mark, disk full); the relay pauses the
target and ``await wait_writable()``. ``paused`` says since when and why (for a notice
to the user). A recording fails only when storage really fails: an I/O error other
than "full", a local storage call blocked for ``stall_timeout`` seconds (a hung disk),
or a relay that ignores back-pressure (more than twice ``queue_bytes`` unwritten).
Under ``on_failure = "continue"`` a session paused longer than ``max_pause`` goes on
unrecorded until storage takes data again; the recording then notes a ``gap`` and goes
on (state callbacks: ``paused``, ``dropping``, ``resumed``).

Opening: ``open_session`` creates the recording and stores its header on an opener
thread (never the writer thread, never a network call: a remote store is behind the
local spool), within ``stall_timeout``; if that fails the object is removed (no empty
recording is left) and the session is refused (fail closed) or, under "continue", runs
unrecorded.

Status: :meth:`Recorder.status` (storage state, spool, paused sessions, failures), sent
to listeners on every change and written to ``DATA_DIR/status.json`` for
``bastille status`` (see :mod:`recorder.status`).

Crashes: the recorder that recovers the storage gives its sink a finisher
(:mod:`recorder.recovery`): recordings a dead process left are cut after their last
intact chunk and given a signed recovery trailer, re-indexed as ``recovered``, and
reported to :meth:`Recorder.add_recovery_listener` (the gateway audits them).

Known limits: one writer thread serves all sessions, so one blocked sink call delays
(and, after ``stall_timeout``, fails) every open recording, not only its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import re
import secrets
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from recorder import events as ev
from recorder.errors import RecorderError, RecordingFailed, SinkError
from recorder.format import v1
from recorder.index import SessionIndex, open_index
from recorder.postprocess import Postprocessor
from recorder.recovery import Recovered, Recoveries
from recorder.settings import RecorderSettings, validate_settings
from recorder.signing import Signer, load_signer
from recorder.sinks.base import Sink, SinkStatus
from recorder.status import (
    STATUS_FILE,
    STATUS_INTERVAL,
    PausedSession,
    RecorderStatus,
    write_status,
)
from recorder.writer import DELIVERED, SessionState, Writer

log = logging.getLogger(__name__)

_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_RESIZE = struct.Struct("<HH")
_UNRECORDED_COUNTED = frozenset({ev.OUTPUT, ev.STDERR, ev.INPUT, ev.RDP})
WINDOW_LOG = 17  # 128 KiB zstd window: ~1.3 MiB of compressor memory per session
MAX_OPENING = 64  # recordings opening at once (each on its own thread); beyond: refused


@dataclass(frozen=True)
class SessionHeader:
    """What is known about a session when it starts (written as the recording header)."""

    session_id: str
    user: str
    target: str
    protocol: str
    kind: str
    client_addr: str
    start_time: float
    cols: int = 80
    rows: int = 24
    term: str = ""
    command: str | None = None
    gateway_version: str = ""


def open_sink(settings: RecorderSettings, *, readonly: bool = True) -> Sink:
    """The configured sink, for tools (see :func:`recorder.sinks.open_sink`): read-only
    unless asked (no spool lock, no upload thread, nothing written, the store's read
    credentials), so they work while a gateway runs. The recorder itself writes."""
    from recorder.sinks import open_sink as opener

    return opener(settings, readonly=readonly)


def sink_name(header: SessionHeader) -> str:
    """Storage name of a recording: ``YYYY/MM/DD/<session_id>.bstl`` (UTC start date)."""
    day = time.strftime("%Y/%m/%d", time.gmtime(header.start_time))
    return f"{day}/{header.session_id}.bstl"


def header_fields(
    header: SessionHeader, settings: RecorderSettings, signer: Signer | None
) -> dict[str, Any]:
    """The JSON object written as a recording's header chunk."""
    meta = asdict(header)
    meta["format"] = f"{v1.VERSION_MAJOR}.{v1.VERSION_MINOR}"
    meta["keyframe_interval"] = settings.keyframe_interval
    meta["signing_key_id"] = signer.key_id if signer else None
    return meta


class SessionRecording:
    """One live recording. Hot-path methods never block and never raise on failure."""

    def __init__(
        self,
        recorder: Recorder,
        writer: Writer,
        state: SessionState,
        loop: asyncio.AbstractEventLoop,
        clock: Callable[[], float],
    ) -> None:
        self._recorder = recorder
        self._writer = writer
        self._s = state
        self._loop = loop
        self._clock = clock
        self._t0 = clock()
        self._last_t = 0
        self.session_id = state.session_id
        self.name = state.name
        st = recorder.settings
        self._flush_bytes = st.flush_bytes
        self._queue_bytes = st.queue_bytes
        # Hard cap on unwritten bytes (2 x queue_bytes): above it the recording fails
        # instead of holding unbounded memory for a relay that ignores backpressure.
        self._hard_cap = 2 * st.queue_bytes
        self._dead = False  # failed or closed: calls are dropped
        self._delivered_bytes = 0  # sent to the user, hashed into the trailer (delivered)
        self._closed = False
        self._failed: RecorderError | None = None
        self._callbacks: list[Callable[[RecorderError], None]] = []
        self._state_callbacks: list[Callable[[str, str], None]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._woken = False
        state.on_failed = self._failed_threadsafe
        state.on_writable = self._writable_threadsafe
        state.on_state = self._state_threadsafe

    @property
    def bytes_recorded(self) -> int:
        """Payload bytes handed to this recording so far, before compression (what the
        gateway's recording budgets count)."""
        return self._s.enqueued - self._delivered_bytes

    # ------------------------------------------------------------------ hot path

    def _now_us(self) -> int:
        t = round((self._clock() - self._t0) * 1_000_000)
        if t < self._last_t:
            t = self._last_t
        self._last_t = t
        return t

    def _put(self, etype: int, payload: bytes) -> None:
        s = self._s
        if s.dropping and etype != DELIVERED:
            # continue mode, storage full: the writer will note a gap; only the hash of
            # what the user receives must go on
            if etype in _UNRECORDED_COUNTED:
                s.dropped_live += len(payload)
            return
        s.pending.append((etype, self._now_us(), payload))
        s.enqueued += len(payload)
        backlog = s.enqueued - s.written
        if backlog >= self._flush_bytes:
            if not s.wake_sent:  # once until the writer looks at this session again
                s.wake_sent = True
                self._writer.wake()
            if backlog > self._hard_cap and not s.dropping:
                self._overflow()

    def output(self, data: bytes, stream: int = 1) -> None:
        """Target -> user bytes (stream 1 stdout, 2 stderr)."""
        if self._dead or not data:
            return
        if type(data) is not bytes:
            data = bytes(data)
        self._put(ev.STDERR if stream == 2 else ev.OUTPUT, data)

    def delivered(self, data: bytes) -> None:
        """Bytes the user was sent, when they differ from what is recorded (masking).

        They are not stored: the trailer gets their size and SHA-256
        (``delivered_bytes``, ``delivered_sha256``) so that what a user received can be
        proved later. Call it with every byte sent to the user, in order, for sessions
        whose recorded output is masked; never for others.
        """
        if self._dead or not data:
            return
        if type(data) is not bytes:
            data = bytes(data)
        self._delivered_bytes += len(data)  # hashed, not stored: no budget counts it
        self._put(DELIVERED, data)

    def deliveries_follow(self) -> None:
        """This session will report what it delivers (:meth:`delivered`). Said before
        the first output, it lets the writer hash the two streams in one pass while they
        are the same bytes (``recorder.digests``); later, it changes nothing."""
        if not self._dead:
            self._put(DELIVERED, b"")

    def input(self, data: bytes) -> None:
        """User -> target bytes."""
        if self._dead or not data:
            return
        if type(data) is not bytes:
            data = bytes(data)
        self._put(ev.INPUT, data)

    def resize(self, cols: int, rows: int) -> None:
        if self._dead:
            return
        self._put(ev.RESIZE, _RESIZE.pack(max(0, min(cols, 65535)), max(0, min(rows, 65535))))

    def _json(self, etype: int, fields: dict[str, Any]) -> None:
        if self._dead:
            return
        try:
            payload = ev.dumps(fields)
        except (TypeError, ValueError):
            payload = ev.dumps({k: repr(v) for k, v in fields.items()})
        if len(payload) > v1.MAX_EVENT:
            payload = ev.dumps({"truncated": True, "repr": repr(fields)[:4096]})
        self._put(etype, payload)

    def command(self, text: str, *, source: str) -> None:
        self._json(ev.COMMAND, {"text": text, "source": source})

    def policy(self, *, command: str, action: str, rule: str | None, reason: str) -> None:
        self._json(
            ev.POLICY, {"command": command, "action": action, "rule": rule, "reason": reason}
        )

    def approval(
        self, *, request_id: str, command: str, decision: str, approver: str | None, reason: str
    ) -> None:
        self._json(
            ev.APPROVAL,
            {
                "request_id": request_id,
                "command": command,
                "decision": decision,
                "approver": approver,
                "reason": reason,
            },
        )

    def file_transfer(
        self, *, path: str, direction: str, size: int, sha256: str, protocol: str
    ) -> None:
        self._json(
            ev.FILE_TRANSFER,
            {
                "path": path,
                "direction": direction,
                "size": size,
                "sha256": sha256,
                "protocol": protocol,
            },
        )

    def rdp(self, data: bytes) -> None:
        """One pyrdp replay PDU (type, timestamp and payload as pyrdp writes them)."""
        if self._dead or not data:
            return
        self._put(ev.RDP, bytes(data))

    def marker(self, text: str) -> None:
        self._json(ev.MARKER, {"text": text})

    def event(self, kind: str, fields: dict[str, object]) -> None:
        """A generic typed event (e.g. RDP); ``fields`` must be JSON-serialisable."""
        self._json(ev.GENERIC, {"kind": kind, "fields": fields})

    # ------------------------------------------------------------------ state

    @property
    def failed(self) -> RecorderError | None:
        return self._failed

    def add_failure_callback(self, cb: Callable[[RecorderError], None]) -> None:
        """``cb(error)`` is called once, on the loop thread, if the recording fails."""
        if self._failed is not None:
            err = self._failed
            self._loop.call_soon(cb, err)
        else:
            self._callbacks.append(cb)

    def add_state_callback(self, cb: Callable[[str, str], None]) -> None:
        """``cb(state, reason)`` on the loop thread when storage pauses or resumes this
        recording: ``"paused"`` (storage refuses data for now: the session should stall,
        with a notice), ``"dropping"`` (continue mode, paused longer than ``max_pause``:
        the session goes on and is not recorded), ``"resumed"`` (storage took data again;
        after dropping, the reason says how much was lost)."""
        self._state_callbacks.append(cb)

    @property
    def congested(self) -> bool:
        """True while the relay should not read more from the target."""
        s = self._s
        if self._dead:
            return False
        if s.dropping:
            return False  # continue mode: the session goes on, unrecorded
        return s.enqueued - s.written > self._queue_bytes

    @property
    def paused(self) -> tuple[float, str] | None:
        """(seconds, reason) while storage refuses this recording's data, else None."""
        s = self._s
        since, reason = s.blocked_since, s.blocked
        if self._dead or since is None or reason is None:
            return None
        return time.monotonic() - since, reason

    async def wait_writable(self) -> None:
        """Return once the unwritten backlog is under the bound (or the recording died)."""
        while self.congested:
            fut = self._loop.create_future()
            self._waiters.append(fut)
            self._s.want_writable = True
            self._writer.wake()
            await fut

    def _release_waiters(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def _threadsafe(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closed during shutdown
            pass

    def _writable_threadsafe(self) -> None:
        self._threadsafe(self._release_waiters)

    def _failed_threadsafe(self, err: RecorderError) -> None:
        self._threadsafe(self._on_failed, err)

    def _state_threadsafe(self, state: str, reason: str) -> None:
        self._threadsafe(self._on_state, state, reason)

    def _on_state(self, state: str, reason: str) -> None:
        if state == "dropping":
            self._release_waiters()  # the session goes on
        if state == "paused":
            log.warning("recorder: %s paused: %s", self.session_id, reason)
        elif state == "dropping":
            log.error("recorder: %s: %s", self.session_id, reason)
        else:
            log.warning("recorder: %s %s: %s", self.session_id, state, reason)
        for cb in list(self._state_callbacks):
            try:
                cb(state, reason)
            except Exception:  # a bad callback must not hide the change from the others
                log.exception("recorder: state callback raised")
        self._recorder._state_changed()

    def _overflow(self) -> None:
        self._fail(
            RecordingFailed(
                f"recording {self.name}: more than {self._hard_cap} bytes not yet written "
                "(the relay ignores backpressure)"
            )
        )

    def _fail(self, err: RecorderError) -> None:
        """Fail the recording from the loop thread (the writer drops what is left)."""
        if self._failed is not None:
            return
        self._dead = True
        writer, s = self._writer, self._s
        try:
            writer.call(lambda: writer.fail(s, err))
        except RecordingFailed:
            s.error = err
        self._on_failed(err)

    def _on_failed(self, err: RecorderError) -> None:
        if self._failed is not None:
            return
        self._failed = err
        self._dead = True
        self._recorder._note_failure(err)
        self._release_waiters()
        callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            try:
                cb(err)
            except Exception:  # a bad callback must not hide the failure from the others
                log.exception("recorder: failure callback raised")

    async def close(
        self, *, exit_status: int | None = None, exit_signal: str | None = None
    ) -> None:
        """Flush, write the trailer and signature, update the index. Idempotent.

        While storage refuses data (full), this waits for it (the recording keeps what
        was produced before the session ended); at recorder shutdown what is left is
        closed without its trailer.
        """
        if self._closed:
            return
        self._closed = True
        if not self._dead:
            self._json(ev.EXIT, {"status": exit_status, "signal": exit_signal})
        self._dead = True
        self._release_waiters()
        rec = self._recorder
        end = self._s.header["start_time"] + (self._clock() - self._t0)
        s = self._s
        writer = self._writer
        try:
            outer = writer.call(lambda: writer.close_session(s, end, exit_status, exit_signal))
        except RecordingFailed as exc:
            self._on_failed(exc)
            return
        summary = await _await_future(outer)
        if isinstance(summary, concurrent.futures.Future):
            summary = await _await_future(summary)
        if summary.get("status") == "failed" and s.error is not None:
            self._on_failed(s.error)
        rec._closed_one(self, s, summary)


async def _await_future(fut: concurrent.futures.Future[Any]) -> Any:
    """Await a thread future; if the awaiting task is cancelled, its outcome is still
    retrieved (no "exception was never retrieved" at shutdown)."""
    afut = asyncio.wrap_future(fut)

    def consume(f: asyncio.Future[Any]) -> None:
        if not f.cancelled():
            f.exception()

    afut.add_done_callback(consume)
    return await asyncio.shield(afut)


class Recorder:
    """Records every session of a gateway.

    Args:
        settings: recorder settings (validated in :meth:`start`).
        clock: wall clock used for event times (injected in tests).
        sink: a sink to use instead of the configured one (tests).
        stall_timeout: overrides ``settings.stall_timeout`` (tests).
        recover: False in helper processes (RDP workers) that share the storage and the
            index with a gateway process: only the gateway finishes what a crashed
            process left, and writes the status file.
        status_name: a helper that serves sessions (an SSH worker) writes its own
            status file of this name, which ``bastille status`` adds to the gateway's
            (:func:`recorder.status.worker_status_name`).
    """

    def __init__(
        self,
        settings: RecorderSettings,
        *,
        clock: Callable[[], float] = time.time,
        sink: Sink | None = None,
        stall_timeout: float | None = None,
        recover: bool = True,
        status_name: str | None = None,
    ) -> None:
        self.settings = settings
        self._recover = recover
        self._status_name = STATUS_FILE if recover else status_name
        self._clock = clock
        self._sink = sink
        self._signer: Signer | None = None
        self._writer: Writer | None = None
        self._post: Postprocessor | None = None
        # opens in flight on their own daemon threads (a hung disk must not block exit)
        self._opening = threading.BoundedSemaphore(MAX_OPENING)
        self._started_threads = False
        self._open: dict[str, SessionRecording] = {}
        self.index: SessionIndex = None  # type: ignore[assignment]
        self.stall_timeout = settings.stall_timeout if stall_timeout is None else stall_timeout
        self._watchdog: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = time.time()
        self._failed = 0
        self._last_failure: str | None = None
        self._recoveries = Recoveries()
        self._status_listeners: list[Callable[[RecorderStatus], None]] = []
        self._status_extra: Callable[[], dict[str, Any]] | None = None
        self._last_state = "ok"
        self._last_detail = ""
        self._status_due = 0.0
        self._status_writing = False

    @staticmethod
    def new_session_id() -> str:
        """A new id: 12 hex digits of milliseconds (sorts by time) + 16 random hex digits."""
        return f"{int(time.time() * 1000):012x}{secrets.token_hex(8)}"

    @property
    def sink(self) -> Sink:
        if self._sink is None:
            raise RecorderError("the recorder is not started")
        return self._sink

    async def start(self) -> None:
        """Validate settings; open sink, index and signing key; recover; start threads."""
        validate_settings(self.settings)
        if self.settings.signing_key is not None:
            self._signer = load_signer(self.settings.signing_key)
        try:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise RecorderError(
                f"cannot create data directory {self.settings.data_dir}: {exc}"
            ) from exc
        loop = asyncio.get_running_loop()
        self._loop = loop
        if self._sink is None:
            self._sink = await loop.run_in_executor(
                None, lambda: open_sink(self.settings, readonly=False)
            )
        sink = self._sink
        try:
            if self._recover:
                sink.set_recovery(self._recoveries.finisher(self._signer, loop))
                await loop.run_in_executor(None, sink.recover)
        except SinkError as exc:
            raise RecorderError(f"recording storage recovery failed: {exc}") from exc
        add_listener = getattr(sink, "add_listener", None)
        if add_listener is not None:
            add_listener(self._sink_state_threadsafe)
        self.index = open_index(self.settings)
        self._writer = Writer(self.settings, sink, self._signer)
        self._writer.start()
        self._started_threads = True
        self._post = Postprocessor(self.settings, sink, self.index)
        self._post.start()
        if self.index.recreated is not None:  # damaged: rebuilt while serving
            self._post.rebuild_in_background()
        if self._recover:
            self._post.recover_stale(skip=self._recoveries.attach_index(self._post.submit_stale))
        self._watchdog = asyncio.create_task(self._watch(), name="recorder-watchdog")

    # ------------------------------------------------------------------ crashes

    def add_recovery_listener(self, cb: Callable[[Recovered], None]) -> None:
        """``cb(recovered)`` on the loop thread for each recording a dead process left
        unfinished and this recorder finished (at start, and while it runs: an RDP
        worker that died). Register before :meth:`start` to hear of those at start."""
        self._recoveries.add_listener(cb)

    async def adopt_orphans(self) -> None:
        """Finish now what a process sharing the storage left when it died (an RDP
        worker); the spooled sink also does this by itself every few seconds."""
        if self._recover and self._sink is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._sink.adopt_orphans)

    # ------------------------------------------------------------------ status

    def add_status_listener(self, cb: Callable[[RecorderStatus], None]) -> None:
        """``cb(status)`` on the loop thread whenever the state (ok, degraded, failing) or
        the storage's detail changes: the gateway audits it and can show it."""
        self._status_listeners.append(cb)

    def set_status_extra(self, fn: Callable[[], dict[str, Any]]) -> None:
        """What the gateway adds to ``status.json`` (e.g. its workers), under "gateway"."""
        self._status_extra = fn

    def status(self) -> RecorderStatus:
        """A snapshot of the recorder's health (see :mod:`recorder.status`)."""
        sink = self._sink
        try:
            storage = sink.status() if sink is not None else SinkStatus(location="-")
        except (SinkError, OSError) as exc:
            storage = SinkStatus(location="?", state="failing", detail=str(exc))
        paused = []
        writer = self._writer
        for s in writer.sessions if writer is not None else []:
            since, reason = s.blocked_since, s.blocked
            if since is not None and reason is not None:
                paused.append(PausedSession(s.session_id, round(time.monotonic() - since, 1),
                                            reason, s.dropping))
        extra: dict[str, Any] = {}
        if self._status_extra is not None:
            try:
                extra = dict(self._status_extra())
            except Exception:  # the gateway's part must not break the recorder's
                log.exception("recorder: status extra failed")
        post = self._post
        return RecorderStatus(
            pid=os.getpid(),
            updated=time.time(),
            started=self._started,
            storage=storage,
            sessions=len(self._open),
            paused=paused,
            failed_recordings=self._failed,
            last_failure=self._last_failure,
            index_pending=post.pending() if post is not None else 0,
            gateway=extra,
        )

    def _note_failure(self, err: RecorderError) -> None:
        self._failed += 1
        self._last_failure = str(err)
        self._state_changed()

    def _sink_state_threadsafe(self, _status: SinkStatus) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._state_changed)
        except RuntimeError:  # loop closed during shutdown
            pass

    def _state_changed(self) -> None:
        """Something changed: refresh the status (listeners, file) at the next tick."""
        self._status_due = 0.0

    async def _refresh_status(self) -> None:
        """Compute the status off the loop (it reads the spool), tell listeners if the
        state changed, and write the status file (the gateway's recorder only)."""
        if self._status_writing:
            return
        self._status_writing = True
        try:
            loop = asyncio.get_running_loop()
            st = await loop.run_in_executor(None, self.status)
            key = (st.state, st.storage.detail)
            if key != (self._last_state, self._last_detail):
                self._last_state, self._last_detail = key
                for cb in list(self._status_listeners):
                    try:
                        cb(st)
                    except Exception:  # a listener must not break the recorder
                        log.exception("recorder: status listener raised")
            if self._status_name is not None:
                await loop.run_in_executor(None, write_status, self.settings.data_dir, st,
                                           self._status_name)
        except OSError as exc:
            log.warning("recorder: cannot write the status file: %s", exc)
        finally:
            self._status_writing = False

    # ------------------------------------------------------------------ watchdog

    async def _watch(self) -> None:
        """Fail every open recording when local storage has been stuck too long; keep
        the status file fresh."""
        while True:
            await asyncio.sleep(min(0.25, self.stall_timeout / 4))
            now = time.monotonic()
            if now >= self._status_due:
                self._status_due = now + STATUS_INTERVAL
                await self._refresh_status()
            writer = self._writer
            busy = writer.stalled_since if writer is not None else None
            if busy is None or time.monotonic() - busy < self.stall_timeout:
                continue
            for rec in list(self._open.values()):
                rec._fail(
                    RecordingFailed(
                        f"recording {rec.name}: storage has not answered for "
                        f"{time.monotonic() - busy:.1f}s"
                    )
                )

    # ------------------------------------------------------------------ sessions

    async def open_session(self, header: SessionHeader) -> SessionRecording:
        """Start recording a session; returns once its header is durable in the sink.

        Raises:
            RecordingFailed: the recording cannot be created (fail closed).
        """
        writer = self._writer
        if writer is None or not self._started_threads:
            raise RecordingFailed("the recorder is not started")
        if not _ID_RE.match(header.session_id):
            raise RecordingFailed(f"invalid session id {header.session_id!r}")
        meta = header_fields(header, self.settings, self._signer)
        state = SessionState(sink_name(header), meta, self.settings, WINDOW_LOG)
        if not self._opening.acquire(blocking=False):
            raise RecordingFailed(
                f"cannot start recording {state.name}: {MAX_OPENING} recordings are already "
                "waiting for storage to open"
            )
        fut = _in_thread(writer.open_stream, state, done=self._opening.release)
        try:
            await asyncio.wait_for(_await_future(fut), timeout=self.stall_timeout)
        except (SinkError, RecordingFailed) as exc:
            raise RecordingFailed(f"cannot start recording {state.name}: {exc}") from exc
        except TimeoutError as exc:
            fut.add_done_callback(lambda f: _abandon(f, state))
            msg = (
                f"cannot start recording {state.name}: storage did not answer within "
                f"{self.stall_timeout:g} s"
            )
            raise RecordingFailed(msg) from exc
        loop = asyncio.get_running_loop()
        rec = SessionRecording(self, writer, state, loop, self._clock)
        try:
            writer.call(lambda: writer.attach(state))  # not awaited: never waits on storage
        except RecordingFailed:
            _abandon(fut, state)
            raise
        self._open[state.session_id] = rec
        try:
            self.index.session_opened(meta, state.name)
        except RecorderError as exc:  # the index is rebuildable; the recording is what counts
            log.warning("recorder: index update failed: %s", exc)
        return rec

    def _closed_one(self, rec: SessionRecording, s: SessionState, summary: dict[str, Any]) -> None:
        self._open.pop(rec.session_id, None)
        status = "failed" if rec.failed is not None else summary.get("status", "ended")
        try:
            self.index.session_closed(
                s.session_id,
                end=summary["end_time"],
                exit_status=summary["exit_status"],
                exit_signal=summary["exit_signal"],
                status=status,
                commands=s.commands,
                policy_events=s.policy_events,
                signature="signed" if summary.get("signed") else "unsigned",
                output_bytes=s.output_bytes,
            )
        except RecorderError as exc:
            log.warning("recorder: index update failed: %s", exc)
        if status in ("ended", "truncated", "failed") and self._post is not None:
            self._post.submit(s.name, s.session_id, failed=status == "failed")

    async def close(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - API contract
        """Finalise every open recording within ``timeout`` seconds, then stop threads."""
        deadline = time.monotonic() + timeout
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.wait([self._watchdog])
            self._watchdog = None
        recs = list(self._open.values())
        if recs:
            for r in recs:
                r.marker("recorder shutdown")
            try:
                await asyncio.wait_for(
                    asyncio.gather(*(r.close() for r in recs), return_exceptions=True),
                    timeout=timeout,
                )
            except TimeoutError:
                log.error("recorder: %d recordings not finalised within %.1fs", len(recs), timeout)
        loop = asyncio.get_running_loop()
        remaining = max(0.1, deadline - time.monotonic())
        if self._writer is not None:
            await loop.run_in_executor(None, self._writer.stop, remaining)
            self._writer = None
        self._started_threads = False
        if self._post is not None:
            await loop.run_in_executor(None, self._post.stop, 2.0)
            self._post = None
        if self.index is not None:
            self.index.close()
        if self._sink is not None:
            # let remote uploads finish within the deadline; what does not stays in the
            # spool and is completed by recover() at the next start
            wait_idle = getattr(self._sink, "wait_idle", None)
            if wait_idle is not None:
                await loop.run_in_executor(None, wait_idle, max(0.1, deadline - time.monotonic()))
            await self._refresh_status()
            await loop.run_in_executor(None, self._sink.close)
        self._forget_worker_status()

    def _forget_worker_status(self) -> None:
        """A worker's status file goes with it (its sessions ended)."""
        if self._status_name not in (None, STATUS_FILE):
            (self.settings.data_dir / str(self._status_name)).unlink(missing_ok=True)


def _in_thread(
    fn: Callable[[SessionState], None], state: SessionState, *, done: Callable[[], None]
) -> concurrent.futures.Future[None]:
    """Run ``fn(state)`` on a new daemon thread; ``done()`` runs when it returns."""
    fut: concurrent.futures.Future[None] = concurrent.futures.Future()
    fut.set_running_or_notify_cancel()

    def run() -> None:
        try:
            fn(state)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
            fut.set_exception(exc)
        else:
            fut.set_result(None)
        finally:
            done()

    threading.Thread(target=run, name="recorder-open", daemon=True).start()
    return fut


def _abandon(fut: concurrent.futures.Future[None], state: SessionState) -> None:
    """An open that finished after its caller gave up: remove the unused recording."""
    if fut.cancelled() or fut.exception() is not None or state.stream is None:
        return
    try:
        state.stream.abort()
    except SinkError as exc:
        log.warning("recorder: cannot remove abandoned recording %s: %s", state.name, exc)
