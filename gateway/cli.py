"""The ``bastille`` command.

    bastille demo [--port N] [--data DIR] [--write-config DIR]
    bastille serve -c CONFIG
    bastille config check -c CONFIG
    bastille audit [-c CONFIG | --data DIR] [--since WHEN] [--user U] [--kind K] [--json]
    bastille hash-password
    bastille sessions list|show, play, export, verify, reindex, keygen   (recordings)
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gateway._version import __version__
from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.config import Config
    from player.approvals import Approver
    from recorder.settings import RecorderSettings

EPILOG = """\
examples:
  bastille demo                         run a demo appliance on 127.0.0.1:2222
  ssh -p 2222 -t demo@127.0.0.1 demo    connect to it (password: demo)
  bastille config check -c /etc/bastille/bastille.toml
  bastille serve -c /etc/bastille/bastille.toml
  bastille sessions list --data ~/.local/share/bastille/demo
"""


def _config_path(args: argparse.Namespace) -> Path:
    if getattr(args, "config", None):
        return Path(args.config)
    data = getattr(args, "data", None)
    if data:
        from gateway.demo import CONFIG_NAME

        candidate = Path(data) / CONFIG_NAME
        if candidate.exists():
            return candidate
        raise SystemExit(f"bastille: no {CONFIG_NAME} in {data} (is it a demo directory?)")
    env = os.environ.get("BASTILLE_CONFIG")
    if env:
        return Path(env)
    default = Path("/etc/bastille/bastille.toml")
    if default.exists():
        return default
    from gateway.demo import CONFIG_NAME, default_data_dir

    demo = default_data_dir() / CONFIG_NAME
    if demo.exists():
        return demo
    raise SystemExit("bastille: no config: pass -c CONFIG (or --data DIR for a demo directory)")


def _load(args: argparse.Namespace, *, secrets: bool = True) -> Config:
    """The config of ``args``; ``secrets=False`` for tools that never log into a target
    (they start without the target secrets' variables set)."""
    from gateway.config import load_config
    from gateway.ssh.keys import check_private_key

    secrets = secrets and not getattr(args, "no_target_secrets", False)
    try:
        return load_config(_config_path(args), check_key=check_private_key, secrets=secrets)
    except ConfigError as exc:
        print(f"bastille: invalid configuration:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _resolve_recorder(args: argparse.Namespace) -> RecorderSettings:
    """Recorder settings from -c CONFIG, from a demo directory, or from a bare data dir
    (no target secrets needed); registers the text masker the recorder's tools use."""
    from gateway.config import PolicySettings
    from gateway.core.masking import maskers_for
    from recorder import textmask

    data = getattr(args, "data", None)
    if data and not getattr(args, "config", None):
        from gateway.demo import CONFIG_NAME
        from recorder.settings import RecorderSettings

        directory = Path(data)
        if not (directory / CONFIG_NAME).exists():
            if not directory.is_dir():
                raise SystemExit(f"bastille: {directory} is not a directory")
            textmask.register(maskers_for(PolicySettings()).text_for(None))
            return RecorderSettings(data_dir=directory)
    config = _load(args, secrets=False)
    textmask.register(maskers_for(config.policy).text_for(targets=config.targets.values()))
    return config.recording


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", metavar="CONFIG", help="config file (TOML)")
    p.add_argument("--data", metavar="DIR", help="a `bastille demo` directory instead of -c")


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.config.perms import secret_file_warnings

    config = _load(args)
    for warning in secret_file_warnings(config):
        logging.getLogger("bastille.config").warning("%s", warning)
    return _serve(config)


READ_CHUNK = 16 * 1024


def _fair_reads() -> None:
    """Read at most ``READ_CHUNK`` bytes per socket per event-loop turn (asyncio: 256 KiB).

    One loop turn handles everything one recv returned; at 10-30 ms/MiB of gateway work,
    a 256 KiB read from a bulk session is 3-8 ms during which no other session's
    keystroke moves, and an echo needs two turns. Measured with bench/latency.py (echo
    p99 while another session streams an exec / cats a file in a PTY): 256 KiB 9.8 / -
    ms, 64 KiB 2.8 / 14.4 ms, 32 KiB 2.0 / 8.8 ms, 16 KiB 1.6-2.1 / 4.4 ms. Bulk
    throughput at 16 KiB vs 64 KiB: within ~5-10% (run-to-run noise is about as large).
    """
    import asyncio.selector_events as selector_events

    transport = getattr(selector_events, "_SelectorSocketTransport", None)
    if transport is not None and hasattr(transport, "max_size"):
        transport.max_size = READ_CHUNK


def _serve(config: Config, banner: str | None = None) -> int:
    from gateway.app import GatewayApp

    async def main() -> None:
        from gateway.errors import BastilleError
        from recorder.errors import RecorderError
        from state.errors import StateError

        try:
            app = GatewayApp(config)
        except (StateError, RecorderError, OSError) as exc:  # a state file unusable
            print(f"bastille: cannot start: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        try:
            await app.start()
        except (BastilleError, RecorderError, StateError, OSError) as exc:
            print(f"bastille: cannot start: {exc}", file=sys.stderr)
            await app.recorder.close(timeout=5)
            raise SystemExit(1) from None
        if banner:
            print(banner.replace("{port}", str(app.port)), flush=True)
        await app.run_started()

    _fair_reads()
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.demo import write_demo_config
    from gateway.ssh.keys import check_private_key

    if args.write_config:
        directory = Path(args.write_config)
        if (directory / "bastille.toml").exists() and not args.force:
            print(f"bastille: {directory / 'bastille.toml'} exists (use --force to replace)",
                  file=sys.stderr)
            return 1
        path = write_demo_config(directory, args.port, overwrite=True)
        print(f"wrote {path} and the keys it needs beside it.\n"
              f"check it:  bastille config check -c {path}\n"
              f"run it:    bastille serve -c {path}")
        return 0
    from gateway.demo import default_data_dir

    directory = Path(args.data) if args.data else default_data_dir()
    path = write_demo_config(directory, args.port)
    try:
        config = load_config(path, check_key=check_private_key)
    except ConfigError as exc:
        print(f"bastille: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    if config.gateway.listen_port != args.port:
        path = write_demo_config(directory, args.port, overwrite=True)
        config = load_config(path, check_key=check_private_key)
    banner = (
        f"bastille {__version__} demo gateway listening on 127.0.0.1:{{port}}\n"
        f"  data directory: {directory}\n"
        f"  recordings:     {config.recording.file_dir}\n"
        f"  audit log:      {config.audit.file}\n"
        f"  config:         {path}\n\n"
        "Connect (password: demo):\n"
        "  ssh -p {port} -t demo@127.0.0.1 demo\n"
        "  ssh -p {port} demo@127.0.0.1 demo -- uptime\n"
        "  scp -P {port} FILE demo+demo@127.0.0.1:/tmp/\n\n"
        "Then look at what was recorded:\n"
        f"  bastille sessions list --data {directory}\n"
        f"  bastille play ID --data {directory}\n\n"
        "Ctrl-C stops the gateway."
    )
    return _serve(config, banner)


def cmd_config_check(args: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.ssh.keys import check_private_key

    try:
        config = load_config(_config_path(args), check_key=check_private_key)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) found", file=sys.stderr)
        return 1
    if config.state.shared:  # the shared database: reachable, with what the index needs
        from state.backend import StateBackend

        unusable = StateBackend(config.state, config.data_dir).check()
        if unusable is not None:
            print(f"{config.path}: state.url: {unusable}", file=sys.stderr)
            print("1 problem(s) found", file=sys.stderr)
            return 1
    from gateway.config.perms import secret_file_warnings

    warnings = secret_file_warnings(config)
    for warning in warnings:
        print(warning, file=sys.stderr)
    rdp = f", RDP on {config.rdp.listen_host}:{config.rdp.listen_port}" if config.rdp else ""
    note = f"; {len(warnings)} warning(s)" if warnings else ""
    print(f"{config.path}: OK ({len(config.users)} user(s), {len(config.targets)} target(s), "
          f"listening on {config.gateway.listen_host}:{config.gateway.listen_port}{rdp}{note})")
    return 0


def _parse_since(value: str) -> float:
    from state.timeparse import parse_when

    try:
        return parse_when(value)
    except ValueError:
        raise SystemExit(f"bastille: --since: expected e.g. 2h, 3d or 2026-11-24T10:00, "
                         f"got {value!r}") from None


def cmd_audit(args: argparse.Namespace) -> int:
    from common.safetext import visible
    from gateway.audit import read_events
    from gateway.core.masking import maskers_for

    config = _load(args, secrets=False)
    since = _parse_since(args.since) if args.since else None
    if not config.audit.file.exists():
        print(f"bastille: no audit log yet at {config.audit.file}", file=sys.stderr)
        return 1
    mask = maskers_for(config.policy).text_for(targets=config.targets.values())
    for record in read_events(config.audit.file, since=since, user=args.user, kind=args.kind):
        detail = record.get("detail")
        if isinstance(detail, dict):  # lines written before commands were masked
            for key in ("command", "reason"):
                if isinstance(detail.get(key), str):
                    detail[key] = mask(detail[key])
        if args.json:
            print(json.dumps(record))  # ASCII: no control or bidi character left raw
            continue
        detail = record.get("detail") or {}
        extra = " ".join(f"{visible(k)}={visible(json.dumps(v, ensure_ascii=False))}"
                         for k, v in detail.items())
        who = visible(record.get("user") or "-")
        target = visible(record.get("target") or "-")
        print(f"{visible(record.get('time', '?'))}  {visible(record.get('kind', '?')):<22} "
              f"{visible(record.get('outcome', '?')):<8} {who:<12} {target:<12} "
              f"{visible(record.get('source', ''))}  {extra}".rstrip())
    return 0


def cmd_oidc(args: argparse.Namespace) -> int:
    """``bastille oidc bindings [USER]`` / ``bastille oidc revoke USER``."""
    import datetime

    from common.safetext import visible
    from state.backend import StateBackend

    config = _load(args, secrets=False)
    if config.oidc is None and config.saml is None:
        print(f"bastille: {config.path} has no [oidc] or [saml] section", file=sys.stderr)
        return 2
    store = StateBackend(config.state, config.data_dir).bindings()
    if args.action == "revoke":
        if not args.user:
            print("bastille: oidc revoke needs a USER", file=sys.stderr)
            return 2
        n = store.revoke(args.user)
        print(f"revoked {n} live binding(s) of {visible(args.user)}")
        return 0
    rows = store.list(args.user)
    if args.json:
        for b in rows:
            print(json.dumps({"user": b.user, "key_sha256": b.key_sha256,
                              "groups": sorted(b.groups), "subject": b.subject,
                              "created": b.created, "expires": b.expires}))
        return 0
    for b in rows:
        until = datetime.datetime.fromtimestamp(b.expires, datetime.UTC)
        print(f"{visible(b.user):<16} {b.key_sha256[:16]}  until {until:%Y-%m-%dT%H:%M:%SZ}  "
              f"groups={visible(','.join(sorted(b.groups))) or '-'}")
    if not rows:
        print("no live bindings")
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    from gateway.auth.passwords import hash_password

    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            print("bastille: the passwords differ", file=sys.stderr)
            return 1
    else:
        first = sys.stdin.readline().rstrip("\n")
    if not first:
        print("bastille: empty password", file=sys.stderr)
        return 1
    print(hash_password(first))
    return 0


def cmd_approvals(args: argparse.Namespace) -> int:
    from gateway.core.commands import format_requests, run_approvals
    from gateway.core.masking import maskers_for
    from gateway.operator import OperatorAudit
    from state.backend import StateBackend

    config = _load(args, secrets=False)
    store = StateBackend(config.state, config.data_dir).approvals()
    if args.action == "list":
        requests = store.list(status=None if args.all else "pending")
        mask = maskers_for(config.policy).text_for(None)
        if args.json:
            print(json.dumps([{**r.to_json(), "command": mask(r.command)} for r in requests],
                             indent=2))
        else:
            print(format_requests(requests, time.time(), mask))
        return 0
    if not args.as_user:
        print("bastille: --as USER is required (the approver you act as)", file=sys.stderr)
        return 2
    user = config.users.get(args.as_user)
    if user is None:
        print(f"bastille: no user {args.as_user!r} in the config", file=sys.stderr)
        return 2
    audit = OperatorAudit(config)  # records who ran this, next to --as
    line = f"{args.action} {args.id} {' '.join(args.reason or [])}".strip()
    out = run_approvals(config, store, audit.emit, user.name, user.groups, line, source="cli")
    audit.close()
    failed = out.startswith("bastille:")
    print(out, file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0


def cmd_sessions_kill(args: argparse.Namespace) -> int:
    from common.safetext import visible
    from gateway.audit import AuditEvent, Kind
    from gateway.operator import emit_once
    from recorder.index import open_index
    from state.backend import StateBackend

    config = _load(args, secrets=False)
    state = StateBackend(config.state, config.data_dir)
    user = config.users.get(args.as_user)
    if user is None or not config.approvals.approvers.allows(user.name, user.groups):
        print(f"bastille: {visible(args.as_user)} may not end sessions (only the configured "
              "approvers may; auditors are read-only)", file=sys.stderr)
        return 2
    index = open_index(config.recording, checked=False)
    rows = [r for r in index.list_sessions(status="live", limit=100000)
            if r.id.startswith(args.id)]
    index.close()
    live = [r for r in rows if r.status == "live"]
    if len(live) != 1:
        what = "no live session" if not live else "several live sessions"
        print(f"bastille: {what} matches {args.id!r}", file=sys.stderr)
        return 2
    session = live[0]
    store = state.approvals()
    store.request_kill(session.id, by=user.name, reason=args.reason)
    emit_once(config, AuditEvent(Kind.SESSION_KILL, "requested", user=user.name, source="cli",
                                 target=session.target, session=session.id,
                                 detail={"session_user": session.user, "reason": args.reason}))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if store.kill_status(session.id):
            print(f"session {session.id} of {visible(session.user)} on "
                  f"{visible(session.target)} terminated")
            return 0
        time.sleep(0.2)
    print(f"bastille: kill of {session.id} requested; the gateway has not confirmed it "
          "(is it running?)", file=sys.stderr)
    return 1


def cmd_player(args: argparse.Namespace) -> int:
    from player.app import run_player

    approver = _player_approver(args) if args.as_user else None
    audit_file = None
    state = None
    if getattr(args, "config", None):
        from state.backend import StateBackend

        loaded = _load(args, secrets=False)
        audit_file = loaded.audit.file
        state = StateBackend(loaded.state, loaded.data_dir)  # SQLite files or PostgreSQL
    settings = _resolve_recorder(args)
    from gateway.rdp.screens import frame_builder  # RDP desktops: drawn in a child process

    bare = getattr(args, "data", None) and not getattr(args, "config", None) and \
        settings.data_dir == Path(args.data)
    return run_player(settings, session_id=args.id, approver=approver, audit_file=audit_file,
                      state=state, frame_builder=frame_builder(
                          None if bare else _config_path(args), settings))


def _player_approver(args: argparse.Namespace) -> Approver:
    """Who ``--as`` names, what they may do (approvers decide and end sessions, auditors
    only read and review), and how their actions are audited (with the OS user)."""
    from gateway.audit import AuditEvent, Kind
    from gateway.operator import emit_once
    from player.approvals import Approver

    config = _load(args, secrets=False)
    user = config.users.get(args.as_user)
    groups = user.groups if user is not None else frozenset()
    may = user is not None and config.approvals.approvers.allows(user.name, groups)
    who = args.as_user

    def audited(request, reason: str) -> None:  # type: ignore[no-untyped-def]
        emit_once(config, AuditEvent(Kind.APPROVAL, request.status, user=who,
                                     source="player", target=request.target,
                                     session=request.session,
                                     detail={"request": request.id, "requester": request.user,
                                             "command": request.command, "reason": reason}))

    def killed(session: str, reason: str) -> None:
        emit_once(config, AuditEvent(Kind.SESSION_KILL, "requested", user=who,
                                     source="player", session=session,
                                     detail={"reason": reason}))

    def watched(session: str) -> None:
        emit_once(config, AuditEvent(Kind.SESSION_WATCH, "ok", user=who, source="player",
                                     session=session))

    def reviewed(review) -> None:  # type: ignore[no-untyped-def]
        emit_once(config, AuditEvent(Kind.SESSION_REVIEW, review.kind, user=who,
                                     source="player", session=review.session,
                                     detail={"record": review.id, "at": review.at,
                                             "entry": review.entry, "text": review.text,
                                             "signature": review.status}))

    return Approver(who, groups, may, audited, killed, watched, reviewed)


def _export_bundle(rec, output: str, args: argparse.Namespace) -> str:  # type: ignore[no-untyped-def]
    """``bastille export --format bundle`` (player.evidence, imported when used)."""
    from player.evidence import exporter

    return exporter(rec, output, args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bastille",
        description="SSH and RDP bastion that relays, records and enforces policy.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"bastille {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="run a demo gateway with a built-in target (no root)",
                       description="Run a demo gateway on 127.0.0.1 with user demo/demo and a "
                       "built-in target 'demo' (a local shell), recording to a local directory.")
    p.add_argument("--port", type=int, default=2222, help="listen port (default 2222)")
    p.add_argument("--data", metavar="DIR", help="demo directory (default "
                   "~/.local/share/bastille/demo)")
    p.add_argument("--write-config", metavar="DIR",
                   help="write the demo's config and keys to DIR and exit")
    p.add_argument("--force", action="store_true", help="with --write-config: replace")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("serve", help="run the gateway", description="Run the gateway until "
                       "SIGTERM/SIGINT; sessions then drain for gateway.drain_timeout.")
    _add_config_args(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("config", help="configuration tools")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    c = csub.add_parser("check", help="validate a config; prints file:line: key: problem")
    _add_config_args(c)
    c.set_defaults(func=cmd_config_check)

    p = sub.add_parser("audit", help="read the audit log")
    _add_config_args(p)
    p.add_argument("--since", help="e.g. 2h, 3d, 2026-11-24T10:00")
    p.add_argument("--user", help="only this user")
    p.add_argument("--kind", help="only this kind (prefix), e.g. login, policy")
    p.add_argument("--json", action="store_true", help="JSON lines")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("approvals", help="list, approve or deny held commands",
                       description="Approval requests of the running gateway. Approving or "
                       "denying needs --as USER, a configured approver who is not the "
                       "requester.")
    _add_config_args(p)
    p.add_argument("action", choices=["list", "approve", "deny", "revoke"])
    p.add_argument("id", nargs="?", help="request number (approve/deny), or the access "
                   "grant to revoke (revoke: sessions running on it end)")
    p.add_argument("reason", nargs="*", help="reason shown to the requester")
    p.add_argument("--as", dest="as_user", metavar="USER", help="the approver you act as")
    p.add_argument("--all", action="store_true", help="list: also decided requests")
    p.add_argument("--json", action="store_true", help="list: JSON")
    p.set_defaults(func=cmd_approvals)

    p = sub.add_parser("oidc", help="single sign-on key bindings: list or revoke",
                       description="Keys bound to an IdP login (see docs/sso.md). 'revoke "
                       "USER' ends every binding of USER at once.")
    _add_config_args(p)
    p.add_argument("action", choices=["bindings", "revoke"])
    p.add_argument("user", nargs="?", help="the user (required for revoke)")
    p.add_argument("--json", action="store_true", help="bindings: JSON lines")
    p.set_defaults(func=cmd_oidc)

    p = sub.add_parser("hash-password", help="print an scrypt hash for users.NAME.password_hash "
                       "(reads the password from the terminal or one line of stdin)")
    p.set_defaults(func=cmd_hash_password)

    from gateway.rdp.cli import add_commands as add_rdp_commands
    from state.cli import add_commands as add_state_commands

    add_rdp_commands(sub, _add_config_args, _load)
    add_state_commands(sub, _add_config_args, _load)

    try:
        from recorder.cli import add_commands
    except ImportError:  # pragma: no cover - recorder CLI not installed
        pass
    else:
        from state.timeparse import parse_when

        add_commands(sub, _resolve_recorder, parse_when)
        from gateway.rdp.cli import export_rendered
        from recorder.cli import EXPORTERS

        EXPORTERS.update(mp4=export_rendered, png=export_rendered, bundle=_export_bundle)

    sessions = sub.choices.get("sessions")
    if sessions is not None:
        for action in sessions._actions:
            if isinstance(action, argparse._SubParsersAction):
                action.metavar = "{list,show,kill}"
                k = action.add_parser(
                    "kill", help="end a live session (the user sees the reason)",
                    description="Ask the running gateway to end a live session within ~2 s; "
                    "the user sees the reason; audited. --as names the auditor (a "
                    "configured approver).")
                _add_config_args(k)
                k.add_argument("id", help="session id (or a unique prefix)")
                k.add_argument("--reason", required=True, help="shown to the user")
                k.add_argument("--as", dest="as_user", required=True, metavar="USER")
                k.set_defaults(func=cmd_sessions_kill)

    p = sub.add_parser("player", help="find and replay recorded sessions (terminal UI)",
                       description="Open the player: a session list with filters and "
                       "full-text search, and a replay view (see docs/player.md).")
    _add_config_args(p)
    p.add_argument("id", nargs="?", help="open this session directly")
    p.add_argument("--as", dest="as_user", metavar="USER",
                   help="who you are: a configured approver (approves, ends sessions) "
                   "or auditor (read-only); recorded with your OS user")
    p.add_argument("--no-target-secrets", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_player)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level if args.command != "demo" else min(level, logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncssh").setLevel(logging.WARNING if args.verbose < 2 else logging.DEBUG)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
