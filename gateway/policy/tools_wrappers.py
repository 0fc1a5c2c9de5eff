"""Handlers of programs that run another program (sudo, su, env, xargs, watch,
strace...): the wrapped command is analysed like a command of the line (see
``tools.py``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.policy.argv import skip_options
from gateway.policy.catalogue import Program
from gateway.policy.ctx import Ctx
from gateway.policy.programs import (
    record,
    run_inner,
    screen,
    shell,
    stdin_code,
)
from gateway.policy.records import Start
from gateway.policy.tools_common import Handlers, _effect, _joined, _login, _string, _t
from gateway.policy.values import Field, Hole, astr

HANDLERS = Handlers()
handler = HANDLERS.register

# --------------------------------------------------------------------------- wrappers


@handler("sudo")
def _sudo(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    opts = _sudo_options(prog, name, args, ctx)
    if opts is None:
        return
    i, flags = opts
    if not ctx.an.exec_mode:
        ctx.an.starts.append(Start(name, "password", ""))
    rest = _assignments(args[i:], ctx)
    if flags & {"-e", "--edit"} or name == "sudoedit":
        for f in rest:
            _effect(ctx, "write", ctx.an.path(f, ctx.st), "sudoedit")
        screen("sudoedit", "vi", ctx)
    elif flags & {"-l", "--list", "-v", "--validate", "-k", "-K", "-V", "-h", "--help"}:
        return
    elif flags & {"-s", "--shell", "-i", "--login"}:
        if rest:
            _string(_joined(rest), ctx, name)
        else:
            stdin_code(name, "bash", ctx, kind="shell")
            if flags & {"-i", "--login"}:
                _login(ctx)
    elif rest:
        _run_elsewhere(rest, ctx, name, chdir=bool(flags & {"-D", "--chdir"}))


def _assignments(rest: list[Field], ctx: Ctx) -> list[Field]:
    """``VAR=value`` before the command (checked like assignments): the command after."""
    while rest and rest[0].text and re.match(r"[A-Za-z_]\w*=", rest[0].text):
        var, _, value = (rest[0].text or "").partition("=")
        ctx.an.check_assignment(var, value, ctx.st, prefix=True)
        rest = rest[1:]
    return rest


def _sudo_options(prog: Program, name: str, args: list[Field], ctx: Ctx
                  ) -> tuple[int, set[str]] | None:
    """sudo's options: where the command starts, and the options given; None after a
    dynamic option (uncertain)."""
    i, n = 0, len(args)
    flags: set[str] = set()
    while i < n:
        t = args[i].text
        if t is None:
            if args[i].maybe_option:
                ctx.an.unsure(f"dynamic option to {name}")
                return None
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
        i += _short_flags(prog, t, flags)
    return i, flags


def _short_flags(prog: Program, t: str, flags: set[str]) -> int:
    """A bundle of short options added to ``flags``: 1 if its last one takes the next
    argument as its value, else 0."""
    for k, c in enumerate(t[1:]):
        flags.add("-" + c)
        if c in prog.with_arg:
            return 0 if t[k + 2 :] else 1
    return 0


def _run_elsewhere(rest: list[Field], ctx: Ctx, where: str, *, chdir: bool) -> None:
    """Run a wrapped command; in a directory that is not known when ``chdir``."""
    if not chdir:
        run_inner(rest, ctx, where)
        return
    saved = ctx.st.cwd
    ctx.st.cwd = (Hole.WORD,)
    try:
        run_inner(rest, ctx, where)
    finally:
        ctx.st.cwd = saved


@handler("su")
def _su(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    texts = _t(args)
    if any(t is None and a.maybe_option for t, a in zip(texts, args, strict=True)):
        ctx.an.unsure(f"dynamic option to {name}")
        return
    o = _SuOptions()
    i: int | None = 0
    while i is not None and i < len(texts):
        i = _su_arg(o, name, texts, i)
    if not ctx.an.exec_mode and name == "su":
        ctx.an.starts.append(Start(name, "password", ""))
    if o.shell is not None and o.shell.rsplit("/", 1)[-1] not in ("sh", "bash", "dash"):
        ctx.an.unsure(f"{name} --shell {o.shell} is not checked")
    if o.has_command:
        _string(o.command, ctx, f"{name} -c")
        return
    if o.argv_start is not None and o.argv_start < len(texts):
        run_inner(args[o.argv_start:], ctx, name)
        return
    stdin_code(name, "bash", ctx, kind="shell")
    if o.login:
        _login(ctx)


@dataclass
class _SuOptions:
    command: str | None = None  # -c COMMAND (None: not known)
    has_command: bool = False
    shell: str | None = None  # -s SHELL
    login: bool = False
    user_seen: bool = False
    argv_start: int | None = None  # runuser -u USER -- ARGV, su USER -- ARGS


def _su_arg(o: _SuOptions, name: str, texts: list[str | None], i: int) -> int | None:
    """The argument of su/runuser at ``i``: the index of the next one (None: the rest is
    the command's)."""
    t = texts[i] or ""
    n = len(texts)
    if t == "--":
        o.argv_start = i + 1
        return None
    if t in ("-c", "--command", "--session-command") or t.startswith(
            ("--command=", "--session-command=")):
        o.has_command = True
        if "=" in t:
            o.command = t.split("=", 1)[1]
            return i + 1
        o.command = texts[i + 1] if i + 1 < n else ""
        return i + 2
    if t in ("-s", "--shell"):
        o.shell = texts[i + 1] if i + 1 < n else None
        return i + 2
    if t.startswith("--shell="):
        o.shell = t.split("=", 1)[1]
    elif t in ("-", "-l", "--login"):
        o.login = True
    elif t in ("-u", "--user", "-g", "--group", "-G", "--supp-group", "-w",
               "--whitelist-environment"):
        return i + 2
    elif t.startswith("-") and not t.startswith("--"):
        return _su_short(o, t, texts, i)
    elif not t.startswith("-"):
        return _su_operand(o, name, texts, i)
    return i + 1


def _su_short(o: _SuOptions, t: str, texts: list[str | None], i: int) -> int:
    """A bundle of short options (``-lc CMD``, ``-c CMD``)."""
    if "c" in t[1:]:
        rest = t[t.index("c", 1) + 1 :]
        o.has_command = True
        o.command = rest if rest else (texts[i + 1] if i + 1 < len(texts) else "")
        return i + (1 if rest else 2)
    if "l" in t[1:]:
        o.login = True
    return i + 1


def _su_operand(o: _SuOptions, name: str, texts: list[str | None], i: int) -> int | None:
    """The user (``su USER``), or the command of ``runuser -u USER COMMAND``."""
    if name == "runuser" and o.user_seen is False and "-u" not in texts:
        o.user_seen = True
    elif name == "runuser" and "-u" in texts:
        o.argv_start = i
        return None
    else:
        o.user_seen = True
    return i + 1


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
    opts = _env_options(args, texts, ctx)
    if opts is None:
        return
    i, chdir = opts
    n = len(args)
    while i < n and texts[i] and re.match(r"[A-Za-z_][A-Za-z0-9_]*=", texts[i] or ""):
        var, _, value = (texts[i] or "").partition("=")
        ctx.an.check_assignment(var, value, ctx.st, prefix=True)
        i += 1
    if i < n and args[i].text is None and any(
            isinstance(c, str) and "=" in c for c in args[i].chunks[:1]):
        ctx.an.unsure("env with a dynamic assignment")
        i += 1
    if i < n:
        _run_elsewhere(args[i:], ctx, "env", chdir=chdir)


def _env_options(args: list[Field], texts: list[str | None], ctx: Ctx
                 ) -> tuple[int, bool] | None:
    """env's options: where the assignments start and whether ``-C`` changes the
    directory; None when the command was decided (``-S``, a dynamic option)."""
    i, n = 0, len(args)
    chdir = False
    while i < n:
        t = texts[i]
        if t is None:
            if args[i].maybe_option:
                ctx.an.unsure("dynamic option to env")
                return None
            break
        if t == "--":
            i += 1
            break
        if t in ("-u", "--unset", "-C", "--chdir"):
            chdir |= t in ("-C", "--chdir")
            i += 2
            continue
        if t.startswith(("-S", "--split-string")):
            _env_split_string(t, texts, i, ctx)
            return None
        if not t.startswith("-"):
            break
        i += 1
    return i, chdir


def _env_split_string(t: str, texts: list[str | None], i: int, ctx: Ctx) -> None:
    """``env -S 'STRING' ARGS``: the string is split into a command line."""
    n = len(texts)
    value = t[2:] if t.startswith("-S") and len(t) > 2 else (
        t.split("=", 1)[1] if "=" in t else (texts[i + 1] if i + 1 < n else ""))
    rest = texts[i + (1 if (len(t) > 2 and t.startswith("-S")) or "=" in t else 2):]
    if value is None or any(x is None for x in rest):
        ctx.an.unsure("dynamic env -S")
        return
    _string(" ".join([value, *(x or "" for x in rest)]), ctx, "env -S")


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
    opts = _xargs_options(args, texts, ctx)
    if opts is None:
        return
    i, replace = opts
    inner = args[i:] or [Field(astr("echo"))]
    if replace:
        inner = [inner[0], *(Field((Hole.ANY,)) if replace in (a.text or "") else a
                             for a in inner[1:])]
    else:
        inner = [*inner, _xargs_input(texts[:i], ctx)]
    run_inner(inner, ctx, "xargs")


_XARGS_TAKES = frozenset({
    "-a", "-E", "-d", "-I", "-L", "-n", "-P", "-s", "--arg-file", "--delimiter", "--eof",
    "--max-lines", "--max-args", "--max-procs", "--max-chars", "--process-slot-var"})


def _xargs_options(args: list[Field], texts: list[str | None], ctx: Ctx
                   ) -> tuple[int, str | None] | None:
    """xargs's options: where the command starts and the ``-I`` placeholder; None after
    a dynamic option (uncertain)."""
    i, n = 0, len(args)
    replace: str | None = None
    while i < n:
        t = texts[i]
        if t is None:
            if args[i].maybe_option:
                ctx.an.unsure("dynamic option to xargs")
                return None
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
        i += 2 if t in _XARGS_TAKES else 1
    return i, replace


def _xargs_input(opts: list[str | None], ctx: Ctx) -> Field:
    """The arguments xargs adds: unknown words, or paths under a root when ``find ROOT
    -print0 | xargs -0`` (or newline-separated with ``-d '\\n'``) feeds it."""
    shape = ctx.stdin.paths if ctx.stdin.kind == "pipe" else None
    nul = any(t in ("-0", "--null") for t in opts)
    newline = any(t in ("-d", "--delimiter") and k + 1 < len(opts) and opts[k + 1] in
                  ("\\n", "\n") for k, t in enumerate(opts))
    if shape is not None and ((shape[1] == "\0" and nul) or (shape[1] == "\n" and newline)):
        root = shape[0]
        return Field(astr(*root, "/", Hole.ANY) if root != ("/",) else astr("/", Hole.ANY),
                     quoted_start=True)
    return Field((Hole.ANY,), split=True)


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
