"""``bastille audit``, ``approvals``, ``oidc``, ``sessions kill``, ``hash-password`` and
``player``: reading the trail and acting on the running appliance.

Stores are opened through :class:`state.backend.StateBackend` (SQLite files, or the
shared PostgreSQL database of a cluster). Tools that never log into a target load the
configuration without the target secrets. Every audit event these commands write names
the operating-system user who ran them (:mod:`gateway.operator`). Command lines shown
(audit details, approval requests) pass through the text masker, which also covers lines
stored before masking existed."""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import sys
import time
from typing import Any

from common.safetext import visible
from common.table import cut
from gateway.cli.base import (
    add_as,
    add_config_args,
    add_json,
    fail,
    load,
    print_json,
    print_table,
    resolve_recorder,
    state_backend,
)


def _parse_since(value: str) -> float:
    from state.timeparse import parse_when

    try:
        return parse_when(value)
    except ValueError:
        fail(f"--since: expected e.g. 2h, 3d or 2026-11-24T10:00, got {value!r}")


# ------------------------------------------------------------------ audit

AUDIT_WIDTHS = (24, 24, 9, 14, 14, 21)  # time, kind, outcome, user, target, source


def _audit_line(record: dict[str, Any]) -> str:
    detail = record.get("detail") or {}
    extra = " ".join(f"{visible(k)}={visible(json.dumps(v, ensure_ascii=False))}"
                     for k, v in (detail.items() if isinstance(detail, dict) else []))
    cells = [record.get("time", "?"), record.get("kind", "?"), record.get("outcome", "?"),
             record.get("user") or "-", record.get("target") or "-",
             record.get("source") or "-"]
    parts = [cut(visible(str(c)), w).ljust(w) for c, w in zip(cells, AUDIT_WIDTHS, strict=True)]
    return ("  ".join(parts) + "  " + extra).rstrip()


def _mask_detail(record: dict[str, Any], mask: Any) -> None:
    """Mask the command and reason of ``record`` (lines written before they were)."""
    detail = record.get("detail")
    if isinstance(detail, dict):
        for key in ("command", "reason"):
            if isinstance(detail.get(key), str):
                detail[key] = mask(detail[key])


def cmd_audit(args: argparse.Namespace) -> int:
    from gateway.audit import read_events
    from gateway.audit.ocsf import to_ocsf
    from gateway.core.masking import maskers_for

    config = load(args, secrets=False)
    since = _parse_since(args.since) if args.since else None
    if not config.audit.file.exists():
        fail(f"no audit log yet at {config.audit.file}", 1)
    mask = maskers_for(config.policy).text_for(targets=config.targets.values())
    fmt = "json" if args.json else args.format
    if fmt == "text":
        print("  ".join(h.ljust(w) for h, w in zip(
            ("TIME", "KIND", "OUTCOME", "USER", "TARGET", "SOURCE"), AUDIT_WIDTHS,
            strict=True)) + "  DETAIL")
    for record in read_events(config.audit.file, since=since, user=args.user, kind=args.kind):
        _mask_detail(record, mask)
        if fmt == "json":  # ASCII: no control or bidi character left raw
            print(json.dumps(record, ensure_ascii=True))
        elif fmt == "ocsf":
            print(json.dumps(to_ocsf(record), ensure_ascii=True))
        else:
            print(_audit_line(record))
    return 0


# ------------------------------------------------------------------ approvals

def _request_rows(requests: list[Any], now: float, everything: bool,
                  mask: Any = str) -> list[list[object]]:
    rows: list[list[object]] = []
    for r in requests:
        age = f"{int(now - r.created)}s"
        row: list[object] = [r.id]
        if everything:
            row.append(r.status)
        row += [age, r.user, r.target, r.rule or "-"]
        if everything:
            row.append(r.decided_by or "-")
        row.append(mask(r.command))
        rows.append(row)
    return rows


