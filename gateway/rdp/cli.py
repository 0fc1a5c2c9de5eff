"""``bastille rdp-file``, ``bastille rdp-pin``, ``bastille rdp-fingerprint`` (no pyrdp needed)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.audit import AuditEvent, Kind
from gateway.core.access import Access, Principal, principal_for
from gateway.operator import emit_once


def rdp_file_text(address: str, username: str, token: str) -> str:
    """An ``.rdp`` file that makes mstsc/xfreerdp send ``token`` as the routing token."""
    lines = [
        f"full address:s:{address}",
        f"username:s:{username}",
        f"loadbalanceinfo:s:{token}",
        "prompt for credentials:i:1",
        "authentication level:i:2",
        "enablecredsspsupport:i:0",
        "negotiate security layer:i:1",
        "redirectclipboard:i:1",
        "redirectdrives:i:0",
        "screen mode id:i:1",
    ]
    return "\r\n".join(lines) + "\r\n"


def _address(config: Any) -> str:
    rdp = config.rdp
    if rdp.public_address:
        return str(rdp.public_address)
    host = rdp.listen_host if rdp.listen_host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    return f"{host}:{rdp.listen_port}"


def _may_use(config: Any, principal: Principal, target: Any) -> bool:
    """The one access check, with the appliance's grants."""
    from state.backend import StateBackend

    grants = StateBackend(config.state, config.data_dir).approvals()
    try:
        return Access(config, grants).permits(principal, target)
    finally:
        grants.close()


def cmd_rdp_file(args: argparse.Namespace, load: Callable[[argparse.Namespace], Any]) -> int:
    from state.backend import StateBackend

    config = load(args)
    if config.rdp is None:
        print("bastille: no [rdp] section in the config", file=sys.stderr)
        return 2
    target = config.targets.get(args.target)
    principal = principal_for(config, args.user)
    if principal is None:
        print(f"bastille: unknown user {args.user!r}", file=sys.stderr)
        return 1
    if target is None or target.protocol != "rdp":
        print(f"bastille: unknown RDP target {args.target!r}", file=sys.stderr)
        return 1
    if not _may_use(config, principal, target):
        print(f"bastille: {args.user} may not use target {args.target!r}", file=sys.stderr)
        return 1
    ttl = float(args.ttl) if args.ttl else config.rdp.token_ttl
    store = StateBackend(config.state, config.data_dir).tokens()
    try:
        token = store.issue_token(args.user, args.target, ttl)
    finally:
        store.close()
    text = rdp_file_text(_address(config), args.user, token)
    out = Path(args.output or f"{args.user}-{args.target}.rdp")
    if str(out) == "-":
        sys.stdout.write(text)
    else:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", newline="") as fh:
            fh.write(text)
        print(f"{out}: valid once, for {ttl:.0f} s (routing token for {args.user} -> "
              f"{args.target})")
    emit_once(config, AuditEvent(Kind.GATEWAY, "ok", user=args.user, target=args.target,
                                 detail={"event": "rdp token issued", "ttl": ttl}))
    return 0


def cmd_rdp_pin(args: argparse.Namespace, load: Callable[[argparse.Namespace], Any]) -> int:
    from state.backend import StateBackend

    config = load(args)
    if config.rdp is None or args.user not in config.users:
        print("bastille: no [rdp] section or unknown user", file=sys.stderr)
        return 2
    ttl = float(args.ttl) if args.ttl else config.rdp.token_ttl
    store = StateBackend(config.state, config.data_dir).tokens()
    try:
        pin = store.issue_pin(args.user, ttl)
    finally:
        store.close()
    print(pin)
    emit_once(config, AuditEvent(Kind.GATEWAY, "ok", user=args.user,
                                 detail={"event": "rdp pin issued", "ttl": ttl}))
    return 0


