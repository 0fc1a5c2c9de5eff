"""The protocol-free half of one session: :class:`SessionCore`, shared by SSH and RDP.

It owns what every session has whatever carries its bytes:

* the recording, opened fail-closed (:meth:`SessionCore.start`): under
  ``recording.on_failure = "terminate"`` a session that cannot be recorded does not run,
  and one whose recording fails later is ended;
* the audit trail of the session (``session.start``/``session.end``, decisions,
  approvals, kills) with user, source, target and session id filled in;
* the one way the bastion speaks to the user, :meth:`SessionCore.say`, which also
  records the message as output the way the user saw it (a replay shows
  ``bastille: denied by policy ...``);
* the live-session registry entry (``sessions kill``) and ending from outside
  (:meth:`terminate`);
* the recording budgets (:mod:`gateway.core.budget`): :meth:`meter` after each chunk
  recorded ends or slows a session past its budget;
* masking of every command line it keeps (:attr:`mask`, the text masker of
  :mod:`gateway.core.masking`: patterns, then the target's vaulted secret once
  :meth:`mask_for` names the target): the recording header's command, command, policy
  and approval events, and the audit's ``session.start``, ``command``, ``exec``,
  ``policy`` and ``approval`` events.

The adapter gives it a :class:`UserPort` (how to show a message) and a terminate
callback. Known limits: messages said before the recording opens are not recorded (there
is none yet); an adapter that cannot show text (RDP) records the message as a marker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from common.safetext import visible
from gateway import logs
from gateway.audit import AuditEvent, Kind
from gateway.config import TargetConfig
from gateway.core.access import Principal
from gateway.core.budget import Budget, Exceeded, human
from gateway.core.masking import TextMask, maskers_for
from gateway.core.services import SessionServices
from gateway.policy import Decision
from recorder.errors import RecorderError
from recorder.service import SessionHeader, SessionRecording
from state.approvals import Request

log = logging.getLogger("bastille.session")

PREFIX = "bastille: "
PAUSE_NOTICE_AFTER = 5.0  # seconds a storage pause lasts before the user is told
PAUSE_NOTICE = "recording storage is full; output is paused until it has room"


class UserPort(Protocol):
    """How an adapter shows the bastion's messages to its user."""

    def show(self, text: str, *, fresh_line: bool = False) -> tuple[bytes, int] | None:
        """Show one ``bastille: ...`` line (``fresh_line``: start it on a new line).

        Returns the bytes written and the stream they went to (1 stdout, 2 stderr), to be
        recorded; None when nothing could be shown (no channel, or a protocol that has no
        text to the user).
        """


