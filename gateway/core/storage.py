"""What the gateway does about its recording storage (protocol-free): the audit trail of
crash recoveries and of storage state changes, and its part of ``bastille status``.

* :meth:`StorageEvents.recovered`: a recording a dead process left unfinished (this
  gateway before a kill -9, or an RDP worker that died) was finished by the recorder:
  ``session.end`` is audited for its session with ``outcome=recovered`` (a signed
  recovery trailer was added; ``verify`` passes) or ``outcome=unrecovered`` (left as
  found, with the reason). User, target and source come from the recording's header
  (or the index, when the header cannot be read).
* :meth:`StorageEvents.status_changed`: the recorder's state (ok, degraded, failing) or
  the storage's detail changed: audited as ``recording`` with ``outcome=state``.
* :meth:`StorageEvents.status_extra`: the gateway's sessions and RDP workers, written
  into ``status.json`` for ``bastille status``. It runs on a worker thread.

Known limits: sessions of a process that died while running unrecorded (``on_failure =
"continue"`` after a failure) have no recording and get no ``session.end``; RDP
sessions are listed by ``bastille status`` through their workers' count only (each
worker records its own sessions).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from common.safetext import visible
from gateway.audit import AuditEvent, Kind
from gateway.core.live import LiveSessions
from gateway.core.session import SessionCore
from recorder.errors import RecorderError
from recorder.recovery import Recovered
from recorder.service import Recorder
from recorder.status import RecorderStatus

log = logging.getLogger("bastille.storage")

MAX_LISTED = 10  # sessions named one by one in `bastille status`; the rest are counted


class StorageEvents:
    """Audits the recorder's crash recoveries and state changes for the gateway process.

    Args:
        recorder: the gateway's recorder (listeners are registered on it at once, so
            create this before ``recorder.start()`` to hear of the recoveries at start).
        audit: appends one event to the audit trail.
        sessions: the live sessions of this process (for ``bastille status``).
        workers: the pids of the RDP workers running now (None: no RDP).
    """

    def __init__(self, recorder: Recorder, audit: Callable[[AuditEvent], None], *,
                 sessions: LiveSessions,
                 workers: Callable[[], list[int]] | None = None) -> None:
        self.recorder = recorder
        self._audit = audit
        self._sessions = sessions
        self._workers = workers
        recorder.add_recovery_listener(self.recovered)
        recorder.add_status_listener(self.status_changed)
        recorder.set_status_extra(self.status_extra)

    def recovered(self, r: Recovered) -> None:
        """``session.end`` for a session whose process died (see the module doc)."""
        header = dict(r.header)
        if not header.get("user"):
            header.update(self._from_index(r.session_id))
        detail: dict[str, Any] = {
            "reason": "the process that ran the session stopped without ending it (crash, "
                      "kill -9 or power loss); its recording was finished afterwards",
            "recording": r.status,
            "protocol": header.get("protocol", ""),
        }
        if r.recorded_until is not None:
            detail["recorded_until"] = round(r.recorded_until, 3)
        if r.outcome == "recovered" and r.status == "recovered":
            detail["signed"] = r.signed
        if r.detail:
            detail["problem"] = r.detail
        self._audit(AuditEvent(
            Kind.SESSION_END, r.outcome, user=str(header.get("user", "")),
            source=str(header.get("client_addr", "")), target=str(header.get("target", "")),
            session=r.session_id, detail=detail))

    def _from_index(self, session_id: str) -> dict[str, Any]:
        try:
            row = self.recorder.index.get(session_id) if self.recorder.index else None
        except RecorderError:
            row = None
        if row is None:
            return {}
        return {"user": row.user, "target": row.target, "client_addr": row.client,
                "protocol": row.protocol}

    def status_changed(self, st: RecorderStatus) -> None:
        """``recording`` ``outcome=state``: the storage's state or its detail changed."""
        storage = st.storage
        self._audit(AuditEvent(Kind.RECORDING, "state", detail={
            "state": st.state, "storage": storage.location, "storage_state": storage.state,
            "detail": storage.detail, "paused_sessions": len(st.paused),
            **({"last_error": storage.last_error} if storage.last_error else {})}))
        level = logging.WARNING if st.state != "ok" else logging.INFO
        log.log(level, "recording storage %s is %s%s", storage.location, st.state,
                f": {storage.detail}" if storage.detail else "")

    def status_extra(self) -> dict[str, Any]:
        """The gateway's lines of ``bastille status`` (worker thread: reads only)."""
        out: dict[str, Any] = {}
        live = [s for s in self._sessions if isinstance(s, SessionCore)]
        named = ", ".join(f"{visible(s.principal.name)}@{visible(s.target)} "
                          f"({s.session_id[:12]})"
                          for s in live[:MAX_LISTED])
        more = f" and {len(live) - MAX_LISTED} more" if len(live) > MAX_LISTED else ""
        out["ssh"] = f"{len(live)} session(s)" + (f": {named}{more}" if live else "")
        if self._workers is not None:
            pids = self._workers()
            out["rdp"] = f"{len(pids)} worker(s) running" + \
                (f" (pid {', '.join(str(p) for p in pids)})" if pids else "")
        return out
