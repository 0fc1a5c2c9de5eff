"""Command-line commands for recordings: sessions, play, export, verify, reindex, keygen,
and ``status`` (the recorder's health, for monitoring).

The gateway's ``bastille`` entry point calls :func:`add_commands`. Every command except
``keygen`` takes ``-c/--config`` or ``--data`` and gets its settings from ``resolve``;
``--since``/``--until`` are read with the ``parse_when`` it is given (the one time
parser, ``state.timeparse``, which this library may not import).
Exit codes: 0 success, 1 failure (bad recording, verification failed, I/O error),
2 usage error or unknown session. ``status``: 0 ok, 1 degraded, 2 failing.

Every command here only reads recordings: the storage is opened read-only (no spool
lock, no upload thread, the store's read credentials), so they work while a gateway
runs and without the store's write secret.

A session is named by its id, a unique prefix of it, or the path of a ``.bstl`` file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from common.safetext import visible
from common.table import render
from recorder import events as ev
from recorder import textmask
from recorder.errors import FormatError, RecorderError, SinkError
from recorder.index import SessionIndex, open_index
from recorder.reader import Recording
from recorder.settings import RecorderSettings
from recorder.sinks.base import Sink

Resolve = Callable[[argparse.Namespace], RecorderSettings]
#: text -> epoch seconds; raises ValueError with a message for the user
ParseWhen = Callable[[str], float]


class CliError(Exception):
    """A user-facing error with an exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class _FileSource:
    """ByteSource over a plain file (``bastille play recording.bstl``)."""

    def __init__(self, path: Path) -> None:
        self._f = open(path, "rb")  # closed with the process
        self._size = os.fstat(self._f.fileno()).st_size

    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        self._f.seek(offset)
        return self._f.read(max(0, min(length, self._size - offset)))


class _Ctx:
    def __init__(self, settings: RecorderSettings) -> None:
        self.settings = settings
        self._sink: Sink | None = None
        self._index: SessionIndex | None = None

    @property
    def sink(self) -> Sink:
        if self._sink is None:
            from recorder.sinks import open_sink

            self._sink = open_sink(self.settings, readonly=True)
        return self._sink

    @property
    def index(self) -> SessionIndex:
        if self._index is None:
            try:
                self._index = open_index(self.settings, checked=False)
            except RecorderError as exc:
                raise CliError(f"{exc} (the index is rebuilt from the recordings by "
                               "`bastille reindex`, or by the gateway at its next start)") from exc
        return self._index

    def checked_index(self) -> SessionIndex:
        """The index, a damaged file moved aside and replaced by an empty one."""
        if self._index is None:
            self._index = open_index(self.settings)
        return self._index

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
        if self._sink is not None:
            self._sink.close()

    def resolve_name(self, ident: str) -> str:
        """Sink name of a session id / unique prefix (index first, then the sink's names)."""
        row = self.index.get(ident)
        if row is not None:
            return row.name
        rows = self.index.find(ident)
        if len(rows) == 1:
            return rows[0].name
        if len(rows) > 1:
            ids = ", ".join(r.id for r in rows)
            raise CliError(f"session id prefix {ident!r} is ambiguous: {ids}", 2)
        names = [n for n in self.sink.names() if Path(n).name.startswith(ident)]
        if len(names) == 1:
            return names[0]
        if len(names) > 1:
            raise CliError(f"session id prefix {ident!r} is ambiguous", 2)
        raise CliError(f"no session {ident!r} (see `bastille sessions list`)", 2)

    def open(self, ident: str) -> Recording:
        path = Path(ident)
        try:
            if ident.endswith(".bstl") and path.is_file():
                return Recording(_FileSource(path), str(path))
            return Recording.from_sink(self.sink, self.resolve_name(ident))
        except FormatError as exc:
            raise CliError(f"{ident}: malformed recording: {exc}") from exc
        except SinkError as exc:
            raise CliError(f"{ident}: {exc}") from exc


