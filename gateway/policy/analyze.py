"""The closed-world analyser: what a bash line would run, and what it would change.

``Analyzer.line(text, state)`` parses the line with ``parse.py`` one complete command at
a time and interprets it abstractly against a ``ShellState``:

* words are expanded like bash does (brace expansion, tilde, parameters, command and
  arithmetic substitution, word splitting on ``IFS``, globbing), with known values
  where the state knows them and *holes* where it does not;
* every simple command is looked up like bash does (functions, builtins, then the
  program catalogue) and handed to its handler (``builtins.py``, ``programs.py``);
* every command that may run is recorded as a ``CommandInfo``: the normalized text the
  rules see (``views``: as typed, and with relative paths resolved against the tracked
  working directory), and its effects (paths written or removed);
* anything that is not fully understood adds a reason to ``uncertain``: an unknown
  program, a dynamic command word, code reaching an interpreter, a construct the
  parser rejects, a state change that alters how later input runs...

Subshells, pipelines and background jobs run on copies of the state; branches and loops
are merged ("may have run"); loop bodies are interpreted twice so values that change
between iterations become unknown.

Known limits: see docs/policy.md "What cannot be seen".
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field

from gateway.policy import possible as P
from gateway.policy.catalogue import Catalogue, Program
from gateway.policy.options import normalize_options
from gateway.policy.parse import Incomplete, ParseError, Parser, parse_arith
from gateway.policy.state import ShellState
from gateway.policy.syntax import (
    AndOr,
    Arith,
    ArithCmd,
    ArithFor,
    ArithSub,
    Case,
    CmdSub,
    Command,
    Cond,
    Coproc,
    For,
    FuncDef,
    Group,
    If,
    Lit,
    Param,
    Part,
    Pipeline,
    ProcSub,
    Redir,
    Redirected,
    Sequence,
    Simple,
    Subshell,
    Tilde,
    While,
    Word,
)
from gateway.policy.values import (
    AStr,
    Field,
    Hole,
    astr,
    brace_expand,
    glob_chunks,
    has_glob_chars,
    has_hole,
    resolve,
    show,
    static,
)

MAX_DEPTH = 12  # nested command strings and function calls
MAX_LINE = 256 * 1024  # longer lines are not analysed: uncertain
MAX_COMMANDS = 2000  # simple commands analysed per line
MAX_FOR_VALUES = 16
NUMERIC_VARS = frozenset(
    "RANDOM SRANDOM SECONDS LINENO BASHPID PPID UID EUID SHLVL HISTCMD EPOCHSECONDS "
    "COLUMNS LINES OPTIND OPTERR ? # $ !".split()
)
_STD_DIRS = ("/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/", "/usr/local/bin/", "/usr/local/sbin/")
# words typed as answers to programs' questions: no such programs (command not found)
ANSWERS = frozenset("y n Y N no NO No yes YES Yes q Q a A s S k K r R".split())
# where unknown programs are the system's (they must be in the catalogue), or anyone's
_SYSTEM_PREFIXES = ("/usr/", "/bin/", "/sbin/", "/lib", "/etc/", "/boot/", "/dev/", "/proc/",
                    "/sys/", "/run/", "/var/", "/tmp/", "/snap/", "/nix/")
_NUMBER_RE = re.compile(r"\s*-?(?:0[xX][0-9a-fA-F]+|\d+(?:#[0-9A-Za-z@_]+)?)\s*\Z")


@dataclass
class Effect:
    """A path a command may write or remove."""

    kind: str  # "write" | "delete"
    path: AStr
    maybe: bool = False
    source: str = ""


@dataclass(frozen=True)
class View:
    """One text the rules are matched against.

    ``text`` is exact when fully known; otherwise ``node`` describes every text the
    command could have and ``instance`` is one of them (holes empty). ``maybe``: a
    view that only holds if something else happened (a ``cd`` that may have failed).
    """

    node: P.Node | None
    text: str | None
    instance: str
    maybe: bool = False
    head: str | None = None  # the static first word (the command's name), if any


@dataclass
class CommandInfo:
    """One simple command that may run."""

    name: str
    display: str
    views: list[View]
    effects: list[Effect] = field(default_factory=list)
    definition: bool = False  # seen in a definition (function, alias), not run now


@dataclass(frozen=True)
class Stdin:
    """Where a command's standard input comes from.

    ``tty``: the user's terminal (interactive); ``user``: the SSH channel of an exec
    request (data the bastion does not decide); ``pipe``, ``heredoc``, ``herestring``,
    ``procsub``, ``coproc``: data from the line; ``file``: a file; ``null``.
    ``text`` is the data when it is statically known.
    """

    kind: str
    path: AStr | None = None
    text: str | None = None
    paths: tuple[AStr, str] | None = None  # a pipe of paths under a root: (root, separator)


@dataclass(frozen=True)
class Start:
    """A program the line leaves in the foreground of the terminal."""

    name: str
    kind: str  # "repl" | "screen" | "shell" | "opaque" | "password"
    lang: str


class Analyzer:
    """Interprets lines abstractly (see the module docstring)."""

    def __init__(self, catalogue: Catalogue, *, exec_mode: bool = False,
                 tty: bool = True) -> None:
        self.cat = catalogue
        self.exec_mode = exec_mode
        self.tty = tty  # the session has a terminal whose keys the relay decides
        self.commands: list[CommandInfo] = []
        self.uncertain: list[str] = []
        self.incomplete = False
        self.starts: list[Start] = []
        self.depth = 0
        self.count = 0
        self._quiet = 0  # >0: collect commands only (function bodies at definition)
        self._last_shape: AStr | None = None

    # ------------------------------------------------------------------ entry points

    def unsure(self, reason: str) -> None:
        if self._quiet:
            return
        if reason not in self.uncertain:
            self.uncertain.append(reason)

    def line(self, text: str, st: ShellState, stdin: Stdin) -> None:
        """Analyse a whole line (several complete commands) and update ``st``. Never
        raises: an analyser failure is an uncertainty (fail closed)."""
        if len(text) > MAX_LINE:
            self.unsure("command too long to analyse")
            return
        try:
            self.text(text, st, stdin, top=True)
        except Exception:
            self._quiet = 0
            self.unsure("could not analyse")

    def text(self, text: str, st: ShellState, stdin: Stdin, *, top: bool = False,
             what: str = "") -> None:
        """Parse and interpret ``text`` as bash in ``st`` (a line, ``eval``, ``sh -c``)."""
        if self.depth > MAX_DEPTH:
            self.unsure("commands nested too deeply")
            return
        parser = Parser(text, aliases=st.aliases,
                        expand_aliases=st.options.get("expand_aliases", False))
        if not st.options.get("interactive_comments", True) and "#" in text:
            self.unsure("comments are off: '#' is not read as a comment")
        self.depth += 1
        try:
            while True:
                try:
                    parsed = parser.next()
                except Incomplete as exc:
                    if top and not self.exec_mode:
                        self.incomplete = True
                        self.unsure("incomplete command")
                    else:
                        self.unsure(f"could not parse{' ' + what if what else ''}: {exc}")
                    return
                except ParseError as exc:
                    self.unsure(f"could not parse{' ' + what if what else ''}: {exc}")
                    self._salvage(exc, st, stdin)
                    return
                if parsed is None:
                    return
                if parser.translated and st.textdomain:
                    self.unsure('$"..." strings are translated with a catalogue set in '
                                "this session")
                if parsed.command is not None:
                    self.cmd(parsed.command, st, stdin)
                parser.aliases = st.aliases
                parser.expand_aliases = st.options.get("expand_aliases", False)
        except RecursionError:
            self.unsure("command too deeply nested")
        finally:
            self.depth -= 1

    def _salvage(self, exc: ParseError, st: ShellState, stdin: Stdin) -> None:
        """bash refuses the whole line, but a rule that matches what was read before the
        error still applies (a user who typed ``rm -rf / )`` is told why)."""
        if exc.pos <= 0 or not exc.text or self._quiet:
            return
        prefix = exc.text[: exc.pos].rstrip()
        while prefix and prefix[-1] in ";&|(":
            prefix = prefix[:-1].rstrip()
        if not prefix:
            return
        self._quiet += 1
        try:
            self.text(prefix, st.copy(), stdin)
        finally:
            self._quiet -= 1

    # ------------------------------------------------------------------ commands

    def cmd(self, node: Command, st: ShellState, stdin: Stdin) -> None:
        self.count += 1
        if self.count > MAX_COMMANDS:
            self.unsure("line too long to analyse")
            return
        if isinstance(node, Simple):
            self.simple(node, st, stdin)
        elif isinstance(node, Sequence):
            for c, background in node.items:
                if background:
                    self.cmd(c, st.copy(), Stdin("null") if not st.interactive else stdin)
                else:
                    self.cmd(c, st, stdin)
        elif isinstance(node, AndOr):
            self.cmd(node.first, st, stdin)
            for _op, c in node.rest:
                branch = st.copy()
                self.cmd(c, branch, stdin)
                st.merge(branch)
        elif isinstance(node, Pipeline):
            self.pipeline(node, st, stdin)
        elif isinstance(node, Subshell):
            self.cmd(node.body, st.copy(), stdin)
        elif isinstance(node, Group):
            self.cmd(node.body, st, stdin)
        elif isinstance(node, If):
            self.cmd(node.clauses[0][0], st, stdin)
            branches: list[ShellState] = []
            b = st.copy()
            self.cmd(node.clauses[0][1], b, stdin)
            branches.append(b)
            for cond, body in node.clauses[1:]:
                b = st.copy()
                self.cmd(cond, b, stdin)
                self.cmd(body, b, stdin)
                branches.append(b)
            if node.else_ is not None:
                b = st.copy()
                self.cmd(node.else_, b, stdin)
                branches.append(b)
            for b in branches:
                st.merge(b)
        elif isinstance(node, While):
            self.cmd(node.cond, st, stdin)

            def again(s: ShellState, node: While = node) -> None:
                self.cmd(node.body, s, stdin)
                self.cmd(node.cond, s, stdin)

            self.loop(st, again)
        elif isinstance(node, For):
            self.for_loop(node, st, stdin)
        elif isinstance(node, ArithFor):
            self.arith(node.init, st)
            self.arith(node.cond, st)
            def step(s: ShellState, node: ArithFor = node) -> None:
                self.cmd(node.body, s, stdin)
                self.arith(node.step, s)
                self.arith(node.cond, s)

            self.loop(st, step)
        elif isinstance(node, Case):
            self.expand(node.word, st, split=False)
            branches = []
            for item in node.items:
                b = st.copy()
                for pat in item.patterns:
                    self.expand(pat, b, split=False, glob=False)
                if item.body is not None:
                    self.cmd(item.body, b, stdin)
                branches.append(b)
            for b in branches:
                st.merge(b)
        elif isinstance(node, FuncDef):
            self.define_function(node, st)
        elif isinstance(node, Cond):
            self.cond(node, st)
        elif isinstance(node, ArithCmd):
            self.arith(node.expr, st)
        elif isinstance(node, Coproc):
            sub = st.copy()
            self.cmd(node.body, sub, Stdin("coproc"))
            st.set_var(node.name or "COPROC", None)
        elif isinstance(node, Redirected):
            new_stdin, effects, texts = self.redirects(node.redirs, st, stdin)
            if effects or texts:
                self.record("", [], texts, st, effects, display=" ".join(
                    show(t) for t in texts))
            self.cmd(node.body, st, new_stdin)
        else:  # pragma: no cover - the parser builds nothing else
            self.unsure(f"unsupported construct {type(node).__name__}")

    def loop(self, st: ShellState, once: Callable[[ShellState], object]) -> None:
        """A loop body that may run zero or more times (interpreted twice)."""
        first = st.copy()
        once(first)
        changed = {k for k in set(first.vars) | set(st.vars)
                   if first.vars.get(k, _MISSING) != st.vars.get(k, _MISSING)}
        second = first.copy()
        for k in changed:
            second.vars[k] = None
        once(second)
        st.merge(first)
        st.merge(second)

    def for_loop(self, node: For, st: ShellState, stdin: Stdin) -> None:
        values: list[str | AStr | None] = []
        if node.words is None:
            values = list(st.positional) if st.positional is not None else [None]
        else:
            fields: list[Field] = []
            for w in node.words:
                fields.extend(self.expand(w, st))
            if len(fields) <= MAX_FOR_VALUES and all(
                    f.text is not None or (f.glob and not f.split) for f in fields):
                values = [f.text if f.text is not None else f.chunks for f in fields]
            else:
                values = [None]
        if not values:
            return

        def bind(s: ShellState, v: str | AStr | None) -> None:
            if isinstance(v, tuple):
                s.set_pattern(node.var, v)
            else:
                s.set_var(node.var, v)

        first = st.copy()
        bind(first, values[0])
        self.cmd(node.body, first, stdin)
        changed = {k for k in set(first.vars) | set(st.vars)
                   if first.vars.get(k, _MISSING) != st.vars.get(k, _MISSING)} - {node.var}
        results = [first]
        for v in [*values[1:], *([values[0]] if len(values) == 1 else [])]:
            s = first.copy()
            for k in changed:
                s.vars[k] = None
            bind(s, v)
            self.cmd(node.body, s, stdin)
            results.append(s)
        for r in results:
            st.merge(r)

    def pipeline(self, node: Pipeline, st: ShellState, stdin: Stdin) -> None:
        prev_out: str | None = None
        prev_paths: tuple[AStr, str] | None = None
        n = len(node.cmds)
        for k, c in enumerate(node.cmds):
            inp = stdin if k == 0 else Stdin("pipe", text=prev_out, paths=prev_paths)
            last = k == n - 1
            if last and st.options.get("lastpipe") and not st.interactive:
                self.cmd(c, st, inp)
            else:
                self.cmd(c, st.copy() if n > 1 else st, inp)
            prev_out = self.static_output(c, st) if not last else None
            prev_paths = self.find_output(c, st) if not last else None

    def static_output(self, c: Command, st: ShellState) -> str | None:
        """What ``echo``/``printf`` with literal arguments print (for ``... | sh``)."""
        if not isinstance(c, Simple) or c.redirs or not c.words:
            return None
        words = [w.literal for w in c.words]
        if any(w is None for w in words) or words[0] not in ("echo", "printf"):
            return None
        args = [w for w in words[1:] if w is not None]
        if words[0] == "echo":
            if args and args[0].startswith("-"):
                return None
            return " ".join(args) + "\n"
        if len(args) == 1 and "%" not in args[0] and "\\" not in args[0]:
            return args[0]
        return None

    def find_output(self, c: Command, st: ShellState) -> tuple[AStr, str] | None:
        """``find ROOT ... -print0`` (or ``-print``) prints paths under ROOT, one per
        NUL (or newline): ``xargs -0`` then passes each as one argument."""
        if not isinstance(c, Simple) or c.redirs or len(c.words) < 2:
            return None
        words = [w.literal for w in c.words]
        if any(w is None for w in words) or words[0] != "find":
            return None
        args = [w for w in words[1:] if w is not None]
        roots = [a for a in args if not a.startswith(("-", "(", "!"))][:1]
        rest = args[args.index(roots[0]) + 1 :] if roots else []
        if len(roots) != 1 or any(r.startswith("-") for r in rest if r in (
                "-printf", "-fprintf", "-fprint", "-fprint0", "-exec", "-execdir", "-ok")):
            return None
        if any(a.startswith(("-exec", "-ok", "-printf", "-fprint", "-ls", "-fls")) for a in rest):
            return None
        root = resolve(astr(roots[0]), st.cwd, symlinks=st.symlinks)
        if root == (Hole.ANY,) or args.index(roots[0]) != 0:
            return None
        return root, "\0" if "-print0" in rest else "\n"

    def define_function(self, node: FuncDef, st: ShellState) -> None:
        st.functions[node.name] = node.body
        st.maybe_functions.discard(node.name)
        if node.name in ("command_not_found_handle", "command_not_found_handler"):
            self.unsure(f"defines {node.name}, which runs for every unknown command")
        # The body is checked now too (a deny rule applies to the definition), but only
        # its rule matches count: its uncertainty is decided at each call.
        sub = st.copy()
        sub.positional = None
        self._quiet += 1
        try:
            self.cmd(node.body, sub, Stdin("tty" if st.interactive else "user"))
        finally:
            self._quiet -= 1

    # ------------------------------------------------------------------ redirections

    def redirects(self, redirs: Seq[Redir], st: ShellState, stdin: Stdin
                  ) -> tuple[Stdin, list[Effect], list[AStr]]:
        effects: list[Effect] = []
        texts: list[AStr] = []
        for r in redirs:
            fd = r.fd
            if fd.startswith("{"):
                st.set_var(fd[1:-1], None)
            if r.op in ("<<", "<<-"):
                h = r.heredoc
                assert h is not None
                text: str | None = h.body
                if h.word is not None:
                    text = self.expand_text(h.word, st)
                if fd in ("", "0"):
                    stdin = Stdin("heredoc", text=text)
                continue
            assert r.target is not None
            if r.op == "<<<":
                value = self.expand_text(r.target, st)
                if fd in ("", "0"):
                    stdin = Stdin("herestring", text=None if value is None else value + "\n")
                continue
            fields = self.expand(r.target, st)
            target = fields[0] if len(fields) == 1 else Field((Hole.ANY,), split=True)
            if any(isinstance(p, ProcSub) for p in r.target.parts):
                if r.op == "<" and fd in ("", "0"):
                    stdin = Stdin("procsub")
                continue
            tt = target.text
            if r.op in ("<&", ">&") and (tt is None or tt == "-" or tt.isdigit()):
                if tt is None and r.op == ">&" and fd == "":
                    texts.append(astr("> ", Hole.ANY))
                    effects.append(Effect("write", (Hole.ANY,), source="redirection"))
                    self.check_autorun((Hole.ANY,), "a redirection")
                    st.wrote((Hole.ANY,))
                continue
            path = self.path(target, st)
            if r.op == "<":
                if fd in ("", "0"):
                    stdin = Stdin("file", path=path)
                continue
            if r.op == "<&":
                continue
            op = {">|": ">", "&>": ">", ">&": ">", "&>>": ">>", "<>": ">"}.get(r.op, r.op)
            texts.append(astr(op, " ", *path))
            if static(path) not in ("/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"):
                effects.append(Effect("write", path, source="redirection"))
                self.check_autorun(path, "a redirection")
                st.wrote(path)
        return stdin, effects, texts

    # ------------------------------------------------------------------ simple commands

    def simple(self, node: Simple, st: ShellState, stdin: Stdin) -> None:
        from gateway.policy import builtins, programs

        stdin, effects, texts = self.redirects(node.redirs, st, stdin)
        env: dict[str, str | None] = {}
        for a in node.assigns:
            value = self.assign_value(a, st)
            self.check_assignment(a.name, value, st, prefix=bool(node.words))
            if node.words:
                env[a.name] = value
            else:
                shaped = self._last_shape if value is None else None
                if shaped is not None:
                    st.set_pattern(a.name, shaped)
                else:
                    st.set_var(a.name, value)
                if a.name in st.integer_vars and value is not None:
                    self.arith_text(value, st)
        if not node.words:
            if texts or effects:
                self.record("", [], texts, st, effects, display=" ".join(show(t) for t in
                                                                         texts))
            return
        fields: list[Field] = []
        for w in node.words:
            fields.extend(self.expand(w, st))
        if not fields:
            if any(not isinstance(p, Lit) for w in node.words for p in w.parts):
                self.unsure("the command word expands to nothing or to something unknown")
            return
        head = fields[0]
        name = head.text
        if name is None:
            what = _dynamic_kind(node.words[0])
            if not self._quiet:
                reason = f"{what} in command position"
                if reason in self.uncertain:
                    self.uncertain.remove(reason)
                self.uncertain.insert(0, reason)
            return
        raw0 = node.words[0].unquoted_literal
        if raw0 is not None and raw0 in st.maybe_aliases:
            self.unsure(f"{raw0} may be an alias defined earlier")
        ctx = Ctx(self, st, stdin, env, texts, effects, bool(node.redirs))
        self.dispatch(name, fields[1:], ctx, builtins, programs)

    def dispatch(self, name: str, args: list[Field], ctx: Ctx, builtins: object,
                 programs: object, *, functions: bool = True, only_builtin: bool = False
                 ) -> None:
        """Run ``name args`` the way bash looks commands up."""
        st = ctx.st
        if "/" not in name and not only_builtin:
            if functions and name in st.maybe_functions:
                ctx.an.unsure(f"{name} may be a function defined earlier")
            if functions and name in st.functions:
                self.call_function(name, args, ctx)
                return
        handler = self.cat.builtin(name) if "/" not in name else None
        if handler is not None:
            builtins.run(handler, name, args, ctx)  # type: ignore[attr-defined]
            return
        if only_builtin:
            self.unsure(f"{name} is not a shell builtin")
            return
        prog, base = self.lookup(name, ctx)
        if prog is None:
            self.record(base, args, ctx.texts, st, ctx.effects)
            return
        programs.run(prog, base, args, ctx)  # type: ignore[attr-defined]

    def lookup(self, name: str, ctx: Ctx) -> tuple[Program | None, str]:
        st = ctx.st
        base = posixpath.basename(name) if "/" in name else name
        if "/" in name:
            path = resolve(astr(name), st.cwd, symlinks=st.symlinks)
            p = static(path)
            if self.written_match(path, st):
                self.unsure(f"runs {name}, a file written in this session")
            elif st.unknown_writes:
                self.unsure(f"runs {name} after this session wrote to unknown paths")
            std = p is not None and any(p.startswith(d) and "/" not in p[len(d):]
                                        for d in _STD_DIRS)
            if not std:
                prog = self.cat.program(name) or (self.cat.program(p) if p else None)
                if prog is None:
                    prog = self.cat.program(base)  # a copy of a known program: same rules
                if prog is not None:
                    return prog, base
                if p is None or p.startswith(_SYSTEM_PREFIXES):
                    self.unsure(f"runs {name}, a program bastille does not know")
                    return None, base
                # the target's own program (a deploy or build script): what it does is
                # its own behaviour, like any script; copies of carriers are caught where
                # they are made (see programs.copy_check)
                return Program(base, why="a program of the target, outside system dirs"), base
        else:
            if st.hashed:
                self.unsure("command lookup was changed in this session (hash -p, enable)")
            for w in st.written:
                s = static(w)
                if s is not None and posixpath.basename(s) == name and (
                        st.path_changed or posixpath.dirname(s) in PATH_DIRS or
                        posixpath.dirname(s).endswith(("/bin", "/sbin"))):
                    self.unsure(f"{name} may run a file written in this session")
                    break
        prog = self.cat.program(base)
        if prog is None and (base.isdigit() or base in ANSWERS):
            return Program(base, why="an answer typed to a program's question"), base
        if prog is None:
            self.unsure(f"runs {base}, a program bastille does not know")
        return prog, base

    def call_function(self, name: str, args: list[Field], ctx: Ctx) -> None:
        st = ctx.st
        if self.depth > MAX_DEPTH:
            self.unsure(f"function {name} calls nest too deeply")
            return
        body = st.functions[name]
        saved = st.positional
        texts = [a.text for a in args]
        st.positional = [t for t in texts if t is not None] \
            if all(t is not None for t in texts) else None
        self.record(name, args, ctx.texts, st, ctx.effects)
        self.depth += 1
        try:
            self.cmd(body, st, ctx.stdin)
        finally:
            self.depth -= 1
            st.positional = saved

    # ------------------------------------------------------------------ assignments

    def assign_value(self, a: object, st: ShellState) -> str | None:
        from gateway.policy.syntax import Assign

        assert isinstance(a, Assign)
        if a.subscript is not None:
            self.arith_text(a.subscript, st)
        if a.array is not None:
            for w in a.array:
                self.expand(w, st)
            return None
        if a.value is None:
            return ""
        self._last_shape = None
        fields = self.expand(a.value, st, split=False, glob=False, braces=False)
        if len(fields) == 1 and fields[0].text is None and not a.append and not any(
                c is Hole.ANY or c is Hole.OPTS for c in fields[0].chunks):
            self._last_shape = fields[0].chunks  # partly known: "x-$(date +%F)", $((n+1))
        value = fields[0].text if len(fields) == 1 else ("" if not fields else None)
        if a.append:
            old = st.get(a.name)
            return None if old is None or value is None else old + value
        return value

    def check_assignment(self, name: str, value: str | None, st: ShellState, *,
                         prefix: bool) -> None:
        """Variables that make later commands run code (catalogue ``[variables]``)."""
        cat = self.cat
        if name in cat.runs_code_vars:
            self.unsure(f"sets {name}, which makes commands run other code")
        elif name in cat.program_vars:
            if value is None or not _known_program_word(value, cat):
                self.unsure(f"sets {name} to a command bastille cannot check")
        elif name in cat.prompt_vars:
            if value is None or _prompt_runs(value):
                self.unsure(f"sets {name}, a prompt that runs commands when shown")

    # ------------------------------------------------------------------ tests, arithmetic

    def cond(self, node: Cond, st: ShellState) -> None:
        items = list(node.items)
        for k, it in enumerate(items):
            if not isinstance(it, Word):
                continue
            self.expand(it, st, split=False, glob=False)
            op = it.unquoted_literal
            if op in ("-eq", "-ne", "-lt", "-le", "-gt", "-ge"):
                for j in (k - 1, k + 1):
                    w = items[j] if 0 <= j < len(items) else None
                    if isinstance(w, Word):
                        self.arith_field(self.expand(w, st, split=False, glob=False), st)
            nxt = items[k + 1] if k + 1 < len(items) else None
            if op == "-v" and isinstance(nxt, Word):
                self.name_ref(self.expand(nxt, st, split=False, glob=False), st)

    def arith_field(self, fields: list[Field], st: ShellState) -> None:
        for f in fields:
            t = f.text
            if t is None:
                if any(c not in (Hole.DIGITS, Hole.NUMBER) and not isinstance(c, str)
                       for c in f.chunks):
                    self.unsure("arithmetic on a value that is not known (it can run "
                                "commands)")
            else:
                self.arith_text(t, st)

    def arith_text(self, text: str, st: ShellState, depth: int = 0) -> None:
        if _NUMBER_RE.match(text) or not text.strip():
            return
        if depth > 6:
            self.unsure("arithmetic nested too deeply")
            return
        try:
            expr = parse_arith(text)
        except ParseError:
            self.unsure("arithmetic that cannot be read")
            return
        self.arith(expr, st, depth + 1)

    def arith(self, expr: Arith, st: ShellState, depth: int = 0) -> None:
        """Substitutions in an arithmetic expression run; variable values are
        evaluated as arithmetic in turn (a value like ``a[$(cmd)]`` runs ``cmd``)."""
        for p in expr.parts:
            self.part_effects(p, st)
        assigned = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:[-+*/%&|^]|<<|>>)?=(?!=)",
                                  expr.source))
        assigned |= set(re.findall(r"(?:\+\+|--)\s*([A-Za-z_][A-Za-z0-9_]*)", expr.source))
        assigned |= set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:\+\+|--)", expr.source))
        for name in expr.names:
            if name in NUMERIC_VARS or name in assigned or name in st.numeric:
                continue
            v = st.get(name)
            if v is None:
                if name in st.vars or not _unset_is_zero(name, st):
                    self.unsure(f"arithmetic on {name}, whose value is not known (it can "
                                "run commands)")
            else:
                self.arith_text(v, st, depth)
        for sub in expr.subscripts:
            self.arith_text(sub, st, depth)
        for name in assigned:
            st.set_numeric(name)

    def name_ref(self, fields: list[Field], st: ShellState) -> None:
        """A word used as a variable name (``read``, ``printf -v``, ``test -v``...): a
        subscript in it is evaluated as arithmetic."""
        for f in fields:
            t = f.text
            if t is None:
                self.unsure("a variable name that is not known (its subscript can run "
                            "commands)")
                continue
            m = re.match(r"[A-Za-z_][A-Za-z0-9_]*\[(.*)\]\Z", t, re.S)
            if m is not None:
                self.arith_text(m.group(1), st)

    # ------------------------------------------------------------------ words

    def expand_text(self, word: Word, st: ShellState, *, tilde_colon: bool = False
                    ) -> str | None:
        """A word expanded without splitting or globbing (assignments, here-strings)."""
        fields = self.expand(word, st, split=False, glob=False, braces=False)
        if not fields:
            return ""
        return fields[0].text if len(fields) == 1 else None

    def expand(self, word: Word, st: ShellState, *, split: bool = True, glob: bool = True,
               braces: bool = True) -> list[Field]:
        """Bash's expansions of one word: the fields it becomes (see the module doc)."""
        items: list[object] = []
        for p in word.parts:
            if isinstance(p, Lit):
                if not p.text and p.quoted:
                    items.append(("", True))  # "" or '': an empty word that exists
                items.extend((c, p.quoted) for c in p.text)
            else:
                items.append(p)
        alternatives = [items]
        if braces and any(i == ("{", False) for i in items):
            try:
                alternatives = brace_expand(items)
            except ValueError:
                self.unsure("brace expansion too large")
                return [Field((Hole.ANY,), split=True)]
        out: list[Field] = []
        for alt in alternatives:
            out.extend(self._fields(alt, st, split=split, glob=glob))
        return out

    def _fields(self, items: list[object], st: ShellState, *, split: bool, glob: bool
                ) -> list[Field]:
        ifs = st.ifs if split else ""
        fields: list[list[tuple[object, bool]]] = [[]]
        produced = [False]  # a field exists even if empty (quoted "")
        split_unknown = False

        def add(chunk: object, quoted: bool) -> None:
            fields[-1].append((chunk, quoted))

        for it in items:
            if isinstance(it, tuple):
                ch, quoted = it
                if ch:
                    add(ch, bool(quoted))
                produced[-1] = True
                continue
            assert isinstance(it, Part)
            if isinstance(it, Tilde):
                for c in _tilde(it.text, st):
                    add(c, False)
                produced[-1] = True
                continue
            values = self.part_value(it, st)
            quoted = _quoted(it)
            for k, v in enumerate(values):
                if k:  # "$@" in quotes: one field per positional parameter
                    fields.append([])
                    produced.append(True)
                if isinstance(v, tuple):  # a glob-matched file name: literal parts and holes
                    for c in v:
                        add(c, True)
                    produced[-1] = True
                    continue
                if isinstance(v, Hole):
                    add(v, quoted)
                    if quoted:
                        produced[-1] = True
                    elif split and v not in _NO_SPLIT:
                        split_unknown = True
                        produced[-1] = True
                    else:
                        produced[-1] = True
                    continue
                if quoted or not split or ifs == "":
                    add(v, True)
                    if quoted:
                        produced[-1] = True
                    elif v:
                        produced[-1] = True
                    continue
                if ifs is None:
                    add(Hole.ANY, False)
                    split_unknown = True
                    produced[-1] = True
                    continue
                pieces = _ifs_split(v, ifs)
                for j, piece in enumerate(pieces):
                    if j:
                        fields.append([])
                        produced.append(False)
                    if piece:
                        add(piece, False)
                        produced[-1] = True
        out: list[Field] = []
        for segs, made in zip(fields, produced, strict=True):
            if not made and not segs:
                continue
            out.append(_make_field(segs, glob and not st.options.get("noglob"),
                                   split_unknown))
        return out

    def part_value(self, p: Part, st: ShellState) -> list[str | Hole]:  # or AStr items
        """The value(s) of one expansion; its side effects are analysed."""
        if isinstance(p, CmdSub):
            sub = st.copy()
            for c in p.body:
                self.cmd(c, sub, Stdin("null") if self.exec_mode else Stdin("tty"))
            return [_output_shape(p.body)]
        if isinstance(p, ProcSub):
            sub = st.copy()
            for c in p.body:
                self.cmd(c, sub, Stdin("null"))
            return ["/dev/fd/", Hole.DIGITS]
        if isinstance(p, ArithSub):
            self.arith(p.expr, st)
            return [Hole.NUMBER]
        assert isinstance(p, Param)
        return self.param(p, st)

    def part_effects(self, p: Part, st: ShellState) -> None:
        if not isinstance(p, Lit | Tilde):
            self.part_value(p, st)

    def param(self, p: Param, st: ShellState) -> list[str | Hole]:
        for inner in p.inner:
            self.part_effects(inner, st)
        for a in p.arith:
            self.arith_text(a, st)
        name = p.name
        if p.transform == "P":
            v = st.get(name)
            if v is None or _prompt_runs(v):
                self.unsure(f"${{{name}@P}} expands a prompt that can run commands")
            return [Hole.ANY]
        if p.op == "!":
            target = st.get(name)
            if target is None:
                self.unsure(f"${{!{name}}} refers to a variable that is not known (its "
                            "subscript can run commands)")
                return [Hole.ANY]
            self.name_ref([Field(astr(target))], st)
            return [Hole.ANY]
        if p.op == "#":
            return [Hole.DIGITS]
        if name in ("@", "*"):
            if st.positional is None:
                return [Hole.ANY]
            if name == "@" and p.quoted:
                return list(st.positional) if st.positional else []
            return [" ".join(st.positional)]
        if name.isdigit():
            n = int(name)
            if n == 0 or st.positional is None:
                return [Hole.ANY]
            value: str | None = st.positional[n - 1] if n - 1 < len(st.positional) else ""
        elif name in ("?", "#", "$", "!"):
            return [Hole.DIGITS]
        elif name in ("-", "_"):
            return [Hole.ANY]
        else:
            value = st.get(name)
            if p.subscript is not None:
                value = None
            elif value is None and name in st.patterns and p.op == "":
                return [st.patterns[name]]  # type: ignore[list-item]
        if p.op in (":-", "-", ":=", "=", ":+", "+", ":?", "?"):
            operand = self.expand_text(p.word, st) if p.word is not None else ""
            if p.op in (":=", "="):
                if value is None or (p.op == ":=" and value == ""):
                    st.set_var(name, operand if value is not None else None)
            if value is None:
                return [Hole.ANY]
            if p.op in (":-", ":=") and value == "":
                return [operand if operand is not None else Hole.ANY]
            if p.op in (":+",):
                return [operand if operand is not None else Hole.ANY] if value else [""]
            if p.op == "+":
                return [operand if operand is not None else Hole.ANY]
            return [value]
        if p.op == "other" or value is None:
            numeric = name in NUMERIC_VARS or name in st.numeric
            if name in NUMERIC_VARS and p.op != "other":
                return [Hole.DIGITS]
            return [Hole.NUMBER] if numeric and p.op != "other" else [Hole.ANY]
        return [value]

    # ------------------------------------------------------------------ paths

    def path(self, f: Field, st: ShellState) -> AStr:
        """A field used as a path: absolute and normalized against the working dir."""
        if f.split:
            return (Hole.ANY,)
        return resolve(f.chunks, st.cwd, symlinks=st.symlinks)

    def written_match(self, path: AStr, st: ShellState) -> bool:
        s = static(path)
        affixes = P.astr_affixes(path)
        for w in st.written:
            if s is not None and static(w) == s:
                return True
            if (s is None or has_hole(w)) and not P.affixes_clash(affixes, P.astr_affixes(w)):
                if P.intersects(P.NFA().build(P.seq(("bol",), P.astr_node(w), ("eol",))),
                                P.astr_nfa(path)):
                    return True
        return False

    def check_autorun(self, path: AStr, where: str) -> None:
        """A write to a file that makes code run later (catalogue ``[autorun]``)."""
        if _autorun_hit(path, self.cat.autorun):
            if path == (Hole.ANY,):
                self.unsure(f"{where} writes to a path that is not known (it may be a file "
                            "that runs code later)")
            else:
                self.unsure(f"{where} writes {show(path)}, a file that makes code run later")

    # ------------------------------------------------------------------ recording

    def record(self, name: str, args: Seq[Field], redirs: Seq[AStr], st: ShellState,
               effects: Seq[Effect] = (), *, display: str = "") -> CommandInfo:
        """Add one command for the rules: its views and effects."""
        views = build_views(name, list(args), list(redirs), st)
        shown = display or " ".join([name, *(a.show() for a in args), *(show(r) for r in
                                                                        redirs)]).strip()
        info = CommandInfo(name, shown, views, list(effects), definition=self._quiet > 0)
        self.commands.append(info)
        return info