class SessionCore:
    """One session's identity, recording, audit and messages.

    Args:
        services: the gateway's services.
        principal: who is connected.
        source: the client's ``address:port``.
        protocol: ``ssh`` or ``rdp`` (recording header).
        port: shows the bastion's messages; None for none.
    """

    def __init__(self, services: SessionServices, principal: Principal, source: str, *,
                 protocol: str, port: UserPort | None = None) -> None:
        self.services = services
        self.principal = principal
        self.source = source
        self.protocol = protocol
        self.port = port
        self.target = ""
        self.kind = ""
        self.session_id = ""
        self.rec: SessionRecording | None = None
        self.started = False  # start() let the session run
        self.ending: str | None = None  # why it was ended from the bastion's side
        self.gone = asyncio.Event()  # the user went away (approvals stop waiting)
        self._on_terminate: Callable[[str], None] | None = None
        self._finished = False
        #: masks command lines before they are kept or shown (patterns only until
        #: mask_for names the target)
        self.mask: TextMask = maskers_for(services.config.policy).text_for(None)
        settings = services.config.budget
        self.budget = Budget(settings, services.usage, principal.name) \
            if settings.enabled else None
        self.can_throttle = False  # the adapter can slow its target down (SSH)
        self._pause_notice: asyncio.TimerHandle | None = None  # storage pause, not told yet
        self._resumes_audited = 0  # resumes still to audit: after a told pause, dropping

    def mask_for(self, target: TargetConfig) -> None:
        """Mask this session's command lines with ``target``'s vaulted secret too."""
        self.mask = maskers_for(self.services.config.policy).text_for(target)

    def _masked(self, detail: Mapping[str, Any] | None) -> dict[str, Any]:
        """``detail`` with its ``command`` masked."""
        out = dict(detail or {})
        if isinstance(out.get("command"), str):
            out["command"] = self.mask(out["command"])
        return out

    # ------------------------------------------------------------------ audit
    def event(self, kind: Kind, outcome: str, detail: Mapping[str, Any] | None = None
              ) -> AuditEvent:
        return AuditEvent(kind, outcome, user=self.principal.name, source=self.source,
                          target=self.target, session=self.session_id,
                          detail=dict(detail or {}))

    def audit(self, kind: Kind, outcome: str, detail: Mapping[str, Any] | None = None) -> None:
        self.services.audit(self.event(kind, outcome, detail))

    # ------------------------------------------------------------------ recording
    async def start(self, *, kind: str, command: str | None = None, cols: int = 0,
                    rows: int = 0, term: str = "", start_time: float | None = None,
                    detail: Mapping[str, Any] | None = None,
                    unrecorded_detail: Mapping[str, Any] | None = None) -> bool:
        """Open the recording and audit ``session.start``; False if the session must not
        run (the recording cannot start and ``on_failure`` is ``terminate``).

        ``detail`` goes into ``session.start``; ``unrecorded_detail`` replaces it when
        the session runs without a recording (``on_failure = "continue"``).
        """
        services = self.services
        self.kind = kind
        self.session_id = services.recorder.new_session_id()
        # every log line of this session's task (and tasks it starts) names it (JSON logs)
        logs.bind(session=self.session_id, user=self.principal.name, target=self.target)
        command = self.mask(command) if command else command
        detail = self._masked(detail)
        unrecorded_detail = self._masked(unrecorded_detail) \
            if unrecorded_detail is not None else None
        header = SessionHeader(
            session_id=self.session_id, user=self.principal.name, target=self.target,
            protocol=self.protocol, kind=kind, client_addr=self.source,
            start_time=time.time() if start_time is None else start_time, cols=cols,
            rows=rows, term=term, command=command, gateway_version=services.version)
        try:
            self.rec = await services.recorder.open_session(header)
        except RecorderError as exc:
            log.error("recording cannot start for %s: %s", self.principal.name, exc)
            self.audit(Kind.RECORDING, "failed", {"error": str(exc)})
            self.rec = None
            if services.config.recording.on_failure == "terminate":
                return False
            self.started = True
            self.audit(Kind.SESSION_START, "unrecorded",
                       unrecorded_detail if unrecorded_detail is not None else detail)
            return True
        self.rec.add_failure_callback(self._recording_failed)
        self.rec.add_state_callback(self._storage_state)
        services.live.add(self)
        self.started = True
        self.audit(Kind.SESSION_START, "ok", detail)
        log.info("%s session started from %s", kind, self.source)
        return True

    def _recording_failed(self, exc: RecorderError) -> None:
        self.audit(Kind.RECORDING, "failed", {"error": str(exc)})
        if self.services.config.recording.on_failure == "terminate":
            self.terminate("recording failed, so the session was terminated")

    # ------------------------------------------------------------------ budgets
    def budget_refusal(self) -> str | None:
        """Why this session may not start (the user's daily recording budget is used up
        and the action is ``terminate``), audited; None when it may."""
        used = self.budget.used_up() if self.budget is not None else None
        if used is None or self._throttles():
            return None
        self.audit(Kind.RECORDING, "budget_exceeded", {
            "scope": used.scope, "limit": used.limit, "action": "refused"})
        return f"{used.text()}; try again tomorrow (UTC) or ask an administrator"

    def _throttles(self) -> bool:
        return self.services.config.budget.action == "throttle" and self.can_throttle

    def meter(self) -> float:
        """After recording a chunk: seconds the adapter should stop reading the target
        (a throttled session), else 0. Past a budget with ``terminate`` (or an adapter
        that cannot slow down), the session is ended here."""
        rec, budget = self.rec, self.budget
        if rec is None or budget is None:
            return 0.0
        recorded = rec.bytes_recorded
        exceeded = budget.check(recorded)
        if exceeded is not None:
            self._over_budget(exceeded)
        if budget.exceeded is None or not self._throttles():
            return 0.0
        return budget.pause(recorded)

    def _over_budget(self, exceeded: Exceeded) -> None:
        throttle = self._throttles()
        action = "throttle" if throttle else "terminate"
        self.audit(Kind.RECORDING, "budget_exceeded", {
            "scope": exceeded.scope, "limit": exceeded.limit, "action": action})
        self.mark(f"recording budget exceeded: {exceeded.text()} ({action})")
        if throttle:
            rate = human(self.services.config.budget.throttle_rate)
            self.say(f"{exceeded.text()}: output is slowed to {rate}/s from now on",
                     fresh_line=True)
        else:
            self.terminate(f"{exceeded.text()}, so the session was terminated")
    def _storage_state(self, state: str, reason: str) -> None:
        """Storage refuses this recording's data for now (``paused``: the adapter already
        stopped reading from the target), or takes it again. The user is told once per
        pause that lasts ``PAUSE_NOTICE_AFTER`` seconds; such a pause, dropping (continue
        mode) and the resume after either are audited (after dropping, two resumes: the
        storage's, and the recording's with the bytes it lost)."""
        if state == "paused":
            if self._pause_notice is None and not self._resumes_audited:
                self._pause_notice = asyncio.get_running_loop().call_later(
                    PAUSE_NOTICE_AFTER, self._tell_pause, reason)
            return
        if self._pause_notice is not None:
            self._pause_notice.cancel()
            self._pause_notice = None
        if state == "dropping":
            self._resumes_audited = 2
            self.audit(Kind.RECORDING, "dropping", {"reason": reason})
        elif state == "resumed" and self._resumes_audited:
            self._resumes_audited -= 1
            self.audit(Kind.RECORDING, "resumed", {"reason": reason})

    def _tell_pause(self, reason: str) -> None:
        self._pause_notice = None
        if self._finished or self.rec is None:
            return
        self._resumes_audited = 1
        self.audit(Kind.RECORDING, "paused", {"reason": reason})
        self.say(PAUSE_NOTICE, fresh_line=True)

    # ------------------------------------------------------------------ messages
    def say(self, text: str, *, fresh_line: bool = False) -> None:
        """Tell the user ``bastille: TEXT`` and record it as the output they saw. Parts
        of ``text`` may come from users or targets (a reason, a target's error): no
        terminal control in it reaches the user (:func:`common.safetext.visible`)."""
        text = visible(text)
        shown = self.port.show(PREFIX + text, fresh_line=fresh_line) \
            if self.port is not None else None
        rec = self.rec
        if rec is None:
            return
        if shown is None:
            rec.marker(PREFIX + text)
        elif shown[0]:
            rec.output(shown[0], shown[1])

    # ------------------------------------------------------------------ decisions
    def record_command(self, text: str, *, source: str) -> None:
        """Record and audit one command line that runs without a decision (an exec
        request's command when there is no policy; masked)."""
        shown = self.mask(text)
        if self.rec is not None:
            self.rec.command(shown, source=source)
        self.audit(Kind.EXEC if source == "exec" else Kind.COMMAND, "ok", {"command": shown})

    def record_decision(self, text: str, decision: Decision, *, source: str,
                        record_command: bool = True) -> None:
        """Record and audit one decided command line (or path, or forwarding), masked."""
        rec = self.rec
        text = self.mask(text)
        reason = self.mask(decision.reason)
        if rec is not None and record_command:
            rec.command(text, source=source)
        action = str(decision.action)
        if rec is not None and (action != "allow" or decision.rule):
            rec.policy(command=text, action=action, rule=decision.rule, reason=reason)
        if action == "allow":
            if source == "interactive":
                self.audit(Kind.COMMAND, "ok", {"command": text})
        else:
            self.audit(Kind.POLICY, action, {"command": text, "rule": decision.rule,
                                             "reason": reason, "source": source})

    def record_approval(self, request: Request) -> None:
        """Record and audit the outcome of an approval request of this session (its
        command was masked when the request was made; masked again for old ones)."""
        command = self.mask(request.command)
        if self.rec is not None:
            self.rec.approval(request_id=str(request.id), command=command,
                              decision=request.status, approver=request.decided_by,
                              reason=request.decision_reason or "")
        self.audit(Kind.APPROVAL, request.status, {
            "request": request.id, "command": command,
            "approver": request.decided_by, "reason": request.decision_reason})

    # ------------------------------------------------------------------ ending
    def on_terminate(self, callback: Callable[[str], None]) -> None:
        """How the adapter ends this session from the bastion's side (with a reason)."""
        self._on_terminate = callback

    def terminate(self, reason: str) -> None:
        """End the session from outside (shutdown, kill, limits, recording failure)."""
        if self._on_terminate is not None:
            self._on_terminate(reason)

    def kill(self, by: str, reason: str) -> None:
        """``sessions kill``: audited, then ended with the reason shown to the user."""
        self.audit(Kind.SESSION_KILL, "ok", {"by": by, "reason": reason})
        self.terminate(f"session terminated by {by}: {reason}")

    def mark(self, text: str) -> None:
        """A marker in the recording (a note on the timeline, not output)."""
        if self.rec is not None:
            self.rec.marker(text)

    async def finish(self, detail: Mapping[str, Any] | None = None, *,
                     exit_status: int | None = None, exit_signal: str | None = None) -> None:
        """Close the recording and audit ``session.end`` (with ``detail`` and the reason it
        was ended, if any). Idempotent; nothing is audited for a session that never
        started."""
        if self._finished:
            return
        self._finished = True
        if self._pause_notice is not None:
            self._pause_notice.cancel()
            self._pause_notice = None
        self.gone.set()
        self.services.live.discard(self)
        rec, self.rec = self.rec, None
        if rec is not None and self.budget is not None:
            self.budget.close(rec.bytes_recorded)
        if rec is not None:
            try:
                await rec.close(exit_status=exit_status, exit_signal=exit_signal)
            except RecorderError as exc:
                self.audit(Kind.RECORDING, "failed", {"error": str(exc)})
        if self.started:
            self.audit(Kind.SESSION_END, "ok", {
                **(detail or {}), **({"reason": self.ending} if self.ending else {})})
