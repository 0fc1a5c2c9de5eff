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

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.policy import possible as P
from gateway.policy.argv import exec_checks, operands, skip_options
from gateway.policy.catalogue import Program
from gateway.policy.ctx import Ctx
from gateway.policy.effects import add_effects
from gateway.policy.langs import LangResult, check_python, check_trivial
from gateway.policy.program_langs import check_line
from gateway.policy.records import Effect, Start, Stdin
from gateway.policy.values import AStr, Field, Hole, astr, resolve, show, static

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
    project_checks(prog, name, args, ctx)
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


def project_checks(prog: Program, name: str, args: Sequence[Field], ctx: Ctx) -> None:
    """``scripts``: each operand (and option value) is a file of code it runs;
    ``project``: it runs code from the directory it works in (the current one, or a path
    operand): uncertain if this session may have written there (catalogue.toml)."""
    if prog.scripts and _scripts_apply(prog.scripts, args):
        wrote = bool(ctx.st.written) or ctx.st.unknown_writes
        for f in args:
            # a dynamic one may name a file written here; else it is one of the target's
            if (f.text is None and wrote) or not (f.text or "-").startswith("-"):
                script_file(name, f, ctx)
    if prog.project:
        project_written(name, args, ctx, files=prog.project)


def project_written(name: str, args: Sequence[Field], ctx: Ctx, *, here: bool = True,
                    files: Sequence[str] = ("*",)) -> None:
    """Uncertain if this session may have written one of ``files`` (name globs; a file
    whose name is not known counts) under the directory ``name`` takes its code from: the
    current one (every one it may be; not if ``here`` is False) or a path it is given;
    or the path itself."""
    st = ctx.st
    if not st.written and not st.unknown_writes:
        return
    if st.unknown_writes:
        ctx.an.unsure(f"{name} runs code from its project after this session wrote to "
                      "unknown paths")
        return
    named = _path_args(args, ctx)

    def matters(w: AStr) -> bool:
        return may_be_named(w, files)

    for root in [*((st.cwd, *st.cwd_alts) if here else ()), *named]:
        if ctx.an.written_match(astr(*root, "/", Hole.ANY), st, matters) or (
                root in named and ctx.an.written_match(root, st)):
            ctx.an.unsure(f"{name} runs code from {show(root)}, which this session "
                          "wrote to")
            return


def may_be_named(path: AStr, names: Sequence[str]) -> bool:
    """Could ``path`` (parts unknown) end in one of ``names`` (file name globs; "dir/*"
    for anything in a tree)?"""
    s = static(path)
    for n in names:
        glob = "**/" + n
        if s is not None:
            if fnmatch.fnmatchcase(s, "*/" + n):
                return True
        elif P.intersects(P.glob_nfa(glob), P.astr_nfa(path)):
            return True
    return False


def _scripts_apply(opts: tuple[str, ...], args: Sequence[Field]) -> bool:
    """``scripts`` always ("*") or when one of its options (or subcommands) is given
    (``-i`` also inside a bundle such as ``-ivh``)."""
    if "*" in opts:
        return True
    for a in args:
        t = a.text or ""
        if t in opts or any(len(o) == 2 and o[0] == "-" and t[:1] == "-" and
                            t[1:2] != "-" and o[1] in t[1:] for o in opts):
            return True
    return False


def _path_args(args: Sequence[Field], ctx: Ctx) -> list[AStr]:
    """The paths a command line may name: every operand and option value, ``--opt=PATH``;
    a dynamic one: any."""
    out: list[AStr] = []
    for a in args:
        t = a.text
        if t is None:
            out.append((Hole.ANY,))
        elif not t.startswith("-"):  # a relative name too: `compose -f x.yml`
            out.append(ctx.an.path(a, ctx.st))
        elif "=" in t and t.split("=", 1)[1].startswith(
                (".", "/", "~")):  # --project-dir=DIR, -DCMAKE_...=/path
            out.append(ctx.an.path(Field(astr(t.split("=", 1)[1])), ctx.st))
    return out


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
        ctx.an.text(text, ctx.st.child(), Stdin("null"), what=f"read by {where}")
    else:
        apply_lang(check_line(lang, text), ctx, where)


_STDIN_WHAT = {"pipe": "pipe", "heredoc": "here-document", "herestring": "here-string",
               "procsub": "process substitution", "coproc": "coprocess", "file": "file"}


