"""`approvals list|approve ID|deny ID [reason]`, shared by `ssh approver@bastion approvals`
and `bastille approvals` on the appliance. Every decision is audited."""

from __future__ import annotations

import shlex
import time
from typing import Any, Protocol

from gateway.audit import AuditEvent, Kind
from gateway.config import Config
from state.approvals import ApprovalError, ApprovalStore, Request

USAGE = ("usage: approvals list | approvals approve ID [REASON] | approvals deny ID [REASON]")


class _App(Protocol):
    config: Config
    approvals: ApprovalStore

    def audit(self, event: AuditEvent) -> None: ...


def format_requests(requests: list[Request], now: float) -> str:
    if not requests:
        return "no pending approval requests"
    lines = [f"{'ID':>4}  {'AGE':>6}  {'USER':<12} {'TARGET':<12} {'RULE':<20} REQUEST"]
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


MAX_ACCESS = 24 * 3600.0  # the longest just-in-time access window one request may ask for


def request_access(app: Any, user: str, args: str, *, source: str = "") -> str:
    """``request TARGET [DURATION] [REASON]``: ask approvers for time-boxed access."""
    from state.timeparse import parse_duration

    a: _App = app
    words = args.split()
    if not words:
        return "bastille: usage: request TARGET [DURATION, e.g. 2h] [REASON]"
    name = words[0]
    seconds = 3600.0
    rest = words[1:]
    if rest and parse_duration(rest[0]) is not None:
        seconds = float(parse_duration(rest[0]) or 3600.0)
        rest = rest[1:]
    if not 60 <= seconds <= MAX_ACCESS:
        return "bastille: the access window must be between 1m and 24h"
    if name not in a.config.targets or user not in a.config.users:
        return f"bastille: unknown target {name!r}"
    if a.config.targets[name].permits(a.config.users[user]):
        return f"bastille: {user} may already use {name}"
    reason = " ".join(rest)
    request = a.approvals.create_access(user=user, target=name, seconds=seconds, reason=reason,
                                        timeout=a.config.approvals.timeout)
    app.notify_approvers(request)
    return (f"access request #{request.id} for {name} ({seconds / 3600:g}h) submitted; "
            f"connect once an approver has approved it "
            f"(it expires undecided in {max(1, round(a.config.approvals.timeout / 60))}m)")
