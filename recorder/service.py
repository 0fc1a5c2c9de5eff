"""The recorder API the gateway calls: :class:`Recorder` and :class:`SessionRecording`.

Hot-path calls (``output``, ``input``, ...) only append a tuple to a per-session deque;
framing, compression, hashing and sink writes happen on the writer thread
(:mod:`recorder.writer`). Screen text and keyframes are built after a session closes by
a background thread (:mod:`recorder.postprocess`).

Backlog bound: ``congested`` is true above ``settings.queue_bytes`` of unwritten data
(the relay should ``await wait_writable()``); above twice that the recording fails
(``RecordingFailed``: under ``on_failure = "terminate"`` the gateway ends the session).

Stalled storage: a watchdog task fails every open recording when one sink call has
been blocked for ``stall_timeout`` seconds (default 1.5 s, so that under
``on_failure = "terminate"`` the gateway can end sessions within 2 s), and
``open_session`` gives up after ``2 x stall_timeout`` (at least 2 s).

Known limits: one writer thread serves all sessions, so one stalled sink call stalls
(and, after ``stall_timeout``, fails) every open recording, not only its own.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from recorder import events as ev
from recorder.errors import RecorderError, RecordingFailed, SinkError
from recorder.format import v1
from recorder.index import Index
from recorder.postprocess import Postprocessor
from recorder.settings import RecorderSettings
from recorder.signing import Signer, load_signer
from recorder.sinks.base import Sink
from recorder.writer import SessionState, Writer

log = logging.getLogger(__name__)

_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_RESIZE = struct.Struct("<HH")
WINDOW_LOG = 17  # 128 KiB zstd window: ~1.3 MiB of compressor memory per session


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


def open_sink(settings: RecorderSettings) -> Sink:
    """The configured sink: ``recorder.sinks.open_sink`` when available, else a FileSink."""
    try:
        from recorder import sinks

        opener = getattr(sinks, "open_sink", None)
    except ImportError:  # pragma: no cover - package always present
        opener = None
    if opener is not None:
        sink: Sink = opener(settings)
        return sink
    if settings.s3 is not None:
        raise RecorderError("S3 storage is configured but the S3 sink is not available")
    from recorder.sinks.file import FileSink

    return FileSink(settings.file_dir)


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


def validate_settings(settings: RecorderSettings) -> None:
    """Raise RecorderError naming the first bad setting."""
    if not -7 <= settings.zstd_level <= 22 or settings.zstd_level == 0:
        raise RecorderError(
            f"recorder zstd_level must be 1..22 (or -7..-1), not {settings.zstd_level}"
        )
    if not 0.05 <= settings.flush_interval <= 60:
        raise RecorderError("recorder flush_interval must be between 0.05 and 60 seconds")
    if not 1024 <= settings.flush_bytes <= 8 * 1024 * 1024:
        raise RecorderError("recorder flush_bytes must be between 1 KiB and 8 MiB")
    if settings.queue_bytes < settings.flush_bytes * 2:
        raise RecorderError("recorder queue_bytes must be at least twice flush_bytes")
    if settings.keyframe_interval <= 0:
        raise RecorderError("recorder keyframe_interval must be positive")
    if settings.on_failure not in ("terminate", "continue"):
        raise RecorderError(
            f"recorder on_failure must be 'terminate' or 'continue', not {settings.on_failure!r}"
        )


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
        self._closed = False
        self._failed: RecorderError | None = None
        self._callbacks: list[Callable[[RecorderError], None]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._woken = False
        state.on_failed = self._failed_threadsafe
        state.on_writable = self._writable_threadsafe

    @property
    def bytes_recorded(self) -> int:
        """Payload bytes handed to this recording so far, before compression (what the
        gateway's recording budgets count)."""
        return self._s.enqueued

    # ------------------------------------------------------------------ hot path

    def _now_us(self) -> int:
        t = round((self._clock() - self._t0) * 1_000_000)
        if t < self._last_t:
            t = self._last_t
        self._last_t = t
        return t

    def _put(self, etype: int, payload: bytes) -> None:
        s = self._s
        s.pending.append((etype, self._now_us(), payload))
        s.enqueued += len(payload)
        backlog = s.enqueued - s.written
        if backlog >= self._flush_bytes:
            self._writer.wake()
            if backlog > self._hard_cap:
                self._overflow()

    def output(self, data: bytes, stream: int = 1) -> None:
        """Target -> user bytes (stream 1 stdout, 2 stderr)."""
        if self._dead or not data:
            return
        if type(data) is not bytes:
            data = bytes(data)
        self._put(ev.STDERR if stream == 2 else ev.OUTPUT, data)

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

    @property
    def congested(self) -> bool:
        s = self._s
        return not self._dead and s.enqueued - s.written > self._queue_bytes

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

    def _writable_threadsafe(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._release_waiters)
        except RuntimeError:  # loop closed during shutdown
            pass

    def _failed_threadsafe(self, err: RecorderError) -> None:
        try:
            self._loop.call_soon_threadsafe(self._on_failed, err)
        except RuntimeError:  # loop closed during shutdown
            pass

    def _overflow(self) -> None:
        self._fail(
            RecordingFailed(
                f"recording {self.name}: more than {self._hard_cap} bytes not yet written "
                "(storage too slow or the relay ignores backpressure)"
            )
        )

    def _fail(self, err: RecorderError) -> None:
        """Fail the recording from the loop thread (the writer drops what is left)."""
        if self._failed is not None:
            return
        self._dead = True
        self._s.error = err
        self._s.pending.clear()
        self._on_failed(err)

    def _on_failed(self, err: RecorderError) -> None:
        if self._failed is not None:
            return
        self._failed = err
        self._dead = True
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
        """Flush, write the trailer and signature, update the index. Idempotent."""
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
            fut = writer.call(lambda: writer.finish(s, end, exit_status, exit_signal))
        except RecordingFailed as exc:
            self._on_failed(exc)
            return
        summary = await asyncio.shield(asyncio.wrap_future(fut))
        rec._closed_one(self, s, summary)


class Recorder:
    """Records every session of a gateway.

    Args:
        settings: recorder settings (validated in :meth:`start`).
        clock: wall clock used for event times (injected in tests).
        sink: a sink to use instead of the configured one (tests).
    """

    def __init__(
        self,
        settings: RecorderSettings,
        *,
        clock: Callable[[], float] = time.time,
        sink: Sink | None = None,
        stall_timeout: float = 1.5,
        recover: bool = True,
    ) -> None:
        self.settings = settings
        # False in helper processes (RDP workers) that share the storage and the index
        # with a gateway process: only the gateway finishes what a crashed process left
        self._recover = recover
        self._clock = clock
        self._sink = sink
        self._signer: Signer | None = None
        self._writer: Writer | None = None
        self._post: Postprocessor | None = None
        self._open: dict[str, SessionRecording] = {}
        self.index: Index = None  # type: ignore[assignment]
        self.stall_timeout = stall_timeout
        self._watchdog: asyncio.Task[None] | None = None

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
        if self._sink is None:
            self._sink = await loop.run_in_executor(None, open_sink, self.settings)
        sink = self._sink
        try:
            if self._recover:
                await loop.run_in_executor(None, sink.recover)
        except SinkError as exc:
            raise RecorderError(f"recording storage recovery failed: {exc}") from exc
        self.index = Index.open_checked(self.settings.data_dir / "index.sqlite3")
        self._writer = Writer(self.settings, sink, self._signer)
        self._writer.start()
        self._post = Postprocessor(self.settings, sink, self.index)
        self._post.start()
        if self.index.recreated is not None:  # damaged: rebuilt while serving
            self._post.rebuild_in_background()
        if self._recover:
            self._post.recover_stale()
        self._watchdog = asyncio.create_task(self._watch(), name="recorder-watchdog")

    async def _watch(self) -> None:
        """Fail every open recording when the storage has been stuck too long."""
        while True:
            await asyncio.sleep(min(0.25, self.stall_timeout / 4))
            writer = self._writer
            busy = writer.busy_since if writer is not None else None
            if busy is None or time.monotonic() - busy < self.stall_timeout:
                continue
            for rec in list(self._open.values()):
                rec._fail(
                    RecordingFailed(
                        f"recording {rec.name}: storage has not answered for "
                        f"{time.monotonic() - busy:.1f}s"
                    )
                )

    async def open_session(self, header: SessionHeader) -> SessionRecording:
        """Start recording a session; returns once its header is durable in the sink.

        Raises:
            RecordingFailed: the recording cannot be created (fail closed).
        """
        if self._writer is None:
            raise RecordingFailed("the recorder is not started")
        if not _ID_RE.match(header.session_id):
            raise RecordingFailed(f"invalid session id {header.session_id!r}")
        meta = header_fields(header, self.settings, self._signer)
        state = SessionState(sink_name(header), meta, self.settings, WINDOW_LOG)
        writer = self._writer
        try:
            fut = writer.call(lambda: writer.open(state))
            await asyncio.wait_for(
                asyncio.wrap_future(fut), timeout=max(2.0, 2 * self.stall_timeout)
            )
        except (SinkError, RecordingFailed) as exc:
            raise RecordingFailed(f"cannot start recording {state.name}: {exc}") from exc
        except TimeoutError as exc:
            try:
                writer.call(lambda: writer.fail(state, TimeoutError("open timed out")))
            except RecordingFailed:
                pass
            msg = f"cannot start recording {state.name}: storage timed out"
            raise RecordingFailed(msg) from exc
        loop = asyncio.get_running_loop()
        rec = SessionRecording(self, writer, state, loop, self._clock)
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
        if status == "ended" and self._post is not None:
            self._post.submit(s.name, s.session_id)

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
            await loop.run_in_executor(None, self._sink.close)