def stdin_code(name: str, lang: str, ctx: Ctx, *, kind: str) -> None:
    """A program that reads its commands from standard input."""
    s = ctx.stdin
    if s.kind == "tty":  # keys the relay holds and decides
        ctx.an.starts.append(Start(name, "shell" if lang == "bash" else kind, lang))
        if lang == "bash":
            ctx.st.forget_shell()
        return
    if s.kind == "user":
        ctx.an.reads_input(f"{name} reads commands from the user's input, which the "
                           "bastion does not check")
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
    opts = _shell_options(name, args, ctx)
    if opts is None:
        return
    rest = args[opts.i:]
    if opts.interactive:
        rc_check(name, ctx)
    if opts.cmd_mode:
        _shell_command(name, rest, opts.interactive, ctx)
        return
    if rest and not opts.from_stdin:
        script_file(name, rest[0], ctx)
        return
    if ctx.stdin.kind == "tty" and not ctx.an.exec_mode:
        rc_check(name, ctx)
    stdin_code(name, "bash", ctx, kind="shell")


@dataclass
class _ShellOptions:
    i: int = 0  # the first argument after the options
    cmd_mode: bool = False  # -c
    interactive: bool = False  # -i
    from_stdin: bool = False  # -s or -


def _shell_options(name: str, args: list[Field], ctx: Ctx) -> _ShellOptions | None:
    """A shell's options; None when a dynamic one hides what the shell does."""
    o = _ShellOptions()
    n = len(args)
    while o.i < n:
        t = args[o.i].text
        if t is None:
            if not o.cmd_mode and args[o.i].maybe_option:
                ctx.an.unsure(f"dynamic option to {name}")
                return None
            break
        if t in ("--", "-"):
            o.i += 1
            o.from_stdin = o.from_stdin or t == "-"
            break
        if t.startswith("--"):
            if t in ("--rcfile", "--init-file") and o.i + 1 < n:
                script_file(name, args[o.i + 1], ctx)
            o.i += 2 if t in ("--rcfile", "--init-file") else 1
            continue
        if not (t.startswith(("-", "+")) and len(t) > 1):
            break
        letters = t[1:]
        o.cmd_mode = o.cmd_mode or "c" in letters
        o.interactive = o.interactive or "i" in letters
        o.from_stdin = o.from_stdin or "s" in letters
        o.i += 1 + sum(1 for c in letters if c in "oO")
    return o


def _shell_command(name: str, rest: list[Field], interactive: bool, ctx: Ctx) -> None:
    """``sh -c STRING [NAME [ARGS...]]``."""
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


def rc_check(name: str, ctx: Ctx) -> None:
    """A new interactive shell reads start-up files: were they written in this session?
    They are under ``$HOME``, which a prefix (``HOME=/tmp bash -i``) or an earlier
    assignment may have moved."""
    home = "~"
    if "HOME" in ctx.env or "HOME" in ctx.st.vars:
        value = ctx.env["HOME"] if "HOME" in ctx.env else ctx.st.vars["HOME"]
        if value is None:
            ctx.an.unsure(f"{name} reads its start-up files from a HOME that is not known")
            return
        home = value.rstrip("/") or "/"
    for rc in (".bashrc", ".bash_profile", ".profile", ".bash_login", ".inputrc"):
        path = resolve(astr(f"{home}/{rc}"), ctx.st.cwd) if home != "~" else astr(f"~/{rc}")
        if ctx.an.written_match(path, ctx.st):
            ctx.an.unsure(f"{name} reads {home}/{rc}, written in this session")
            return


