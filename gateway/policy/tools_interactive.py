"""Handlers of programs with their own command lines: editors, pagers, terminal
multiplexers, service managers, package managers, SQL clients and debuggers (see
``tools.py``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gateway.policy.catalogue import Program
from gateway.policy.ctx import Ctx
from gateway.policy.effects import SYSTEM_DIRS, _glob_path, add_effects
from gateway.policy.langs import LangResult
from gateway.policy.program_langs import check_ex, check_gdb, check_line
from gateway.policy.programs import (
    apply_lang,
    record,
    run_inner,
    screen,
    script_file,
    stdin_code,
)
from gateway.policy.tools_common import Handlers, _effect, _string, _t
from gateway.policy.values import Field, Hole, astr, show

HANDLERS = Handlers()
handler = HANDLERS.register

# --------------------------------------------------------------------------- editors, pagers


@handler("vi")
def _vi(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    o = _ViOptions()
    i: int | None = 0
    while i is not None and i < len(args):
        i = _vi_arg(o, name, args, i, ctx)
    for f in o.files:
        if f.text != "-":
            _effect(ctx, "write", ctx.an.path(f, ctx.st), name)
    record(name, args, ctx)
    if o.ex_mode:
        stdin_code(name, "ex", ctx, kind="repl")
    else:
        screen(name, "vi", ctx)


@dataclass
class _ViOptions:
    files: list[Field] = field(default_factory=list)
    ex_mode: bool = False


def _vi_arg(o: _ViOptions, name: str, args: list[Field], i: int, ctx: Ctx) -> int | None:
    """The argument of vi at ``i``: the index of the next one (None: no more options)."""
    t = args[i].text
    if t is None:
        o.files.append(args[i])
        if args[i].maybe_option:
            ctx.an.unsure(f"dynamic argument to {name}")
        return i + 1
    if t.startswith("--remote") or t.startswith("--servername"):
        ctx.an.unsure(f"{name} {t} talks to another editor")
        return i + 2
    nxt = _vi_option_value(name, t, args, i, ctx) if i + 1 < len(args) else None
    if nxt is not None:
        return nxt
    if t.startswith("+"):
        v = t[1:]
        if v and not v.isdigit() and not v.startswith(("/", "?")):
            apply_lang(check_ex(v), ctx, name)
    elif t in ("-e", "-E", "-es", "-Es", "-s") or (t.startswith("-") and "s" in t[1:] and
                                                   "e" in t[1:]):
        o.ex_mode = True
    elif t == "--":
        o.files.extend(args[i + 1 :])
        return None
    elif not (t.startswith("-") and t != "-"):
        o.files.append(args[i])
    return i + 1


def _vi_option_value(name: str, t: str, args: list[Field], i: int, ctx: Ctx) -> int | None:
    """An option of vi followed by a value (there is one): the index after the value;
    None if ``t`` is not such an option."""
    v = args[i + 1].text
    if t in ("-c", "--cmd"):
        apply_lang(check_ex(v) if v is not None else _dyn(), ctx, name)
    elif t in ("-S", "-u", "-U", "-s", "-i") or (t == "-l" and name == "nvim"):
        if v not in ("NONE", "NORC"):  # nvim -l: a Lua script (vim's -l: lisp mode)
            script_file(f"{name} {t}", args[i + 1], ctx)
    elif t in ("-w", "-W", "--startuptime"):
        _effect(ctx, "write", ctx.an.path(args[i + 1], ctx.st), name)
    elif t not in ("-t", "-q", "-T", "-r", "-L"):
        return None
    return i + 2


def _dyn() -> LangResult:
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
        if t == "-c":
            _string(texts[i + 1] if i + 1 < len(texts) else "", ctx, "tmux -c")
            return
        if t == "-f" and i + 1 < len(args):
            script_file("tmux -f", args[i + 1], ctx)
        i += 2 if t in ("-f", "-L", "-S", "-T") else 1
    sub = texts[i] if i < len(texts) else None
    if sub in _TMUX_SAFE:
        return
    if sub in _TMUX_STARTS:
        _tmux_start(args[i + 1 :], ctx)
        screen(name, "shell-screen", ctx)
        return
    ctx.an.unsure(f"tmux {sub} is not checked (it can send keys or run commands)")


_TMUX_SAFE = frozenset({
    "ls", "list-sessions", "list-windows", "lsw", "list-panes", "lsp", "kill-session",
    "kill-server", "kill-window", "kill-pane", "killp", "detach", "detach-client",
    "has-session", "has", "list-clients", "lsc", "list-keys", "lsk", "list-commands", "lscm",
    "show-options", "show", "show-messages", "info", "display-message", "display",
    "capture-pane", "capturep", "rename-session", "rename-window", "select-window", "selectw",
    "select-pane", "selectp", "resize-pane", "resizep", "list-buffers", "lsb", "show-buffer",
    "showb", "start-server", "start", "server-info", "switch-client", "switchc"})
_TMUX_STARTS = frozenset({None, "new", "new-session", "attach", "attach-session", "a", "at",
                          "new-window", "neww", "split-window", "splitw"})


def _tmux_start(tail: list[Field], ctx: Ctx) -> None:
    """``tmux new [options] [COMMAND]``: the command, run by a shell."""
    texts = _t(tail)
    j = 0
    while j < len(texts):
        t = texts[j] or ""
        if not t.startswith("-"):
            words = _t(tail[j:])
            _string(None if any(x is None for x in words) else " ".join(x or "" for x in words),
                    ctx, "tmux")
            return
        j += 2 if t in ("-s", "-n", "-t", "-c", "-x", "-y", "-F", "-e", "-f", "-l", "-p",
                        "-w") else 1


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
        if sub in ("enable", "reenable") and any("/" in (a.text or "") for a in ops[1:]):
            ctx.an.unsure(f"systemctl {sub} installs a unit file from a path (it runs later)")
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
        _apt_option(name, t, texts[k + 1] if k + 1 < len(texts) else None, k + 1 < len(texts),
                    ctx)
    ops = [t for t in texts if t and not t.startswith("-")]
    sub = ops[0] if ops else ""
    if sub in ("install", "remove", "purge", "upgrade", "dist-upgrade", "full-upgrade",
               "autoremove", "reinstall", "build-dep", "autopurge"):

        for g in SYSTEM_DIRS:
            _effect(ctx, "write", _glob_path(g), name, content=False, track=False)
        for a in args:
            t = a.text or ""
            if t.startswith(("./", "/", "~")) and t.endswith(".deb"):
                script_file(f"{name} install", a, ctx)
    record(name, args, ctx)


def _apt_option(name: str, t: str, nxt: str | None, has_next: bool, ctx: Ctx) -> None:
    """apt's ``-o KEY=VALUE`` that runs commands, and configuration files."""
    value = None
    if t in ("-o", "--option") and has_next:
        value = nxt or "?"
    elif t.startswith(("-o", "--option=")) and t not in ("-o", "--option"):
        value = t.split("=", 1)[1] if t.startswith("--") else t[2:]
    if value is not None and re.search(r"(?i)invoke|pre-install|::tools|pager|"
                                       r"post-install|script|::exec|\?", value):
        ctx.an.unsure(f"{name} -o {value.split('=')[0]} runs a command")
    if t in ("-c", "--config-file") or t.startswith("--config-file="):
        ctx.an.unsure(f"{name} {t.split('=')[0]} reads options from a file")


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
    o = _SqlArgs()
    i = 0
    while i < len(args):
        i = _sql_arg(o, lang, name, args, texts, i, ctx)
    for f in o.files:
        if f.text == "-":
            stdin_code(name, lang, ctx, kind="repl")
        else:
            script_file(name, f, ctx)
    for c in o.commands:
        if c is None:
            ctx.an.unsure(f"dynamic {name} command")
            continue
        for line in re.split(r"(?<=;)\s*|\n", c) if lang != "psql" else [c]:
            if line.strip():
                apply_lang(check_line(lang, line), ctx, name)
    record(name, args, ctx)
    if not o.commands and not o.files:
        stdin_code(name, lang, ctx, kind="repl")