@dataclass
class Ctx:
    """What a handler needs: the analyser, the state, stdin, the command's environment."""

    an: Analyzer
    st: ShellState
    stdin: Stdin
    env: dict[str, str | None]
    texts: list[AStr]
    effects: list[Effect]
    redirected: bool = False


_MISSING = object()


# --------------------------------------------------------------------------- helpers


_NO_SPLIT = (Hole.DIGITS, Hole.NUMBER, Hole.TOKEN, Hole.WORD)
# what the output of a few common commands looks like (no blank: it cannot split into
# several words or start an option); anything else is any text
_SHAPES: dict[str, Hole] = {
    "nproc": Hole.DIGITS, "id -u": Hole.DIGITS, "id -g": Hole.DIGITS, "date +%s": Hole.DIGITS,
    "hostname": Hole.TOKEN, "hostname -s": Hole.TOKEN, "hostname -f": Hole.TOKEN,
    "whoami": Hole.TOKEN, "id -un": Hole.TOKEN, "id -gn": Hole.TOKEN, "uname -r": Hole.TOKEN,
    "uname -m": Hole.TOKEN, "uname -s": Hole.TOKEN, "uname -n": Hole.TOKEN, "arch": Hole.TOKEN,
    "lsb_release -cs": Hole.TOKEN, "git rev-parse HEAD": Hole.TOKEN,
    "git rev-parse --short HEAD": Hole.TOKEN, "git branch --show-current": Hole.TOKEN,
    "pwd": Hole.WORD, "mktemp": Hole.WORD, "mktemp -d": Hole.WORD,
    "git rev-parse --show-toplevel": Hole.WORD,
}
_SHAPE_PREFIX: dict[str, Hole] = {
    "pgrep ": Hole.DIGITS, "pidof ": Hole.DIGITS, "date +": Hole.TOKEN, "dirname ": Hole.WORD,
    "basename ": Hole.TOKEN, "which ": Hole.WORD, "command -v ": Hole.WORD,
    "readlink -f ": Hole.WORD, "realpath ": Hole.WORD,
}


