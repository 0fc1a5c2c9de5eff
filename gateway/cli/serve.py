"""``bastille serve``, ``demo``, ``config check`` and ``reload``: running the gateway."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shlex
import shutil
import signal
import sys
import time
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway._version import __version__
from gateway.cli.base import (
    add_config_args,
    add_json,
    config_path,
    fail,
    load,
    print_json,
)
from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.config import Config

log = logging.getLogger("bastille.cli")

def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.config.perms import secret_file_warnings

    config = load(args)
    warnings = [str(w) for w in secret_file_warnings(config)]
    return serve(config, log_format=args.log_format, warnings=warnings)


def serve(config: Config, banner: str | None = None, *, log_format: str | None = None,
          warnings: list[str] | None = None) -> int:
    """Run the gateway until SIGTERM/SIGINT (SIGHUP reloads). ``warnings`` (secret files
    others may read) are logged once logging is set up."""
    from gateway import logs
    from gateway.app import GatewayApp

    logs.setup(logging.getLogger().level or logging.WARNING,
               log_format or config.gateway.log_format)
    for warning in warnings or []:
        logging.getLogger("bastille.config").warning("%s", warning)

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
            await app.ops.stop()
            raise SystemExit(1) from None
        if banner:
            admin = str(app.ops.admin.port) if app.ops.admin is not None else "-"
            print(banner.replace("{port}", str(app.port)).replace("{admin}", admin),
                  flush=True)
        await app.run_started()

    from gateway import eventloop

    try:
        eventloop.run(main(), config.gateway.event_loop)
    except KeyboardInterrupt:
        pass
    return 0


# ------------------------------------------------------------------ demo

def bastille_command() -> str:
    """How to run this bastille as typed in a shell: ``bastille`` when that is what PATH
    finds, else the path of this one (``.venv/bin/bastille``), else ``python -m gateway``."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == "bastille" and argv0.exists():
        mine = argv0.resolve()
        found = shutil.which("bastille")
        if found and Path(found).resolve() == mine:
            return "bastille"
        try:
            relative = argv0.absolute().relative_to(Path.cwd())
            return shlex.quote(str(relative))
        except ValueError:
            return shlex.quote(str(argv0.absolute()))
    return f"{shlex.quote(sys.executable)} -m gateway"


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.demo import CONFIG_NAME, default_data_dir, demo_users, write_demo_config
    from gateway.ssh.keys import check_private_key

    me = bastille_command()
    if args.write_config:
        directory = Path(args.write_config)
        if (directory / CONFIG_NAME).exists() and not args.force:
            fail(f"{directory / CONFIG_NAME} exists (use --force to replace)", 1)
        path = write_demo_config(directory, args.port or 2222, overwrite=True)
        print(f"wrote {path} and the keys it needs beside it.\n"
              f"check it:  {me} config check -c {path}\n"
              f"run it:    {me} serve -c {path}")
        return 0
    directory = Path(args.data) if args.data else default_data_dir()
    existed = (directory / CONFIG_NAME).exists()
    path = write_demo_config(directory, args.port or 2222)  # never replaces an existing one
    try:
        config = load_config(path, check_key=check_private_key)
    except ConfigError as exc:
        print(f"bastille: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    note = ""
    if args.port and config.gateway.listen_port != args.port:
        note = (f"  note:           port {args.port} for this run; {path} says "
                f"{config.gateway.listen_port} and is left as it is\n")
        config = dataclasses.replace(
            config, gateway=dataclasses.replace(config.gateway, listen_port=args.port))
    elif existed:
        note = f"  note:           using the existing {path} (edit it freely)\n"
    return serve(config, _demo_banner(config, directory, path, me, note, demo_users(directory,
                                                                                    config)),
                 log_format=args.log_format or "text")


def _demo_banner(config: Config, directory: Path, path: Path, me: str, note: str,
                 users: list[tuple[str, str, str]]) -> str:
    data = shlex.quote(str(directory))
    metrics = ("http://127.0.0.1:{admin}/metrics (and /healthz, /readyz)"
               if config.admin is not None else "off (no [admin] section)")
    who = "\n".join(f"  {name:<8} password {pw:<22} {role}" for name, pw, role in users)
    auditor = any(name == "auditor" for name, _, _ in users)
    approve = (
        "Approvals (a command the policy holds, decided by another user):\n"
        "  ssh -p {port} demo@127.0.0.1 demo -- history -c            # held for approval\n"
        "  ssh -p {port} auditor@127.0.0.1 approvals list          # in another terminal\n"
        "  ssh -p {port} auditor@127.0.0.1 approvals approve ID ok\n"
        f"  {me} approvals approve ID ok --as auditor --data {data}   # or on this machine\n\n"
        if auditor else
        "(this demo directory predates the 'auditor' user: approvals need a second\n"
        f" approver in {path}, or a fresh demo with --data NEWDIR)\n\n")
    return (
        f"bastille {__version__} demo gateway listening on 127.0.0.1:{{port}}\n"
        f"  data directory: {directory}\n"
        f"  recordings:     {config.recording.file_dir}\n"
        f"  audit log:      {config.audit.file}\n"
        f"  config:         {path}\n"
        f"  metrics:        {metrics}\n{note}\n"
        f"Users (passwords are accepted from this machine only):\n{who}\n\n"
        "Connect:\n"
        "  ssh -p {port} -t demo@127.0.0.1 demo\n"
        "  ssh -p {port} demo@127.0.0.1 demo -- uptime\n"
        "  scp -P {port} FILE demo+demo@127.0.0.1:/tmp/\n\n"
        f"{approve}"
        "Then look at what was recorded:\n"
        f"  {me} sessions list --data {data}\n"
        f"  {me} play ID --data {data}\n"
        f"  {me} audit --data {data} --since 1h\n\n"
        "Ctrl-C stops the gateway."
    )


# ------------------------------------------------------------------ config check, reload

def cmd_config_check(args: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.ssh.keys import check_private_key

    try:
        config = load_config(config_path(args), check_key=check_private_key)
    except ConfigError as exc:
        return _config_problems(args, [p.__dict__ for p in exc.problems],
                                [str(p) for p in exc.problems])
    if config.state.shared:  # the shared database: reachable, with what the index needs
        from state.backend import StateBackend

        unusable = StateBackend(config.state, config.data_dir).check()
        if unusable is not None:
            problem = {"file": str(config.path), "key": "state.url", "line": None,
                       "message": unusable}
            return _config_problems(args, [problem], [f"{config.path}: state.url: {unusable}"])
    from gateway.config.perms import secret_file_warnings

    warnings = secret_file_warnings(config)
    rdp = f", RDP on {config.rdp.listen_host}:{config.rdp.listen_port}" if config.rdp else ""
    if args.json:
        print_json({"ok": True, "config": str(config.path), "users": len(config.users),
                    "targets": len(config.targets), "warnings": [str(w) for w in warnings]})
        return 0
    for warning in warnings:
        print(warning, file=sys.stderr)
    note = f"; {len(warnings)} warning(s)" if warnings else ""
    print(f"{config.path}: OK ({len(config.users)} user(s), {len(config.targets)} target(s), "
          f"listening on {config.gateway.listen_host}:{config.gateway.listen_port}{rdp}{note})")
    return 0


def _config_problems(args: argparse.Namespace, problems: list[dict[str, Any]],
                     lines: list[str]) -> int:
    """``config check`` found problems: each on stderr (or JSON), exit 1."""
    if args.json:
        print_json({"ok": False, "problems": problems})
        return 1
    for line in lines:
        print(line, file=sys.stderr)
    print(f"{len(lines)} problem(s) found", file=sys.stderr)
    return 1


def _lenient_paths(path: Path) -> tuple[Path, Path]:
    """The data directory and audit file a config names, even if the config is invalid
    (``reload`` must reach a gateway whose new config is broken, to hear it refuse)."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", 2)
    except tomllib.TOMLDecodeError as exc:
        fail(f"{path} is not valid TOML ({exc}): nothing was sent; the running gateway "
             "keeps its configuration", 1)
    base = path.resolve().parent
    gw = data.get("gateway") if isinstance(data.get("gateway"), dict) else {}
    raw = gw.get("data_dir", "data") if isinstance(gw, dict) else "data"
    data_dir = base / os.path.expanduser(str(raw))
    audit = data.get("audit") if isinstance(data.get("audit"), dict) else {}
    file = audit.get("file") if isinstance(audit, dict) else None
    return data_dir, (base / os.path.expanduser(str(file))) if file else data_dir / "audit.jsonl"


def _reload_events(audit_file: Path, since: float) -> list[dict[str, Any]]:
    from gateway.audit import read_events

    if not audit_file.exists():
        return []
    return [r for r in read_events(audit_file, since=since, kind="gateway")
            if isinstance(r.get("detail"), dict) and r["detail"].get("event") == "reload"]


def _reload_event(audit_file: Path, since: float, seen: list[dict[str, Any]]
                  ) -> dict[str, Any] | None:
    """The first reload event after ``since`` that is not one of ``seen`` (those written
    before our signal: an earlier reload's answer is never taken for this one's)."""
    for record in _reload_events(audit_file, since):
        if record not in seen:
            return record
    return None


def cmd_reload(args: argparse.Namespace) -> int:
    """Send SIGHUP to the running gateway and report what it said."""
    from recorder.status import read_status

    path = config_path(args)
    data_dir, audit_file = _lenient_paths(path)
    status, problem = read_status(data_dir)
    if status is None or problem:
        fail(f"no running gateway for {path}: {problem}", 2)
    since = time.time() - 0.5
    seen = _reload_events(audit_file, since)
    try:
        os.kill(status.pid, signal.SIGHUP)
    except OSError as exc:
        fail(f"cannot signal the gateway (pid {status.pid}): {exc.strerror}", 2)
    deadline = time.monotonic() + args.timeout
    while (record := _reload_event(audit_file, since, seen)) is None:
        if time.monotonic() > deadline:
            fail(f"the gateway (pid {status.pid}) did not report a reload within "
                 f"{args.timeout:g} s; see its log", 1)
        time.sleep(0.1)
    detail = record.get("detail") or {}
    ok = record.get("outcome") == "ok"
    if args.json:
        print_json({"ok": ok, "pid": status.pid, **detail})
        return 0 if ok else 1
    if not ok:
        print(f"bastille: the gateway (pid {status.pid}) refused {path} and keeps running "
              "its current configuration:", file=sys.stderr)
        for p in detail.get("problems", []):
            print(f"  {p}", file=sys.stderr)
        return 1
    changed = ", ".join(detail.get("changed") or []) or "nothing"
    print(f"reloaded {path} (pid {status.pid}); changed: {changed}")
    if detail.get("needs_restart"):
        print("these changes need a restart to take effect: "
              + ", ".join(detail["needs_restart"]))
    return 0


def add_commands(sub: Any) -> None:
    """serve, demo, config check, reload."""
    p = sub.add_parser("demo", help="run a demo gateway with a built-in target (no root)",
                       description="Run a demo gateway on 127.0.0.1 with users demo and "
                       "auditor and a built-in target 'demo' (a local shell), recording to "
                       "a local directory. An existing config there is used as it is.")
    p.add_argument("--port", type=int, help="listen port (default: the config's, or 2222 "
                   "for a new demo); does not change an existing config")
    p.add_argument("--data", metavar="DIR", help="demo directory (default "
                   "~/.local/share/bastille/demo)")
    p.add_argument("--write-config", metavar="DIR",
                   help="write the demo's config and keys to DIR and exit")
    p.add_argument("--force", action="store_true", help="with --write-config: replace")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("serve", help="run the gateway", description="Run the gateway until "
                       "SIGTERM/SIGINT (sessions then drain for gateway.drain_timeout); "
                       "SIGHUP reloads the configuration (see `bastille reload`).")
    add_config_args(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("config", help="configuration tools")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    c = csub.add_parser("check", help="validate a config; prints file:line: key: problem")
    add_config_args(c)
    add_json(c)
    c.set_defaults(func=cmd_config_check)

    p = sub.add_parser("reload", help="make the running gateway re-read its configuration",
                       description="Send SIGHUP to the running gateway (found through "
                       "DATA_DIR/status.json) and print what it did: the sections that "
                       "changed, or every problem of a configuration it refused (it then "
                       "keeps running the old one). Running sessions keep the policy they "
                       "started with. Exit 0 reloaded, 1 refused, 2 no gateway.")
    add_config_args(p)
    add_json(p)
    p.add_argument("--timeout", type=float, default=15.0, help="seconds to wait (15)")
    p.set_defaults(func=cmd_reload)
