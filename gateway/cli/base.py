"""What every ``bastille`` command shares: the parser (did-you-mean on a mistyped
command, exit 2 on usage errors), the options (``-c/--config``, ``--data``, ``--json``,
``--as``), finding and loading the configuration, and printing tables and JSON."""

from __future__ import annotations

import argparse
import difflib
import getpass
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from common.table import render
from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.config import Config
    from recorder.settings import RecorderSettings
    from state.backend import StateBackend

_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")


class Parser(argparse.ArgumentParser):
    """argparse with a suggestion for a mistyped command or choice:
    ``bastille sesions list`` -> ``invalid choice: 'sesions' (did you mean 'sessions'?)``.
    Usage errors exit with status 2 (argparse's convention), after the usage line."""

    def error(self, message: str) -> NoReturn:
        m = _INVALID_CHOICE.search(message)
        if m:
            choices = re.findall(r"'([^']*)'", m.group(2))
            close = difflib.get_close_matches(m.group(1), choices, n=1, cutoff=0.6)
            if close:
                message = f"invalid choice: {m.group(1)!r} (did you mean {close[0]!r}?)"
            else:
                message = f"invalid choice: {m.group(1)!r} (choose from {', '.join(choices)})"
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_config_args(p: argparse.ArgumentParser) -> None:
    """``-c/--config CONFIG`` or ``--data DIR`` (a ``bastille demo`` directory)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("-c", "--config", metavar="CONFIG", help="config file (TOML); default "
                   "$BASTILLE_CONFIG, /etc/bastille/bastille.toml, or the demo's")
    g.add_argument("--data", metavar="DIR", help="a `bastille demo` directory instead of -c")


def add_json(p: argparse.ArgumentParser, what: str = "machine-readable output") -> None:
    p.add_argument("--json", action="store_true", help=what)


def add_as(p: argparse.ArgumentParser, *, required: bool, what: str) -> None:
    p.add_argument("--as", dest="as_user", metavar="NAME", required=required, help=what)


def fail(message: str, code: int = 2) -> NoReturn:
    """A short ``bastille: ...`` line on stderr and the exit status."""
    print(f"bastille: {message}", file=sys.stderr)
    raise SystemExit(code)


def config_path(args: argparse.Namespace) -> Path:
    if getattr(args, "config", None):
        return Path(args.config)
    from gateway.demo import CONFIG_NAME, default_data_dir

    data = getattr(args, "data", None)
    if data:
        candidate = Path(data) / CONFIG_NAME
        if candidate.exists():
            return candidate
        fail(f"no {CONFIG_NAME} in {data} (is it a demo directory?)")
    env = os.environ.get("BASTILLE_CONFIG")
    if env:
        return Path(env)
    default = Path("/etc/bastille/bastille.toml")
    if default.exists():
        return default
    demo = default_data_dir() / CONFIG_NAME
    if demo.exists():
        return demo
    fail("no config: pass -c CONFIG (or --data DIR for a demo directory)")


def load(args: argparse.Namespace, *, secrets: bool = True) -> Config:
    """The configuration, or exit 2 listing every problem. ``secrets=False`` for tools
    that never log into a target (they start without the target secrets' variables)."""
    from gateway.config import load_config
    from gateway.ssh.keys import check_private_key

    secrets = secrets and not getattr(args, "no_target_secrets", False)
    try:
        return load_config(config_path(args), check_key=check_private_key, secrets=secrets)
    except ConfigError as exc:
        print(f"bastille: invalid configuration:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None


def load_reading(args: argparse.Namespace) -> Config:
    """The configuration for a tool that reads state only (no secret needs to be set)."""
    from gateway.config import load_config

    try:
        return load_config(config_path(args), reading=True, secrets=False)
    except ConfigError as exc:
        print(f"bastille: invalid configuration:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None


def resolve_recorder(args: argparse.Namespace) -> RecorderSettings:
    """Recorder settings from -c CONFIG, from a demo directory, or from a bare data dir
    (no target secrets needed); registers the text masker the recorder's tools use
    (``sessions show``, ``reindex``: command lines stored before masking)."""
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
                fail(f"{directory} is not a directory")
            textmask.register(maskers_for(PolicySettings()).text_for(None))
            return RecorderSettings(data_dir=directory)
    config = load_reading(args)
    textmask.register(maskers_for(config.policy).text_for(targets=config.targets.values()))
    return config.recording


def state_backend(config: Config) -> StateBackend:
    """The stores of ``config``: SQLite files in the data directory, or the shared
    PostgreSQL database (``[state] url``)."""
    from state.backend import StateBackend

    return StateBackend(config.state, config.data_dir)


def who(args: argparse.Namespace) -> str:
    """Who runs the command, for the audit trail: ``--as`` or the login name."""
    name = getattr(args, "as_user", None)
    if name:
        return str(name)
    return os.environ.get("SUDO_USER") or getpass.getuser()


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]], *,
                right: Iterable[int] = (), limit: dict[int, int] | None = None,
                empty: str = "") -> None:
    lines = render(headers, list(rows), right=right, limit=limit)
    if len(lines) == 1 and empty:
        print(empty, file=sys.stderr)
        return
    print("\n".join(lines))


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=True, default=str))