def rdp_login_text(config: Any, access: Access, principal: Principal, args: str, source: str,
                   audit: Callable[[Any], None]) -> str:
    """``ssh USER@BASTION rdp [TARGET]``: a one-time PIN for an RDP login, for the user
    who just authenticated over SSH (with a key, a password or single sign-on).

    Users known only to the IdP have no bastion password: this PIN is how they log in
    over RDP. It carries the groups of this SSH login (the IdP's, for SSO), works once,
    for this user only, until ``rdp.token_ttl``. Never logged; audited as issued.
    """
    from state.backend import StateBackend

    if config.rdp is None:
        return "bastille: RDP is not enabled on this bastion"
    words = args.split()
    allowed = sorted(t.name for t in access.targets_for(principal, "rdp"))
    if len(words) > 1 or (words and words[0] not in allowed):
        wanted = words[0] if words else ""
        return (f"bastille: {wanted!r} is not an RDP target you may use; yours: "
                f"{', '.join(allowed) or '(none)'}\nusage: rdp [TARGET]")
    if not allowed:
        return "bastille: no RDP target is available to you"
    ttl = config.rdp.token_ttl
    name, sso = principal.name, principal.sso
    store = StateBackend(config.state, config.data_dir).tokens()
    try:
        pin = store.issue_sso_pin(name, principal.groups, ttl) if sso else \
            store.issue_pin(name, ttl)
    finally:
        store.close()
    audit(AuditEvent(Kind.GATEWAY, "ok", user=name, source=source,
                     detail={"event": "rdp pin issued", "ttl": ttl, "sso": sso}))
    target = words[0] if words else allowed[0]
    minutes = max(1, round(ttl / 60))
    return "\n".join([
        f"One-time RDP login for {name} (works once, for {minutes} min):",
        f"  server:    {_address(config)}",
        f"  user name: {name}#{target}",
        f"  password:  {pin}",
        f"RDP targets you may use: {', '.join(allowed)}",
    ])


def cmd_rdp_fingerprint(args: argparse.Namespace) -> int:
    from gateway.rdp.tls import fetch_fingerprint

    host, _, port = args.address.rpartition(":")
    if not host:
        host, port = args.address, "3389"
    try:
        print(fetch_fingerprint(host.strip("[]"), int(port)))
    except (OSError, ValueError) as exc:
        print(f"bastille: {args.address}: {exc}", file=sys.stderr)
        return 1
    return 0


def replay_bytes(recording: Any) -> bytes:
    """The pyrdp replay stream of a recording (its ``rdp`` events, concatenated)."""
    from recorder import events as ev

    return b"".join(e.data for e in recording.events([ev.RDP]))


def export_rendered(recording: Any, output: str, args: argparse.Namespace) -> str:
    """``bastille export ID --format mp4|png``: render an RDP recording offscreen."""
    from gateway.rdp.render import RenderUnavailable, render_mp4, render_png

    data = replay_bytes(recording)
    if not data:
        raise ValueError("this session has no RDP screen stream (not an RDP session?)")
    out = Path(output)
    try:
        if args.format == "mp4":
            return f"{out}: {render_mp4(data, out)} replay events rendered"
        at = getattr(args, "at", None)
        return f"{out}: the screen at {render_png(data, out, at=at):.1f} s"
    except RenderUnavailable as exc:
        raise ValueError(str(exc)) from None