def _output_shape(body: tuple[Command, ...]) -> Hole:
    cmd: Command | None = body[0] if len(body) == 1 else None
    while isinstance(cmd, Sequence) and len(cmd.items) == 1 and not cmd.items[0][1]:
        cmd = cmd.items[0][0]
    if not isinstance(cmd, Simple) or cmd.assigns or cmd.redirs:
        return Hole.ANY
    words = [w.literal for w in cmd.words]
    if any(w is None or " " in w or "\n" in w for w in words):
        return Hole.ANY
    text = " ".join(w for w in words if w is not None)
    if text in _SHAPES:
        return _SHAPES[text]
    for prefix, hole in _SHAPE_PREFIX.items():
        if not text.startswith(prefix):
            continue
        rest = text[len(prefix):]
        if (prefix == "date +" and any(c in rest for c in "/ ")) or rest.startswith("-"):
            return Hole.ANY
        return hole
    return Hole.ANY


def _tilde(text: str, st: ShellState) -> AStr:
    """``~`` (HOME, symbolic unless set in this session), ``~+`` (PWD), ``~-`` (OLDPWD),
    ``~user`` (kept symbolic)."""
    if text == "~":
        if "HOME" in st.vars:
            v = st.vars["HOME"]
            return (v,) if v is not None else (Hole.ANY,)
        return ("~",)
    if text == "~+":
        return st.cwd if "PWD" not in st.vars or st.vars["PWD"] is not None else (Hole.ANY,)
    if text == "~-":
        return st.oldpwd if st.oldpwd is not None else (Hole.ANY,)
    return (text,)