def _fmt_time(t: float | None) -> str:
    if not t:
        return "-"
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _run(resolve: Resolve, fn: Callable[[_Ctx, argparse.Namespace], int]) -> Callable[..., int]:
    def runner(args: argparse.Namespace) -> int:
        try:
            settings = resolve(args)
        except (RecorderError, OSError, ValueError) as exc:
            print(f"bastille: error: {visible(exc)}", file=sys.stderr)
            return 2
        ctx = _Ctx(settings)
        try:
            return fn(ctx, args)
        except CliError as exc:
            print(f"bastille: error: {visible(exc)}", file=sys.stderr)
            return exc.code
        except RecorderError as exc:
            print(f"bastille: error: {visible(exc)}", file=sys.stderr)
            return 1
        except BrokenPipeError:
            return 0
        finally:
            ctx.close()

    return runner


# ---------------------------------------------------------------------- commands


def _cmd_list(ctx: _Ctx, a: argparse.Namespace) -> int:
    rows = ctx.index.list_sessions(
        user=a.user, target=a.target, since=a.since, until=a.until, text=a.text, limit=a.limit
    )
    if a.json:
        print(json.dumps([r.to_json() for r in rows], indent=2))
        return 0
    if not rows:
        print("no sessions", file=sys.stderr)
        return 0
    table = [[r.id, _fmt_time(r.start), f"{(r.end - r.start):.0f}s" if r.end else "-",
              r.user, r.target, r.kind, r.status, r.commands] for r in rows]
    lines = render(["ID", "START", "DUR", "USER", "TARGET", "KIND", "STATUS", "CMDS"], table,
                   right=(2, 7), limit={3: 24, 4: 24})
    print("\n".join(lines))
    return 0


def _cmd_show(ctx: _Ctx, a: argparse.Namespace) -> int:
    rec = ctx.open(a.id)
    h = dict(rec.header)
    if isinstance(h.get("command"), str):  # masked (recordings older than typed-line
        h["command"] = textmask.mask(h["command"])  # masking may hold secrets)
    notable: list[dict[str, Any]] = []
    for e in rec.events():
        if e.type in ev.JSON_TYPES and e.type != ev.EXIT:
            notable.append({"time": round(e.time, 3), "type": e.name,
                            **textmask.fields(e.fields())})
    info = {
        "session_id": rec.session_id,
        "name": rec.name,
        "status": rec.status,
        "header": h,
        "duration": rec.duration,
        "trailer": {k: v for k, v in (rec.trailer or {}).items() if k != "parts"},
        "signed": rec.signature is not None,
        "signature": rec.signature,
        "problems": rec.problems,
        "events": notable,
    }
    if a.json:  # ASCII-escaped: no control or bidi character reaches a terminal
        print(json.dumps(info, indent=2))
        return 0 if rec.status in ("ended", "recovered") else 1
    v = visible
    print(f"session   {v(rec.session_id)}")
    print(
        f"user      {v(h.get('user'))}  ->  target {v(h.get('target'))} "
        f"({v(h.get('protocol'))}, {v(h.get('kind'))})"
    )
    print(f"client    {v(h.get('client_addr'))}")
    print(f"started   {_fmt_time(rec.start_time)}   duration {rec.duration:.1f}s")
    if h.get("command"):
        print(f"command   {v(h.get('command'))}")
    tr = rec.trailer or {}
    print(
        f"status    {rec.status}   exit {v(tr.get('exit_status', '-'))}   "
        f"signed {'yes' if rec.signature else 'no'}   stored as {v(rec.name)}"
    )
    for p in rec.problems:
        print(f"problem   {v(p)}")
    for item in notable:
        t, typ = item.pop("time"), item.pop("type")
        key = next((k for k in ("text", "command", "path", "kind") if item.get(k)), "")
        text = str(item.get(key, "")) if key else ""
        extra = {k: val for k, val in item.items() if k != key and val not in (None, "")}
        print(f"  {t:9.3f}s  {v(typ):13} {v(text)}  {json.dumps(extra)}")
    return 0 if rec.status in ("ended", "recovered") else 1


def _cmd_play(ctx: _Ctx, a: argparse.Namespace) -> int:
    from recorder.replay import play

    rec = ctx.open(a.id)
    speed = 0.0 if a.no_wait else a.speed
    play(rec, sys.stdout.buffer, speed=speed, max_idle=a.max_idle, raw=a.raw)
    for p in rec.problems:
        print(f"\r\nbastille: warning: {visible(p)}", file=sys.stderr)
    return 0


