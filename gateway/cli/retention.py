"""``bastille prune`` (retention) and ``bastille hold`` (legal holds), both audited.

``prune`` deletes the recordings older than ``[recording] retention`` (or
``--older-than``) that are verified and in their final storage, never a held one; see
:mod:`recorder.retention`. ``--dry-run`` lists what it would delete and what it keeps,
with the reasons. Holds and the index are those of the configured state backend (the
shared PostgreSQL database of a cluster, or the data directory's SQLite files); audit
events name the operating-system user who ran the command (:mod:`gateway.operator`).
"""

from __future__ import annotations

import argparse
import datetime
from typing import Any

from common.safetext import visible
from gateway.cli.base import (
    add_as,
    add_config_args,
    add_json,
    fail,
    load_reading,
    print_json,
    print_table,
    state_backend,
    who,
)


def _when(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")


def _duration(text: str) -> float:
    from state.timeparse import parse_duration

    value = parse_duration(text)
    if value is None or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration like 180d or 12h, got {text!r}")
    return value


def cmd_prune(args: argparse.Namespace) -> int:
    from gateway.audit import AuditEvent, Kind
    from gateway.operator import OperatorAudit
    from recorder.errors import RecorderError
    from recorder.index import open_index
    from recorder.retention import PruneDecision, open_for_prune, prune
    from state.errors import StateError

    config = load_reading(args)
    settings = config.recording
    older = args.older_than or settings.retention
    if not older:
        fail(f"no retention: set [recording] retention (e.g. \"180d\") in {config.path}, or "
             "give --older-than", 2)
    try:
        holds = state_backend(config).holds()
        try:
            held = holds.held()
        finally:
            holds.close()
    except StateError as exc:  # without the holds nothing may be deleted
        fail(f"cannot read the legal holds, nothing was deleted: {exc}", 1)
    audit = OperatorAudit(config) if not args.dry_run else None
    actor = who(args)

    def pruned(d: PruneDecision) -> None:
        assert audit is not None
        audit.emit(AuditEvent(Kind.RETENTION, "pruned", user=actor, source="cli",
                              target=d.target, session=d.session_id,
                              detail={"name": d.name, "session_user": d.user,
                                      "started": d.start, "size": d.size}))

    try:
        sink = open_for_prune(settings)
        index = open_index(settings, checked=False)
    except (RecorderError, StateError) as exc:
        fail(str(exc), 1)
    try:
        decisions = prune(settings, sink, index, older_than=older, held=held,
                          dry_run=args.dry_run, on_pruned=pruned)
    except (RecorderError, StateError) as exc:
        fail(str(exc), 1)
    finally:
        index.close()
        sink.close()
    gone = [d for d in decisions if d.action == "prune"]
    kept = [d for d in decisions if d.action == "keep"]
    if audit is not None:
        audit.emit(AuditEvent(Kind.RETENTION, "ok", user=actor, source="cli", detail={
            "older_than": older, "pruned": len(gone), "kept": len(kept),
            "bytes": sum(d.size or 0 for d in gone)}))
        audit.close()
    _report(args, decisions, older)
    return 0


def _report(args: argparse.Namespace, decisions: list[Any], older: float) -> None:
    if args.json:
        print_json({"dry_run": args.dry_run, "older_than": older,
                    "decisions": [d.to_json() for d in decisions]})
        return
    verb = "would delete" if args.dry_run else "deleted"
    rows = [[d.session_id, _when(d.start), d.user, d.target,
             (verb if d.action == "prune" else "KEPT") + ("" if d.action == "prune"
                                                         else f": {d.reason}")]
            for d in decisions]
    print_table(["SESSION", "STARTED", "USER", "TARGET", "OUTCOME"], rows,
                empty=f"nothing older than {older / 86400:g} days")
    gone = sum(d.action == "prune" for d in decisions)
    size = sum(d.size or 0 for d in decisions if d.action == "prune")
    print(f"{verb} {gone} recording(s), {size / 1024**2:.1f} MiB; kept "
          f"{len(decisions) - gone}")


def _session_id(config: Any, ident: str) -> str:
    from recorder.index import open_index

    index = open_index(config.recording, checked=False)
    try:
        row = index.get(ident)
        rows = [row] if row is not None else index.find(ident)
    finally:
        index.close()
    if len(rows) != 1:
        fail(f"{'no session' if not rows else 'several sessions'} match "
             f"{visible(ident)!r} (see `bastille sessions list`)")
    return str(rows[0].id)


def cmd_hold(args: argparse.Namespace) -> int:
    from state.errors import StateError

    config = load_reading(args)
    try:
        return _hold(args, config)
    except StateError as exc:  # the shared database is unreachable
        fail(f"legal holds: {exc}", 1)


def _hold(args: argparse.Namespace, config: Any) -> int:
    from gateway.audit import AuditEvent, Kind
    from gateway.operator import emit_once

    store = state_backend(config).holds()
    try:
        if args.hold_command == "list":
            holds = store.list()
            if args.json:
                print_json([h.to_json() for h in holds])
            else:
                print_table(["SESSION", "SINCE", "BY", "REASON"],
                            [[h.session, _when(h.created), h.by, h.reason] for h in holds],
                            empty="no legal holds")
            return 0
        session = _session_id(config, args.id)
        if args.hold_command == "set":
            store.set(session, by=who(args), reason=args.reason)
            outcome, text = "set", f"session {session} is under a legal hold"
        elif store.release(session) is None:
            fail(f"session {session} is not under a legal hold", 1)
        else:
            outcome, text = "released", f"legal hold on session {session} released"
    finally:
        store.close()
    emit_once(config, AuditEvent(Kind.LEGAL_HOLD, outcome, user=who(args), source="cli",
                                 session=session, detail={"reason": args.reason}))
    if args.json:
        print_json({"session": session, "hold": outcome})
    else:
        print(text)
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "prune", help="delete recordings older than [recording] retention (verified, "
        "stored, not held)",
        description="Delete the recordings of sessions that started longer ago than "
        "[recording] retention (or --older-than), but only those that are finished, in "
        "their final storage (uploaded and confirmed for S3), verify (hash chain, "
        "signature, binding to their session) and are not under a legal hold. Each "
        "deletion is audited. Run it daily (the Ansible role installs a timer).")
    add_config_args(p)
    p.add_argument("--dry-run", action="store_true", help="list, delete nothing")
    p.add_argument("--older-than", type=_duration, metavar="DURATION",
                   help="instead of [recording] retention, e.g. 90d")
    add_as(p, required=False, what="who runs it, for the audit trail (default: your login)")
    add_json(p)
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("hold", help="legal holds: sessions retention never deletes",
                       description="Put a session's recording under a legal hold (prune "
                       "skips it), release it, or list holds. Audited.")
    hsub = p.add_subparsers(dest="hold_command", metavar="ACTION", required=True)
    h = hsub.add_parser("list", help="sessions under a hold")
    add_config_args(h)
    add_json(h)
    h.set_defaults(func=cmd_hold)
    for action, what in (("set", "put a session under a legal hold"),
                         ("release", "lift a session's legal hold")):
        h = hsub.add_parser(action, help=what)
        add_config_args(h)
        h.add_argument("id", help="session id (or a unique prefix)")
        h.add_argument("--reason", required=True, help="why (audited)")
        add_as(h, required=False, what="who, for the audit trail (default: your login)")
        add_json(h)
        h.set_defaults(func=cmd_hold)
