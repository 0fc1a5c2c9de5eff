"""``bastille audit``, ``approvals``, ``oidc``, ``sessions kill``, ``hash-password`` and
``player``: reading the trail and acting on the running appliance."""

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


def cmd_audit(args: argparse.Namespace) -> int:
    from gateway.audit import read_events
    from gateway.audit.ocsf import to_ocsf

    config = load(args)
    since = _parse_since(args.since) if args.since else None
    if not config.audit.file.exists():
        fail(f"no audit log yet at {config.audit.file}", 1)
    fmt = "json" if args.json else args.format
    if fmt == "text":
        print("  ".join(h.ljust(w) for h, w in zip(
            ("TIME", "KIND", "OUTCOME", "USER", "TARGET", "SOURCE"), AUDIT_WIDTHS,
            strict=True)) + "  DETAIL")
    for record in read_events(config.audit.file, since=since, user=args.user, kind=args.kind):
        if fmt == "json":
            print(json.dumps(record, ensure_ascii=True))
        elif fmt == "ocsf":
            print(json.dumps(to_ocsf(record), ensure_ascii=True))
        else:
            print(_audit_line(record))
    return 0


# ------------------------------------------------------------------ approvals

def _request_rows(requests: list[Any], now: float, everything: bool) -> list[list[object]]:
    rows: list[list[object]] = []
    for r in requests:
        age = f"{int(now - r.created)}s"
        row: list[object] = [r.id]
        if everything:
            row.append(r.status)
        row += [age, r.user, r.target, r.rule or "-"]
        if everything:
            row.append(r.decided_by or "-")
        row.append(r.command)
        rows.append(row)
    return rows


def cmd_approvals_list(args: argparse.Namespace) -> int:
    from state.approvals import ApprovalStore
    from state.paths import DataDir

    config = load(args)
    store = ApprovalStore(DataDir(config.data_dir).approvals)
    try:
        requests = store.list(status=None if args.all else "pending", limit=args.limit)
    finally:
        store.close()
    if args.json:
        print_json([r.to_json() for r in requests])
        return 0
    headers = ["ID", *(["STATUS"] if args.all else []), "AGE", "USER", "TARGET", "RULE",
               *(["DECIDED BY"] if args.all else []), "REQUEST"]
    print_table(headers, _request_rows(requests, time.time(), args.all),
                right=(0, 2 if args.all else 1),
                empty="no approval requests" if args.all else "no pending approval requests")
    return 0


def cmd_approvals_decide(args: argparse.Namespace) -> int:
    from gateway.audit import AuditLog
    from gateway.core.commands import run_approvals
    from state.approvals import ApprovalStore
    from state.paths import DataDir

    config = load(args)
    user = config.users.get(args.as_user)
    if user is None:
        fail(f"no user {visible(args.as_user)!r} in {config.path}")
    store = ApprovalStore(DataDir(config.data_dir).approvals)
    audit = AuditLog(config.audit.file)
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
    from state.bindings import BindingStore
    from state.paths import DataDir

    config = load(args)
    if config.oidc is None and config.saml is None:
        fail(f"{config.path} has no [oidc] or [saml] section")
    store = BindingStore(DataDir(config.data_dir).oidc_bindings)
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
    from state.bindings import BindingStore
    from state.paths import DataDir

    config = load(args)
    if config.oidc is None and config.saml is None:
        fail(f"{config.path} has no [oidc] or [saml] section")
    store = BindingStore(DataDir(config.data_dir).oidc_bindings)
    n = store.revoke(args.user)
    store.close()
    if args.json:
        print_json({"user": args.user, "revoked": n})
    else:
        print(f"revoked {n} live binding(s) of {visible(args.user)}")
    return 0


# ------------------------------------------------------------------ sessions kill

