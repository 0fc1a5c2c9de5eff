"""Handlers for programs whose command lines need more than the generic rules.

Each handler gets ``(prog, name, args, ctx)`` and must record the command, its effects,
the code it runs (analysed as bash or through ``langs.py``) and its uncertainty. They
are named by ``handler = "..."`` in ``catalogue.toml``.

Known limits: subcommand and option tables are the common ones of each tool's current
release; an option that is not in them is read as a flag.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.policy.catalogue import Program
from gateway.policy.langs import check_awk, check_ex, check_gdb, check_line, check_sed
from gateway.policy.programs import (
    add_effects,
    apply_lang,
    exec_checks,
    operands,
    record,
    run_inner,
    screen,
    script_file,
    shell,
    skip_options,
    stdin_code,
)
from gateway.policy.values import AStr, Field, Hole, astr, resolve, show, static

if TYPE_CHECKING:
    from gateway.policy.analyze import Ctx
    from gateway.policy.langs import LangResult

Handler = Callable[[Program, str, list[Field], "Ctx"], None]
HANDLERS: dict[str, Handler] = {}


def handler(name: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return deco


def _t(args: list[Field]) -> list[str | None]:
    return [a.text for a in args]


def _effect(ctx: Ctx, kind: str, path: tuple[object, ...], source: str, *,
            content: bool = True, track: bool = True) -> None:
    """Record a write or removal; a write of user content to a file that runs code later
    is uncertain (``content=False``: names from an archive, metadata only...)."""
    from gateway.policy.analyze import Effect

    ctx.effects.append(Effect(kind, path, source=source))  # type: ignore[arg-type]
    if kind == "write":
        if content:
            ctx.an.check_autorun(path, source)  # type: ignore[arg-type]
        if track:  # git, make, package managers: their files are not the user's typing
            ctx.st.wrote(path)  # type: ignore[arg-type]


def _joined(fields: list[Field]) -> str | None:
    """Arguments joined into one command string (``watch``, ``ssh``, ``sudo -s``): known
    text, numbers (``$$``) as a placeholder digit; None if anything else is unknown."""
    out: list[str] = []
    for f in fields:
        if f.text is not None:
            out.append(f.text)
            continue
        if f.split or f.glob or any(not isinstance(c, str) and c is not Hole.DIGITS
                                    for c in f.chunks):
            return None
        out.append("".join(c if isinstance(c, str) else "0" for c in f.chunks))
    return " ".join(out)


def _string(text: str | None, ctx: Ctx, where: str, *, remote: bool = False) -> None:
    """A command string run through a shell (``-c``, ``watch``, ``ssh host CMD``)."""
    from gateway.policy.analyze import Stdin

    if text is None:
        ctx.an.unsure(f"dynamic command string for {where}")
        return
    child = ctx.st.child()
    if remote:
        child.cwd, child.cwd_alts = ("~",), ()
        child.written, child.symlinks, child.path_changed = [], {}, False
    before = len(ctx.an.commands)
    ctx.an.text(text, child, Stdin("null"), what=f"run by {where}")
    if remote:
        _remote_effects(ctx, before)


def _remote_effects(ctx: Ctx, before: int) -> None:
    """Effects on another system (ssh, containers): their targets are unknown here."""
    from gateway.policy.analyze import Effect

    for c in ctx.an.commands[before:]:
        if c.effects:
            kinds = {e.kind for e in c.effects}
            c.effects = [Effect(k, (Hole.ANY,), maybe=True, source="remote") for k in kinds]


def _argv(words: list[Field], ctx: Ctx, where: str, *, remote: bool = False) -> None:
    """An argv run as a program by another program (``exec``-style, no shell)."""
    if not words:
        return
    before = len(ctx.an.commands)
    if remote:  # another system: its own directory, files and PATH
        st = ctx.st
        saved = st.cwd, st.cwd_alts, st.written, st.symlinks, st.path_changed
        st.cwd, st.cwd_alts, st.written, st.symlinks, st.path_changed = ("~",), (), [], {}, \
            False
        try:
            run_inner(words, ctx, where)
        finally:
            st.cwd, st.cwd_alts, st.written, st.symlinks, st.path_changed = saved
        _remote_effects(ctx, before)
    else:
        run_inner(words, ctx, where)


# --------------------------------------------------------------------------- files


@handler("ln")
def _ln(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    from gateway.policy.programs import copy_check

    copy_check(prog, name, args, ctx)
    add_effects(prog, args, ctx)
    record(name, args, ctx)
    ops, opts = operands(prog, args)
    st = ctx.st
    tdir = opts.get("-t") or opts.get("--target-directory")
    targets = ops if tdir is not None else ops[:-1]
    links: list[tuple[Field, AStr]] = []
    if tdir is not None:
        d = ctx.an.path(tdir, st)
        for t in targets:
            base = (t.text or "").rstrip("/").rsplit("/", 1)[-1] if t.text else None
            links.append((t, astr(*d, "/", base) if base else (Hole.ANY,)))
    elif len(ops) == 1:
        base = (ops[0].text or "").rstrip("/").rsplit("/", 1)[-1]
        links.append((ops[0], resolve(astr(base), st.cwd) if base else (Hole.ANY,)))
    elif len(ops) >= 2:
        link = ctx.an.path(ops[-1], st)
        for t in targets:
            base = (t.text or "").rstrip("/").rsplit("/", 1)[-1] if t.text else None
            links.append((t, link))
            links.append((t, astr(*link, "/", base) if base else (Hole.ANY,)))
    symbolic = "-s" in opts or "--symbolic" in opts
    for target, link in links:
        ls = static(link)
        if ls is None:
            continue
        if target.text is None:
            st.symlinks[ls] = (Hole.ANY,)
            continue
        if symbolic and not target.text.startswith(("/", "~")):
            parent = ls.rsplit("/", 1)[0] or "/"
            dest = resolve(astr(target.text), astr(parent), symlinks=st.symlinks)
        else:
            dest = ctx.an.path(target, st)
        st.symlinks[ls] = dest


@handler("mode")
def _mode(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    ops, opts = operands(prog, args)
    files = ops if "--reference" in opts else ops[1:]
    for f in files:
        # metadata only: the file's content is not the session's (not "written here")
        _effect(ctx, "write", ctx.an.path(f, ctx.st), name, content=False, track=False)
    record(name, args, ctx)


@handler("sed")
def _sed(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    scripts: list[str | None] = []
    files: list[Field] = []
    in_place = sandbox = False
    i, n = 0, len(args)
    while i < n:
        t = args[i].text
        if t is None:
            if args[i].maybe_option:
                ctx.an.unsure("dynamic option to sed")
            files.append(args[i])
            i += 1
            continue
        if t in ("-e", "--expression"):
            scripts.append(args[i + 1].text if i + 1 < n else "")
            i += 2
            continue
        if t.startswith("--expression="):
            scripts.append(t.split("=", 1)[1])
        elif t in ("-f", "--file") or t.startswith("--file="):
            f = args[i + 1] if t in ("-f", "--file") and i + 1 < n else Field(astr(t[7:]))
            script_file(name, f, ctx)
            scripts.append("")
            i += 2 if t in ("-f", "--file") else 1
            continue
        elif t.startswith("--in-place") or (t.startswith("-i") and not t.startswith("--")):
            in_place = True
        elif t == "--sandbox":
            sandbox = True
        elif t.startswith("-") and not t.startswith("--") and len(t) > 1:
            body = t[1:]
            if "i" in body:
                in_place = True
            if "e" in body or "f" in body:
                k = max(body.find("e"), body.find("f"))
                rest = body[k + 1 :]
                value = rest or (args[i + 1].text if i + 1 < n else "")
                if body[k] == "f":
                    script_file(name, Field(astr(value or "")), ctx)
                    value = ""
                scripts.append(value)
                i += 1 if rest else 2
                continue
        elif t.startswith("--"):
            pass
        else:
            files.append(args[i])
        i += 1
    if not scripts and files:
        first = files.pop(0)
        scripts.append(first.text)
    for s in scripts:
        if s is None:
            if not sandbox:
                ctx.an.unsure("dynamic sed script")
            continue
        r = check_sed(s)
        if sandbox:
            r.uncertain = [u for u in r.uncertain if "runs" not in u]
            r.shell = []
        apply_lang(r, ctx, "sed")
    if in_place:
        for f in files:
            _effect(ctx, "write", ctx.an.path(f, ctx.st), "sed -i")
    record(name, args, ctx)


@handler("awk")
def _awk(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    program: str | None = ""
    have = False
    i, n = 0, len(args)
    while i < n:
        t = args[i].text
        if t is None:
            if not have:
                program, have = None, True
            i += 1
            continue
        if t in ("-f", "--file") or (t.startswith("-f") and len(t) > 2):
            f = args[i + 1] if t in ("-f", "--file") and i + 1 < n else Field(astr(t[2:]))
            script_file(name, f, ctx)
            have = True
            i += 2 if t in ("-f", "--file") else 1
            continue
        if t in ("-v", "-F", "--assign", "--field-separator"):
            i += 2
            continue
        if t in ("-e", "--source"):
            program = (program or "") + "\n" + (args[i + 1].text or "") if i + 1 < n and \
                args[i + 1].text is not None else None
            have = True
            i += 2
            continue
        if t in ("-i", "--include", "-l", "--load", "-E", "--exec") or t.startswith(
                ("--include=", "--load=", "--exec=")):
            ctx.an.unsure(f"{name} {t} loads code")
            i += 2 if "=" not in t else 1
            continue
        if t.startswith("-") and t != "-" and not have:
            i += 1
            continue
        if not have:
            program, have = t, True
        i += 1
    if program is None:
        ctx.an.unsure(f"dynamic {name} program")
    elif program:
        apply_lang(check_awk(program), ctx, name)
    record(name, args, ctx)


@handler("tar")
def _tar(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    exec_checks(prog, name, args, ctx)
    texts = _t(args)
    mode = ""
    archive: Field | None = None
    directory: Field | None = None
    absolute = remove = False
    queue: list[str] = []  # short options waiting for their value
    with_arg = set("bCfFgHIKLNTVX")
    for k, (a, t) in enumerate(zip(args, texts, strict=True)):
        if queue:
            opt = queue.pop(0)
            if opt == "f":
                archive = a
            elif opt == "C":
                directory = a
            continue
        if t is None:
            continue
        bundle = t[1:] if t.startswith("-") and not t.startswith("--") else (
            t if k == 0 and not t.startswith("-") else None)
        if bundle is not None:
            for j, c in enumerate(bundle):
                if c in "cxtrudA":
                    mode = mode or c
                if c == "P":
                    absolute = True
                if c in with_arg:
                    rest = bundle[j + 1 :]
                    if rest and t.startswith("-"):
                        if c == "f":
                            archive = Field(astr(rest))
                        elif c == "C":
                            directory = Field(astr(rest))
                        break
                    queue.append(c)
            continue
        key, _, value = t.partition("=")
        if key in ("--create", "--append", "--update", "--concatenate", "--catenate"):
            mode = "c"
        elif key in ("--extract", "--get"):
            mode = "x"
        elif key == "--delete":
            mode = "r"
        elif key == "--absolute-names":
            absolute = True
        elif key == "--remove-files":
            remove = True
        elif key == "--file":
            archive = Field(astr(value)) if value else None
        elif key == "--directory":
            directory = Field(astr(value)) if value else None
    st = ctx.st
    if mode == "x":
        if absolute:
            _effect(ctx, "write", (Hole.ANY,), "tar -x")
        else:
            base = ctx.an.path(directory, st) if directory is not None else st.cwd
            _effect(ctx, "write", astr(*base, "/", Hole.ANY), "tar -x", content=False)
    elif mode in ("c", "r", "u", "A") and archive is not None and archive.text != "-":
        _effect(ctx, "write", ctx.an.path(archive, st), "tar")
    if remove:
        _effect(ctx, "delete", (Hole.ANY,), "tar --remove-files")
    record(name, args, ctx)


@handler("rsync")
def _rsync(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    if "--server" in texts:  # the far end of a transfer: its flags are a protocol string
        dest = args[-1] if args else None
        if "--sender" not in texts and dest is not None:
            path = ctx.an.path(dest, ctx.st)
            _effect(ctx, "write", astr(*path, "/", Hole.ANY) if path != ("/",) else
                    astr("/", Hole.ANY), "rsync")
        record(name, args, ctx)
        return
    ops: list[Field] = []
    i, n = 0, len(args)
    delete = remove = False
    while i < n:
        t = texts[i]
        if t is None:
            if args[i].maybe_option:
                ctx.an.unsure("dynamic option to rsync")
            ops.append(args[i])
            i += 1
            continue
        if t in ("-e", "--rsh") or t.startswith("--rsh="):
            value = texts[i + 1] if "=" not in t and i + 1 < n else t.partition("=")[2]
            words = shlex.split(value) if value else []
            _argv([Field(astr(w)) for w in words], ctx, "rsync -e") if value is not None \
                else ctx.an.unsure("dynamic rsync -e")
            i += 2 if "=" not in t else 1
            continue
        if t.startswith("-") and not t.startswith("--") and "e" in t[1:]:
            value = t[t.index("e", 1) + 1 :] or (texts[i + 1] if i + 1 < n else None)
            if value is None:
                ctx.an.unsure("dynamic rsync -e")
            else:
                _argv([Field(astr(w)) for w in shlex.split(value)], ctx, "rsync -e")
            i += 1 if t[t.index("e", 1) + 1 :] else 2
            continue
        if t.startswith("--rsync-path"):
            value = t.partition("=")[2] if "=" in t else (texts[i + 1] if i + 1 < n else None)
            _string(value, ctx, "rsync --rsync-path", remote=True)
            i += 1 if "=" in t else 2
            continue
        if t.startswith("--delete"):
            delete = True
        elif t == "--remove-source-files":
            remove = True
        elif t in ("--log-file", "--files-from", "--exclude-from", "--include-from",
                   "--password-file", "--filter", "-f", "--exclude", "--include"):
            i += 2
            continue
        elif not t.startswith("-"):
            ops.append(args[i])
        i += 1
    if len(ops) >= 2:
        dest = ops[-1]
        dt = dest.text
        if dt is None or not re.match(r"^[^/]*:", dt):
            path = ctx.an.path(dest, ctx.st)
            _effect(ctx, "write", astr(*path, "/", Hole.ANY) if path != (Hole.ANY,) else path,
                    "rsync")
            if delete:
                _effect(ctx, "delete", astr(*path, "/", Hole.ANY), "rsync --delete")
        if remove:
            _effect(ctx, "delete", (Hole.ANY,), "rsync --remove-source-files")
    record(name, args, ctx)


_SSH_BAD_OPTIONS = re.compile(
    r"(?i)^\s*(ProxyCommand|LocalCommand|PermitLocalCommand|KnownHostsCommand|Match|Include|"
    r"ProxyUseFdpass|SecurityKeyProvider|PKCS11Provider|RemoteCommand|SessionType|"
    r"ControlPath|ControlMaster)\b"
)


def _ssh_options(name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    for k, t in enumerate(texts):
        if t is None:
            continue
        value = None
        if t == "-o" and k + 1 < len(texts):
            value = texts[k + 1]
            if value is None:
                ctx.an.unsure(f"dynamic {name} -o option")
        elif t.startswith("-o") and len(t) > 2:
            value = t[2:]
        if value and _SSH_BAD_OPTIONS.match(value.replace("=", " ")):
            ctx.an.unsure(f"{name} -o {value.split('=')[0].split()[0]} runs a command")
        if t in ("-F",) and k + 1 < len(args):
            script_file(f"{name} -F", args[k + 1], ctx)


@handler("ssh_opts")
def _ssh_opts(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    exec_checks(prog, name, args, ctx)
    _ssh_options(name, args, ctx)
    ops, opts = operands(prog, args)
    if name == "scp" and len(ops) >= 2:
        dt = ops[-1].text
        if dt is None or not re.match(r"^[^/]*:", dt):
            _effect(ctx, "write", ctx.an.path(ops[-1], ctx.st), "scp")
    record(name, args, ctx)
    if name == "sftp":
        if "-b" in opts:
            b = opts["-b"]
            if b is not None and b.text == "-":
                stdin_code(name, "ftp", ctx, kind="repl")
            elif b is not None:
                script_file("sftp -b", b, ctx)
        else:
            stdin_code(name, "ftp", ctx, kind="repl")


@handler("ssh")
def _ssh(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    _ssh_options(name, args, ctx)
    record(name, args, ctx)
    i, n = 0, len(args)
    no_command = False
    while i < n:
        t = args[i].text
        if t is None:
            if args[i].maybe_option:
                ctx.an.unsure(f"dynamic option to {name}")
            break
        if t == "--":
            i += 1
            break
        if not t.startswith("-") or t == "-":
            break
        if "N" in t[1:] and not t.startswith("--"):
            no_command = True
        i += 1
        for k, c in enumerate(t[1:]):
            if c in prog.with_arg:
                if not t[k + 2 :]:
                    i += 1
                break
    rest = args[i + 1 :]
    if rest:
        _string(_joined(rest), ctx, name, remote=True)
    elif not no_command:
        stdin_code(name, "bash", ctx, kind="shell")
        _login(ctx)


@handler("socat")
def _socat(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    for a in args:
        t = a.text
        if t is None:
            ctx.an.unsure("dynamic socat address")
            continue
        m = re.match(r"(?i)(exec|system):(.*)", t)
        if m:
            body = re.split(r"(?<!\\),", m.group(2))[0]
            if m.group(1).lower() == "system":
                _string(body, ctx, "socat SYSTEM")
            else:
                _argv([Field(astr(w)) for w in shlex.split(body)], ctx, "socat EXEC")


@handler("find")
def _find(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    st = ctx.st
    starts: list[Field] = []
    i, n = 0, len(args)
    while i < n and texts[i] in ("-H", "-L", "-P", "-O0", "-O1", "-O2", "-O3", "-D"):
        i += 2 if texts[i] == "-D" else 1
    while i < n:
        t = texts[i]
        if t is None:
            if args[i].maybe_option:
                ctx.an.unsure("dynamic argument to find (it may be -exec)")
            starts.append(args[i])
            i += 1
            continue
        if t.startswith("-") or t in ("(", "!", ")", ","):
            break
        starts.append(args[i])
        i += 1
    roots = [ctx.an.path(f, st) for f in starts] or [st.cwd]
    under = [astr(*r, "/", Hole.ANY) if r != ("/",) else astr("/", Hole.ANY) for r in roots]
    while i < n:
        t = texts[i]
        if t is None:
            ctx.an.unsure("dynamic find expression (it may be -exec)")
            i += 1
            continue
        if t in ("-exec", "-execdir", "-ok", "-okdir"):
            j = i + 1
            while j < n and texts[j] not in (";", "+"):
                j += 1
            found = [Field(astr(*r, "/", Hole.ANY) if r != ("/",) else astr("/", Hole.ANY),
                           quoted_start=True) for r in roots] if len(roots) == 1 else [
                Field((Hole.ANY,))]
            inner = [found[0] if (a.text or "").find("{}") >= 0 else a for a in args[i + 1 : j]]
            if inner:
                saved = st.cwd
                if t in ("-execdir", "-okdir"):
                    st.cwd = (Hole.WORD,)
                try:
                    run_inner(inner, ctx, f"find {t}")
                finally:
                    st.cwd = saved
            i = j + 1
            continue
        if t == "-delete":
            for u in under:
                _effect(ctx, "delete", u, "find -delete")
        elif t in ("-fprint", "-fprint0", "-fls", "-fprintf") and i + 1 < n:
            _effect(ctx, "write", ctx.an.path(args[i + 1], st), f"find {t}")
            i += 3 if t == "-fprintf" else 2
            continue
        i += 1
    record(name, args, ctx)


@handler("ip")
def _ip(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    record(name, args, ctx)
    for k, t in enumerate(texts):
        if t is None:
            if args[k].maybe_option:
                ctx.an.unsure("dynamic argument to ip")
            continue
        if t in ("-b", "-batch", "--batch", "-force"):
            ctx.an.unsure("ip -batch reads commands from a file")
        if (t == "exec" and k >= 1 and texts[k - 1] in ("netns", "vrf")) or (
                t == "exec" and k >= 2 and texts[k - 2] in ("netns", "vrf")):
            if k + 2 <= len(args):
                run_inner(args[k + 2 :], ctx, f"ip {texts[k - 1]} exec") if k + 2 < len(
                    args) else None
            return


@handler("sysctl")
def _sysctl(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    for a in args:
        t = a.text
        if t is None:
            ctx.an.unsure("dynamic argument to sysctl")
            continue
        if "=" in t and re.search(r"core_pattern|modprobe|hotplug|uevent_helper|binfmt", t):
            ctx.an.unsure("sysctl sets a program the kernel runs later")
        if t in ("-p", "--load", "--system") or t.startswith("--load="):
            for g in ("/etc/sysctl.conf", "/etc/sysctl.d/x"):
                if ctx.an.written_match(astr(g), ctx.st) or ctx.st.unknown_writes:
                    ctx.an.unsure("sysctl loads settings written in this session")
                    return


@handler("stty")
def _stty(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    safe = {"-a", "--all", "-g", "--save", "size", "sane", "cols", "rows", "columns",
            "speed", "-F", "--file"}
    for a in args:
        t = a.text
        if t is None or not (t in safe or t.isdigit() or t.startswith("/dev/")):
            ctx.an.unsure("stty changes how the terminal shows and reads input")
            return


@handler("at")
def _at(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    texts = _t(args)
    if texts and all(t in ("-l", "-c", "-r", "-d", "-V") or (t or "").isdigit() for t in
                     texts) and name == "at":
        return
    ctx.an.unsure(f"{name} schedules commands that run later")


@handler("chroot")
def _chroot(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    inner = skip_options(prog, args)
    if not inner:
        return
    ctx.an.unsure("chroot: paths in the command mean something else under the new root")
    if len(inner) > 1:
        ctx.an._quiet += 1
        try:
            run_inner(inner[1:], ctx, "chroot")
        finally:
            ctx.an._quiet -= 1
    else:
        stdin_code(name, "bash", ctx, kind="shell")


@handler("loader")
def _loader(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    for a in args:
        if not (a.text or "-").startswith("-"):
            script_file(name, a, ctx)
            break


# --------------------------------------------------------------------------- wrappers


@handler("sudo")
def _sudo(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    from gateway.policy.analyze import Start

    record(name, args, ctx)
    texts = _t(args)
    i, n = 0, len(args)
    flags: set[str] = set()
    while i < n:
        t = texts[i]
        if t is None:
            if args[i].maybe_option:
                ctx.an.unsure(f"dynamic option to {name}")
                return
            break
        if t == "--":
            i += 1
            break
        if not t.startswith("-") or t == "-":
            break
        i += 1
        if t.startswith("--"):
            key, eq, _ = t.partition("=")
            flags.add(key)
            if key[2:] in prog.long_with_arg and not eq:
                i += 1
            continue
        for k, c in enumerate(t[1:]):
            flags.add("-" + c)
            if c in prog.with_arg:
                if not t[k + 2 :]:
                    i += 1
                break
    if not ctx.an.exec_mode:
        ctx.an.starts.append(Start(name, "password", ""))
    rest = args[i:]
    while rest and rest[0].text and re.match(r"[A-Za-z_]\w*=", rest[0].text):
        var, _, value = (rest[0].text or "").partition("=")
        ctx.an.check_assignment(var, value, ctx.st, prefix=True)
        rest = rest[1:]
    if flags & {"-e", "--edit"} or name == "sudoedit":
        for f in rest:
            _effect(ctx, "write", ctx.an.path(f, ctx.st), "sudoedit")
        screen("sudoedit", "vi", ctx)
        return
    if flags & {"-l", "--list", "-v", "--validate", "-k", "-K", "-V", "-h", "--help"}:
        return
    if flags & {"-s", "--shell", "-i", "--login"}:
        if rest:
            _string(_joined(rest), ctx, name)
        else:
            stdin_code(name, "bash", ctx, kind="shell")
            if flags & {"-i", "--login"}:
                _login(ctx)
        return
    if rest:
        if flags & {"-D", "--chdir"}:
            saved = ctx.st.cwd
            ctx.st.cwd = (Hole.WORD,)
            try:
                run_inner(rest, ctx, name)
            finally:
                ctx.st.cwd = saved
        else:
            run_inner(rest, ctx, name)


@handler("su")
def _su(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    from gateway.policy.analyze import Start

    record(name, args, ctx)
    texts = _t(args)
    if any(t is None and a.maybe_option for t, a in zip(texts, args, strict=True)):
        ctx.an.unsure(f"dynamic option to {name}")
        return
    command: str | None = None
    has_command = False
    shell_prog: str | None = None
    login = False
    i, n = 0, len(texts)
    user_seen = False
    argv_start: int | None = None
    while i < n:
        t = texts[i] or ""
        if t == "--":
            argv_start = i + 1
            break
        if t in ("-c", "--command", "--session-command"):
            has_command, command = True, texts[i + 1] if i + 1 < n else ""
            i += 2
            continue
        if t.startswith(("--command=", "--session-command=")):
            has_command, command = True, t.split("=", 1)[1]
        elif t in ("-s", "--shell"):
            shell_prog = texts[i + 1] if i + 1 < n else None
            i += 2
            continue
        elif t.startswith("--shell="):
            shell_prog = t.split("=", 1)[1]
        elif t in ("-", "-l", "--login"):
            login = True
        elif t in ("-u", "--user", "-g", "--group", "-G", "--supp-group", "-w",
                   "--whitelist-environment"):
            i += 2
            continue
        elif t.startswith("-") and not t.startswith("--"):
            if "c" in t[1:]:
                rest = t[t.index("c", 1) + 1 :]
                has_command = True
                command = rest if rest else (texts[i + 1] if i + 1 < n else "")
                i += 1 if rest else 2
                continue
            if "l" in t[1:]:
                login = True
        elif not t.startswith("-"):
            if name == "runuser" and user_seen is False and "-u" not in texts:
                user_seen = True
            elif name == "runuser" and "-u" in texts:
                argv_start = i
                break
            else:
                user_seen = True
        i += 1
    if not ctx.an.exec_mode and name == "su":
        ctx.an.starts.append(Start(name, "password", ""))
    if shell_prog is not None and shell_prog.rsplit("/", 1)[-1] not in ("sh", "bash", "dash"):
        ctx.an.unsure(f"{name} --shell {shell_prog} is not checked")
    if has_command:
        _string(command, ctx, f"{name} -c")
        return
    if argv_start is not None and argv_start < n:
        run_inner(args[argv_start:], ctx, name)
        return
    stdin_code(name, "bash", ctx, kind="shell")
    if login:
        _login(ctx)


def _login(ctx: Ctx) -> None:
    """A login shell (``ssh host``, ``su -``, ``sudo -i``) starts in its user's home:
    ``~``, as unknown (and as symbolic) as the first shell's."""
    ctx.st.cwd, ctx.st.cwd_alts, ctx.st.oldpwd, ctx.st.dirstack = ("~",), (), None, []


