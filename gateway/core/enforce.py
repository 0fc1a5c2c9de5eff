"""Carrying out policy decisions: :class:`Enforcer`, one per session.

Every decided request (an exec command, an interactive line, an SFTP path, a forwarding
request) goes through :meth:`Enforcer.immediate` or :meth:`Enforcer.enforce`, whose
dispatch over :class:`gateway.policy.Action` is exhaustive (``match`` and
``assert_never``): a new action fails the type check here instead of silently meaning
"approve" in one place and "deny" in another.

The approval wait is written once (:meth:`Enforcer.approval`): create the request,
notify approvers, tell the user ``waiting for approval #ID (expires in Nm)``, wait for a
decision, an expiry, a Ctrl-C (:meth:`Enforcer.cancel_pending`) or the user leaving
(``SessionCore.gone``: the request is then cancelled), record and audit the outcome.

With a shared database (several gateways) the request may be decided on another node:
the wait is woken by the database's notification. While the database is unreachable
the request waits with a notice to the user (``the bastion's database is unreachable``)
and resumes when it returns.

Known limit: with SQLite the wait polls the store (see :mod:`state.approvals`).
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import assert_never

from gateway.core.services import Services
from gateway.core.session import SessionCore
from gateway.limits import MAX_POLICY_LINE
from gateway.policy import Action, Decision, PolicyEngine
from state.approvals import Request
from state.errors import StateError, StateUnavailable


@dataclass(frozen=True)
class Allow:
    """Go on: forward the request."""


@dataclass(frozen=True)
class Deny:
    """Refuse the request; ``message`` is what the user is told (after ``bastille: ``)."""

    message: str


@dataclass(frozen=True)
class Gone:
    """The user left while the request waited for approval (it was cancelled)."""


Verdict = Allow | Deny | Gone
ALLOW = Allow()


def too_long(engine: PolicyEngine, *texts: str | None) -> Decision | None:
    """The decision for a line longer than ``MAX_POLICY_LINE`` (the engine's
    ``on_uncertain``; parsing it would cost the event loop too much), or None when every
    one of ``texts`` is short enough to be decided."""
    longest = max((len(t) for t in texts if t), default=0)
    if longest <= MAX_POLICY_LINE:
        return None
    return Decision(engine.on_uncertain, None,
                    f"line too long to check ({longest} characters, at most "
                    f"{MAX_POLICY_LINE})", ())


def outcome_text(result: Request) -> str:
    """``request #ID denied by carol: not now`` / ``... expired`` / ``... cancelled``."""
    status = result.status
    why = {"denied": f"denied by {result.decided_by}", "expired": "expired",
           "cancelled": "cancelled"}.get(status, status)
    if result.decision_reason and status == "denied":
        why += f": {result.decision_reason}"
    return f"request #{result.id} {why}"