def cmd_sessions_kill(args: argparse.Namespace) -> int:
    from gateway.audit import AuditEvent, AuditLog, Kind
    from recorder.index import Index
    from state.approvals import ApprovalStore
    from state.paths import DataDir

    config = load(args)
    data = DataDir(config.data_dir)
    user = config.users.get(args.as_user)
    if user is None or not config.approvals.approvers.allows(user.name, user.groups):
        fail(f"{visible(args.as_user)} is not an auditor (configured approver)")
    index = Index(DataDir(config.recording.data_dir).index)
    rows = [r for r in index.list_sessions(status="live", limit=100000)
            if r.id.startswith(args.id)]
    index.close()
    live = [r for r in rows if r.status == "live"]
    if len(live) != 1:
        fail(f"{'no live session' if not live else 'several live sessions'} matches "
             f"{visible(args.id)!r}")
    session = live[0]
    store = ApprovalStore(data.approvals)
    store.request_kill(session.id, by=user.name, reason=args.reason)
    audit = AuditLog(config.audit.file)
    audit.emit(AuditEvent(Kind.SESSION_KILL, "requested", user=user.name, source="cli",
                          target=session.target, session=session.id,
                          detail={"session_user": session.user, "reason": args.reason}))
    audit.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if store.kill_status(session.id):
            print(f"session {session.id} of {visible(session.user)} on "
                  f"{visible(session.target)} terminated")
            return 0
        time.sleep(0.2)
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
    """The player's approvals pane for ``--as NAME``, its actions audited."""
    from gateway.audit import AuditEvent, AuditLog, Kind
    from player.approvals import Approver

    config = load(args)
    user = config.users.get(args.as_user)
    groups = user.groups if user is not None else frozenset()
    may = user is not None and config.approvals.approvers.allows(user.name, groups)

    def emit(event: AuditEvent) -> None:
        log = AuditLog(config.audit.file)
        log.emit(event)
        log.close()

    def audited(request: Any, reason: str) -> None:
        emit(AuditEvent(Kind.APPROVAL, request.status, user=args.as_user, source="player",
                        target=request.target, session=request.session,
                        detail={"request": request.id, "requester": request.user,
                                "command": request.command, "reason": reason}))

    def killed(session: str, reason: str) -> None:
        emit(AuditEvent(Kind.SESSION_KILL, "requested", user=args.as_user, source="player",
                        session=session, detail={"reason": reason}))

    def watched(session: str) -> None:
        emit(AuditEvent(Kind.SESSION_WATCH, "ok", user=args.as_user, source="player",
                        session=session))

    def reviewed(review: Any) -> None:
        emit(AuditEvent(Kind.SESSION_REVIEW, review.kind, user=args.as_user, source="player",
                        session=review.session,
                        detail={"record": review.id, "at": review.at, "entry": review.entry,
                                "text": review.text, "signature": review.status}))

    return Approver(args.as_user, groups, may, audited, killed, watched, reviewed)


def cmd_player(args: argparse.Namespace) -> int:
    from player.app import run_player

    approver = _approver(args) if args.as_user else None
    audit_file = load(args).audit.file if getattr(args, "config", None) else None
    return run_player(resolve_recorder(args), session_id=args.id, approver=approver,
                      audit_file=audit_file)


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
                       "requests", description="Approval requests of the running gateway. "
                       "Deciding needs --as NAME: a configured approver who is not the "
                       "requester.")
    asub = p.add_subparsers(dest="approvals_command", metavar="ACTION", required=True)
    a = asub.add_parser("list", help="pending requests (--all: every request, with its "
                        "status and who decided)")
    add_config_args(a)
    a.add_argument("--all", action="store_true", help="decided requests too")
    a.add_argument("--limit", type=int, default=200, help="at most this many (200)")
    add_json(a)
    a.set_defaults(func=cmd_approvals_list)
    for action, verb in (("approve", "approve"), ("deny", "deny")):
        a = asub.add_parser(action, help=f"{verb} request ID",
                            description=f"{verb.capitalize()} request ID as NAME (audited); "
                            "the requester sees the reason.")
        add_config_args(a)
        a.add_argument("id", type=_request_id, help="request number (as listed)")
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
    add_as(p, required=False, what="who you are, for the approvals pane (a configured "
           "approver)")
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
                "the user sees the reason; audited. --as names the auditor (a configured "
                "approver).")
            add_config_args(k)
            k.add_argument("id", help="session id (or a unique prefix)")
            k.add_argument("--reason", required=True, help="shown to the user")
            add_as(k, required=True, what="the auditor you act as (a configured approver)")
            k.set_defaults(func=cmd_sessions_kill)
