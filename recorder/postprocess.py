"""Background work after a session closes, and rebuilding the index from recordings.

The post-processor thread builds keyframes and screen text (pyte, slow) for closed
recordings, off the event loop, one at a time. Its queue is bounded (``QUEUE_CAP``);
when full a session is skipped and keeps ``screen_indexed = 0`` in the index: the
player builds keyframes lazily, and ``bastille reindex`` fills the screen text in.

A recording that cannot be read at that moment (its storage is down, or the index is
busy) is tried again later: after ``RETRY_FIRST`` seconds, doubling up to
``RETRY_MAX``, at most ``RETRY_LIMIT`` times (about a day); a malformed recording is
not retried.

``reindex`` rebuilds the whole index from the sink alone. Run it with the gateway
stopped: recordings still being written are indexed as "truncated" until they close.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recorder import events as ev
from recorder import keyframes, textmask
from recorder.errors import FormatError, RecorderError, SinkError
from recorder.index import SessionIndex
from recorder.reader import Recording
from recorder.settings import RecorderSettings
from recorder.sinks.base import Sink

log = logging.getLogger(__name__)

QUEUE_CAP = 256  # closed sessions waiting for their screen pass; beyond, reindex catches up
RETRY_FIRST = 5.0  # seconds before a failed pass is tried again (then doubling)
RETRY_MAX = 600.0
RETRY_LIMIT = 150  # ~1 day at RETRY_MAX
RETRY_CAP = 4096  # sessions waiting for a retry; beyond, reindex catches up


def index_recording(
    index: SessionIndex,
    rec: Recording,
    *,
    screen: bool = True,
    data_dir: Path | None = None,
    interval: float = 10.0,
    status: str | None = None,
) -> None:
    """(Re)write everything the index holds about one recording, from the recording
    (command lines and screen text through the registered text masker,
    :mod:`recorder.textmask`). ``status``: what the recorder knows and the file cannot
    say (``failed``); default the recording's own status."""
    summary = _Summary()
    kfi: keyframes.KeyframeIndex | None = None
    if screen:  # one pass: the keyframes' pass shows the summary every event
        try:
            kfi = keyframes.build(rec, interval, observe=summary.see)
        except (FormatError, SinkError, RecorderError):
            raise  # storage or format: the caller retries or reports
        except Exception:  # a bug of the screen pass: the session is still indexed
            log.exception("recorder: screen pass of %s failed", rec.name)
            summary, kfi = _Summary(), None
    if kfi is None:
        for e in rec.events():
            summary.see(e)
    trailer = rec.trailer or {}
    end = trailer.get("end_time")
    if not isinstance(end, int | float) or isinstance(end, bool):
        end = rec.start_time + summary.last
    header, commands = _masked(rec.header, summary.commands)
    index.session_indexed(
        header,
        rec.name,
        end=float(end),
        exit_status=summary.exit_status,
        exit_signal=summary.exit_signal,
        status=status or rec.status,
        commands=commands,
        policy_events=summary.policy,
        signature="signed" if rec.signature else "unsigned",
        output_bytes=summary.output_bytes,
    )
    if kfi is not None:
        index.set_screen_lines(rec.session_id, textmask.lines(kfi.lines))
        if data_dir is not None and rec.finished:
            try:
                keyframes.save(data_dir, kfi)
            except OSError as exc:
                log.warning("recorder: cannot cache keyframes: %s", exc)


class _Summary:
    """What the index holds of a recording's events (commands, counts, exit)."""

    def __init__(self) -> None:
        self.commands: list[tuple[float, str, str]] = []
        self.policy = 0
        self.output_bytes = 0
        self.exit_status: int | None = None
        self.exit_signal: str | None = None
        self.last = 0.0

    def see(self, e: ev.Event) -> None:
        self.last = e.time
        if e.type in (ev.OUTPUT, ev.STDERR):
            self.output_bytes += len(e.data)
        elif e.type == ev.COMMAND:
            f = e.fields()
            self.commands.append((e.time, str(f.get("text", "")), str(f.get("source", ""))))
        elif e.type in (ev.POLICY, ev.APPROVAL):
            self.policy += 1
        elif e.type == ev.EXIT:
            f = e.fields()
            st, sig = f.get("status"), f.get("signal")
            self.exit_status = st if isinstance(st, int) and not isinstance(st, bool) else None
            self.exit_signal = sig if isinstance(sig, str) else None


def _masked(header: dict[str, Any], commands: list[tuple[float, str, str]]
            ) -> tuple[dict[str, Any], list[tuple[float, str, str]]]:
    """The header's command and the command lines through the registered text masker."""
    if not textmask.active():
        return header, commands
    header = dict(header)
    if isinstance(header.get("command"), str):
        header["command"] = textmask.mask(header["command"])
    masked = textmask.texts([text for _t, text, _src in commands])
    return header, [(t, m, src) for (t, _x, src), m in zip(commands, masked, strict=True)]


def reindex(
    settings: RecorderSettings,
    sink: Sink,
    index: SessionIndex,
    *,
    screen: bool = True,
    progress: Callable[[str, str], None] | None = None,
    clear: bool = True,
) -> tuple[int, list[str]]:
    """Rebuild the index from the sink; returns (recordings indexed, problems).

    ``clear=False`` adds to an index that is in use (sessions opened meanwhile keep
    their rows).
    """
    if clear:
        index.clear()
    count = 0
    problems: list[str] = []
    for name in sink.names():
        try:
            rec = Recording.from_sink(sink, name)
            index_recording(
                index,
                rec,
                screen=screen,
                data_dir=settings.data_dir,
                interval=settings.keyframe_interval,
            )
        except (FormatError, SinkError) as exc:
            problems.append(f"{name}: {exc}")
            if progress:
                progress(name, f"skipped: {exc}")
            continue
        count += 1
        for p in rec.problems:
            problems.append(f"{name}: {p}")
        if progress:
            progress(name, rec.status)
    return count, problems