class Enforcer:
    """Turns decisions into verdicts for one session (records and audits them)."""

    def __init__(self, session: SessionCore, services: Services) -> None:
        self.session = session
        self.services = services
        self._pending: int | None = None  # the request being waited for
        self._creating = False  # waiting for an unreachable database to take a request
        self._abandon = asyncio.Event()  # Ctrl-C meanwhile

    def immediate(self, decision: Decision) -> Allow | Deny | None:
        """The verdict that needs no wait; None for ``approve`` (see :meth:`approval`)."""
        action = decision.action
        match action:
            case Action.ALLOW:
                return ALLOW
            case Action.DENY:
                return Deny(f"denied by policy: {decision.reason}")
            case Action.APPROVE:
                return None
            case _:
                assert_never(action)

    @staticmethod
    def refuse_unless_allowed(decision: Decision) -> Deny | None:
        """For requests that cannot wait for a human (port forwarding): anything but
        ``allow`` is refused, with the decision's reason."""
        action = decision.action
        match action:
            case Action.ALLOW:
                return None
            case Action.DENY | Action.APPROVE:
                return Deny(decision.reason)
            case _:
                assert_never(action)

    async def enforce(self, text: str, decision: Decision, *, source: str,
                      record_command: bool = True, what: str = "command",
                      cancel_hint: bool = False) -> Verdict:
        """Record ``decision`` for ``text`` and carry it out (waiting for approval if the
        policy says so). ``what`` names the request in messages ("command", "file
        operation")."""
        self.session.record_decision(text, decision, source=source,
                                     record_command=record_command)
        verdict = self.immediate(decision)
        if verdict is not None:
            return verdict
        return await self.approval(text, decision, what=what, cancel_hint=cancel_hint)

    async def approval(self, text: str, decision: Decision, *, what: str = "command",
                       cancel_hint: bool = False) -> Verdict:
        """Ask the approvers about ``text`` and wait; the user sees each step."""
        session = self.session
        services = self.services
        timeout = services.config.approvals.timeout
        request = await self._create(text, decision, timeout)
        if request is None:
            if session.gone.is_set():
                return Gone()
            if self._abandon.is_set():
                return Deny(f"cancelled by the user; the {what} was not run")
            return Deny(f"the bastion's database stayed unreachable; the {what} was not run")
        services.notify_approvers(request)
        minutes = max(1, round(timeout / 60))
        hint = "; Ctrl-C cancels" if cancel_hint else ""
        session.say(decision.reason, fresh_line=True)
        session.say(f"waiting for approval #{request.id} (expires in {minutes}m{hint})")
        self._pending = request.id
        try:
            result = await self._wait(request)
        finally:
            self._pending = None
        if result is None:
            return Gone()
        session.record_approval(result)
        if result.status == "approved":
            session.say(f"approved by {result.decided_by}")
            return ALLOW
        return Deny(f"{outcome_text(result)}; the {what} was not run")

    async def _create(self, text: str, decision: Decision,
                      timeout: float) -> Request | None:  # noqa: ASYNC109 - approval timeout
        """The new request; while the store is unreachable (a shared database
        restarting) the user is told once and the request is retried every second, for
        at most the approval timeout. None: the user left or pressed Ctrl-C, or the store
        never came back.
        """
        session = self.session
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._abandon.clear()
        self._creating = True
        try:
            told = False
            while True:
                try:
                    return await loop.run_in_executor(None, functools.partial(
                        self.services.approvals.create, user=session.principal.name,
                        target=session.target, session=session.session_id,
                        # approvers see the command with its secrets masked (what runs
                        # is the real one)
                        command=session.mask(text), rule=decision.rule,
                        reason=session.mask(decision.reason), timeout=timeout))
                except StateUnavailable:
                    if not told:
                        session.say("the bastion's database is unreachable; waiting for it "
                                    "to ask for approval", fresh_line=True)
                        told = True
                if session.gone.is_set() or self._abandon.is_set() or loop.time() >= deadline:
                    return None
                await self._pause(1.0)
        finally:
            self._creating = False

    async def _pause(self, seconds: float) -> None:
        """Up to ``seconds``, less if the user leaves or presses Ctrl-C."""
        waits = {asyncio.ensure_future(self.session.gone.wait()),
                 asyncio.ensure_future(self._abandon.wait())}
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.wait(waits)

    async def _wait(self, request: Request) -> Request | None:
        """The decided request, or None when the user left first (then it is cancelled).

        The wait for the store is a task of its own; when it has to be abandoned it is
        cancelled *and awaited*, so its result is never read before the cancellation
        has landed (``Future.cancelled()`` only turns true once the loop has run).
        """
        store = self.services.approvals
        waiter = asyncio.ensure_future(store.wait(request.id, notice=self.session.say))
        gone = asyncio.ensure_future(self.session.gone.wait())
        try:
            await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not waiter.done():
                waiter.cancel()
                try:
                    store.cancel(request.id, "the user disconnected")
                except StateError:  # unreachable: the request expires on its own
                    pass
                await asyncio.wait({waiter})
        if waiter.cancelled():
            return None
        return waiter.result()

    def cancel_pending(self, why: str = "cancelled by the user") -> bool:
        """Cancel the request being waited for (Ctrl-C); False if there is none."""
        if self._pending is None:
            if self._creating:  # still waiting for the database to take the request
                self._abandon.set()
                return True
            return False
        self.services.approvals.cancel(self._pending, why)
        return True

    @property
    def waiting(self) -> bool:
        """A request of this session is waiting for approval (or for the database to
        take it)."""
        return self._pending is not None or self._creating