@handler("sg")
def _sg(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    rest = [a for a in args if a.text not in ("-",)]
    if len(rest) <= 1:
        stdin_code(name, "bash", ctx, kind="shell")
        return
    cmd = rest[1:]
    if cmd and cmd[0].text == "-c":
        cmd = cmd[1:]
    texts = _t(cmd)
    _string(None if any(x is None for x in texts) else " ".join(x or "" for x in texts), ctx,
            "sg")


@handler("env")
def _env(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    texts = _t(args)
    i, n = 0, len(args)
    chdir = False
    while i < n:
        t = texts[i]
        if t is None:
            if args[i].maybe_option:
                ctx.an.unsure("dynamic option to env")
                return
            break
        if t == "--":
            i += 1
            break
        if t in ("-u", "--unset", "-C", "--chdir"):
            chdir |= t in ("-C", "--chdir")
            i += 2
            continue
        if t.startswith(("-S", "--split-string")):
            value = t[2:] if t.startswith("-S") and len(t) > 2 else (
                t.split("=", 1)[1] if "=" in t else (texts[i + 1] if i + 1 < n else ""))
            rest = texts[i + (1 if (len(t) > 2 and t.startswith("-S")) or "=" in t else 2):]
            if value is None or any(x is None for x in rest):
                ctx.an.unsure("dynamic env -S")
                return
            _string(" ".join([value, *(x or "" for x in rest)]), ctx, "env -S")
            return
        if t.startswith("-") and t != "-":
            i += 1
            continue
        if t == "-":
            i += 1
            continue
        break
    while i < n and texts[i] and re.match(r"[A-Za-z_][A-Za-z0-9_]*=", texts[i] or ""):
        var, _, value = (texts[i] or "").partition("=")
        ctx.an.check_assignment(var, value, ctx.st, prefix=True)
        i += 1
    if i < n and args[i].text is None and any(
            isinstance(c, str) and "=" in c for c in args[i].chunks[:1]):
        ctx.an.unsure("env with a dynamic assignment")
        i += 1
    if i < n:
        if chdir:
            saved = ctx.st.cwd
            ctx.st.cwd = (Hole.WORD,)
            try:
                run_inner(args[i:], ctx, "env")
            finally:
                ctx.st.cwd = saved
        else:
            run_inner(args[i:], ctx, "env")


@handler("taskset")
def _taskset(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    texts = _t(args)
    if any(t and t.startswith("-") and "p" in t[1:] and not t.startswith("--") for t in texts) \
            or "--pid" in texts or ("--all-tasks" in texts and "-p" in texts):
        return
    i = 0
    while i < len(texts) and (texts[i] or "").startswith("-"):
        i += 2 if (texts[i] or "")[1:] in prog.with_arg and prog.with_arg else 1
    rest = args[i + 1 :]
    if rest:
        run_inner(rest, ctx, name)


@handler("setarch")
def _setarch(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    texts = _t(args)
    i = 0
    if name == "setarch":
        if not texts or texts[0] in ("--list", "-h", "--help", "-V", "--version"):
            return
        i = 1
    while i < len(texts) and (texts[i] or "").startswith("-"):
        if texts[i] is None:
            ctx.an.unsure("dynamic option to setarch")
            return
        i += 1
    rest = args[i:]
    if rest:
        run_inner(rest, ctx, name)
    else:
        stdin_code(name, "bash", ctx, kind="shell")


@handler("flock")
def _flock(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    texts = _t(args)
    i = 0
    while i < len(texts) and (texts[i] or "").startswith("-") and texts[i] not in ("-c",):
        i += 2 if texts[i] in ("-w", "--timeout", "-E", "--conflict-exit-code") else 1
    rest = args[i:]
    if len(rest) <= 1:
        return
    if rest[1].text in ("-c", "--command"):
        _string(rest[2].text if len(rest) > 2 else "", ctx, "flock -c")
        return
    run_inner(rest[1:], ctx, "flock")


@handler("xargs")
def _xargs(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    texts = _t(args)
    i, n = 0, len(args)
    replace: str | None = None
    with_arg = {"-a", "-E", "-d", "-I", "-L", "-n", "-P", "-s", "--arg-file", "--delimiter",
                "--eof", "--max-lines", "--max-args", "--max-procs", "--max-chars",
                "--process-slot-var"}
    while i < n:
        t = texts[i]
        if t is None:
            if args[i].maybe_option:
                ctx.an.unsure("dynamic option to xargs")
                return
            break
        if not t.startswith("-") or t == "-":
            break
        if t == "--":
            i += 1
            break
        if t in ("-I",) and i + 1 < n:
            replace = texts[i + 1]
        elif t.startswith("-I") and len(t) > 2:
            replace = t[2:]
        elif t.startswith(("-i", "--replace")):
            replace = t.split("=", 1)[1] if "=" in t else (t[2:] or "{}")
        i += 2 if t in with_arg else 1
    inner = args[i:] or [Field(astr("echo"))]
    dyn = Field((Hole.ANY,), split=True)
    shape = ctx.stdin.paths if ctx.stdin.kind == "pipe" else None
    nul = any(t in ("-0", "--null") for t in texts[:i])
    newline = any(t in ("-d", "--delimiter") and k + 1 < len(texts) and texts[k + 1] in
                  ("\\n", "\n") for k, t in enumerate(texts[:i]))
    if shape is not None and ((shape[1] == "\0" and nul) or (shape[1] == "\n" and newline)):
        root = shape[0]
        dyn = Field(astr(*root, "/", Hole.ANY) if root != ("/",) else astr("/", Hole.ANY),
                    quoted_start=True)
    if replace:
        inner = [inner[0], *(Field((Hole.ANY,)) if replace in (a.text or "") else a
                             for a in inner[1:])]
    else:
        inner = [*inner, dyn]
    run_inner(inner, ctx, "xargs")


@handler("watch")
def _watch(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    texts = _t(args)
    i, n = 0, len(args)
    argv = False
    while i < n and (texts[i] or "").startswith("-"):
        t = texts[i] or ""
        if t in ("-x", "--exec"):
            argv = True
        if t in ("-n", "--interval", "-q", "--equexit"):
            i += 2
            continue
        i += 1
    rest = args[i:]
    if not rest:
        return
    if argv:
        run_inner(rest, ctx, "watch")
    else:
        _string(_joined(rest), ctx, "watch")


@handler("strace")
def _strace(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    texts = _t(args)
    for k, t in enumerate(texts):
        if t in ("-o", "--output") and k + 1 < len(texts):
            v = texts[k + 1]
            if v is None or v.startswith(("|", "!")):
                ctx.an.unsure(f"{name} -o pipes its output to a command")
        if t in ("-E",) and k + 1 < len(texts):
            var, _, value = (texts[k + 1] or "").partition("=")
            ctx.an.check_assignment(var, value, ctx.st, prefix=True)
        if t in ("-p", "--attach"):
            return
    inner = skip_options(prog, args)
    if inner:
        run_inner(inner, ctx, name)


@handler("perf")
def _perf(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    texts = _t(args)
    if not texts:
        return
    sub = texts[0]
    if sub in ("script",) and any(t and (t.startswith("-s") or t.startswith("--script"))
                                  for t in texts):
        ctx.an.unsure("perf script runs a script")
        return
    if "--" in texts:
        k = texts.index("--")
        if k + 1 < len(texts):
            run_inner(args[k + 1 :], ctx, "perf")
        return
    if sub in ("record", "stat", "trace", "ftrace", "c2c", "mem", "sched", "lock",
               "timechart", "kwork", "kvm", "kmem"):
        ops = [t for t in texts[1:] if not (t or "-").startswith("-")]
        if ops:
            ctx.an.unsure(f"perf {sub} runs a program (use -- to have it checked)")


@handler("cpulimit")
def _cpulimit(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    texts = _t(args)
    i = 0
    while i < len(texts) and (texts[i] or "").startswith("-") and texts[i] != "--":
        t = texts[i] or ""
        i += 2 if t in ("-l", "-p", "-e", "-P", "-c", "--limit", "--pid", "--exe", "--path",
                        "--cpu") else 1
    if i < len(texts) and texts[i] == "--":
        i += 1
    if i < len(args):
        run_inner(args[i:], ctx, "cpulimit")


@handler("busybox")
def _busybox(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    if not args or (args[0].text or "").startswith("-"):
        record(name, args, ctx)
        return
    run_inner(args, ctx, "busybox")


@handler("capsh")
def _capsh(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    texts = _t(args)
    for k, t in enumerate(texts):
        if t is None:
            ctx.an.unsure("dynamic argument to capsh")
            return
        if t.startswith("--shell") or t == "==":
            ctx.an.unsure(f"capsh {t.split('=')[0]} runs another program")
            return
        if t == "--":
            bash = ctx.an.cat.program("bash")
            assert bash is not None
            shell(bash, "bash", args[k + 1 :], ctx)
            return


# --------------------------------------------------------------------------- editors, pagers


@handler("vi")
def _vi(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    i, n = 0, len(args)
    files: list[Field] = []
    ex_mode = False
    while i < n:
        t = texts[i]
        if t is None:
            files.append(args[i])
            if args[i].maybe_option:
                ctx.an.unsure(f"dynamic argument to {name}")
            i += 1
            continue
        if t in ("-c", "--cmd") and i + 1 < n:
            v = texts[i + 1]
            apply_lang(check_ex(v) if v is not None else _dyn(), ctx, name)
            i += 2
            continue
        if t.startswith("+"):
            v = t[1:]
            if v and not v.isdigit() and not v.startswith(("/", "?")):
                apply_lang(check_ex(v), ctx, name)
            i += 1
            continue
        if t in ("-S", "-u", "-U", "-s", "-i") and i + 1 < n:
            if texts[i + 1] not in ("NONE", "NORC"):
                script_file(f"{name} {t}", args[i + 1], ctx)
            i += 2
            continue
        if t in ("-w", "-W", "--startuptime") and i + 1 < n:
            _effect(ctx, "write", ctx.an.path(args[i + 1], ctx.st), name)
            i += 2
            continue
        if t.startswith("--remote") or t.startswith("--servername"):
            ctx.an.unsure(f"{name} {t} talks to another editor")
            i += 2
            continue
        if t in ("-e", "-E", "-es", "-Es", "-s") or (t.startswith("-") and "s" in t[1:] and
                                                     "e" in t[1:]):
            ex_mode = True
            i += 1
            continue
        if t in ("-t", "-q", "-T", "-r", "-L") and i + 1 < n:
            i += 2
            continue
        if t == "--":
            files.extend(args[i + 1 :])
            break
        if t.startswith("-") and t != "-":
            i += 1
            continue
        files.append(args[i])
        i += 1
    for f in files:
        if f.text != "-":
            _effect(ctx, "write", ctx.an.path(f, ctx.st), name)
    record(name, args, ctx)
    if ex_mode:
        stdin_code(name, "ex", ctx, kind="repl")
    else:
        screen(name, "vi", ctx)


def _dyn() -> LangResult:
    from gateway.policy.langs import LangResult

    r = LangResult()
    r.unsure("dynamic editor command")
    return r


@handler("visudo")
def _visudo(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    record(name, args, ctx)
    if "-c" in texts or "--check" in texts:
        return
    add_effects(prog, args, ctx)
    screen(name, "vi", ctx)


@handler("pager")
def _pager(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    for k, t in enumerate(texts):
        if t is None:
            continue
        if t.startswith("+") and re.search(r"[!|v]", t):
            ctx.an.unsure(f"{name} {t} runs a command at start")
        if t in ("-k", "--lesskey-file", "--lesskey-src") or t.startswith("--lesskey"):
            ctx.an.unsure(f"{name} {t} reads key bindings")
        if t in ("-o", "-O") and k + 1 < len(args):
            _effect(ctx, "write", ctx.an.path(args[k + 1], ctx.st), name)
    record(name, args, ctx)
    if not any(">" in show(x) for x in ctx.texts):
        screen(name, "less", ctx)


@handler("man")
def _man(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    for k, t in enumerate(texts):
        if t is None:
            continue
        if t in ("-P", "--pager") or t.startswith("--pager="):
            v = t.split("=", 1)[1] if "=" in t else (texts[k + 1] if k + 1 < len(texts) else "")
            ctx.an.check_assignment("PAGER", v, ctx.st, prefix=True)
        if t in ("-H",) or t.startswith("--html"):
            ctx.an.unsure("man --html runs a browser")
    record(name, args, ctx)
    screen(name, "less", ctx)


@handler("tmux")
def _tmux(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    texts = _t(args)
    i = 0
    while i < len(texts) and (texts[i] or "").startswith("-"):
        t = texts[i] or ""
        if t in ("-f", "-L", "-S", "-c", "-T"):
            if t == "-c":
                _string(texts[i + 1] if i + 1 < len(texts) else "", ctx, "tmux -c")
                return
            if t == "-f" and i + 1 < len(args):
                script_file("tmux -f", args[i + 1], ctx)
            i += 2
            continue
        i += 1
    sub = texts[i] if i < len(texts) else None
    safe = {"ls", "list-sessions", "list-windows", "lsw", "list-panes", "lsp", "kill-session",
            "kill-server", "kill-window", "kill-pane", "killp", "detach", "detach-client",
            "has-session", "has", "list-clients", "lsc", "list-keys", "lsk", "list-commands",
            "lscm", "show-options", "show", "show-messages", "info", "display-message",
            "display", "capture-pane", "capturep", "rename-session", "rename-window",
            "select-window", "selectw", "select-pane", "selectp", "resize-pane", "resizep",
            "list-buffers", "lsb", "show-buffer", "showb", "start-server", "start",
            "server-info", "switch-client", "switchc"}
    starts = {None, "new", "new-session", "attach", "attach-session", "a", "at",
              "new-window", "neww", "split-window", "splitw"}
    if sub in safe:
        return
    if sub in starts:
        tail = args[i + 1 :]
        cmd = [a for a in tail if not (a.text or "").startswith("-")]
        texts2 = _t(tail)
        j, words = 0, []
        while j < len(texts2):
            t = texts2[j] or ""
            if t in ("-s", "-n", "-t", "-c", "-x", "-y", "-F", "-e", "-f", "-l", "-p", "-w"):
                j += 2
                continue
            if t.startswith("-"):
                j += 1
                continue
            words = tail[j:]
            break
        del cmd
        if words:
            t3 = _t(words)
            _string(None if any(x is None for x in t3) else " ".join(x or "" for x in t3),
                    ctx, "tmux")
        screen(name, "shell-screen", ctx)
        return
    ctx.an.unsure(f"tmux {sub} is not checked (it can send keys or run commands)")


@handler("screen")
def _screen(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    texts = _t(args)
    if any(t in ("-X", "-Q") for t in texts):
        ctx.an.unsure("screen -X sends commands to a session")
        return
    if any(t in ("-ls", "-list", "-wipe") for t in texts):
        return
    i = 0
    while i < len(texts) and (texts[i] or "").startswith("-"):
        t = texts[i] or ""
        i += 2 if t in ("-S", "-c", "-e", "-h", "-p", "-s", "-t", "-T", "-L", "-Logfile") else 1
        if t == "-c":
            script_file("screen -c", args[i - 1], ctx)
    if i < len(args):
        run_inner(args[i:], ctx, "screen")
    screen(name, "shell-screen", ctx)


@handler("script")
def _script(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    texts = _t(args)
    i, n = 0, len(texts)
    command: str | None = ""
    has = False
    ops: list[Field] = []
    while i < n:
        t = texts[i]
        if t in ("-c", "--command") or (t and t.startswith("-") and not t.startswith("--")
                                        and t.endswith("c") and len(t) > 2):
            has, command = True, texts[i + 1] if i + 1 < n else ""
            i += 2
            continue
        if t and t.startswith("--command="):
            has, command = True, t.split("=", 1)[1]
        elif t in ("-T", "--log-timing", "-I", "--log-in", "-O", "--log-out", "-B",
                   "--log-io", "-t", "-E", "--echo", "-m", "--logging-format"):
            if t not in ("-t", "-E", "--echo", "-m", "--logging-format") and i + 1 < n:
                _effect(ctx, "write", ctx.an.path(args[i + 1], ctx.st), "script",
                        content=False)
            i += 2
            continue
        elif t is None or not t.startswith("-"):
            ops.append(args[i])
        i += 1
    for o in ops:
        _effect(ctx, "write", ctx.an.path(o, ctx.st), "script", content=False)
    if has:
        _string(command, ctx, "script -c")
    else:
        stdin_code(name, "bash", ctx, kind="shell")


# --------------------------------------------------------------------------- services, system


@handler("systemctl")
def _systemctl(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    ops = [a for a in args if not (a.text or "-").startswith("-")]
    sub = ops[0].text if ops else None
    if ops and sub is None:
        ctx.an.unsure("dynamic systemctl command")
        return
    if sub == "edit":
        ctx.an.unsure("systemctl edit changes what a unit runs")
        screen(name, "vi", ctx)
    elif sub in ("set-environment", "import-environment", "link", "revert", "set-property",
                 "set-default"):
        ctx.an.unsure(f"systemctl {sub} changes what runs later")
    elif sub in ("enable", "disable", "mask", "unmask", "preset", "preset-all", "reenable"):
        _effect(ctx, "write", astr("/etc/systemd/", Hole.ANY), "systemctl", content=False,
                track=False)


@handler("service")
def _service(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    if args and (args[0].text is None or "/" in (args[0].text or "")):
        ctx.an.unsure("service with a path or a dynamic name runs any program")


@handler("apt")
def _apt(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    for k, t in enumerate(texts):
        if t is None:
            if args[k].maybe_option:
                ctx.an.unsure(f"dynamic option to {name}")
            continue
        value = None
        if t in ("-o", "--option") and k + 1 < len(texts):
            value = texts[k + 1] or "?"
        elif t.startswith(("-o", "--option=")) and t not in ("-o", "--option"):
            value = t.split("=", 1)[1] if t.startswith("--") else t[2:]
        if value is not None and re.search(r"(?i)invoke|pre-install|::tools|pager|"
                                           r"post-install|script|::exec|\?", value):
            ctx.an.unsure(f"{name} -o {value.split('=')[0]} runs a command")
        if t in ("-c", "--config-file") or t.startswith("--config-file="):
            ctx.an.unsure(f"{name} {t.split('=')[0]} reads options from a file")
    ops = [t for t in texts if t and not t.startswith("-")]
    sub = ops[0] if ops else ""
    if sub in ("install", "remove", "purge", "upgrade", "dist-upgrade", "full-upgrade",
               "autoremove", "reinstall", "build-dep", "autopurge"):
        from gateway.policy.programs import SYSTEM_DIRS, _glob_path

        for g in SYSTEM_DIRS:
            _effect(ctx, "write", _glob_path(g), name, content=False, track=False)
        for a in args:
            t = a.text or ""
            if t.startswith(("./", "/", "~")) and t.endswith(".deb"):
                script_file(f"{name} install", a, ctx)
    record(name, args, ctx)


@handler("crontab")
def _crontab(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    texts = _t(args)
    flags = {t for t in texts if t and t.startswith("-")}
    if flags & {"-l", "-r", "-i"} and not flags & {"-e"}:
        return
    ctx.an.unsure("crontab installs commands that run later")
    if "-e" in flags:
        screen(name, "vi", ctx)


# --------------------------------------------------------------------------- SQL, debuggers


@handler("sqlclient")
def _sqlclient(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    lang = prog.lang
    texts = _t(args)
    commands: list[str | None] = []
    files: list[Field] = []
    i, n = 0, len(args)
    while i < n:
        t = texts[i]
        if t is None:
            if args[i].maybe_option:
                ctx.an.unsure(f"dynamic option to {name}")
            i += 1
            continue
        if lang == "psql" and t in ("-c", "--command"):
            commands.append(texts[i + 1] if i + 1 < n else "")
            i += 2
            continue
        if lang == "psql" and t.startswith("--command="):
            commands.append(t.split("=", 1)[1])
        elif lang == "psql" and (t in ("-f", "--file") or t.startswith("--file=")):
            f = args[i + 1] if "=" not in t and i + 1 < n else Field(astr(t.split("=", 1)[1]))
            files.append(f)
            i += 2 if "=" not in t else 1
            continue
        elif lang == "psql" and t in ("-o", "--output", "-L", "--log-file"):
            v = texts[i + 1] if i + 1 < n else ""
            if v is None or v.startswith("|"):
                ctx.an.unsure(f"psql {t} pipes to a command")
            elif i + 1 < n:
                _effect(ctx, "write", ctx.an.path(args[i + 1], ctx.st), "psql")
            i += 2
            continue
        elif lang == "mysql" and (t in ("-e", "--execute") or t.startswith("--execute=")):
            commands.append(t.split("=", 1)[1] if "=" in t else (texts[i + 1] if i + 1 < n
                                                                 else ""))
            i += 2 if "=" not in t else 1
            continue
        elif lang == "mysql" and t.startswith(("--pager", "--init-command", "--system-command")):
            if t.startswith("--init-command"):
                commands.append(t.split("=", 1)[1] if "=" in t else (texts[i + 1] if i + 1 < n
                                                                     else ""))
            else:
                ctx.an.unsure(f"mysql {t.split('=')[0]} runs a command")
        elif lang == "sqlite" and t in ("-cmd",):
            commands.append(texts[i + 1] if i + 1 < n else "")
            i += 2
            continue
        elif lang == "sqlite" and t in ("-init",):
            if i + 1 < n:
                files.append(args[i + 1])
            i += 2
            continue
        elif t.startswith("-"):
            takes = t in {"-d", "-h", "-U", "-P", "-v", "-T", "-F", "-R", "-D", "-u",
                          "-S", "--dbname", "--host", "--port", "--username", "--set",
                          "--variable", "--pset", "--database", "--user", "--socket",
                          "-separator", "-newline", "-nullvalue"} or (
                t == "-p" and lang == "psql")
            i += 2 if takes else 1
            continue
        elif lang == "sqlite":
            if any(x is not None for x in commands) or (i > 0 and any(
                    not (x or "-").startswith("-") for x in texts[:i])):
                commands.append(t)
        i += 1
    for f in files:
        if f.text == "-":
            stdin_code(name, lang, ctx, kind="repl")
        else:
            script_file(name, f, ctx)
    for c in commands:
        if c is None:
            ctx.an.unsure(f"dynamic {name} command")
            continue
        for line in re.split(r"(?<=;)\s*|\n", c) if lang != "psql" else [c]:
            if line.strip():
                apply_lang(check_line(lang, line), ctx, name)
    record(name, args, ctx)
    if not commands and not files:
        stdin_code(name, lang, ctx, kind="repl")


@handler("gdb")
def _gdb(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    batch = False
    for k, t in enumerate(texts):
        if t is None:
            continue
        v: str | None = None
        if t in ("-ex", "--ex", "-iex", "--iex", "-eval-command", "--eval-command",
                 "-init-eval-command", "--init-eval-command") and k + 1 < len(texts):
            v = texts[k + 1]
            if v is None:
                ctx.an.unsure("dynamic gdb command")
            else:
                apply_lang(check_gdb(v), ctx, "gdb")
        elif t.startswith(("--eval-command=", "-eval-command=")):
            apply_lang(check_gdb(t.split("=", 1)[1]), ctx, "gdb")
        elif t in ("-x", "--x", "-command", "--command", "-ix", "--ix") and k + 1 < len(args):
            script_file("gdb -x", args[k + 1], ctx)
        elif t in ("-batch", "--batch"):
            batch = True
    record(name, args, ctx)
    if not batch:
        stdin_code(name, "gdb", ctx, kind="repl")


# --------------------------------------------------------------------------- developer tools

_GIT_BAD_KEY = re.compile(
    r"(?i)^(alias\..*|core\.(pager|editor|sshcommand|fsmonitor|hookspath|askpass|gitproxy|"
    r"worktree|attributesfile)|diff\..*|filter\..*|merge\..*\.driver|credential\..*|"
    r"gpg\..*|sequence\.editor|pager\..*|interactive\.difffilter|uploadpack\..*|"
    r"protocol\..*|remote\..*\.(uploadpack|receivepack|vcs|proxy)|include\..*|includeif\..*|"
    r"init\.templatedir|submodule\..*|web\.browser|browser\..*|man\..*|difftool\..*|"
    r"mergetool\..*|sendemail\..*|instaweb\..*|ssh\.variant|trace2\..*|receive\..*hook.*|"
    r"core\.sshcommand|http\..*cookiefile|safe\.directory)$"
)
_GIT_KNOWN = frozenset(
    "add am annotate apply archive bisect blame branch bundle cat-file check-attr "
    "check-ignore check-mailmap check-ref-format checkout cherry cherry-pick citool clean "
    "clone column commit commit-graph commit-tree config count-objects credential describe "
    "diff diff-files diff-index diff-tree difftool fetch fetch-pack filter-branch fmt-merge-msg "
    "for-each-ref for-each-repo format-patch fsck gc get-tar-commit-id grep hash-object help "
    "index-pack init log ls-files ls-remote ls-tree maintenance merge merge-base merge-file "
    "merge-tree mergetool mktag mktree mv name-rev notes pack-objects prune pull push "
    "range-diff read-tree rebase reflog remote repack replace request-pull rerere reset "
    "restore rev-list rev-parse revert rm send-pack shortlog show show-branch show-ref "
    "sparse-checkout stash status stripspace submodule switch symbolic-ref tag update-index "
    "update-ref var verify-commit verify-pack verify-tag version whatchanged worktree "
    "write-tree".split()
)
_GIT_READONLY = frozenset(
    "annotate blame cat-file check-attr check-ignore cherry count-objects describe diff "
    "diff-files diff-index diff-tree fsck grep help log ls-files ls-remote ls-tree merge-base "
    "name-rev range-diff reflog rev-list rev-parse shortlog show show-branch show-ref status "
    "var verify-commit verify-pack verify-tag version whatchanged for-each-ref".split()
)


@handler("git")
def _git(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    record(name, args, ctx)
    i, n = 0, len(args)
    while i < n:
        t = texts[i]
        if t is None:
            ctx.an.unsure("dynamic argument to git")
            return
        if not t.startswith("-"):
            break
        if t == "-c" and i + 1 < n:
            kv = texts[i + 1]
            if kv is None or _GIT_BAD_KEY.match(kv.split("=", 1)[0]):
                ctx.an.unsure(f"git -c {(kv or '?').split('=')[0]} runs other programs")
            i += 2
            continue
        if t.startswith("--config-env"):
            ctx.an.unsure("git --config-env sets configuration from the environment")
        if t.startswith("--exec-path") and "=" in t:
            ctx.an.unsure("git --exec-path runs programs from another directory")
        if t in ("-C", "--git-dir", "--work-tree", "--namespace", "--super-prefix"):
            if t in ("--git-dir", "--work-tree"):
                ctx.an.unsure(f"git {t} points at another repository (its hooks and config)")
            i += 2
            continue
        i += 1
    if i >= n:
        return
    sub = texts[i] or ""
    rest = args[i + 1 :]
    rtexts = texts[i + 1 :]
    for t in texts:
        if t and (t.startswith("ext::") or t.startswith(("--upload-pack", "--receive-pack",
                                                         "--exec=")) or (t == "-u" and
                  sub in ("clone", "fetch", "pull", "ls-remote", "archive"))):
            ctx.an.unsure("git runs a program for the remote (--upload-pack, ext::)")
    if sub not in _GIT_KNOWN:
        ctx.an.unsure(f"git {sub} is not a git command bastille knows (an alias or plugin "
                      "may run anything)")
        return
    st = ctx.st
    if sub == "config":
        ops = [t for t in rtexts if t is None or not t.startswith("-")]
        if any(t in ("-e", "--edit") for t in rtexts):
            ctx.an.unsure("git config --edit")
        if ops and ops[0] in ("set", "unset", "get", "list", "edit", "rename-section",
                              "remove-section"):
            if ops[0] == "edit":
                ctx.an.unsure("git config edit")
            ops = ops[1:]
        if len(ops) >= 2 or any(t in ("--add", "--replace-all") for t in rtexts):
            key = ops[0] if ops else None
            if key is None or _GIT_BAD_KEY.match(key):
                ctx.an.unsure(f"git config {key or '?'} makes git run other programs")
        return
    if sub == "bisect" and rtexts[:1] == ["run"]:
        _argv(rest[1:], ctx, "git bisect run")
        return
    if sub == "submodule" and "foreach" in rtexts:
        k = rtexts.index("foreach")
        tail = [t for t in rtexts[k + 1 :] if t not in ("--recursive", "-q", "--quiet")]
        _string(None if any(x is None for x in tail) else " ".join(x or "" for x in tail), ctx,
                "git submodule foreach")
        return
    if sub == "rebase":
        for k, t in enumerate(rtexts):
            if t in ("-x", "--exec") and k + 1 < len(rtexts):
                _string(rtexts[k + 1], ctx, "git rebase --exec")
            elif t and t.startswith("--exec="):
                _string(t.split("=", 1)[1], ctx, "git rebase --exec")
            elif t in ("-i", "--interactive"):
                ctx.an.unsure("git rebase -i runs the edited todo list (exec lines)")
    if sub == "filter-branch":
        ctx.an.unsure("git filter-branch runs shell snippets")
    if sub in ("difftool", "mergetool"):
        for k, t in enumerate(rtexts):
            if t in ("-x", "--extcmd") or (t or "").startswith("--extcmd="):
                v = t.split("=", 1)[1] if t and "=" in t else (
                    rtexts[k + 1] if k + 1 < len(rtexts) else "")
                _string(v, ctx, f"git {sub}")
    if sub == "grep" and any((t or "").startswith(("-O", "--open-files-in-pager")) for t in
                             rtexts):
        ctx.an.unsure("git grep -O runs a pager command")
    if sub in _GIT_READONLY:
        return
    if sub == "clone":
        fops = [a for a in rest if not (a.text or "-").startswith("-")]
        dest = ctx.an.path(fops[1], st) if len(fops) > 1 else astr(*st.cwd, "/", Hole.SEG)
        _effect(ctx, "write", astr(*dest, "/", Hole.ANY), "git clone", content=False,
                track=False)
    elif sub == "rm":
        for a in rest:
            if not (a.text or "-").startswith("-"):
                _effect(ctx, "delete", ctx.an.path(a, st), "git rm")
    else:
        _effect(ctx, "write", astr(*st.cwd, "/", Hole.ANY), f"git {sub}", content=False,
                track=False)


@handler("make")
def _make(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    record(name, args, ctx)
    st = ctx.st
    makefiles: list[Field] = []
    directory: Field | None = None
    for k, t in enumerate(texts):
        if t is None:
            head = args[k].chunks[0] if args[k].chunks else ""
            if args[k].split or not isinstance(head, str) or not re.match(
                    r"-[jlkswinBdeiqrRStv]|[^-=]*$", head) or "=" in head:
                ctx.an.unsure("dynamic argument to make")
            continue
        if t in ("-f", "--file", "--makefile") and k + 1 < len(args):
            makefiles.append(args[k + 1])
        elif t.startswith(("--file=", "--makefile=")):
            makefiles.append(Field(astr(t.split("=", 1)[1])))
        elif t.startswith("-f") and len(t) > 2:
            makefiles.append(Field(astr(t[2:])))
        elif t in ("-E", "--eval") or t.startswith("--eval="):
            ctx.an.unsure("make --eval runs make code")
        elif t in ("-C", "--directory") and k + 1 < len(args):
            directory = args[k + 1]
        elif re.match(r"[A-Za-z_][A-Za-z0-9_]*:?=", t):
            var, _, value = t.partition("=")
            if var.rstrip(":") in ("SHELL", ".SHELLFLAGS", "MAKEFLAGS", "MAKEFILES") or \
                    re.search(r"[;&|`$()<>\s]", value):
                ctx.an.unsure(f"make {var.rstrip(':')}=... can change what recipes run")
    for f in makefiles:
        if f.text == "-":
            ctx.an.unsure("make reads a makefile from its input")
        else:
            script_file("make -f", f, ctx)
    base = ctx.an.path(directory, st) if directory is not None else st.cwd
    if not makefiles:
        for mf in ("GNUmakefile", "makefile", "Makefile"):
            path = astr(*base, "/", mf)
            if ctx.an.written_match(path, st):
                ctx.an.unsure(f"make runs {mf}, written in this session")
                break
        else:
            if st.unknown_writes:
                ctx.an.unsure("make runs a makefile after this session wrote to unknown paths")
    _effect(ctx, "write", astr(*base, "/", Hole.ANY), "make", content=False, track=False)


@handler("go")
def _go(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    record(name, args, ctx)
    sub = texts[0] if texts else None
    if sub == "generate":
        ctx.an.unsure("go generate runs commands from source comments")
    if sub == "env" and "-w" in texts:
        ctx.an.unsure("go env -w changes how later builds run")
    if any(t and (t.startswith(("-exec", "-toolexec", "-overlay"))) for t in texts):
        ctx.an.unsure("go -exec/-toolexec runs another program")
    if sub in ("run", "test", "build", "install", "vet") and (
            ctx.st.unknown_writes or any(P_go(w) for w in ctx.st.written)):
        ctx.an.unsure(f"go {sub} builds code written in this session")
    if texts and texts[0] is None:
        ctx.an.unsure("dynamic go command")


def P_go(path: tuple[object, ...]) -> bool:
    s = show(path)  # type: ignore[arg-type]
    return s.endswith((".go", "go.mod", "go.sum", ".s", ".c")) or "…" in s


@handler("npm")
def _npm(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    record(name, args, ctx)
    ops = [t for t in texts if t is None or not t.startswith("-")]
    sub = ops[0] if ops else None
    if any(t and t.startswith("--script-shell") for t in texts):
        ctx.an.unsure("npm --script-shell runs another shell")
    if sub in ("exec", "x", "explore", "init", "create", "edit", "rebuild"):
        ctx.an.unsure(f"npm {sub} runs a program")
    elif sub in ("run", "run-script", "rum", "urn", "start", "test", "t", "tst", "restart",
                 "stop", "install", "i", "ci", "add", "update", "up", "pack", "publish"):
        pj = astr(*ctx.st.cwd, "/package.json")
        if ctx.an.written_match(pj, ctx.st) or ctx.st.unknown_writes:
            ctx.an.unsure(f"npm {sub} runs package.json scripts written in this session")
        if sub in ("install", "i", "ci", "add", "update", "up"):
            _effect(ctx, "write", astr(*ctx.st.cwd, "/", Hole.ANY), "npm", content=False,
                    track=False)
    elif sub == "config" and len(ops) > 1 and ops[1] == "set":
        if any(t and "script-shell" in t for t in texts) or any(
                t is None for t in texts):
            ctx.an.unsure("npm config sets the shell that runs scripts")
    elif sub is None and ops:
        ctx.an.unsure("dynamic npm command")


@handler("pip")
def _pip(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    record(name, args, ctx)
    ops = [a for a in args if not (a.text or "-").startswith("-")]
    sub = ops[0].text if ops else None
    if sub in ("install", "download", "wheel"):
        for k, a in enumerate(args):
            t = a.text
            local = t is None or t.startswith(("./", "../", "/", "~")) or t == "." or \
                t.endswith((".whl", ".tar.gz", ".zip")) or (k and texts[k - 1] in (
                    "-e", "--editable", "-r", "--requirement", "-c", "--constraint"))
            if a is ops[0] or not local or (t or "").startswith("-"):
                continue
            path = ctx.an.path(a, ctx.st)
            under = astr(*path, "/", Hole.ANY)
            if ctx.an.written_match(path, ctx.st) or ctx.an.written_match(under, ctx.st) or \
                    ctx.st.unknown_writes:
                ctx.an.unsure(f"pip {sub} builds code written in this session")
                break
        if sub == "install":
            from gateway.policy.programs import SYSTEM_DIRS, _glob_path

            for g in ("~/.local/**", *SYSTEM_DIRS):
                _effect(ctx, "write", _glob_path(g), "pip", content=False, track=False)


@handler("container")
def _container(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    record(name, args, ctx)
    i = 0
    while i < len(texts) and (texts[i] or "").startswith("-"):
        t = texts[i] or ""
        i += 2 if t in ("-H", "--host", "--context", "-c", "--config", "-l", "--log-level",
                        "-f", "--file", "-p", "--project-name", "--profile", "--env-file",
                        "--project-directory") else 1
    if i >= len(texts):
        return
    sub = texts[i]
    if sub == "compose" or name == "docker-compose":
        j = i + 1 if sub == "compose" else i
        while j < len(texts) and (texts[j] or "").startswith("-"):
            j += 2 if texts[j] in ("-f", "--file", "-p", "--project-name", "--profile",
                                   "--env-file") else 1
        csub = texts[j] if j < len(texts) else None
        if csub in ("run", "exec"):
            k = j + 1
            while k < len(texts) and (texts[k] or "").startswith("-"):
                k += 2 if texts[k] in ("-e", "--env", "-u", "--user", "-w", "--workdir",
                                       "-v", "--volume", "-p", "--publish", "--name",
                                       "--entrypoint", "-l", "--label", "--index") else 1
            _container_cmd(args[k + 1 :], ctx, f"{name} compose {csub}")
        elif csub is None:
            ctx.an.unsure("dynamic docker compose command")
        return
    if sub in ("run", "exec", "create", "container"):
        if sub == "container":
            if i + 1 < len(texts) and texts[i + 1] in ("run", "exec", "create"):
                i += 1
                sub = texts[i]
            else:
                return
        k = i + 1
        takes = {"-e", "--env", "-u", "--user", "-w", "--workdir", "-v", "--volume", "-p",
                 "--publish", "--name", "--entrypoint", "-l", "--label", "--network",
                 "--net", "-h", "--hostname", "--mount", "--env-file", "--cap-add",
                 "--cap-drop", "--device", "--restart", "-m", "--memory", "--cpus",
                 "--platform", "--pull", "--add-host", "--dns", "--ulimit", "--security-opt",
                 "--tmpfs", "--log-driver", "--log-opt", "--gpus", "--pid", "--ipc",
                 "--userns", "--shm-size", "--stop-signal", "--health-cmd", "--detach-keys",
                 "-a", "--attach", "--cidfile", "--group-add", "--label-file", "--runtime"}
        while k < len(texts) and (texts[k] or "").startswith("-"):
            t = texts[k] or ""
            if t in ("--entrypoint",) or t.startswith("--entrypoint="):
                ctx.an.unsure(f"{name} --entrypoint runs another program in the container")
            if t.startswith("--health-cmd"):
                ctx.an.unsure(f"{name} --health-cmd runs a command")
            k += 2 if t in takes else 1
        _container_cmd(args[k + 1 :], ctx, f"{name} {sub}")
        return
    plain = {"ps", "images", "image", "pull", "push", "logs", "inspect", "stats", "top", "stop",
             "start", "restart", "kill", "rm", "rmi", "network", "volume", "system", "info",
             "version", "tag", "login", "logout", "save", "load", "build", "buildx", "cp",
             "port", "pause", "unpause", "wait", "events", "history", "diff", "commit",
             "export", "import", "search", "rename", "update", "context", "manifest", "pod",
             "ls", "builder", "node", "service", "stack", "swarm", "secret", "config",
             "plugin", "trust", "scout", "init", "attach", "machine", "generate", "play"}
    if sub is None or sub not in plain:
        ctx.an.unsure(f"{name} {sub} is not a command bastille knows (a plugin may run "
                      "anything)")
    elif sub == "plugin" or sub == "attach":
        ctx.an.unsure(f"{name} {sub} is not checked")


def _container_cmd(words: list[Field], ctx: Ctx, where: str) -> None:
    if not words:
        if not ctx.an.exec_mode and ctx.stdin.kind == "tty":
            stdin_code(where, "bash", ctx, kind="shell")
        return
    _argv(words, ctx, where, remote=True)


@handler("kubectl")
def _kubectl(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    record(name, args, ctx)
    ops = [t for t in texts if t is None or not t.startswith("-")]
    sub = ops[0] if ops else None
    if sub in ("exec", "run"):
        if "--" in texts:
            k = texts.index("--")
            _container_cmd(args[k + 1 :], ctx, f"kubectl {sub}")
        elif sub == "exec":
            ctx.an.unsure("kubectl exec without -- (its command cannot be told apart)")
        return
    known = {"get", "describe", "logs", "apply", "create", "delete", "edit", "scale",
             "rollout", "top", "config", "cluster-info", "version", "api-resources",
             "api-versions", "explain", "label", "annotate", "patch", "replace", "expose",
             "set", "cp", "port-forward", "proxy", "cordon", "uncordon", "drain", "taint",
             "auth", "diff", "kustomize", "wait", "events", "certificate", "completion",
             "autoscale"}
    if sub not in known:
        ctx.an.unsure(f"kubectl {sub} is not checked (attach, debug and plugins run "
                      "anything)")


@handler("ansible")
def _ansible(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    record(name, args, ctx)
    module = "command"
    margs: str | None = None
    for k, t in enumerate(texts):
        if t in ("-m", "--module-name") and k + 1 < len(texts):
            module = texts[k + 1] or "?"
        elif t in ("-a", "--args") and k + 1 < len(texts):
            margs = texts[k + 1]
            if margs is None:
                ctx.an.unsure("dynamic ansible module arguments")
                return
    if module.rsplit(".", 1)[-1] in ("command", "shell", "raw"):
        if margs is not None:
            _string(margs, ctx, f"ansible -m {module}", remote=True)
    elif module.rsplit(".", 1)[-1] in ("script", "expect", "win_shell", "win_command"):
        ctx.an.unsure(f"ansible -m {module} runs a script")