def cmd_rdp_replay(args: argparse.Namespace, load: Callable[[argparse.Namespace], Any]) -> int:
    from recorder.index import open_index
    from recorder.reader import Recording
    from recorder.service import open_sink

    config = load(args)
    index = open_index(config.recording, checked=False)
    try:
        rows = index.find(args.id)
    finally:
        index.close()
    if len(rows) != 1:
        print(f"bastille: {'no' if not rows else 'more than one'} session matches {args.id!r}",
              file=sys.stderr)
        return 1
    row = rows[0]
    if row.protocol != "rdp":
        print(f"bastille: session {row.id} is not an RDP session", file=sys.stderr)
        return 1
    sink = open_sink(config.recording)
    try:
        data = replay_bytes(Recording.from_sink(sink, row.name))
    finally:
        sink.close()
    fmt = args.format
    out = Path(args.output or f"{row.id}.{fmt}")
    if fmt == "pyrdp":
        out.write_bytes(data)
        print(f"{out}: {len(data)} bytes (open with pyrdp-player, or pyrdp-convert -f mp4)")
        return 0
    from gateway.rdp.render import RenderUnavailable, render_mp4, render_png

    try:
        if fmt == "mp4":
            events = render_mp4(data, out)
            print(f"{out}: {events} replay events rendered")
        else:
            shown = render_png(data, out, at=args.at)
            print(f"{out}: the screen at {shown:.1f} s")
    except RenderUnavailable as exc:
        print(f"bastille: {exc}", file=sys.stderr)
        return 3
    except (OSError, ValueError) as exc:
        print(f"bastille: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_rdp_screens(args: argparse.Namespace, load: Callable[[argparse.Namespace], Any]) -> int:
    """``bastille rdp-screens``: the screen pass (frames, OCR, index) of RDP sessions."""
    from gateway.errors import RenderUnavailable
    from gateway.rdp import screens
    from recorder.errors import FormatError, RecorderError
    from recorder.index import open_index

    config = load(args)
    settings = config.recording
    ids = list(args.ids)
    if args.missing:
        index = open_index(settings, checked=False)  # the SQLite file or the shared index
        try:
            rows = [r for r in index.all_sessions() if r.protocol == "rdp" and
                    r.status != "live"]
        finally:
            index.close()
        from recorder.frames import cache_path

        ids += [r.id for r in rows if not cache_path(settings.data_dir, r.id).exists()]
    if not ids:
        print("bastille: no session to draw (name sessions, or --missing)", file=sys.stderr)
        return 2 if not args.missing else 0
    rdp = config.rdp
    opts = screens.PassOptions(
        ocr=(rdp.ocr if rdp is not None else True) and not args.no_ocr,
        budget=args.budget or (rdp.ocr_budget if rdp is not None else 120.0),
        per_minute=rdp.ocr_per_minute if rdp is not None else 6)
    audit = screens.auditor(config)
    failed = 0
    for sid in ids:
        try:
            if args.index_only:
                count = screens.restore_index(settings, sid)
                print(f"{sid}: {count} lines of screen text put back into the index")
                continue
            print(screens.summary(screens.run_pass(settings, sid, opts, audit)))
        except RenderUnavailable as exc:
            print(f"bastille: {exc}", file=sys.stderr)
            return 3
        except (RecorderError, FormatError, OSError) as exc:
            print(f"bastille: {sid}: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def add_commands(sub: Any, add_config_args: Callable[[argparse.ArgumentParser], None],
                 load: Callable[[argparse.Namespace], Any]) -> None:
    """Register the RDP subcommands on the ``bastille`` parser."""
    p = sub.add_parser("rdp-file", help="write an .rdp file with a one-time routing token",
                       description="Write USER-TARGET.rdp: an RDP client opening it reaches "
                       "TARGET through the bastion (the token works once, until it expires; "
                       "the user still logs in with the bastion password or a PIN).")
    add_config_args(p)
    p.add_argument("user")
    p.add_argument("target")
    p.add_argument("-o", "--output", help="file to write ('-' for stdout)")
    p.add_argument("--ttl", help="seconds the token is valid (default rdp.token_ttl)")
    p.set_defaults(func=lambda a: cmd_rdp_file(a, load))

    p = sub.add_parser("rdp-pin", help="print a one-time PIN a user may type instead of "
                       "the bastion password (RDP)")
    add_config_args(p)
    p.add_argument("user")
    p.add_argument("--ttl", help="seconds the PIN is valid (default rdp.token_ttl)")
    p.set_defaults(func=lambda a: cmd_rdp_pin(a, load))

    p = sub.add_parser("rdp-replay", help="export an RDP session: pyrdp replay, MP4 video "
                       "or PNG frame",
                       description="Write the session's screen stream as a .pyrdp replay "
                       "(for pyrdp-player), an MP4 video, or one PNG frame (--at SECONDS, "
                       "default the end). Video and frames are rendered offscreen and need "
                       "the bastille[rdp-video] extra (PySide6, av).")
    add_config_args(p)
    p.add_argument("id", help="session id (or a unique prefix)")
    p.add_argument("--format", choices=["pyrdp", "mp4", "png"], default="pyrdp")
    p.add_argument("--at", type=float, help="png: seconds into the session")
    p.add_argument("-o", "--output", help="file to write (default ID.FORMAT)")
    p.set_defaults(func=lambda a: cmd_rdp_replay(a, load))

    p = sub.add_parser("rdp-screens", help="draw RDP sessions' desktops for the player and "
                       "index the text on their screens (OCR)",
                       description="Run the screen pass the RDP workers run when a session "
                       "ends: frames for the player (DATA_DIR/frames/) and, with [rdp] ocr, "
                       "the screen text in the session index (see docs/rdp.md). Niced; "
                       "bounded by [rdp] ocr_budget CPU seconds per session.")
    add_config_args(p)
    p.add_argument("ids", nargs="*", metavar="ID", help="session ids (or unique prefixes)")
    p.add_argument("--missing", action="store_true",
                   help="every ended RDP session that has no frames yet")
    p.add_argument("--no-ocr", action="store_true", help="frames only, no screen text")
    p.add_argument("--index-only", action="store_true",
                   help="put the screen text already read back into the index (after "
                   "`bastille reindex`), drawing nothing")
    p.add_argument("--budget", type=float, help="CPU seconds per session "
                   "(default [rdp] ocr_budget)")
    p.set_defaults(func=lambda a: cmd_rdp_screens(a, load))

    p = sub.add_parser("rdp-fingerprint", help="print the SHA-256 of an RDP server's TLS "
                       "certificate (for targets.NAME.rdp_cert_sha256)")
    p.add_argument("address", help="HOST[:PORT]")
    p.set_defaults(func=cmd_rdp_fingerprint)