def _quoted(p: Part) -> bool:
    return bool(getattr(p, "quoted", False))


def _dynamic_kind(w: Word) -> str:
    for p in w.parts:
        if isinstance(p, CmdSub):
            return "command substitution"
        if isinstance(p, ProcSub):
            return "process substitution"
        if isinstance(p, Param | ArithSub):
            return "variable"
    if any(isinstance(p, Lit) and not p.quoted and has_glob_chars(p.text) for p in w.parts):
        return "glob"
    return "brace expansion"


def _ifs_split(value: str, ifs: str) -> list[str]:
    """Word splitting of an unquoted expansion, bash's rules: IFS white space is trimmed
    and runs of it separate words; every other IFS character separates exactly one."""
    if ifs == " \t\n":
        return value.split()
    ws = "".join(c for c in ifs if c in " \t\n")
    other = "".join(c for c in ifs if c not in " \t\n")
    if ws:
        value = value.strip(ws)
    if not value:
        return []
    parts: list[str] = []
    cur: list[str] = []
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c in other:
            parts.append("".join(cur))
            cur = []
            i += 1
            while i < n and value[i] in ws:
                i += 1
            continue
        if c in ws:
            j = i
            while j < n and value[j] in ws:
                j += 1
            if j < n and value[j] in other:
                i = j
                continue
            parts.append("".join(cur))
            cur = []
            i = j
            continue
        cur.append(c)
        i += 1
    if cur:
        parts.append("".join(cur))
    return parts