def cmd_approvals_list(args: argparse.Namespace) -> int:
    from gateway.core.masking import maskers_for

    config = load(args, secrets=False)
    store = state_backend(config).approvals()
    try:
        requests = store.list(status=None if args.all else "pending", limit=args.limit)
    finally:
        store.close()
    mask = maskers_for(config.policy).text_for(None)  # stored masked; older ones too
    if args.json:
        print_json([{**r.to_json(), "command": mask(r.command)} for r in requests])
        return 0
    headers = ["ID", *(["STATUS"] if args.all else []), "AGE", "USER", "TARGET", "RULE",
               *(["DECIDED BY"] if args.all else []), "REQUEST"]
    print_table(headers, _request_rows(requests, time.time(), args.all, mask),
                right=(0, 2 if args.all else 1),
                empty="no approval requests" if args.all else "no pending approval requests")
    return 0


def cmd_approvals_decide(args: argparse.Namespace) -> int:
    """approve, deny (a request) or revoke (an access grant) as ``--as NAME``."""
    from gateway.core.commands import run_approvals
    from gateway.operator import OperatorAudit

    config = load(args, secrets=False)
    user = config.users.get(args.as_user)
    if user is None:
        fail(f"no user {visible(args.as_user)!r} in {config.path}")
    store = state_backend(config).approvals()
    audit = OperatorAudit(config)  # records who ran this, next to --as
    try:
        line = f"{args.action} {args.id} {' '.join(args.reason or [])}".strip()
        out = run_approvals(config, store, audit.emit, user.name, user.groups, line,
                            source="cli")
    finally:
        audit.close()
        store.close()
    failed = out.startswith("bastille:")
    if args.json:
        print_json({"ok": not failed, "message": out})
    else:
        print(out, file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0


def _request_id(text: str) -> int:
    value = text.lstrip("#")
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected a request number, got {text!r}")
    return int(value)


# ------------------------------------------------------------------ oidc

def cmd_oidc_bindings(args: argparse.Namespace) -> int:
    config = load(args, secrets=False)
    if config.oidc is None and config.saml is None:
        fail(f"{config.path} has no [oidc] or [saml] section")
    store = state_backend(config).bindings()
    rows = store.list(args.user)
    store.close()
    if args.json:
        print_json([{"user": b.user, "key_sha256": b.key_sha256, "groups": sorted(b.groups),
                     "subject": b.subject, "created": b.created, "expires": b.expires}
                    for b in rows])
        return 0
    print_table(["USER", "KEY SHA256", "UNTIL", "GROUPS"], [
        [b.user, b.key_sha256[:16],
         f"{datetime.datetime.fromtimestamp(b.expires, datetime.UTC):%Y-%m-%dT%H:%M:%SZ}",
         ",".join(sorted(b.groups)) or "-"] for b in rows], empty="no live bindings")
    return 0


def cmd_oidc_revoke(args: argparse.Namespace) -> int:
    config = load(args, secrets=False)
    if config.oidc is None and config.saml is None:
        fail(f"{config.path} has no [oidc] or [saml] section")
    store = state_backend(config).bindings()
    n = store.revoke(args.user)
    store.close()
    if args.json:
        print_json({"user": args.user, "revoked": n})
    else:
        print(f"revoked {n} live binding(s) of {visible(args.user)}")
    return 0


# ------------------------------------------------------------------ sessions kill

def cmd_sessions_kill(args: argparse.Namespace) -> int:
    from gateway.audit import AuditEvent, Kind
    from gateway.operator import emit_once
    from recorder.index import open_index

    config = load(args, secrets=False)
    user = config.users.get(args.as_user)
    if user is None or not config.approvals.approvers.allows(user.name, user.groups):
        fail(f"{visible(args.as_user)} may not end sessions (only the configured approvers "
             "may; auditors are read-only)")
    index = open_index(config.recording, checked=False)
    try:
        rows = [r for r in index.list_sessions(status="live", limit=100000)
                if r.id.startswith(args.id)]
    finally:
        index.close()
    live = [r for r in rows if r.status == "live"]
    if len(live) != 1:
        fail(f"{'no live session' if not live else 'several live sessions'} matches "
             f"{visible(args.id)!r}")
    session = live[0]
    store = state_backend(config).approvals()
    try:
        store.request_kill(session.id, by=user.name, reason=args.reason)
        emit_once(config, AuditEvent(Kind.SESSION_KILL, "requested", user=user.name,
                                     source="cli", target=session.target, session=session.id,
                                     detail={"session_user": session.user,
                                             "reason": args.reason}))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if store.kill_status(session.id):
                print(f"session {session.id} of {visible(session.user)} on "
                      f"{visible(session.target)} terminated")
                return 0
            time.sleep(0.2)
    finally:
        store.close()
    fail(f"kill of {session.id} requested; the gateway has not confirmed it "
         "(is it running?)", 1)


# ------------------------------------------------------------------ hash-password, player

def cmd_hash_password(args: argparse.Namespace) -> int:
    from gateway.auth.passwords import hash_password

    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            fail("the passwords differ", 1)
    else:
        first = sys.stdin.readline().rstrip("\n")
    if not first:
        fail("empty password", 1)
    print(hash_password(first))
    return 0


def _approver(args: argparse.Namespace) -> Any:
    """Who ``--as`` names, what they may do (approvers decide and end sessions, auditors
    only read and review), and how their actions are audited (with the OS user)."""
    from gateway.audit import AuditEvent, Kind
    from gateway.operator import emit_once
    from player.approvals import Approver

    config = load(args, secrets=False)
    user = config.users.get(args.as_user)
    groups = user.groups if user is not None else frozenset()
    may = user is not None and config.approvals.approvers.allows(user.name, groups)
    name = args.as_user

    def emit(event: AuditEvent) -> None:
        emit_once(config, event)

    def audited(request: Any, reason: str) -> None:
        emit(AuditEvent(Kind.APPROVAL, request.status, user=name, source="player",
                        target=request.target, session=request.session,
                        detail={"request": request.id, "requester": request.user,
                                "command": request.command, "reason": reason}))

    def killed(session: str, reason: str) -> None:
        emit(AuditEvent(Kind.SESSION_KILL, "requested", user=name, source="player",
                        session=session, detail={"reason": reason}))

    def watched(session: str) -> None:
        emit(AuditEvent(Kind.SESSION_WATCH, "ok", user=name, source="player",
                        session=session))

    def reviewed(review: Any) -> None:
        emit(AuditEvent(Kind.SESSION_REVIEW, review.kind, user=name, source="player",
                        session=review.session,
                        detail={"record": review.id, "at": review.at, "entry": review.entry,
                                "text": review.text, "signature": review.status}))

    return Approver(name, groups, may, audited, killed, watched, reviewed)


def cmd_player(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gateway.cli.base import config_path
    from gateway.rdp.screens import frame_builder  # RDP desktops: drawn in a child process
    from player.app import run_player

    approver = _approver(args) if args.as_user else None
    audit_file = None
    state = None
    if getattr(args, "config", None):
        loaded = load(args, secrets=False)
        audit_file = loaded.audit.file
        state = state_backend(loaded)  # SQLite files or PostgreSQL
    settings = resolve_recorder(args)
    bare = bool(getattr(args, "data", None) and not getattr(args, "config", None)
                and settings.data_dir == Path(args.data))
    return run_player(settings, session_id=args.id, approver=approver, audit_file=audit_file,
                      state=state, frame_builder=frame_builder(
                          None if bare else config_path(args), settings))


# ------------------------------------------------------------------ the parsers

def add_commands(sub: Any) -> None:
    p = sub.add_parser("audit", help="read the audit log",
                       description="The audit trail as a table (or JSON lines, or OCSF).")
    add_config_args(p)
    p.add_argument("--since", metavar="WHEN", help="e.g. 2h, 3d, 2026-11-24T10:00")
    p.add_argument("--user", help="only this user")
    p.add_argument("--kind", help="only this kind (prefix), e.g. login, policy")
    p.add_argument("--format", choices=["text", "json", "ocsf"], default="text",
                   help="text (default), json (the records as stored), ocsf (OCSF-shaped)")
    add_json(p, "JSON lines (same as --format json)")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("approvals", help="list, approve or deny held commands and access "
                       "requests; revoke access grants",
                       description="Approval requests of the running gateway. Deciding "
                       "and revoking need --as NAME: a configured approver (not an auditor) "
                       "who is not the requester.")
    asub = p.add_subparsers(dest="approvals_command", metavar="ACTION", required=True)
    a = asub.add_parser("list", help="pending requests (--all: every request, with its "
                        "status and who decided)")
    add_config_args(a)
    a.add_argument("--all", action="store_true", help="decided requests too")
    a.add_argument("--limit", type=int, default=200, help="at most this many (200)")
    add_json(a)
    a.set_defaults(func=cmd_approvals_list)
    for action, what, description in (
            ("approve", "approve request ID", "Approve request ID as NAME (audited); the "
             "requester sees the reason."),
            ("deny", "deny request ID", "Deny request ID as NAME (audited); the requester "
             "sees the reason."),
            ("revoke", "end access grant ID (sessions running on it end)",
             "Revoke the access grant ID as NAME (audited): the user may no longer use the "
             "target, and the gateway holding a session that runs on it ends it.")):
        a = asub.add_parser(action, help=what, description=description)
        add_config_args(a)
        a.add_argument("id", type=_request_id, help="request or grant number (as listed)")
        a.add_argument("reason", nargs="*", default=[], help="reason shown to the requester")
        add_as(a, required=True, what="the approver you act as (a configured user)")
        add_json(a)
        a.set_defaults(func=cmd_approvals_decide, action=action)

    p = sub.add_parser("oidc", help="single sign-on key bindings: list or revoke",
                       description="Keys bound to an IdP login (see docs/sso.md).")
    osub = p.add_subparsers(dest="oidc_command", metavar="ACTION", required=True)
    o = osub.add_parser("bindings", help="live bindings (of USER)")
    add_config_args(o)
    o.add_argument("user", nargs="?", help="only this user")
    add_json(o)
    o.set_defaults(func=cmd_oidc_bindings)
    o = osub.add_parser("revoke", help="end every binding of USER at once")
    add_config_args(o)
    o.add_argument("user", help="the user")
    add_json(o)
    o.set_defaults(func=cmd_oidc_revoke)

    p = sub.add_parser("hash-password", help="print an scrypt hash for users.NAME.password_hash "
                       "(reads the password from the terminal or one line of stdin)")
    p.set_defaults(func=cmd_hash_password)

    p = sub.add_parser("player", help="find and replay recorded sessions (terminal UI)",
                       description="Open the player: a session list with filters and "
                       "full-text search, and a replay view (see docs/player.md).")
    add_config_args(p)
    p.add_argument("id", nargs="?", help="open this session directly")
    add_as(p, required=False, what="who you are: a configured approver (approves, ends "
           "sessions) or auditor (read-only); recorded with your OS user")
    p.add_argument("--no-target-secrets", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_player)


def add_kill(sessions_parser: argparse.ArgumentParser) -> None:
    """``sessions kill`` beside the recorder's ``sessions list|show``."""
    for action in sessions_parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            action.metavar = "{list,show,kill}"
            k = action.add_parser(
                "kill", help="end a live session (the user sees the reason)",
                description="Ask the running gateway to end a live session within ~2 s; "
                "the user sees the reason; audited (with your OS user). --as names a "
                "configured approver (auditors are read-only).")
            add_config_args(k)
            k.add_argument("id", help="session id (or a unique prefix)")
            k.add_argument("--reason", required=True, help="shown to the user")
            add_as(k, required=True, what="the approver you act as (a configured approver)")
            k.set_defaults(func=cmd_sessions_kill)
