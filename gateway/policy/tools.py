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
from dataclasses import dataclass, field

from gateway.policy.argv import exec_checks, operands, skip_options
from gateway.policy.catalogue import Program
from gateway.policy.ctx import Ctx
from gateway.policy.effects import add_effects, own_content
from gateway.policy.program_langs import check_awk, check_sed
from gateway.policy.programs import (
    apply_lang,
    record,
    run_inner,
    script_file,
    stdin_code,
)
from gateway.policy.records import Stdin
from gateway.policy.tools_common import (
    Handlers,
    _argv,
    _effect,
    _joined,
    _login,
    _string,
    _t,
)
from gateway.policy.values import AStr, Field, Hole, astr, resolve, static

HANDLERS = Handlers()
handler = HANDLERS.register


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
    o = _SedOptions()
    i = 0
    while i < len(args):
        i = _sed_arg(o, args, i, name, ctx)
    if not o.scripts and o.files:
        first = o.files.pop(0)
        o.scripts.append(first.text)
    for s in o.scripts:
        if s is None:
            if not o.sandbox:
                ctx.an.unsure("dynamic sed script")
            continue
        r = check_sed(s)
        if o.sandbox:
            r.uncertain = [u for u in r.uncertain if "runs" not in u]
            r.shell = []
        apply_lang(r, ctx, "sed")
    if o.in_place:
        for f in o.files:
            _effect(ctx, "write", ctx.an.path(f, ctx.st), "sed -i")
    record(name, args, ctx)


@dataclass
class _SedOptions:
    scripts: list[str | None] = field(default_factory=list)
    files: list[Field] = field(default_factory=list)
    in_place: bool = False
    sandbox: bool = False


def _sed_arg(o: _SedOptions, args: list[Field], i: int, name: str, ctx: Ctx) -> int:
    """The argument of sed at ``i``; the index of the next one."""
    t = args[i].text
    n = len(args)
    if t is None:
        if args[i].maybe_option:
            ctx.an.unsure("dynamic option to sed")
        o.files.append(args[i])
        return i + 1
    if t in ("-e", "--expression"):
        o.scripts.append(args[i + 1].text if i + 1 < n else "")
        return i + 2
    if t.startswith("--expression="):
        o.scripts.append(t.split("=", 1)[1])
    elif t in ("-f", "--file") or t.startswith("--file="):
        f = args[i + 1] if t in ("-f", "--file") and i + 1 < n else Field(astr(t[7:]))
        script_file(name, f, ctx)
        o.scripts.append("")
        return i + (2 if t in ("-f", "--file") else 1)
    elif t.startswith("--in-place") or (t.startswith("-i") and not t.startswith("--")):
        o.in_place = True
    elif t == "--sandbox":
        o.sandbox = True
    elif t.startswith("-") and not t.startswith("--") and len(t) > 1:
        return _sed_short(o, t[1:], args, i, name, ctx)
    elif not t.startswith("--"):
        o.files.append(args[i])
    return i + 1


def _sed_short(o: _SedOptions, body: str, args: list[Field], i: int, name: str, ctx: Ctx
               ) -> int:
    """A bundle of sed's short options (``-ne SCRIPT``, ``-nf FILE``, ``-ni``)."""
    if "i" in body:
        o.in_place = True
    if "e" not in body and "f" not in body:
        return i + 1
    k = max(body.find("e"), body.find("f"))
    rest = body[k + 1 :]
    value = rest or (args[i + 1].text if i + 1 < len(args) else "")
    if body[k] == "f":
        script_file(name, Field(astr(value or "")), ctx)
        value = ""
    o.scripts.append(value)
    return i + (1 if rest else 2)