def _make_field(segs: list[tuple[object, bool]], glob: bool, split: bool) -> Field:
    """One field from its pieces: ``(text or Hole, quoted)``; unquoted glob characters
    in literal text (or in unquoted expansion results) make it a pattern."""
    unquoted = "".join(ch for ch, q in segs if isinstance(ch, str) and not q)
    is_glob = glob and has_glob_chars(unquoted)
    out: list[object] = []
    if not is_glob:
        out = [ch for ch, _q in segs]
    else:
        buf: list[str] = []
        for ch, q in segs:
            if isinstance(ch, str) and not q:
                buf.append(ch)
                continue
            out.extend(glob_chunks("".join(buf)))
            buf.clear()
            out.append(ch)
        out.extend(glob_chunks("".join(buf)))
    quoted_start = bool(segs) and isinstance(segs[0][0], str) and segs[0][1]
    has_unquoted_hole = any(not isinstance(ch, str) and not q for ch, q in segs)
    return Field(astr(*out), glob=is_glob, split=split and has_unquoted_hole,  # type: ignore[arg-type]
                 quoted_start=quoted_start)


def _known_program_word(value: str, cat: Catalogue) -> bool:
    v = value.strip()
    if not v or any(c in v for c in " \t\n;|&$`<>()'\"\\"):
        return False
    base = posixpath.basename(v)
    prog = cat.program(base)
    return prog is not None and prog.kind in ("plain", "screen", "special") and not prog.exec


