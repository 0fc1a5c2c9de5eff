"""Programs: the generic handling of every catalogue kind.

``run(prog, name, args, ctx)`` is called for a command whose program is in the
catalogue. For every kind it checks the catalogue's ``exec`` options and
``exec_subcommands`` (and a dynamic argument where one of them could hide; ``argv.py``),
computes the paths the program writes or removes (``writes``/``deletes`` specs;
``effects.py``), then:

* ``plain``: records the command;
* ``wrapper``: records it and analyses the wrapped command like a command of its own;
* ``shell``: analyses ``-c`` strings, here-documents and static pipes as bash; a script
  written in this session, code read from a descriptor or from the user's input is
  uncertain; a bare interactive shell becomes the foreground;
* ``interp``: inline code through ``langs.py``; scripts like shells; a bare interpreter
  becomes a foreground REPL;
* ``repl``/``screen``: the program becomes the foreground (its lines are then checked
  as that program's language); in an exec session, where keys are not decided, it is
  uncertain unless harmless;
* ``opaque``: uncertain;
* ``special``: a handler in ``tools*.py`` (``handlers.run`` picks it).

Known limits: option parsing (``argv.py``) follows each catalogue entry's ``with_arg``
lists; an option the entry does not know is read as a flag.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gateway.policy.argv import exec_checks, operands, skip_options
from gateway.policy.catalogue import Program
from gateway.policy.ctx import Ctx
from gateway.policy.effects import add_effects
from gateway.policy.langs import LangResult, check_python, check_trivial
from gateway.policy.program_langs import check_line
from gateway.policy.values import AStr, Field, Hole, astr, resolve, static

# builtins that also exist as programs (a wrapper runs the program)
STANDALONE = frozenset({"echo", "printf", "kill", "test", "[", "pwd", "true", "false", "time"})
PY_MODULES_OK = frozenset(
    "json.tool http.server venv pip ensurepip site timeit calendar zipfile tarfile py_compile "
    "compileall platform sysconfig base64 uuid gzip tokenize ast dis this".split()
)
PY_MODULES_REPL = frozenset({"pdb", "code", "asyncio"})

def run(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    """The generic handling of a catalogue program of any kind but ``special`` (whose
    handlers are in ``tools*.py``; ``handlers.run`` picks)."""
    exec_checks(prog, name, args, ctx)
    add_effects(prog, args, ctx)
    if name in ("cp", "install", "ln", "mv", "link"):
        copy_check(prog, name, args, ctx)
    if prog.kind == "plain":
        record(name, args, ctx)
    elif prog.kind == "wrapper":
        record(name, args, ctx)
        inner = skip_options(prog, args)
        if inner:
            run_inner(inner, ctx, name)
        elif prog.string:  # no command: the program starts a shell
            stdin_code(name, "bash", ctx, kind="shell")
    elif prog.kind == "shell":
        shell(prog, name, args, ctx)
    elif prog.kind == "interp":
        interp(prog, name, args, ctx)
    elif prog.kind == "repl":
        record(name, args, ctx)
        stdin_code(name, prog.lang, ctx, kind="repl")
    elif prog.kind == "screen":
        record(name, args, ctx)
        screen(name, prog.lang, ctx)
    else:
        record(name, args, ctx)
        ctx.an.unsure(f"{name} runs code bastille cannot check" + (
            f" ({prog.why})" if prog.why else ""))


def copy_check(prog: Program, name: str, args: Sequence[Field], ctx: Ctx) -> None:
    """Copying or linking a program that runs other programs under another name would
    let a later line run it as an unknown, local program: uncertain here."""
    ops, opts = operands(prog, args)
    sources = ops if ("-t" in opts or "--target-directory" in opts) else ops[:-1]
    for src in sources:
        t = src.text
        if t is None:
            continue
        base = t.rstrip("/").rsplit("/", 1)[-1]
        where = static(ctx.an.path(src, ctx.st)) or ""
        parent = where.rsplit("/", 1)[0]
        if "/" in t and not (parent.endswith(("/bin", "/sbin")) or "/lib" in parent or
                             "/libexec" in parent):
            continue  # not a program directory (a configuration directory, data...)
        known = ctx.an.cat.program(base)
        if known is not None and (known.kind != "plain" or known.exec or
                                  known.exec_subcommands):
            ctx.an.unsure(f"{name} copies {base}, a program that runs other code, to "
                          "another name")


def record(name: str, args: Sequence[Field], ctx: Ctx) -> None:
    ctx.an.record(name, args, ctx.texts, ctx.st, ctx.effects)


def run_inner(args: list[Field], ctx: Ctx, wrapper: str) -> None:
    """The command a wrapper runs: a program (no function, no builtin)."""
    head = args[0]
    if head.text is None:
        ctx.an.unsure(f"dynamic command run by {wrapper}")
        return
    prog, base = ctx.an.lookup(head.text, ctx) if head.text not in STANDALONE else (
        None, head.text)
    if prog is None:
        ctx.an.record(base, args[1:], ctx.texts, ctx.st, ctx.effects)
        return
    ctx.an.run_program(prog, base, args[1:], ctx)


# --------------------------------------------------------------------------- code


def apply_lang(r: LangResult, ctx: Ctx, where: str) -> None:
    """What a piece of another language runs and writes, into the analysis."""
    from gateway.policy.records import Effect, Stdin

    for cmd in r.shell:
        ctx.an.text(cmd, ctx.st.child(), Stdin("null"), what=f"run by {where}")
    for cmd in r.piped:
        ctx.an.text(cmd, ctx.st.child(), Stdin("pipe"), what=f"run by {where}")
    for w in r.writes:
        path: AStr = (Hole.ANY,) if w in ("?", "%", "") else resolve(astr(w), ctx.st.cwd)
        ctx.effects.append(Effect("write", path, source=where))
        ctx.an.check_autorun(path, where)
        ctx.st.wrote(path)
    for u in r.uncertain:
        ctx.an.unsure(u)


def code(lang: str, text: str | None, ctx: Ctx, where: str) -> None:
    if text is None:
        ctx.an.unsure(f"dynamic inline code for {where}")
        return
    if lang == "python":
        apply_lang(check_python(text), ctx, where)
    elif lang == "perl":
        from gateway.policy.langs import check_perl

        apply_lang(check_perl(text), ctx, where)
    elif lang in ("ruby", "node", "php", "lua", "tcl"):
        apply_lang(check_trivial(lang, text), ctx, where)
    elif lang == "bash":
        from gateway.policy.records import Stdin

        ctx.an.text(text, ctx.st.child(), Stdin("null"), what=f"read by {where}")
    else:
        apply_lang(check_line(lang, text), ctx, where)


_STDIN_WHAT = {"pipe": "pipe", "heredoc": "here-document", "herestring": "here-string",
               "procsub": "process substitution", "coproc": "coprocess", "file": "file"}


def stdin_code(name: str, lang: str, ctx: Ctx, *, kind: str) -> None:
    """A program that reads its commands from standard input."""
    from gateway.policy.records import Start

    s = ctx.stdin
    if s.kind == "tty":  # keys the relay holds and decides
        ctx.an.starts.append(Start(name, "shell" if lang == "bash" else kind, lang))
        if lang == "bash":
            ctx.st.forget_shell()
        return
    if s.kind == "user":
        ctx.an.unsure(f"{name} reads commands from the user's input, which the bastion "
                      "does not check")
        return
    if s.kind == "null":
        return
    if s.kind == "file":
        script_file(name, Field(s.path or (Hole.ANY,)), ctx, path_known=True)
        return
    if s.text is not None and s.kind in ("heredoc", "herestring", "pipe"):
        if lang == "bash":
            code("bash", s.text, ctx, f"{name}")
        elif lang == "python":
            apply_lang(check_python(s.text), ctx, name)
        else:
            for line in s.text.splitlines():
                apply_lang(check_line(lang, line), ctx, name)
        return
    ctx.an.unsure(f"{_STDIN_WHAT.get(s.kind, 'input')} into interpreter {name}")


def script_file(name: str, f: Field, ctx: Ctx, *, path_known: bool = False) -> None:
    """A file of commands run by ``name`` (a script, ``source``, ``-f file``)."""
    t = f.text
    if path_known:
        path = f.chunks
        t = static(path)
    elif t is None:
        ctx.an.unsure(f"dynamic script for {name}")
        return
    else:
        path = ctx.an.path(f, ctx.st)
    if t is None or t in ("-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0", "/dev/tty") or (
            t.startswith(("/dev/fd/", "/proc/")) and "/fd/" in t):
        s = ctx.stdin
        if t in ("-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0") and not path_known and \
                s.text is not None and s.kind in ("heredoc", "herestring", "pipe"):
            stdin_code(name, "bash" if name in ("sh", "bash", "source", ".") else "", ctx,
                       kind="repl")
            return
        if t in ("-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0", "/dev/tty") and \
                s.kind == "tty":
            ctx.an.unsure(f"{name} reads code from the terminal and runs it at end of input "
                          "(Ctrl-D), without an Enter to hold")
            return
        ctx.an.unsure(f"{name} reads code from a descriptor")
        return
    if ctx.an.written_match(path, ctx.st):
        ctx.an.unsure(f"{name} runs {t}, a file written in this session")
    elif ctx.st.unknown_writes:
        ctx.an.unsure(f"{name} runs {t} after this session wrote to unknown paths")


# --------------------------------------------------------------------------- shells, interpreters


def shell(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    i, n = 0, len(args)
    cmd_mode = interactive = from_stdin = False
    while i < n:
        t = args[i].text
        if t is None:
            if cmd_mode:
                break
            if args[i].maybe_option:
                ctx.an.unsure(f"dynamic option to {name}")
                return
            break
        if t in ("--", "-"):
            i += 1
            if t == "-":
                from_stdin = True
            break
        if t.startswith("--"):
            if t in ("--rcfile", "--init-file"):
                if i + 1 < n:
                    script_file(name, args[i + 1], ctx)
                i += 2
                continue
            i += 1
            continue
        if t.startswith(("-", "+")) and len(t) > 1:
            letters = t[1:]
            if "c" in letters:
                cmd_mode = True
            if "i" in letters:
                interactive = True
            if "s" in letters:
                from_stdin = True
            i += 1 + sum(1 for c in letters if c in "oO")
            continue
        break
    rest = args[i:]
    if interactive:
        rc_check(name, ctx)
    if cmd_mode:
        if not rest:
            ctx.an.unsure(f"{name} -c without a command")
            return
        text = rest[0].text
        if text is None:
            ctx.an.unsure(f"dynamic string passed to {name} -c")
            return
        child = ctx.st.child(interactive=interactive)
        params = [a.text for a in rest[2:]]
        child.positional = None if any(p is None for p in params) else [
            p for p in params if p is not None]
        ctx.an.text(text, child, ctx.stdin, what=f"in {name} -c")
        return
    if rest and not from_stdin:
        script_file(name, rest[0], ctx)
        return
    if ctx.stdin.kind == "tty" and not ctx.an.exec_mode:
        rc_check(name, ctx)
    stdin_code(name, "bash", ctx, kind="shell")


def rc_check(name: str, ctx: Ctx) -> None:
    """A new interactive shell reads start-up files: were they written in this session?"""
    for rc in ("~/.bashrc", "~/.bash_profile", "~/.profile", "~/.bash_login", "~/.inputrc"):
        if ctx.an.written_match(astr(rc), ctx.st):
            ctx.an.unsure(f"{name} reads {rc}, written in this session")
            return


def interp(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    from gateway.policy.records import Effect

    record(name, args, ctx)
    lang = prog.lang
    i, n = 0, len(args)
    short_code = {o[1] for o in prog.code if len(o) == 2}
    had_code = in_place = repl_after = False
    takes = {"python": "WXQ", "perl": "IMmxl0F", "ruby": "IrCF", "php": "cdfz",
             "node": "r", "lua": "l", "tcl": ""}.get(lang, "")
    while i < n:
        a = args[i]
        t = a.text
        if t is None:
            if a.maybe_option:
                ctx.an.unsure(f"dynamic option to {name}")
                return
            break
        if t == "-":
            if had_code:
                break
            stdin_code(name, lang, ctx, kind="repl")
            return
        if t == "--":
            i += 1
            break
        if t in prog.code or any(t.startswith(o + "=") for o in prog.code if o.startswith("--")):
            value = t.split("=", 1)[1] if "=" in t and t.startswith("--") else (
                args[i + 1].text if i + 1 < n else "")
            code(lang, value, ctx, name)
            had_code = True
            i += 1 if "=" in t else 2
            if lang in ("perl", "ruby", "php"):
                continue
            return
        if t.startswith("-") and not t.startswith("--") and len(t) > 1 and lang == "perl":
            i, stop, in_place2 = _perl_bundle(name, t[1:], args, i, ctx)
            had_code = had_code or stop
            in_place = in_place or in_place2
            continue
        if t.startswith("-") and not t.startswith("--") and len(t) > 1:
            body = t[1:]
            if lang == "ruby" and "i" in body.split("e")[0]:
                in_place = True
            hit = next((k for k, c in enumerate(body) if c in short_code), None)
            if hit is not None and lang != "node":
                inline = body[hit + 1 :]
                value = inline if inline else (args[i + 1].text if i + 1 < n else "")
                code(lang, value, ctx, name)
                had_code = True
                i += 1 if inline else 2
                if lang in ("perl", "ruby"):
                    continue
                return
            if lang == "python" and "i" in body.split("c")[0].split("m")[0]:
                repl_after = True
            if lang == "python" and body.startswith("m"):
                module = body[1:] or (args[i + 1].text if i + 1 < n else None)
                _py_module(name, module, ctx)
                return
            if lang == "php" and "a" in body:
                stdin_code(name, lang, ctx, kind="repl")
                return
            if lang == "php" and body.startswith("d") and "auto_" in (body + (
                    args[i + 1].text or "" if i + 1 < n else "")):
                ctx.an.unsure("php -d auto_prepend_file runs another file")
            if lang == "perl" and body.startswith("d"):
                ctx.an.unsure("perl -d starts the perl debugger")
            if lang == "perl" and body[:1] in ("M", "m"):
                module = body[1:] or (args[i + 1].text if i + 1 < n else None) or ""
                if not re.fullmatch(r"-?[\w:]+(?:=[\w,:-]*)?", module):
                    ctx.an.unsure("perl -M with code after the module name")
                i += 1 if body[1:] else 2
                continue
            if lang == "php" and body[:1] == "f" and i + 1 < n:
                script_file(name, args[i + 1], ctx)
                return
            if body[:1] in takes and len(body) == 1:
                i += 2
                continue
            i += 1
            continue
        if t.startswith("--"):
            if lang == "node" and t in ("--require", "--import", "--loader"):
                i += 2
                continue
            if t in ("--interactive",):
                stdin_code(name, lang, ctx, kind="repl")
                return
            i += 1
            continue
        break
    rest = args[i:]
    if had_code:
        if in_place:
            for f in rest:
                path = ctx.an.path(f, ctx.st)
                ctx.effects.append(Effect("write", path, source=f"{name} -i"))
                ctx.an.check_autorun(path, f"{name} -i")
        return
    if rest:
        script_file(name, rest[0], ctx)
        if repl_after:  # python -i: a REPL after the script
            stdin_code(name, lang, ctx, kind="repl")
        return
    if any(a.text in ("-v", "-V", "--version", "-h", "--help", "-?") for a in args):
        return  # prints a version or help and exits
    stdin_code(name, lang, ctx, kind="repl")


def _perl_bundle(name: str, body: str, args: list[Field], i: int, ctx: Ctx
                 ) -> tuple[int, bool, bool]:
    """One perl option bundle (``-lane``, ``-pi.bak``, ``-MPOSIX``, ``-e CODE``):
    returns (next index, code was given, in-place editing)."""
    n = len(args)
    had_code = in_place = False
    for k, c in enumerate(body):
        rest = body[k + 1 :]
        if c in "eE":
            value = rest if rest else (args[i + 1].text if i + 1 < n else "")
            code("perl", value, ctx, name)
            return i + (1 if rest else 2), True, in_place
        if c in "Mm":
            module = rest or (args[i + 1].text if i + 1 < n else None) or ""
            if not re.fullmatch(r"-?[\w:]+(?:=[\w,:-]*)?", module):
                ctx.an.unsure("perl -M with code after the module name")
            return i + (1 if rest else 2), had_code, in_place
        if c == "i":
            return i + 1, had_code, True
        if c == "d":
            ctx.an.unsure("perl -d starts the perl debugger")
            return i + 1, had_code, in_place
        if c in "IFx0lC":
            if c == "I" and not rest:
                return i + 2, had_code, in_place
            return i + 1, had_code, in_place
    return i + 1, had_code, in_place


def _py_module(name: str, module: str | None, ctx: Ctx) -> None:
    if module is None:
        ctx.an.unsure(f"{name} -m with a dynamic module")
    elif module in PY_MODULES_REPL:
        stdin_code(name, "python", ctx, kind="repl")
    elif module not in PY_MODULES_OK:
        ctx.an.unsure(f"{name} -m {module} runs a module bastille does not know")


# pagers that copy their input like cat when their output is not a terminal (less's
# main.c, util-linux more, man-db's "no pager unless stdout is a tty")
CAT_WITHOUT_TERMINAL = frozenset({"less", "more", "man", "zless", "zmore"})


def screen(name: str, lang: str, ctx: Ctx) -> None:
    """A full-screen program takes the terminal."""
    from gateway.policy.records import Start

    if not ctx.an.tty and lang == "less" and name in CAT_WITHOUT_TERMINAL:
        return  # its output is not a terminal: it copies like cat and reads no keys
    if not ctx.an.tty and lang != "harmless":
        ctx.an.unsure(f"{name} reads its keys from the user's input, which the bastion "
                      "does not check (no terminal)")
        return
    ctx.an.starts.append(Start(name, "screen", lang))