@handler("awk")
def _awk(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    o = _AwkProgram()
    i = 0
    while i < len(args):
        i = _awk_arg(o, args, i, name, ctx)
    if o.text is None:
        ctx.an.unsure(f"dynamic {name} program")
    elif o.text:
        apply_lang(check_awk(o.text), ctx, name)
    record(name, args, ctx)


@dataclass
class _AwkProgram:
    text: str | None = ""  # None: not known
    have: bool = False  # the program was given (inline, -e or -f)


def _awk_arg(o: _AwkProgram, args: list[Field], i: int, name: str, ctx: Ctx) -> int:
    """The argument of awk at ``i``; the index of the next one."""
    t = args[i].text
    n = len(args)
    if t is None:
        if not o.have:
            o.text, o.have = None, True
        return i + 1
    if t in ("-f", "--file") or (t.startswith("-f") and len(t) > 2):
        f = args[i + 1] if t in ("-f", "--file") and i + 1 < n else Field(astr(t[2:]))
        script_file(name, f, ctx)
        o.have = True
        return i + (2 if t in ("-f", "--file") else 1)
    if t in ("-v", "-F", "--assign", "--field-separator"):
        return i + 2
    if t in ("-e", "--source"):
        o.text = (o.text or "") + "\n" + (args[i + 1].text or "") if i + 1 < n and \
            args[i + 1].text is not None else None
        o.have = True
        return i + 2
    if t in ("-i", "--include", "-l", "--load", "-E", "--exec") or t.startswith(
            ("--include=", "--load=", "--exec=")):
        ctx.an.unsure(f"{name} {t} loads code")
        return i + (2 if "=" not in t else 1)
    if not (t.startswith("-") and t != "-") and not o.have:
        o.text, o.have = t, True
    return i + 1


@handler("tar")
def _tar(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    exec_checks(prog, name, args, ctx)
    o = _TarOptions()
    o.read(args)
    st = ctx.st
    if o.mode == "x":
        # the files of an archive this session could not have written are the target's
        # own: they are not tracked as written here (building or running them is like
        # running any of the target's files); an archive from the user's input, a
        # dynamic name or a file written here holds the user's content
        # renaming while extracting (--transform) could give a program another name
        own = own_content([o.archive], ctx) if o.archive is not None and not any(
            (a.text or "-").startswith(("--transform", "--xform")) or a.text is None
            for a in args) else False
        if o.absolute:
            _effect(ctx, "write", (Hole.ANY,), "tar -x", track=not own)
        else:
            base = ctx.an.path(o.directory, st) if o.directory is not None else st.cwd
            _effect(ctx, "write", astr(*base, "/", Hole.ANY), "tar -x", content=False,
                    track=not own)
    elif o.mode in ("c", "r", "u", "A") and o.archive is not None and o.archive.text != "-":
        _effect(ctx, "write", ctx.an.path(o.archive, st), "tar")
    if o.remove:
        _effect(ctx, "delete", (Hole.ANY,), "tar --remove-files")
    record(name, args, ctx)


_TAR_WITH_ARG = set("bCfFgHIKLNTVX")
_TAR_MODES = {"--create": "c", "--append": "c", "--update": "c", "--concatenate": "c",
              "--catenate": "c", "--extract": "x", "--get": "x", "--delete": "r"}


@dataclass
class _TarOptions:
    """What tar's options say: its mode, the archive, the directory, what it removes."""

    mode: str = ""
    archive: Field | None = None
    directory: Field | None = None
    absolute: bool = False
    remove: bool = False

    def read(self, args: list[Field]) -> None:
        queue: list[str] = []  # short options waiting for their value
        for k, a in enumerate(args):
            t = a.text
            if queue:
                self._value(queue.pop(0), a)
                continue
            if t is None:
                continue
            bundle = t[1:] if t.startswith("-") and not t.startswith("--") else (
                t if k == 0 and not t.startswith("-") else None)
            if bundle is not None:
                queue.extend(self._bundle(bundle, t.startswith("-")))
            else:
                self._long(t)

    def _value(self, opt: str, a: Field) -> None:
        if opt == "f":
            self.archive = a
        elif opt == "C":
            self.directory = a

    def _bundle(self, bundle: str, dashed: bool) -> list[str]:
        """Short options (``-czf``, or ``czf`` first); those waiting for a value."""
        queued: list[str] = []
        for j, c in enumerate(bundle):
            if c in "cxtrudA":
                self.mode = self.mode or c
            if c == "P":
                self.absolute = True
            if c in _TAR_WITH_ARG:
                rest = bundle[j + 1 :]
                if rest and dashed:
                    self._value(c, Field(astr(rest)))
                    break
                queued.append(c)
        return queued

    def _long(self, t: str) -> None:
        key, _, value = t.partition("=")
        if key in _TAR_MODES:
            self.mode = _TAR_MODES[key]
        elif key == "--absolute-names":
            self.absolute = True
        elif key == "--remove-files":
            self.remove = True
        elif key == "--file":
            self.archive = Field(astr(value)) if value else None
        elif key == "--directory":
            self.directory = Field(astr(value)) if value else None


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
    o = _RsyncOptions()
    i = 0
    while i < len(args):
        i = _rsync_arg(o, args, texts, i, ctx)
    if len(o.ops) >= 2:
        dest = o.ops[-1]
        dt = dest.text
        if dt is None or not re.match(r"^[^/]*:", dt):
            path = ctx.an.path(dest, ctx.st)
            if path != (Hole.ANY,):  # a file named as the destination: `rsync a b.sh`
                _effect(ctx, "write", path, "rsync")
            _effect(ctx, "write", astr(*path, "/", Hole.ANY) if path != (Hole.ANY,) else path,
                    "rsync")
            if o.delete:
                _effect(ctx, "delete", astr(*path, "/", Hole.ANY), "rsync --delete")
        if o.remove:
            _effect(ctx, "delete", (Hole.ANY,), "rsync --remove-source-files")
    record(name, args, ctx)


@dataclass
class _RsyncOptions:
    ops: list[Field] = field(default_factory=list)
    delete: bool = False
    remove: bool = False


def _rsync_arg(o: _RsyncOptions, args: list[Field], texts: list[str | None], i: int,
               ctx: Ctx) -> int:
    """The argument of rsync at ``i``; the index of the next one."""
    t = texts[i]
    n = len(args)
    if t is None:
        if args[i].maybe_option:
            ctx.an.unsure("dynamic option to rsync")
        o.ops.append(args[i])
        return i + 1
    if t in ("-e", "--rsh") or t.startswith("--rsh="):
        value = texts[i + 1] if "=" not in t and i + 1 < n else t.partition("=")[2]
        _rsync_rsh(value, ctx)
        return i + (2 if "=" not in t else 1)
    if t.startswith("-") and not t.startswith("--") and "e" in t[1:]:
        inline = t[t.index("e", 1) + 1 :]
        _rsync_rsh(inline or (texts[i + 1] if i + 1 < n else None), ctx)
        return i + (1 if inline else 2)
    if t.startswith("--rsync-path"):
        value = t.partition("=")[2] if "=" in t else (texts[i + 1] if i + 1 < n else None)
        _string(value, ctx, "rsync --rsync-path", remote=True, stdin=Stdin("null"))
        return i + (1 if "=" in t else 2)
    if t.startswith("--delete"):
        o.delete = True
    elif t == "--remove-source-files":
        o.remove = True
    elif t in ("--log-file", "--files-from", "--exclude-from", "--include-from",
               "--password-file", "--filter", "-f", "--exclude", "--include"):
        return i + 2
    elif not t.startswith("-"):
        o.ops.append(args[i])
    return i + 1


def _rsync_rsh(value: str | None, ctx: Ctx) -> None:
    """``rsync -e COMMAND``: the program rsync runs to reach the other side."""
    if value is None:
        ctx.an.unsure("dynamic rsync -e")
    else:
        _argv([Field(astr(w)) for w in shlex.split(value)] if value else [], ctx, "rsync -e")


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
    i, no_command = _ssh_host(prog, name, args, ctx)
    rest = args[i + 1 :]
    if rest:
        _string(_joined(rest), ctx, name, remote=True)
    elif not no_command:
        stdin_code(name, "bash", ctx, kind="shell")
        _login(ctx)


def _ssh_host(prog: Program, name: str, args: list[Field], ctx: Ctx
              ) -> tuple[int, bool]:
    """Where the host is in ssh's arguments, and whether ``-N`` (no command) was given."""
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
    return i, no_command


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
    starts, i = _find_starts(args, texts, ctx)
    roots = [ctx.an.path(f, st) for f in starts] or [st.cwd]
    under = [astr(*r, "/", Hole.ANY) if r != ("/",) else astr("/", Hole.ANY) for r in roots]
    n = len(args)
    while i < n:
        t = texts[i]
        if t is None:
            ctx.an.unsure("dynamic find expression (it may be -exec)")
        elif t in ("-exec", "-execdir", "-ok", "-okdir"):
            i = _find_exec(t, args, texts, i, roots, ctx)
            continue
        elif t == "-delete":
            for u in under:
                _effect(ctx, "delete", u, "find -delete")
        elif t in ("-fprint", "-fprint0", "-fls", "-fprintf") and i + 1 < n:
            _effect(ctx, "write", ctx.an.path(args[i + 1], st), f"find {t}")
            i += 3 if t == "-fprintf" else 2
            continue
        i += 1
    record(name, args, ctx)


def _find_starts(args: list[Field], texts: list[str | None], ctx: Ctx
                 ) -> tuple[list[Field], int]:
    """find's starting points (after -H/-L/-P/-O/-D), and where the expression starts."""
    starts: list[Field] = []
    i, n = 0, len(args)
    while i < n and texts[i] in ("-H", "-L", "-P", "-O0", "-O1", "-O2", "-O3", "-D"):
        i += 2 if texts[i] == "-D" else 1
    while i < n:
        t = texts[i]
        if t is None:
            if args[i].maybe_option:
                ctx.an.unsure("dynamic argument to find (it may be -exec)")
        elif t.startswith("-") or t in ("(", "!", ")", ","):
            break
        starts.append(args[i])
        i += 1
    return starts, i


def _find_exec(t: str, args: list[Field], texts: list[str | None], i: int,
               roots: list[AStr], ctx: Ctx) -> int:
    """``-exec CMD {} ;`` and the like: CMD runs with ``{}`` a path under the roots;
    the index after its terminator."""
    st = ctx.st
    j = i + 1
    while j < len(args) and texts[j] not in (";", "+"):
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
    return j + 1


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
        ctx.an.quiet += 1
        try:
            run_inner(inner[1:], ctx, "chroot")
        finally:
            ctx.an.quiet -= 1
    else:
        stdin_code(name, "bash", ctx, kind="shell")


@handler("loader")
def _loader(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    for a in args:
        if not (a.text or "-").startswith("-"):
            script_file(name, a, ctx)
            break