def _prompt_runs(value: str) -> bool:
    """Does this prompt string expand anything when shown (promptvars)?"""
    decoded = re.sub(r"\\(.)", lambda m: "$" if m.group(1) == "$" else "", value)
    return bool(re.search(r"\$[({\[A-Za-z_0-9@*#?!-]|`", decoded))


def _unset_is_zero(name: str, st: ShellState) -> bool:
    """An arithmetic name the session never set: only safe if it cannot come from the
    environment (it can: any variable can). Kept as a hook; always False."""
    del name, st
    return False


def _autorun_hit(path: AStr, globs: tuple[str, ...]) -> bool:
    s = static(path)
    affixes = P.astr_affixes(path)
    for g in globs:
        variants = [g]
        if g.startswith("~/"):
            variants += ["/home/*/" + g[2:], "/root/" + g[2:]]
        for v in variants:
            if s is not None:
                if P.glob_to_regex(v).match(s):
                    return True
            elif not P.affixes_clash(affixes, P.glob_affixes(v)) and P.intersects(
                    P.glob_nfa(v), P.astr_nfa(path)):
                return True
    return False


# --------------------------------------------------------------------------- views


# the directories of a login shell's PATH on Debian/Ubuntu (/etc/profile, ~/.profile):
# a file written there (or in any .../bin, .../sbin) shadows a program of the same name
# (a PATH set in the session makes every directory count)
PATH_DIRS = frozenset({"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin",
                       "/bin", "/usr/local/games", "/usr/games", "/snap/bin", "~/bin",
                       "~/.local/bin"})