class Postprocessor:
    """The background thread that runs the screen pass for closed sessions."""

    def __init__(
        self,
        settings: RecorderSettings,
        sink: Sink,
        index: SessionIndex,
        *,
        retry_first: float = RETRY_FIRST,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.index = index
        self.retry_first = retry_first
        # Bounded: see QUEUE_CAP. Items are (job kind, sink name, session id).
        self._q: queue.Queue[tuple[str, str, str] | None] = queue.Queue(maxsize=QUEUE_CAP)
        # Passes to try again: (monotonic time due, attempts, kind, name, session id).
        self._retry: list[tuple[float, int, str, str, str]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="recorder-screen", daemon=True)
        self._stop = False

    def start(self) -> None:
        self._thread.start()

    def pending(self) -> int:
        """Sessions waiting for their pass (queued or waiting to be retried)."""
        with self._lock:
            return self._q.qsize() + len(self._retry)

    def submit(self, name: str, session_id: str, *, failed: bool = False) -> bool:
        """Queue the screen pass of a closed recording; False if the queue is full.
        ``failed``: the recording failed; its row keeps that status (read alone, its file
        only looks truncated)."""
        try:
            self._q.put_nowait(("failed" if failed else "screen", name, session_id))
        except queue.Full:
            log.warning("recorder: screen indexing queue full; %s left for reindex", session_id)
            return False
        return True

    def rebuild_in_background(self) -> None:
        """Rebuild a recreated (empty) index from the recordings in a daemon thread."""

        def run() -> None:
            try:
                count, problems = reindex(self.settings, self.sink, self.index, clear=False)
            except Exception:  # a cache rebuild must not take the gateway down
                log.exception("recorder: rebuilding the session index failed")
                return
            log.warning("recorder: session index rebuilt from %d recordings (%d problems)",
                        count, len(problems))

        threading.Thread(target=run, name="recorder-reindex", daemon=True).start()

    def submit_stale(self, name: str, session_id: str) -> None:
        """Re-read one recording a dead process left (finished by crash recovery) and
        rewrite its row (its status becomes ``recovered``)."""
        try:
            self._q.put_nowait(("stale", name, session_id))
        except queue.Full:
            log.warning("recorder: indexing queue full; %s left for reindex", session_id)

    def recover_stale(self, skip: set[str] | frozenset[str] = frozenset()) -> None:
        """Re-read sessions a previous process left "live" (it crashed) and fix their rows
        (``skip``: session ids already submitted)."""
        try:
            stale = self.index.own_live(limit=QUEUE_CAP)
        except RecorderError as exc:
            log.warning("recorder: %s", exc)
            return
        for row in stale:
            if row.id in skip:
                continue
            try:
                self._q.put_nowait(("stale", row.name, row.id))
            except queue.Full:
                break

    def stop(self, timeout: float) -> None:
        self._stop = True
        try:
            self._q.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout)

    def _next(self) -> tuple[tuple[str, str, str] | None, int]:
        """The next job and its attempt count: a due retry first, else the queue."""
        while True:
            with self._lock:
                now = time.monotonic()
                due = min(self._retry, default=None)
                if due is not None and due[0] <= now:
                    self._retry.remove(due)
                    return (due[2], due[3], due[4]), due[1]
                wait = None if due is None else max(0.01, due[0] - now)
            try:
                return self._q.get(timeout=wait), 0
            except queue.Empty:
                continue

    def _again(self, kind: str, name: str, session_id: str, attempts: int, why: str) -> None:
        if attempts + 1 >= RETRY_LIMIT:
            log.error("recorder: giving up indexing %s after %d tries: %s; run bastille "
                      "reindex", name, attempts + 1, why)
            return
        delay = min(self.retry_first * 2**attempts, RETRY_MAX)
        with self._lock:
            if len(self._retry) >= RETRY_CAP:
                log.warning("recorder: too many index retries; %s left for reindex", name)
                return
            self._retry.append((time.monotonic() + delay, attempts + 1, kind, name, session_id))
        log.warning("recorder: cannot index %s yet (%s); trying again in %.0f s", name, why, delay)

    def _run(self) -> None:
        while not self._stop:
            item, attempts = self._next()
            if item is None:
                return
            kind, name, session_id = item
            try:
                # a recording this process's writer has just closed: its chain was computed
                # a moment ago, so it is not hashed again here (the after-close pass cost
                # ~0.65 ms of CPU per MiB for it); a failed or stale one is checked whole
                rec = Recording.from_sink(self.sink, name, chain=kind != "screen")
                index_recording(
                    self.index,
                    rec,
                    screen=True,
                    data_dir=self.settings.data_dir,
                    interval=self.settings.keyframe_interval,
                    status="failed" if kind == "failed" else None,
                )
            except FormatError as exc:
                log.warning("recorder: cannot index %s: %s", name, exc)
                if kind == "stale":
                    try:
                        self.index.set_status(session_id, "damaged")
                    except RecorderError:
                        pass
            except (SinkError, RecorderError) as exc:  # storage or index down: later
                self._again(kind, name, session_id, attempts, str(exc))
            except Exception:  # keep the thread alive for the next sessions
                log.exception("recorder: screen pass of %s failed", name)
