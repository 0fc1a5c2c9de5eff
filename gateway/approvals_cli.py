"""`approvals list|approve ID|deny ID [reason]`, shared by `ssh approver@bastion approvals`
and `bastille approvals` on the appliance. Every decision is audited."""

from __future__ import annotations

import shlex
import time
from typing import Any, Protocol

from gateway.approvals import ApprovalError, ApprovalStore, Request
from gateway.audit import AuditEvent, Kind
from gateway.config import Config

USAGE = ("usage: approvals list | approvals approve ID [REASON] | approvals deny ID [REASON]")


class _App(Protocol):
    config: Config
    approvals: ApprovalStore

    def audit(self, event: AuditEvent) -> None: ...


def format_requests(requests: list[Request], now: float) -> str:
    if not requests:
        return "no pending approval requests"
    lines = [f"{'ID':>4}  {'AGE':>6}  {'USER':<12} {'TARGET':<12} {'RULE':<20} COMMAND"]
    for r in requests:
        age = f"{int(now - r.created)}s"
        lines.append(f"{r.id:>4}  {age:>6}  {r.user:<12} {r.target:<12} "
                     f"{(r.rule or '-'):<20} {r.command}")
    return "\n".join(lines)


def run_approvals(app: Any, user: str, groups: frozenset[str], args: str, *,
                  source: str = "") -> str:
    """Run one approvals command as ``user``; return the text to show."""
    a: _App = app
    try:
        words = shlex.split(args)
    except ValueError as exc:
        return f"bastille: {exc}\n{USAGE}"
    cfg = a.config.approvals
    if not cfg.approvers.allows(user, groups):
        return f"bastille: {user} is not an approver"
    if not words or words[0] == "list":
        return format_requests(a.approvals.list(), time.time())
    if words[0] in ("approve", "deny") and len(words) >= 2 and words[1].lstrip("#").isdigit():
        rid = int(words[1].lstrip("#"))
        reason = " ".join(words[2:])
        try:
            result = a.approvals.decide(rid, approver=user, approver_groups=groups,
                                        approvers=cfg.approvers,
                                        approve=words[0] == "approve", reason=reason)
        except ApprovalError as exc:
            a.audit(AuditEvent(Kind.APPROVAL, "refused", user=user, source=source,
                               detail={"request": rid, "error": str(exc)}))
            return f"bastille: {exc}"
        a.audit(AuditEvent(Kind.APPROVAL, result.status, user=user, source=source,
                           target=result.target, session=result.session,
                           detail={"request": rid, "requester": result.user,
                                   "command": result.command, "reason": reason}))
        return f"request #{rid} {result.status}: {result.user}@{result.target}: {result.command}"
    return USAGE