def _canon(a: Field, st: ShellState) -> Field:
    """Absolute path arguments as the kernel resolves them (``/proc/self/root``, symlinks
    made in this session, ``..``)."""
    t = a.text
    if t is None:
        return a
    key, eq, value = t.partition("=")
    path = value if eq and value.startswith("/") and "/" not in key else t
    if not path.startswith("/"):
        return a
    r = static(resolve(astr(path), st.cwd, symlinks=st.symlinks))
    if r is None or r == path:
        return a
    return Field(astr(f"{key}={r}" if path is value and eq else r))


def build_views(name: str, args: list[Field], redirs: list[AStr], st: ShellState
                ) -> list[View]:
    """The texts the rules see for one command (see ``View``)."""
    views: list[View] = []
    args = [_canon(a, st) for a in args]
    tokens, exact = _normalized(name, args)
    views.append(_view(tokens, redirs, exact, maybe=False))
    rel = [k for k, a in enumerate(args) if _relative(a)]
    if rel and name:
        for cwd, maybe in [(st.cwd, False), *((c, True) for c in st.cwd_alts)]:
            resolved = list(args)
            for k in rel:
                r = resolve(args[k].chunks, cwd, symlinks=st.symlinks)
                canonical = bool(r) and r[0] is Hole.WORD and all(
                    isinstance(c, str) or c is Hole.SEG for c in r[1:])
                if r == (Hole.WORD,):
                    r = ("/", Hole.WORD)  # the unknown directory itself: "/" or "/..."
                resolved[k] = Field(r, glob=args[k].glob, canonical=canonical)
            t2, ex2 = _normalized(name, resolved)
            # under an unknown directory, the reading with its holes empty (cwd "/") is
            # one possibility among others: a match there is uncertain, not certain
            v = _view(t2, redirs, ex2, maybe=maybe or has_hole(cwd))
            if v not in views:
                views.append(v)
    return views