# Formats other than asciicast, contributed by the application (the gateway registers RDP
# video and frames here: rendering needs pyrdp, which the recorder never imports).
# exporter(recording, output path, args) -> a one-line summary; raises ValueError/OSError.
EXPORTERS: dict[str, Callable[[Any, str, argparse.Namespace], str]] = {}


def _cmd_export(ctx: _Ctx, a: argparse.Namespace) -> int:
    from recorder.export import export_asciicast

    rec = ctx.open(a.id)
    if a.format != "asciicast":
        exporter = EXPORTERS.get(a.format)
        if exporter is None:
            if a.format == "bundle":
                raise CliError("--format bundle needs the player package (not installed)")
            raise CliError(f"--format {a.format} renders RDP sessions; it needs the "
                           "bastille[rdp] extra (pyrdp)")
        if a.output == "-":
            raise CliError(f"--format {a.format} writes a file: give -o FILE")
        a.recorder_settings = ctx.settings  # exporters that need the data directory
        try:
            print(exporter(rec, a.output, a), file=sys.stderr)
        except (OSError, ValueError) as exc:
            raise CliError(str(exc)) from exc
        return 0
    version = a.asciicast_version or 2
    if a.output == "-":
        n = export_asciicast(rec, sys.stdout, include_input=a.input, version=version)
    else:
        tmp = Path(a.output + ".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                n = export_asciicast(rec, f, include_input=a.input, version=version)
            os.replace(tmp, a.output)
        except OSError as exc:
            raise CliError(f"cannot write {a.output}: {exc.strerror}") from exc
        print(f"wrote {n} events to {a.output}", file=sys.stderr)
    for p in rec.problems:
        print(f"bastille: warning: {visible(p)}", file=sys.stderr)
    return 0


def _cmd_verify_bundle(a: argparse.Namespace, settings: RecorderSettings | None) -> int:
    """``verify --bundle FILE``: no configuration needed (``--public-key`` to trust)."""
    from recorder.bundle import verify_bundle
    from recorder.signing import load_public_key

    keys = list(a.public_key or [])
    if not keys and settings is not None and settings.signing_key is not None:
        keys = [settings.signing_key, *settings.trusted_keys]
    try:
        trusted = [load_public_key(Path(k)) for k in keys] if keys else None
    except RecorderError as exc:
        print(f"bastille: error: {visible(exc)}", file=sys.stderr)
        return 2
    rep = verify_bundle(Path(a.bundle), trusted=trusted)
    if a.json:
        print(json.dumps(rep.to_json(), indent=2))
    else:
        for ok, message in rep.checks:
            print(f"{'OK  ' if ok else 'FAIL'} {visible(message)}")
        verdict = "verified" if rep.ok else "FAILED"
        who = "" if rep.trusted_key or not rep.signed else \
            " (by the key in the bundle: compare its fingerprint)"
        print(f"bundle {visible(a.bundle)}: {verdict}{who}", file=sys.stderr)
    return 0 if rep.ok else 1


def _verify_runner(resolve: Resolve) -> Callable[[argparse.Namespace], int]:
    run = _run(resolve, _cmd_verify)

    def runner(args: argparse.Namespace) -> int:
        if args.bundle and not (args.config or args.data):
            return _cmd_verify_bundle(args, None)  # for someone without the appliance
        return run(args)

    return runner


def _verify_keys(ctx: _Ctx, a: argparse.Namespace) -> tuple[list[bytes] | None, bool]:
    """Trusted keys and whether a signature is required: with a configured signing key
    (or ``--public-key``), every recording must be signed by one of them."""
    from recorder.signing import load_public_key

    keys = list(a.public_key or [])
    if not keys and ctx.settings.signing_key is not None:
        keys = [ctx.settings.signing_key, *ctx.settings.trusted_keys]  # old keys still verify
    if not keys:
        return None, a.require_signature
    trusted = [load_public_key(Path(k)) for k in keys]
    return trusted, a.require_signature or not a.allow_unsigned


def _verify_row(ctx: _Ctx, row: Any, names: set[str] | None, trusted: list[bytes] | None,
                require: bool) -> Any:
    """Verify the recording of one indexed session and bind it to the index's row."""
    from recorder.verify import Expected, VerifyReport, check_binding, verify_recording

    live_note = "still being recorded; it is verified once it ends"
    if row.status == "pruned":
        return VerifyReport(row.name, row.id, "pruned", True, "deleted by retention "
                            "(bastille prune; see the audit trail)")
    exists = row.name in names if names is not None else _exists(ctx.sink, row.name)
    if not exists:
        if row.status == "live":
            return VerifyReport(row.name, row.id, "live", True, live_note)
        return VerifyReport(row.name, row.id, "missing", False,
                            f"the index lists this session but its recording {row.name} is "
                            "not in storage (deleted, or storage was emptied)")
    rep = verify_recording(ctx.sink, row.name, trusted=trusted, require_signature=require)
    if row.status == "live" and rep.status == "truncated":
        return VerifyReport(row.name, row.id, "live", True, live_note, header=rep.header)
    expected = Expected(row.id, row.user, row.target, row.start, row.name)
    return check_binding(rep, expected)


def _exists(sink: Sink, name: str) -> bool:
    try:
        sink.size(name)
    except SinkError:
        return False
    return True


def _resolve_row(ctx: _Ctx, ident: str) -> Any:
    row = ctx.index.get(ident)
    if row is not None:
        return row
    rows = ctx.index.find(ident)
    if len(rows) > 1:
        ids = ", ".join(r.id for r in rows)
        raise CliError(f"session id prefix {ident!r} is ambiguous: {ids}", 2)
    return rows[0] if rows else None


def _cmd_verify(ctx: _Ctx, a: argparse.Namespace) -> int:
    from recorder.verify import VerifyReport, verify_recording, verify_source

    if a.bundle:
        return _cmd_verify_bundle(a, ctx.settings)
    trusted, require = _verify_keys(ctx, a)
    reports: list[VerifyReport] = []
    if a.all:
        names = set(ctx.sink.names())
        rows = ctx.index.all_sessions()
        for row in rows:
            reports.append(_verify_row(ctx, row, names, trusted, require))
        for name in sorted(names - {r.name for r in rows}):
            rep = verify_recording(ctx.sink, name, trusted=trusted, require_signature=require)
            reports.append(rep)
    elif a.id:
        ident = a.id
        if ident.endswith(".bstl") and Path(ident).is_file():
            src = _FileSource(Path(ident))
            reports.append(verify_source(src, ident, trusted=trusted, require_signature=require))
        elif (row := _resolve_row(ctx, ident)) is not None:
            reports.append(_verify_row(ctx, row, None, trusted, require))
        else:
            name = ctx.resolve_name(ident)
            rep = verify_recording(ctx.sink, name, trusted=trusted, require_signature=require)
            reports.append(rep)
    else:
        raise CliError("give a session id or --all", 2)
    # recordings the storage confirmed once and no longer has (the upload ledger), not
    # already reported through the index
    lost = ctx.sink.lost() if a.all else []
    ledger = {x.name: x.describe() for x in lost}
    reports = [replace(r, message=ledger[r.name]) if r.status == "missing" and r.name in ledger
               else r for r in reports]
    reported = {r.name for r in reports if r.status == "missing"}
    lost = [x for x in lost if x.name not in reported]
    if a.json:
        out = [r.to_json() for r in reports]
        out += [{"name": x.name, "session_id": None, "ok": False, "status": "missing",
                 "message": x.describe(), "first_bad_chunk": None} for x in lost]
        print(json.dumps(out, indent=2))
    else:
        for r in reports:
            label = visible(r.session_id or r.name)
            where = ""
            if r.first_bad_chunk is not None:
                where = f" (first bad chunk: {r.first_bad_chunk})"
            mark = "LIVE" if r.live else "OK  " if r.ok else "FAIL"
            print(f"{mark} {label}: {r.status}: {visible(r.message)}{where}")
        for x in lost:
            print(f"FAIL {visible(x.name)}: missing: {visible(x.describe())}")
        if a.all:
            bad = sum(not r.ok for r in reports) + len(lost)
            live = sum(r.live for r in reports)
            done = len(reports) + len(lost) - live
            print(f"{done} recordings, {bad} failed; {live} live (not verified yet)",
                  file=sys.stderr)
    return 0 if all(r.ok for r in reports) and not lost else 1


def _cmd_reindex(ctx: _Ctx, a: argparse.Namespace) -> int:
    from recorder.postprocess import reindex

    def progress(name: str, status: str) -> None:
        if a.verbose:
            print(f"{name}: {status}", file=sys.stderr)

    index = ctx.checked_index()
    if index.recreated is not None:
        print(f"bastille: the index was damaged; moved aside as {index.recreated}",
              file=sys.stderr)
    count, problems = reindex(
        ctx.settings, ctx.sink, index, screen=not a.no_screen, progress=progress
    )
    for p in problems:
        print(f"bastille: warning: {visible(p)}", file=sys.stderr)
    print(f"indexed {count} recordings into {getattr(index, 'path', None) or 'the shared index'}")
    return 0


def _cmd_status(ctx: _Ctx, a: argparse.Namespace) -> int:
    from recorder.status import RANK, read_status, render_status

    status, why = read_status(ctx.settings.data_dir)
    try:
        local = ctx.sink.status()  # what this process sees on disk (the spool)
    except (RecorderError, OSError) as exc:
        local = None
        why = why or f"cannot read the storage: {exc}"
    state, lines = render_status(status, why, local)
    if a.json:
        body = status.to_json() if status is not None else {}
        body.update({"state": state, "problem": why or None,
                     "local": local.to_json() if local is not None else None})
        print(json.dumps(body, indent=2))
    else:
        for line in lines:
            print(line)
    return RANK.get(state, 2)


def _cmd_keygen(a: argparse.Namespace) -> int:
    from recorder.signing import generate

    try:
        key, pub = generate(Path(a.output))
    except RecorderError as exc:
        print(f"bastille: error: {visible(exc)}", file=sys.stderr)
        return 1
    print(f"wrote private key {key} (mode 0600) and public key {pub}")
    print(f'set recorder signing_key = "{key}"; verify with --public-key {pub}')
    return 0


# ---------------------------------------------------------------------- parser


def _common(p: argparse.ArgumentParser) -> None:
    """The same options as every other command: -c/--config CONFIG or --data DIR."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("-c", "--config", metavar="CONFIG", help="config file (TOML)")
    g.add_argument("--data", metavar="DIR", help="data directory (e.g. of `bastille demo`)")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], resolve: Resolve,
                 parse_when: ParseWhen) -> None:
    """Register the recording commands on the ``bastille`` sub-parser collection."""
    fmt = argparse.RawDescriptionHelpFormatter

    def _when(text: str) -> float:
        try:
            return parse_when(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    sessions = sub.add_parser("sessions", help="list and inspect recorded sessions")
    ssub = sessions.add_subparsers(dest="sessions_command", metavar="{list,show}")
    ssub.required = True
    p = ssub.add_parser(
        "list",
        help="list sessions (newest first)",
        formatter_class=fmt,
        description="List recorded sessions, newest first, filtered by any combination.",
        epilog="examples:\n  bastille sessions list --user alice --since 2h\n"
        "  bastille sessions list --text 'rm -rf' --json",
    )
    _common(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--user", help="only sessions of this user")
    p.add_argument("--target", help="only sessions to this target")
    p.add_argument(
        "--since",
        type=_when,
        metavar="WHEN",
        help="started at or after WHEN: ISO date/time or age like 30m, 2h, 3d",
    )
    p.add_argument("--until", type=_when, metavar="WHEN", help="started before WHEN")
    p.add_argument(
        "--text",
        metavar="QUERY",
        help="a command or screen text containing QUERY (case-insensitive)",
    )
    p.add_argument("--limit", type=int, default=200, help="at most this many (default 200)")
    p.set_defaults(func=_run(resolve, _cmd_list))

    p = ssub.add_parser("show", help="show one session: header, status, commands, events")
    _common(p)
    p.add_argument("id", help="session id, unique prefix, or .bstl file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run(resolve, _cmd_show))

    p = sub.add_parser(
        "play",
        help="replay a session in this terminal",
        description="Write a session's output to this terminal with its timing.",
    )
    _common(p)
    p.add_argument("id", help="session id, unique prefix, or .bstl file")
    p.add_argument("--speed", type=float, default=1.0, help="speed factor (0 = no delays)")
    p.add_argument("--no-wait", action="store_true", help="no delays at all")
    p.add_argument(
        "--max-idle",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="cap idle pauses at this many seconds (default 2)",
    )
    p.add_argument(
        "--raw",
        action="store_true",
        help="write the recorded bytes exactly (for a file or pipe); by default window "
        "titles, clipboard writes, report requests and mouse/keyboard modes the target sent "
        "are dropped so that they never reach your terminal (colours are kept)",
    )
    p.set_defaults(func=_run(resolve, _cmd_play))

    p = sub.add_parser(
        "export",
        help="export a session (asciicast, an evidence bundle; RDP: mp4 video or a png frame)",
        description="Export a terminal session as asciicast for asciinema (output is "
        "decoded as UTF-8; invalid bytes become U+FFFD), an evidence bundle (--format "
        "bundle: recording, signature, public key, timeline and reviews as JSON, "
        "asciicast v3, README; signed; check it with `bastille verify --bundle FILE`), or "
        "an RDP session as an MP4 video or one PNG frame (--at SECONDS), rendered "
        "offscreen; mp4/png need the bastille[rdp-video] extra (PySide6, av).",
    )
    _common(p)
    p.add_argument("id", help="session id, unique prefix, or .bstl file")
    p.add_argument("--format", choices=["asciicast", "bundle", "mp4", "png"],
                   default="asciicast")
    p.add_argument("--asciicast-version", type=int, choices=[2, 3], metavar="{2,3}",
                   help="asciicast version (default: 2 for --format asciicast, 3 in a bundle)")
    p.add_argument("--at", type=float, metavar="SECONDS", help="png: seconds into the session")
    p.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="output file, - for stdout"
    )
    p.add_argument("--input", action="store_true", help="include keyboard input ('i' events)")
    p.set_defaults(func=_run(resolve, _cmd_export))

    p = sub.add_parser(
        "verify",
        help="check hash chains, signatures and that each recording is its session's",
        description="Verify recordings: hash chain (names the first bad chunk), trailer, "
        "the Ed25519 signature against the configured or given public key (required when "
        "a key is configured), and that each recording is the one of the session the "
        "index lists under its id (same id, user, target, start). --all also fails for "
        "indexed sessions whose recording is gone, and lists live sessions apart. "
        "Exit 0 only if every finished recording passed.",
    )
    _common(p)
    p.add_argument("id", nargs="?", help="session id, unique prefix, or .bstl file")
    p.add_argument("--all", action="store_true", help="every stored recording")
    p.add_argument("--bundle", metavar="FILE", help="an evidence bundle (bastille export "
                   "--format bundle); needs no configuration, give --public-key to trust")
    p.add_argument(
        "--public-key",
        action="append",
        metavar="PEM",
        help="trusted public key (repeatable; default: the configured signing key)",
    )
    p.add_argument(
        "--require-signature",
        action="store_true",
        help="treat unsigned recordings as failures (the default when a key is configured)",
    )
    p.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="accept unsigned recordings even with a configured key (e.g. ones recorded "
        "before a key was configured)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_verify_runner(resolve))

    p = sub.add_parser(
        "status",
        help="health of recording and storage (exit 0 ok, 1 degraded, 2 failing)",
        formatter_class=fmt,
        description="What the running gateway reports about recording storage: state, "
        "spool bytes and oldest entry, uploads pending, paused sessions, last error. "
        "For monitoring: exit 0 ok, 1 degraded (working around a problem, nothing "
        "lost), 2 failing (an administrator must act, or no gateway is running).",
        epilog="example:\n  bastille status -c /etc/bastille/bastille.toml || alert",
    )
    _common(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run(resolve, _cmd_status))

    p = sub.add_parser("reindex", help="rebuild the session index from the recordings")
    _common(p)
    p.add_argument("--no-screen", action="store_true", help="skip screen text and keyframes (fast)")
    p.add_argument("-v", "--verbose", action="store_true", help="print each recording")
    p.set_defaults(func=_run(resolve, _cmd_reindex))

    p = sub.add_parser(
        "keygen",
        help="create an Ed25519 key for signing recordings",
        description="Write an Ed25519 private key (PEM PKCS8, mode 0600) to FILE and its "
        "public key to FILE.pub. Same as: openssl genpkey -algorithm ed25519 -out FILE",
    )
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p.set_defaults(func=_cmd_keygen)
