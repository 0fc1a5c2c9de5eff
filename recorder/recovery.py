"""Crash recovery on the recorder's side: the signed recovery trailer of recordings a
dead process left unfinished, and what is reported about each.

The sinks find such recordings (:meth:`recorder.sinks.base.Sink.recover` at start,
:meth:`~recorder.sinks.base.Sink.adopt_orphans` and the spooled sink's adoption while
the gateway runs) and ask :class:`Finisher` (the sink's
:class:`~recorder.sinks.base.CrashRecovery`, set by :class:`recorder.service.Recorder`,
which holds the signing key) for the bytes that finish them:
:func:`recorder.format.v1.recovery_tail` (cut after the last intact chunk, a trailer with
``recovered: true`` continuing the hash chain, and a signature chunk). ``verify`` then
reports ``recovered`` (it passes), distinct from ``truncated`` and from tampering.

Each finished recording is reported once as a :class:`Recovered` (to the recorder, on
any thread): the index gets its status (``recovered``), and the gateway audits
``session.end`` with ``outcome=recovered`` (``unrecovered`` when it could not be
finished, with the reason).

Known limits: a recording damaged before its end, or without an intact header chunk, is
left as found (``verify`` names the damage); one whose start was released from the
spool under disk pressure is finished without a trailer (see
:mod:`recorder.sinks.crash`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from recorder.errors import FormatError, SinkError
from recorder.format import v1
from recorder.signing import Signer
from recorder.sinks.base import RecordingBytes

log = logging.getLogger(__name__)

HEADER_SCAN = 1 << 20  # bytes read to find the header chunk (headers are a few hundred)


@dataclass(frozen=True)
class Recovered:
    """One recording finished after its process died.

    Attributes:
        name: its storage name.
        outcome: ``recovered`` (a signed recovery trailer was added, or it had been
            closed before the crash) or ``unrecovered`` (left as found; see ``detail``).
        status: what ``verify`` and the index say now: ``recovered``, ``ended``,
            ``truncated`` or ``damaged``.
        detail: why it could not be recovered ("" when it was).
        header: its header chunk (session id, user, target, client, protocol...); empty
            when unreadable.
        recorded_until: seconds into the session of the last recorded event, if known.
        signed: the recovery trailer is signed.
    """

    name: str
    outcome: str
    status: str
    detail: str = ""
    header: dict[str, Any] = field(default_factory=dict)
    recorded_until: float | None = None
    signed: bool = False

    @property
    def session_id(self) -> str:
        """From the header, else from the name (``.../<session id>.bstl``)."""
        sid = self.header.get("session_id")
        return str(sid) if sid else PurePosixPath(self.name).name.removesuffix(".bstl")


class _Prefix:
    """The first ``limit`` bytes of a source (to scan only the header chunk)."""

    def __init__(self, src: RecordingBytes, limit: int) -> None:
        self._src = src
        self._limit = min(limit, src.size())

    def size(self) -> int:
        return self._limit

    def read(self, offset: int, length: int) -> bytes:
        return self._src.read(offset, max(0, min(length, self._limit - offset)))


def read_header(src: RecordingBytes) -> dict[str, Any]:
    """The header chunk of a recording, if intact; ``{}`` otherwise."""
    try:
        chunks = v1.scan(_Prefix(src, HEADER_SCAN), resync=False).chunks
        if chunks and chunks[0].type == v1.HEADER:
            return v1.read_json(src, chunks[0])
    except (FormatError, SinkError, OSError):
        pass
    return {}


def _why_not(src: RecordingBytes) -> tuple[str, str]:
    """(status, reason) of a recording :func:`v1.recovery_tail` leaves as found."""
    try:
        scan = v1.scan(src, resync=False)
    except FormatError as exc:
        return "damaged", f"not a readable recording ({exc})"
    if not scan.chunks or scan.chunks[0].type != v1.HEADER:
        return "damaged", "no intact header chunk: the session never started recording"
    if scan.finished:  # closed before the crash, or recovered by an earlier attempt
        trailer = next(c for c in scan.chunks if c.type == v1.TRAILER)
        try:
            recovered = bool(v1.read_json(src, trailer).get("recovered"))
        except FormatError:
            recovered = False
        return ("recovered" if recovered else "ended"), ""
    problem = scan.problem
    if problem is not None and problem.kind != "truncated":
        return "damaged", f"damaged before its end, so it is left as found: {problem.message}"
    return "truncated", "its recovery trailer could not be computed"


class Finisher:
    """The recorder's :class:`~recorder.sinks.base.CrashRecovery` (thread-safe).

    Args:
        signer: signs recovery trailers (None: unsigned, like the recordings).
        report: called with each :class:`Recovered`, on the sink's thread.
        clock: the recovery time written into the trailer.
    """

    def __init__(self, signer: Signer | None, report: Callable[[Recovered], None], *,
                 clock: Callable[[], float] = time.time) -> None:
        self._signer = signer
        self._report = report
        self._clock = clock
        self._lock = threading.Lock()
        # what tail() learned, until finished() reports it (one entry per recording
        # being finished right now)
        self._seen: dict[str, tuple[Recovered, bool]] = {}  # and: a tail was given

    def tail(self, name: str, src: RecordingBytes) -> tuple[int, bytes] | None:
        header = read_header(src)
        signer = self._signer
        try:
            tail = v1.recovery_tail(
                src, recovered_at=self._clock(),
                sign=signer.sign if signer is not None else None,
                public_key=signer.public_raw if signer is not None else b"",
                key_id=signer.key_id if signer is not None else "")
        except (FormatError, SinkError, OSError) as exc:
            tail = None
            seen = Recovered(name, "unrecovered", "damaged", f"unreadable: {exc}", header)
        else:
            if tail is not None:
                seen = Recovered(name, "recovered", "recovered", "", header,
                                 tail.last_time_us / 1e6, signer is not None)
            else:
                status, why = _why_not(src)
                outcome = "recovered" if status in ("ended", "recovered") else "unrecovered"
                seen = Recovered(name, outcome, status, why, header)
        with self._lock:
            self._seen[name] = (seen, tail is not None)
        return (tail.cut, tail.data) if tail is not None else None

    def finished(self, name: str, outcome: str, detail: str) -> None:
        with self._lock:
            seen, tail_given = self._seen.pop(name, (None, False))
        if seen is None:
            seen = Recovered(name, "unrecovered", "truncated", detail)
        elif tail_given and outcome != "recovered":  # the sink could not apply it
            seen = Recovered(name, "unrecovered", "truncated", detail, seen.header)
        elif detail and not seen.detail:
            seen = Recovered(name, seen.outcome, seen.status, detail, seen.header,
                             seen.recorded_until, seen.signed)
        if seen.status == "ended":
            log.warning("recorder: recording %s had been closed by a process that died before "
                        "it was renamed; finished as it was", name)
        elif seen.outcome == "recovered":
            log.warning("recorder: recording %s was left unfinished by a process that died; "
                        "finished with a %s recovery trailer (recorded until %s)", name,
                        "signed" if seen.signed else "unsigned",
                        f"{seen.recorded_until:.1f} s" if seen.recorded_until is not None
                        else "its end")
        else:
            log.error("recorder: recording %s was left unfinished by a process that died and "
                      "could not be recovered: %s", name, seen.detail or seen.status)
        try:
            self._report(seen)
        except Exception:  # the report must not stop the sink's recovery of the others
            log.exception("recorder: reporting the recovery of %s failed", name)


class Recoveries:
    """The recorder's bookkeeping of crash recoveries: who hears of them, and the index
    pass of each recovered session (its row becomes ``recovered``).

    Recoveries found at start (before the index pass can run) are kept and submitted
    when :meth:`attach_index` is called.
    """

    def __init__(self) -> None:
        self._listeners: list[Callable[[Recovered], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._index_pass: Callable[[str, str], None] | None = None
        self._early: list[Recovered] = []

    def finisher(self, signer: Signer | None, loop: asyncio.AbstractEventLoop) -> Finisher:
        """The sink's :class:`~recorder.sinks.base.CrashRecovery`; reports arrive on
        ``loop``."""
        self._loop = loop
        return Finisher(signer, self._threadsafe)

    def add_listener(self, cb: Callable[[Recovered], None]) -> None:
        self._listeners.append(cb)

    def attach_index(self, index_pass: Callable[[str, str], None]) -> set[str]:
        """From now on, run ``index_pass(name, session_id)`` for each recovery; the ones
        found so far are submitted now. Returns their session ids."""
        self._index_pass = index_pass
        early, self._early = self._early, []
        for r in early:
            index_pass(r.name, r.session_id)
        return {r.session_id for r in early}

    def _threadsafe(self, recovered: Recovered) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._deliver, recovered)
        except RuntimeError:  # loop closed during shutdown: the next start reports it
            log.warning("recorder: recovery of %s not reported (shutting down)",
                        recovered.name)

    def _deliver(self, recovered: Recovered) -> None:
        for cb in list(self._listeners):
            try:
                cb(recovered)
            except Exception:  # a listener must not hide the recovery from the others
                log.exception("recorder: recovery listener raised")
        if self._index_pass is not None:
            self._index_pass(recovered.name, recovered.session_id)
        else:
            self._early.append(recovered)
