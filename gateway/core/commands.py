"""Built-in commands of the appliance, shown as text: ``help``, ``request``,
``approvals`` (and ``rdp``, registered by the composition root from ``gateway.rdp``).

``ssh USER@BASTION COMMAND ARGS`` runs them (``gateway/ssh`` routes there); ``bastille
approvals`` on the appliance runs :func:`run_approvals` too. Each returns the text to
show; text starting with ``bastille:`` is an error (exit status 1). Every decision is
audited. These know no protocol: they work on principals, the access check and the
approval store. Every user- or target-controlled string they print goes through
:func:`common.safetext.visible` (no terminal control reaches whoever reads it).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Mapping

from common.safetext import visible
from common.table import render
from gateway.audit import AuditEvent, Kind
from gateway.config import Config
from gateway.core.access import Access, Principal
from gateway.core.masking import maskers_for
from state.approvals import ApprovalError, Approvals, Request
from state.errors import StateError
from state.timeparse import parse_duration

USAGE = ("usage: approvals list | approvals approve ID [REASON] | approvals deny ID [REASON]"
         " | approvals revoke ID [REASON]")
MAX_ACCESS = 24 * 3600.0  # the longest just-in-time access window one request may ask for

#: (principal, arguments, source address) -> text to show
Command = Callable[[Principal, str, str], str]
Audit = Callable[[AuditEvent], None]


def format_requests(requests: list[Request], now: float,
                    mask: Callable[[str], str] = str) -> str:
    """The approval queue as an aligned table (cells sanitised by common.table;
    ``mask``: the text masker for commands; requests are stored masked, this also covers
    ones stored before that)."""
    if not requests:
        return "no pending approval requests"
    return "\n".join(render(
        ["ID", "AGE", "USER", "TARGET", "RULE", "REQUEST"],
        [[r.id, f"{int(now - r.created)}s", r.user, r.target, r.rule or "-", mask(r.command)]
         for r in requests], right=(0, 1)))


def run_approvals(config: Config, approvals: Approvals, audit: Audit, user: str,
                  groups: frozenset[str], args: str, *, source: str = "") -> str:
    """``approvals list|approve ID|deny ID [REASON]`` as ``user``; the text to show."""
    try:
        words = shlex.split(args)
    except ValueError as exc:
        return f"bastille: {visible(exc)}\n{USAGE}"
    cfg = config.approvals
    approver = cfg.approvers.allows(user, groups)
    if not approver and not cfg.auditors.allows(user, groups):
        return f"bastille: {visible(user)} is not an approver"
    if not words or words[0] == "list":
        return format_requests(approvals.list(), time.time(),
                               maskers_for(config.policy).text_for(None))
    if words[0] in ("approve", "deny") and len(words) >= 2 and words[1].lstrip("#").isdigit():
        rid = int(words[1].lstrip("#"))
        if not approver:  # an auditor: read-only
            audit(AuditEvent(Kind.APPROVAL, "refused", user=user, source=source,
                             detail={"request": rid, "error": "auditors may not decide"}))
            return f"bastille: {visible(user)} is an auditor; auditors may not decide requests"
        reason = " ".join(words[2:])
        try:
            result = approvals.decide(rid, approver=user, approver_groups=groups,
                                      approvers=cfg.approvers,
                                      approve=words[0] == "approve", reason=reason)
        except ApprovalError as exc:
            audit(AuditEvent(Kind.APPROVAL, "refused", user=user, source=source,
                             detail={"request": rid, "error": str(exc)}))
            return f"bastille: {visible(exc)}"
        audit(AuditEvent(Kind.APPROVAL, result.status, user=user, source=source,
                         target=result.target, session=result.session,
                         detail={"request": rid, "requester": result.user,
                                 "command": result.command, "reason": reason}))
        shown = maskers_for(config.policy).text_for(None)(result.command)
        return (f"request #{rid} {result.status}: {visible(result.user)}@"
                f"{visible(result.target)}: {visible(shown)}")
    if words[0] == "revoke" and len(words) >= 2 and words[1].lstrip("#").isdigit():
        rid = int(words[1].lstrip("#"))
        if not approver:  # an auditor: revoking ends sessions, which auditors may not
            audit(AuditEvent(Kind.APPROVAL, "refused", user=user, source=source,
                             detail={"request": rid, "error": "auditors may not revoke"}))
            return f"bastille: {visible(user)} is an auditor; auditors may not revoke grants"
        return _revoke(approvals, audit, user, rid, " ".join(words[2:]), source)
    return USAGE


def _revoke(approvals: Approvals, audit: Audit, user: str, rid: int, reason: str,
            source: str) -> str:
    """``approvals revoke ID [REASON]``: end an access grant; the node that holds a
    session running on it ends that session (gateway.core.live)."""
    try:
        grant = approvals.revoke_grant(rid, by=user, reason=reason)
    except ApprovalError as exc:
        audit(AuditEvent(Kind.APPROVAL, "refused", user=user, source=source,
                         detail={"request": rid, "error": str(exc)}))
        return f"bastille: {visible(exc)}"
    audit(AuditEvent(Kind.APPROVAL, "revoked", user=user, source=source, target=grant.target,
                     detail={"request": rid, "requester": grant.user, "reason": reason}))
    return (f"grant #{rid} revoked: {visible(grant.user)} may no longer use "
            f"{visible(grant.target)}; sessions running on it are ended")


class Commands:
    """The built-in commands of one gateway process, by name."""

    def __init__(self, config: Config, access: Access, approvals: Approvals, audit: Audit,
                 notify: Callable[[Request], None], version: str) -> None:
        self._config = config
        self._access = access
        self._approvals = approvals
        self._audit = audit
        self._notify = notify
        self._version = version
        self._extra: dict[str, Command] = {}

    def register(self, name: str, command: Command) -> None:
        """Add a command (the composition root adds ``rdp``)."""
        self._extra[name] = command

    @property
    def names(self) -> Mapping[str, Command]:
        return {"help": self.help, "request": self.request, "approvals": self.approvals,
                **self._extra}

    def run(self, name: str, principal: Principal, args: str, source: str) -> str:
        """Run built-in ``name``; an unknown one (or an unavailable one) shows ``help``."""
        command = self.names.get(name, self.help)
        try:
            return command(principal, args, source)
        except StateError as exc:  # the shared database is away (docs/scale-out.md)
            return f"bastille: {visible(exc)}; try again shortly"

    def approvals(self, principal: Principal, args: str, source: str) -> str:
        return run_approvals(self._config, self._approvals, self._audit, principal.name,
                             principal.groups, args, source=source)

    def help(self, principal: Principal, args: str = "", source: str = "") -> str:
        """The targets ``principal`` may use now (grants included) and how to connect."""
        name = visible(principal.name)
        targets = self._access.targets_for(principal, "ssh")
        lines = [f"bastille {self._version}. Targets available to {name}:"]
        lines += [f"  {t.name:<16} {visible(t.description)}".rstrip()
                  for t in targets] or ["  (none)"]
        lines += ["", "Connect:   ssh -t USER@BASTION TARGET",
                  "Run:       ssh USER@BASTION TARGET -- COMMAND",
                  "Transfer:  scp FILE USER+TARGET@BASTION:PATH   (also sftp, rsync -e ssh)"]
        rdp = self._access.targets_for(principal, "rdp")
        if rdp and self._config.rdp is not None:
            lines += ["", "RDP targets (an RDP client, user name USER#TARGET):"]
            lines += [f"  {t.name:<16} {visible(t.description)}".rstrip() for t in rdp]
            lines += ["One-time RDP password (also for single sign-on users): "
                      "ssh USER@BASTION rdp [TARGET]"]
        return "\n".join(lines)

    def request(self, principal: Principal, args: str, source: str = "") -> str:
        """``request TARGET [DURATION] [REASON]``: ask approvers for time-boxed access."""
        words = args.split()
        if not words:
            return "bastille: usage: request TARGET [DURATION, e.g. 2h] [REASON]"
        name = words[0]
        seconds = 3600.0
        rest = words[1:]
        duration = parse_duration(rest[0]) if rest else None
        if duration is not None:
            seconds = duration
            rest = rest[1:]
        if not 60 <= seconds <= MAX_ACCESS:
            return "bastille: the access window must be between 1m and 24h"
        target = self._config.targets.get(name)
        if target is None:
            return f"bastille: unknown target {visible(name)!r}"
        if self._access.by_config(principal, target):
            return f"bastille: {visible(principal.name)} may already use {name}"
        timeout = self._config.approvals.timeout
        reason = maskers_for(self._config.policy).text_for(None)(" ".join(rest))
        request = self._approvals.create_access(user=principal.name, target=name,
                                                seconds=seconds, reason=reason,
                                                timeout=timeout)
        self._notify(request)
        return (f"access request #{request.id} for {name} ({seconds / 3600:g}h) submitted; "
                f"connect once an approver has approved it "
                f"(it expires undecided in {max(1, round(timeout / 60))}m)")
