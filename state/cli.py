"""``bastille state ...``: the shared state's own commands.

    bastille state migrate --from sqlite:DIR --to postgresql://USER@HOST:PORT/DB
                           [--password-file F | --password-env VAR] [--dry-run]
    bastille state status [-c CONFIG] [--json]  backend, nodes and leases, live sessions

``migrate`` needs no config (the source is a data directory, the target a URL whose
password comes from a file, a variable, or libpq's ``PGPASSWORD``/``~/.pgpass``); with
``-c`` it takes the password of ``[state]``. Exit codes: 0 done, 1 failure or conflicts,
2 usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.safetext import visible
from state.errors import StateError
from state.settings import StateSettings, check_url

AddConfigArgs = Callable[[argparse.ArgumentParser], None]
Load = Callable[[argparse.Namespace], Any]


def add_commands(sub: Any, add_config_args: AddConfigArgs, load: Load) -> None:
    p = sub.add_parser("state", help="shared state: migrate to PostgreSQL, status",
                       description="Where the appliance keeps approvals, grants, tokens, "
                       "bindings, rate limits, reviews, the index and live sessions "
                       "(docs/scale-out.md).")
    ssub = p.add_subparsers(dest="state_command", metavar="ACTION", required=True)
    m = ssub.add_parser("migrate", help="copy SQLite state into PostgreSQL (idempotent)")
    add_config_args(m)
    m.add_argument("--from", dest="source", required=True, metavar="sqlite:DIR",
                   help="the data directory holding the SQLite files")
    m.add_argument("--to", dest="target", required=True, metavar="postgresql://...",
                   help="the database (no password in the URL)")
    m.add_argument("--password-file", help="file holding the database password")
    m.add_argument("--password-env", metavar="VAR", help="variable holding the password")
    m.add_argument("--dry-run", action="store_true", help="count, write nothing")
    m.set_defaults(func=lambda a: cmd_migrate(a, load))
    s = ssub.add_parser("status", help="the backend, the nodes and their live sessions")
    add_config_args(s)
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=lambda a: cmd_status(a, load))


def _password(args: argparse.Namespace, load: Load, url: str) -> str | None:
    if args.password_file:
        try:
            return Path(args.password_file).read_text().strip()
        except OSError as exc:
            raise SystemExit(f"bastille: cannot read {args.password_file}: "
                             f"{exc.strerror}") from None
    if args.password_env:
        if args.password_env not in os.environ:
            raise SystemExit(f"bastille: environment variable {args.password_env} is not set")
        return os.environ[args.password_env]
    if getattr(args, "config", None) or getattr(args, "data", None):
        state = load(args).state
        if state.url == url:
            return str(state.password) if state.password is not None else None
    return None  # libpq: PGPASSWORD or ~/.pgpass


def cmd_migrate(args: argparse.Namespace, load: Load) -> int:
    from state.migrate import migrate
    from state.pg.db import Database

    source = str(args.source)
    if not source.startswith("sqlite:"):
        print("bastille: --from takes sqlite:DIR (the data directory)", file=sys.stderr)
        return 2
    directory = Path(source.removeprefix("sqlite:"))
    if not directory.is_dir():
        print(f"bastille: {directory} is not a directory", file=sys.stderr)
        return 2
    problem = check_url(args.target)
    if problem is not None:
        print(f"bastille: --to: {problem}", file=sys.stderr)
        return 2
    settings = StateSettings(url=args.target, password=_password(args, load, args.target),
                             node="migrate", connect_timeout=5.0)
    db = Database(settings)
    try:
        counts = migrate(directory, db, dry_run=args.dry_run)
    except StateError as exc:
        print(f"bastille: migration failed, nothing was written: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()
    verb = "would copy" if args.dry_run else "copied"
    conflicts = 0
    for name, c in counts.items():
        print(f"{name:<34} {c.rows:>8} found  {c.new:>8} {verb}  {c.present:>8} already there"
              + (f"  {len(c.conflicts)} CONFLICTS" if c.conflicts else ""))
        for what in c.conflicts[:20]:
            print(f"  conflict: {visible(what)} exists with different content; left as it is",
                  file=sys.stderr)
        conflicts += len(c.conflicts)
    if args.dry_run:
        print("dry run: nothing was written")
    return 1 if conflicts else 0


def cmd_status(args: argparse.Namespace, load: Load) -> int:
    from state.backend import StateBackend

    config = load(args)
    state: StateSettings = config.state
    as_json = bool(getattr(args, "json", False))
    if not state.shared:
        if as_json:
            print(json.dumps({"backend": "sqlite", "data_dir": str(config.data_dir),
                              "node": state.node}, indent=2))
            return 0
        print(f"state: SQLite files in {config.data_dir} (one gateway; node {state.node})")
        return 0
    backend = StateBackend(dataclasses.replace(state, connect_timeout=3.0), config.data_dir)
    registry = backend.registry()
    try:
        nodes = registry.nodes()
        entries = registry.entries()
    except StateError as exc:
        print(f"bastille: {state.url}: {exc}", file=sys.stderr)
        return 1
    finally:
        registry.close()
    if as_json:  # ASCII: no control or bidi character left raw
        print(json.dumps({"backend": "postgresql", "url": state.redacted_url(),
                          "lease": state.lease,
                          "nodes": [{**dataclasses.asdict(n), "lease_expired": n.age > state.lease}
                                    for n in nodes],
                          "sessions": [dataclasses.asdict(e) for e in entries]}, indent=2))
        return 0
    print(f"state: PostgreSQL {visible(state.redacted_url())} (lease {state.lease:g}s)")
    now = time.time()
    for n in nodes:
        flag = "  LEASE EXPIRED" if n.age > state.lease else ""
        held = sum(1 for e in entries if e.node == n.node)
        print(f"node {visible(n.node):<20} pid {n.pid:<8} up {now - n.started:>8.0f}s  "
              f"heartbeat {n.age:>5.1f}s ago  {held} live session(s){flag}")
    for e in entries:
        print(f"  {e.session}  {visible(e.user)}@{visible(e.target)} on {visible(e.node)}")
    return 0