@dataclass
class _SqlArgs:
    """What a SQL client is told to run: command strings and files of commands."""

    commands: list[str | None] = field(default_factory=list)
    files: list[Field] = field(default_factory=list)


_SQL_TAKES = frozenset({
    "-d", "-h", "-U", "-P", "-v", "-T", "-F", "-R", "-D", "-u", "-S", "--dbname", "--host",
    "--port", "--username", "--set", "--variable", "--pset", "--database", "--user",
    "--socket", "-separator", "-newline", "-nullvalue"})


def _sql_arg(o: _SqlArgs, lang: str, name: str, args: list[Field], texts: list[str | None],
             i: int, ctx: Ctx) -> int:
    """The argument of a SQL client at ``i``; the index of the next one."""
    t = texts[i]
    if t is None:
        if args[i].maybe_option:
            ctx.an.unsure(f"dynamic option to {name}")
        return i + 1
    step = _SQL_OPTIONS[lang](o, t, args, texts, i, ctx) if lang in _SQL_OPTIONS else None
    if step is not None:
        return step
    if t.startswith("-"):
        takes = t in _SQL_TAKES or (t == "-p" and lang == "psql")
        return i + (2 if takes else 1)
    if lang == "sqlite" and (any(x is not None for x in o.commands) or (i > 0 and any(
            not (x or "-").startswith("-") for x in texts[:i]))):
        o.commands.append(t)
    return i + 1


