"""The Enforcer without sshd: exhaustive dispatch over actions, and the one approval wait
(approved, denied, expired, cancelled with Ctrl-C, abandoned by a user who left)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from core_harness import Rig, audit, close_app, make_app, until

from gateway.core.enforce import ALLOW, Allow, Deny, Enforcer, Gone
from gateway.policy import Action, Decision


def _decision(action: Action, reason: str = "rule r") -> Decision:
    return Decision(action, "r", reason, ("x",))


def test_every_action_has_a_verdict() -> None:
    immediate = {a: Enforcer.immediate(None, _decision(a)) for a in Action}  # type: ignore[arg-type]
    assert immediate == {Action.ALLOW: ALLOW, Action.DENY: Deny("denied by policy: rule r"),
                         Action.APPROVE: None}
    refused = {a: Enforcer.refuse_unless_allowed(_decision(a)) for a in Action}
    assert refused == {Action.ALLOW: None, Action.DENY: Deny("rule r"),
                       Action.APPROVE: Deny("rule r")}


def _approve(app, rid: int, approve: bool, reason: str = "") -> None:  # type: ignore[no-untyped-def]
    app.approvals.decide(rid, approver="bob", approver_groups=frozenset({"auditors"}),
                         approvers=app.config.approvals.approvers, approve=approve,
                         reason=reason)


@pytest.mark.parametrize(("approve", "verdict"), [
    (True, ALLOW),
    (False, Deny("request #1 denied by bob: not today; the command was not run")),
])
def test_approval_decided_by_an_approver(tmp_path: Path, approve: bool, verdict: object) -> None:
    async def main() -> tuple[object, bytes]:
        app = make_app(tmp_path)
        await app.recorder.start()
        rig = Rig(app, pty=False)
        await rig.start(kind="exec", command="systemctl restart nginx")
        decision = app.policy.decide("systemctl restart nginx", user="alice",  # type: ignore[union-attr]
                                     groups=["ops"], target="web1")
        wait = asyncio.ensure_future(rig.enforcer.enforce("systemctl restart nginx", decision,
                                                          source="exec",
                                                          record_command=False))
        await until(lambda: app.approvals.list())
        (request,) = app.approvals.list()
        _approve(app, request.id, approve, "not today")
        result = await wait
        await rig.core.finish()
        await close_app(app)
        return result, bytes(rig.chan.err)

    result, err = asyncio.run(main())
    assert result == verdict
    assert (b"bastille: rule 'approve-restart' needs approval\n"
            b"bastille: waiting for approval #1 (expires in 2m)\n") in err
    if approve:
        assert err.endswith(b"bastille: approved by bob\n")
    outcomes = [(r["kind"], r["outcome"]) for r in audit(tmp_path)]
    assert ("policy", "approve") in outcomes and ("approval", "requested") in outcomes
    assert ("approval", "approved" if approve else "denied") in outcomes


def test_user_leaving_cancels_the_request_without_an_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The wait for the store is abandoned, cancelled and awaited: its result is never read
    before the cancellation lands (once: InvalidStateError: Result is not set)."""
    caplog.set_level(logging.DEBUG)

    async def main() -> object:
        app = make_app(tmp_path)
        await app.recorder.start()
        rig = Rig(app, pty=False)
        await rig.start(kind="exec", command="systemctl restart db")
        decision = _decision(Action.APPROVE, "rule approve-restart")
        wait = asyncio.ensure_future(rig.enforcer.approval("systemctl restart db", decision))
        await until(lambda: rig.enforcer.waiting)
        rig.core.gone.set()  # the client disconnected
        result = await wait
        (request,) = app.approvals.list(status=None)
        assert (request.status, request.decision_reason) == ("cancelled",
                                                             "the user disconnected")
        await rig.core.finish()
        await close_app(app)
        return result

    assert asyncio.run(main()) == Gone()
    assert "InvalidStateError" not in caplog.text and "never retrieved" not in caplog.text


def test_ctrl_c_cancels_and_expiry_denies(tmp_path: Path) -> None:
    async def main() -> list[object]:
        app = make_app(tmp_path)
        await app.recorder.start()
        rig = Rig(app, pty=True)
        await rig.start()
        decision = _decision(Action.APPROVE, "rule approve-restart")
        wait = asyncio.ensure_future(rig.enforcer.approval("systemctl restart a", decision,
                                                           cancel_hint=True))
        await until(lambda: rig.enforcer.waiting)
        assert rig.enforcer.cancel_pending()
        first = await wait
        assert not rig.enforcer.cancel_pending()  # nothing waits any more
        request = app.approvals.create(user="alice", target="web1", session="s",
                                       command="x", rule=None, reason="", timeout=0)
        expired = await rig.enforcer._wait(request)
        await rig.core.finish()
        await close_app(app)
        return [first, expired.status if expired else None, bytes(rig.chan.out)]

    first, expired, out = asyncio.run(main())
    assert first == Deny("request #1 cancelled; the command was not run")
    assert expired == "expired"
    assert b"waiting for approval #1 (expires in 2m; Ctrl-C cancels)\r\n" in out


def test_verdict_types_are_distinct() -> None:
    assert isinstance(ALLOW, Allow) and Gone() != ALLOW and Deny("a") != Deny("b")