def _relative(a: Field) -> bool:
    first = a.chunks[0] if a.chunks else ""
    if not isinstance(first, str) or a.split:
        return False
    t = static(a.chunks) or first
    if t.startswith(("/", "-", "~")) or "://" in t or "=" in t:
        return False
    if re.match(r"^[\w.-]+@[\w.-]+:", t) or re.match(r"^[\w.-]+:", t):
        return False
    return True


def _normalized(name: str, args: list[Field]) -> tuple[list[object], bool]:
    """Normalized tokens: strings (exact), AStr (with holes), or Hole.OPTS/Hole.ANY gaps."""
    if all(a.text is not None for a in args):
        out = normalize_options(name, [a.text or "" for a in args])
        return [name, *(_norm_path(x) for x in out)], True
    splits = any(a.split for a in args)
    statics = [a.text for a in args if a.text is not None]
    if splits:
        norm = normalize_options(name, [s for s in statics if s is not None])
        toks: list[object] = [name, Hole.ANY]
        for x in norm:
            toks.extend([_norm_path(x), Hole.ANY])
        for a in args:
            if a.text is None and not a.split:
                toks.extend([_norm_dyn(a), Hole.ANY])
        return toks, False
    sentinels: dict[str, Field] = {}
    mapped: list[str] = []
    for k, a in enumerate(args):
        if a.text is not None:
            mapped.append(a.text)
        else:
            key = f"\x00{k}"
            sentinels[key] = a
            mapped.append(key)
    capable = [key for key, a in sentinels.items() if a.maybe_option]
    if len(capable) == 1:
        # one field that may be an option word: it is either an operand (where it was
        # typed) or one option anywhere among the options
        as_operand = _tokens(name, mapped, sentinels)
        without = [m for m in mapped if m != capable[0]]
        base = _tokens(name, without, sentinels)
        word = astr("-", Hole.WORD)
        alts = [[*base[: k + 1], ("opt", word), *base[k + 1 :]] for k in range(len(base))]
        return [("alt", [as_operand, *alts])], False
    toks = _tokens(name, mapped, sentinels)
    if capable:
        gapped: list[object] = []
        for t in toks:
            gapped.extend([t, Hole.OPTS])
        return gapped, False
    return toks, False


def _tokens(name: str, mapped: list[str], sentinels: dict[str, Field]) -> list[object]:
    norm = normalize_options(name, mapped)
    toks: list[object] = [name]
    for x in norm:
        if x in sentinels:
            toks.append(_norm_dyn(sentinels[x]))
        elif x.startswith("-") and " " in x and any(s in x for s in sentinels):
            k = x.split(" ", 1)
            toks.append(k[0])
            toks.append(_norm_dyn(sentinels[k[1]]) if k[1] in sentinels else k[1])
        else:
            toks.append(_norm_path(x))
    return toks


def _norm_path(arg: str) -> str:
    from gateway.policy.values import norm_path

    return norm_path(arg)


def _norm_dyn(a: Field) -> object:
    """A dynamic field as a token. One argv element: its unknown parts cannot separate
    words for the rules (``WORD``: no blank); a path with an unknown part may hold
    ``..`` (the whole path is unknown)."""
    chunks = tuple(Hole.WORD if c is Hole.ANY and not a.split else c for c in a.chunks)
    if a.canonical:
        return ("glob", chunks) if a.glob else chunks
    text_parts = "".join(c for c in chunks if isinstance(c, str))
    if "/" in text_parts and any(c in (Hole.ANY, Hole.WORD) for c in chunks):
        first = chunks[0]
        if isinstance(first, str) and "=" in first and not first.startswith("/"):
            key = first.split("=", 1)[0] + "="
            return astr(key, Hole.WORD if not a.split else Hole.ANY)
        if a.split:
            return (Hole.ANY,)
        if isinstance(first, str) and first.startswith(("/", "~")):
            return astr(first[0], Hole.WORD)  # still absolute (or under home)
        return (Hole.WORD,)
    if a.glob:
        return ("glob", chunks)
    return chunks


def _view(tokens: list[object], redirs: list[AStr], exact: bool, *, maybe: bool) -> View:
    tokens = [t for t in tokens if t != ""]
    if exact and all(not has_hole(r) for r in redirs):
        text = " ".join([*(t for t in tokens if isinstance(t, str)),
                         *(static(r) or "" for r in redirs)])
        return View(None, text, text, maybe)
    if len(tokens) == 1 and isinstance(tokens[0], tuple) and tokens[0][:1] == ("alt",):
        variants = [_token_nodes([t for t in v if t != ""] + list(redirs)) for v in tokens[0][1]]
        node = P.alt(*(n for n, _ in variants))
        heads = {v[0] if v and isinstance(v[0], str) else None for v in tokens[0][1]}
        return View(node, None, variants[0][1], maybe, heads.pop() if len(heads) == 1 else None)
    node, inst = _token_nodes([*tokens, *redirs])
    head = tokens[0] if tokens and isinstance(tokens[0], str) else None
    return View(node, None, inst, maybe, head)


def _token_nodes(tokens: list[object]) -> tuple[P.Node, str]:
    nodes: list[P.Node] = []
    inst: list[str] = []
    first = True
    for t in tokens:
        if t is Hole.OPTS or t is Hole.ANY:
            nodes.append(P.astr_node((t,)))
            continue
        if isinstance(t, tuple) and len(t) == 2 and t[0] == "opt":
            nodes.append(P.seq(P.lit(" "), P.astr_node(t[1])))
            continue
        if not first:
            nodes.append(P.lit(" "))
            inst.append(" ")
        first = False
        if isinstance(t, str):
            nodes.append(P.lit(t))
            inst.append(t)
        elif isinstance(t, tuple) and len(t) == 2 and t[0] == "glob":
            g = P.astr_node(t[1])
            nodes.append(P.seq(g, P.star(P.seq(P.lit(" "), g))))
            inst.append(show(t[1]).replace("…", ""))
        else:
            nodes.append(P.astr_node(t))  # type: ignore[arg-type]
            inst.append("".join(c for c in t if isinstance(c, str)))  # type: ignore[attr-defined]
    return P.seq(*nodes), "".join(inst)