def _psql_option(o: _SqlArgs, t: str, args: list[Field], texts: list[str | None], i: int,
                 ctx: Ctx) -> int | None:
    n = len(args)
    if t in ("-c", "--command"):
        o.commands.append(texts[i + 1] if i + 1 < n else "")
        return i + 2
    if t.startswith("--command="):
        o.commands.append(t.split("=", 1)[1])
        return i + 1
    if t in ("-f", "--file"):
        if i + 1 < n:  # without its file, psql refuses to start
            o.files.append(args[i + 1])
        return i + 2
    if t.startswith("--file="):
        o.files.append(Field(astr(t.split("=", 1)[1])))
        return i + 1
    if t in ("-o", "--output", "-L", "--log-file"):
        v = texts[i + 1] if i + 1 < n else ""
        if v is None or v.startswith("|"):
            ctx.an.unsure(f"psql {t} pipes to a command")
        elif i + 1 < n:
            _effect(ctx, "write", ctx.an.path(args[i + 1], ctx.st), "psql")
        return i + 2
    return None


def _mysql_option(o: _SqlArgs, t: str, args: list[Field], texts: list[str | None], i: int,
                  ctx: Ctx) -> int | None:
    n = len(args)
    if t in ("-e", "--execute") or t.startswith("--execute="):
        o.commands.append(t.split("=", 1)[1] if "=" in t else (texts[i + 1] if i + 1 < n
                                                               else ""))
        return i + (2 if "=" not in t else 1)
    if t.startswith("--init-command"):
        o.commands.append(t.split("=", 1)[1] if "=" in t else (texts[i + 1] if i + 1 < n
                                                               else ""))
        return i + 1
    if t.startswith(("--pager", "--system-command")):
        ctx.an.unsure(f"mysql {t.split('=')[0]} runs a command")
        return i + 1
    return None


def _sqlite_option(o: _SqlArgs, t: str, args: list[Field], texts: list[str | None], i: int,
                   ctx: Ctx) -> int | None:
    if t == "-cmd":
        o.commands.append(texts[i + 1] if i + 1 < len(args) else "")
        return i + 2
    if t == "-init":
        if i + 1 < len(args):
            o.files.append(args[i + 1])
        return i + 2
    return None


_SQL_OPTIONS = {"psql": _psql_option, "mysql": _mysql_option, "sqlite": _sqlite_option}


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