def interp(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    record(name, args, ctx)
    s = _InterpOptions(prog, name, args, ctx)
    if not s.read():
        return
    rest = args[s.i:]
    if s.had_code:
        if s.in_place:
            for f in rest:
                path = ctx.an.path(f, ctx.st)
                ctx.effects.append(Effect("write", path, source=f"{name} -i"))
                ctx.an.check_autorun(path, f"{name} -i")
        return
    if rest:
        script_file(name, rest[0], ctx)
        if s.repl_after:  # python -i: a REPL after the script
            stdin_code(name, prog.lang, ctx, kind="repl")
        return
    if any(a.text in ("-v", "-V", "--version", "-h", "--help", "-?") for a in args):
        return  # prints a version or help and exits
    stdin_code(name, prog.lang, ctx, kind="repl")


# what an interpreter's option step did: read on, stop reading options (operands
# follow), or the command is decided (code checked, a REPL started...)
_NEXT, _STOP, _DONE = "next", "stop", "done"
_TAKES_VALUE = {"python": "WXQ", "perl": "IMmxl0F", "ruby": "IrCF", "php": "cdfz",
                "node": "r", "lua": "l", "tcl": ""}


class _InterpOptions:
    """An interpreter's options, read one at a time (``read``)."""

    def __init__(self, prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
        self.prog, self.name, self.args, self.ctx = prog, name, args, ctx
        self.lang = prog.lang
        self.i = 0
        self.had_code = self.in_place = self.repl_after = False
        self.short_code = {o[1] for o in prog.code if len(o) == 2}

    def read(self) -> bool:
        """Read the options; False when one decided the command."""
        while self.i < len(self.args):
            step = self._option(self.args[self.i])
            if step == _DONE:
                return False
            if step == _STOP:
                break
        return True

    def _next_text(self) -> str | None:
        """The text of the argument after the current one ('' if there is none)."""
        return self.args[self.i + 1].text if self.i + 1 < len(self.args) else ""

    def _option(self, a: Field) -> str:
        t = a.text
        if t is None:
            if a.maybe_option:
                self.ctx.an.unsure(f"dynamic option to {self.name}")
                return _DONE
            return _STOP
        if t == "-":
            if self.had_code:
                return _STOP
            stdin_code(self.name, self.lang, self.ctx, kind="repl")
            return _DONE
        if t == "--":
            self.i += 1
            return _STOP
        if t in self.prog.code or any(t.startswith(o + "=") for o in self.prog.code
                                      if o.startswith("--")):
            value = t.split("=", 1)[1] if "=" in t and t.startswith("--") else \
                self._next_text()
            return self._code(value, 1 if "=" in t else 2, ("perl", "ruby", "php"))
        if t.startswith("-") and not t.startswith("--") and len(t) > 1:
            return self._short(t[1:])
        if t.startswith("--"):
            return self._long(t)
        return _STOP

    def _code(self, value: str | None, used: int, more: tuple[str, ...]) -> str:
        """Inline code given: it is checked; more options may follow in ``more``."""
        code(self.lang, value, self.ctx, self.name)
        self.had_code = True
        self.i += used
        return _NEXT if self.lang in more else _DONE

    def _short(self, body: str) -> str:
        """A bundle of short options (``-c CODE``, ``-i``, ``-m MOD``...)."""
        if self.lang == "perl":
            self.i, stop, in_place = _perl_bundle(self.name, body, self.args, self.i, self.ctx)
            self.had_code = self.had_code or stop
            self.in_place = self.in_place or in_place
            return _NEXT
        if self.lang == "ruby" and "i" in body.split("e")[0]:
            self.in_place = True
        hit = next((k for k, c in enumerate(body) if c in self.short_code), None)
        if hit is not None and self.lang != "node":
            inline = body[hit + 1 :]
            return self._code(inline if inline else self._next_text(), 1 if inline else 2,
                              ("perl", "ruby"))
        step = self._python(body) if self.lang == "python" else \
            self._php(body) if self.lang == "php" else None
        if step is not None:
            return step
        takes = _TAKES_VALUE.get(self.lang, "")
        self.i += 2 if body[:1] in takes and len(body) == 1 else 1
        return _NEXT

    def _python(self, body: str) -> str | None:
        """``python -i`` (a REPL after the script), ``python -m MODULE``."""
        if "i" in body.split("c")[0].split("m")[0]:
            self.repl_after = True
        if body.startswith("m"):
            module = body[1:] or (self.args[self.i + 1].text if self.i + 1 < len(self.args)
                                  else None)
            _py_module(self.name, module, self.ctx)
            return _DONE
        return None

    def _php(self, body: str) -> str | None:
        """``php -a`` (a REPL), ``php -d auto_prepend_file=...``, ``php -f FILE``."""
        i, n = self.i, len(self.args)
        if "a" in body:
            stdin_code(self.name, self.lang, self.ctx, kind="repl")
            return _DONE
        if body.startswith("d") and "auto_" in (body + (
                self.args[i + 1].text or "" if i + 1 < n else "")):
            self.ctx.an.unsure("php -d auto_prepend_file runs another file")
        if body[:1] == "f" and i + 1 < n:
            script_file(self.name, self.args[i + 1], self.ctx)
            return _DONE
        return None

    def _long(self, t: str) -> str:
        if self.lang == "node" and t in ("--require", "--import", "--loader"):
            self.i += 2
            return _NEXT
        if t in ("--interactive",):
            stdin_code(self.name, self.lang, self.ctx, kind="repl")
            return _DONE
        self.i += 1
        return _NEXT


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
    if not ctx.an.tty and lang == "less" and name in CAT_WITHOUT_TERMINAL:
        return  # its output is not a terminal: it copies like cat and reads no keys
    if not ctx.an.tty and lang != "harmless":
        reason = (f"{name} reads its keys from the user's input, which the bastion does "
                  "not check (no terminal)")
        if ctx.stdin.kind == "user":
            ctx.an.reads_input(reason)
        else:
            ctx.an.unsure(reason)
        return
    ctx.an.starts.append(Start(name, "screen", lang))
