"""The ``bastille`` command: one argparse tree.

    bastille demo | serve | config check | reload           running the gateway (serve.py)
    bastille audit | approvals | oidc | sessions kill | player | hash-password  (manage.py)
    bastille prune | hold                                    retention (retention.py)
    bastille sessions list|show, play, export, verify, status, reindex, keygen  (recorder)
    bastille rdp-file | rdp-pin | rdp-fingerprint | rdp-replay | rdp-screens    (gateway.rdp)
    bastille state migrate | status                          shared state (state.cli)

Every command that reads state takes ``-c/--config CONFIG`` or ``--data DIR``; every
command that prints a table takes ``--json``; commands that act for a person take
``--as NAME``. A mistyped command gets a suggestion; a usage error exits 2; output cut
short by a closed pipe (``bastille audit | head``) ends quietly.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, cast

from gateway._version import __version__
from gateway.cli.base import Parser, add_config_args, load, resolve_recorder

__all__ = ["build_parser", "main"]

EPILOG = """\
examples:
  bastille demo                         run a demo appliance on 127.0.0.1:2222
  ssh -p 2222 -t demo@127.0.0.1 demo    connect to it (password: demo)
  bastille config check -c /etc/bastille/bastille.toml
  bastille serve -c /etc/bastille/bastille.toml
  bastille reload -c /etc/bastille/bastille.toml
  bastille sessions list --data ~/.local/share/bastille/demo
"""


def _export_bundle(rec, output: str, args: argparse.Namespace) -> str:  # type: ignore[no-untyped-def]
    """``bastille export --format bundle`` (player.evidence, imported when used)."""
    from player.evidence import exporter

    return exporter(rec, output, args)


def build_parser() -> argparse.ArgumentParser:
    from gateway.cli import manage, retention, serve

    parser = Parser(
        prog="bastille",
        description="SSH and RDP bastion that relays, records and enforces policy.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"bastille {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("--log-format", choices=["auto", "text", "json"], default=None,
                        help="log lines as text or JSON (default: gateway.log_format, "
                        "'auto': text on a terminal, JSON otherwise)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    serve.add_commands(sub)
    manage.add_commands(sub)
    retention.add_commands(sub)

    from gateway.rdp.cli import add_commands as add_rdp_commands

    add_rdp_commands(sub, add_config_args, load)
    from state.cli import add_commands as add_state_commands

    add_state_commands(sub, add_config_args, load)

    from gateway.rdp.cli import export_rendered
    from recorder.cli import EXPORTERS
    from recorder.cli import add_commands as add_recorder_commands
    from state.timeparse import parse_when

    add_recorder_commands(cast(Any, sub), resolve_recorder, parse_when)
    EXPORTERS.update(mp4=export_rendered, png=export_rendered, bundle=_export_bundle)
    manage.add_kill(sub.choices["sessions"])
    return parser


def _quiet_pipe() -> None:
    """stdout's reader went away (``| head``): no traceback, nothing more to write."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    if args.command == "demo":
        level = min(level, logging.INFO)
    from gateway import logs

    logs.setup(level, args.log_format or "text")
    logging.getLogger("asyncssh").setLevel(logging.WARNING if args.verbose < 2 else logging.DEBUG)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_pipe()
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
