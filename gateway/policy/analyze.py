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
import time
from collections.abc import Callable
from collections.abc import Sequence as Seq

from gateway.policy import builtins, handlers
from gateway.policy import possible as P
from gateway.policy.catalogue import Catalogue, Program
from gateway.policy.ctx import Ctx
from gateway.policy.expand import (
    Expander,
    _autorun_hit,
    _dynamic_kind,
    _known_program_word,
    _prompt_runs,
)
from gateway.policy.lexer import Incomplete, ParseError
from gateway.policy.parse import Parser
from gateway.policy.records import CommandInfo, Effect, Start, Stdin
from gateway.policy.state import ShellState
from gateway.policy.syntax import (
    AndOr,
    ArithCmd,
    ArithFor,
    Case,
    Command,
    Cond,
    Coproc,
    For,
    FuncDef,
    Group,
    If,
    Lit,
    Parsed,
    Pipeline,
    ProcSub,
    Redir,
    Redirected,
    Sequence,
    Simple,
    Subshell,
    While,
)
from gateway.policy.values import (
    AStr,
    Field,
    Hole,
    astr,
    has_hole,
    resolve,
    show,
    static,
)
from gateway.policy.views import PATH_DIRS, build_views

MAX_DEPTH = 12  # nested command strings and function calls
MAX_LINE = 32 * 1024  # longer lines are not analysed: uncertain
MAX_COMMANDS = 400  # commands analysed per line (a loop body counts twice)
# CPU budget of one line: a pasted monster must not stall the gateway. It is the analysing
# thread's CPU time, not the clock: a busy gateway (other sessions, the recording writer
# holding the GIL, a full run queue) must not turn an ordinary line into an uncertain one
MAX_SECONDS = 0.25
MAX_FOR_VALUES = 16
_STD_DIRS = ("/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/", "/usr/local/bin/", "/usr/local/sbin/")
# words typed as answers to programs' questions: no such programs (command not found)
ANSWERS = frozenset("y n Y N no NO No yes YES Yes q Q a A s S k K r R".split())
# where unknown programs are the system's (they must be in the catalogue), or anyone's
_SYSTEM_PREFIXES = ("/usr/", "/bin/", "/sbin/", "/lib", "/etc/", "/boot/", "/dev/", "/proc/",
                    "/sys/", "/run/", "/var/", "/tmp/", "/snap/", "/nix/")


class Analyzer(Expander):
    """Interprets lines abstractly (see the module docstring)."""

    def __init__(self, catalogue: Catalogue, *, exec_mode: bool = False,
                 tty: bool = True) -> None:
        self.cat = catalogue
        self.exec_mode = exec_mode
        self.tty = tty  # the session has a terminal whose keys the relay decides
        self.commands: list[CommandInfo] = []
        self.uncertain: list[str] = []
        # programs that read code or keys from the user's own input (an exec without a
        # terminal: `ssh host -- sudo -i`): that input is held for approval, not the line
        self.input_readers: list[str] = []
        self.incomplete = False
        self.starts: list[Start] = []
        self.depth = 0
        self.count = 0
        self.deadline = time.thread_time() + MAX_SECONDS
        self.quiet = 0  # >0: collect commands only (function bodies at definition)
        self._last_shape: AStr | None = None

    # ------------------------------------------------------------------ entry points

    def unsure(self, reason: str) -> None:
        if self.quiet:
            return
        if reason not in self.uncertain:
            self.uncertain.append(reason)

    def reads_input(self, reason: str) -> None:
        """A program reads commands or keys from the user's input, unchecked: the line
        may run, but any input the user sends waits for approval (an exec without a
        terminal; ``Decision.input_gate``)."""
        if not self.quiet and reason not in self.input_readers:
            self.input_readers.append(reason)

    def line(self, text: str, st: ShellState, stdin: Stdin) -> None:
        """Analyse a whole line (several complete commands) and update ``st``. Never
        raises: an analyser failure is an uncertainty (fail closed)."""
        if len(text) > MAX_LINE:
            self.unsure("command too long to analyse")
            return
        try:
            self.text(text, st, stdin, top=True)
        except Exception:  # noqa: BLE001 - a bug in the analyser must fail closed
            self.quiet = 0
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
            while (parsed := self._next(parser, st, stdin, top=top, what=what)) is not None:
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

    def _next(self, parser: Parser, st: ShellState, stdin: Stdin, *, top: bool, what: str
              ) -> Parsed | None:
        """The next complete command; None at the end, or where the rest cannot be read
        (uncertain then)."""
        try:
            return parser.next()
        except Incomplete as exc:
            if top and not self.exec_mode:
                self.incomplete = True
                self.unsure("incomplete command")
            else:
                self.unsure(f"could not parse{' ' + what if what else ''}: {exc}")
        except ParseError as exc:
            self.unsure(f"could not parse{' ' + what if what else ''}: {exc}")
            self._salvage(exc, st, stdin)
        return None

    def _salvage(self, exc: ParseError, st: ShellState, stdin: Stdin) -> None:
        """bash refuses the whole line, but a rule that matches what was read before the
        error still applies (a user who typed ``rm -rf / )`` is told why)."""
        if exc.pos <= 0 or not exc.text or self.quiet:
            return
        prefix = exc.text[: exc.pos].rstrip()
        while prefix and prefix[-1] in ";&|(":
            prefix = prefix[:-1].rstrip()
        if not prefix:
            return
        self.quiet += 1
        try:
            self.text(prefix, st.copy(), stdin)
        finally:
            self.quiet -= 1

    # ------------------------------------------------------------------ commands

    def cmd(self, node: Command, st: ShellState, stdin: Stdin) -> None:
        self.count += 1
        if self.count > MAX_COMMANDS or (self.count % 16 == 0 and
                                         time.thread_time() > self.deadline):
            self.count = MAX_COMMANDS + 1  # (the rest of the line is skipped quickly)
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
        else:
            self._compound(node, st, stdin)

    def _compound(self, node: Command, st: ShellState, stdin: Stdin) -> None:
        """Compound commands: groups, branches and loops."""
        if isinstance(node, Subshell):
            self.cmd(node.body, st.copy(), stdin)
        elif isinstance(node, Group):
            self.cmd(node.body, st, stdin)
        elif isinstance(node, If):
            self.if_(node, st, stdin)
        elif isinstance(node, While):
            self.while_(node, st, stdin)
        elif isinstance(node, For):
            self.for_loop(node, st, stdin)
        elif isinstance(node, ArithFor):
            self.arith_for(node, st, stdin)
        elif isinstance(node, Case):
            self.case(node, st, stdin)
        else:
            self._other(node, st, stdin)

    def _other(self, node: Command, st: ShellState, stdin: Stdin) -> None:
        """Definitions, tests, arithmetic, coprocesses, redirected compound commands."""
        if isinstance(node, FuncDef):
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

    def if_(self, node: If, st: ShellState, stdin: Stdin) -> None:
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

    def while_(self, node: While, st: ShellState, stdin: Stdin) -> None:
        self.cmd(node.cond, st, stdin)

        def again(s: ShellState) -> None:
            self.cmd(node.body, s, stdin)
            self.cmd(node.cond, s, stdin)

        self.loop(st, again)

    def arith_for(self, node: ArithFor, st: ShellState, stdin: Stdin) -> None:
        self.arith(node.init, st)
        self.arith(node.cond, st)

        def step(s: ShellState) -> None:
            self.cmd(node.body, s, stdin)
            self.arith(node.step, s)
            self.arith(node.cond, s)

        self.loop(st, step)

    def case(self, node: Case, st: ShellState, stdin: Stdin) -> None:
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
        self.quiet += 1
        try:
            self.cmd(node.body, sub, Stdin("tty" if st.interactive else "user"))
        finally:
            self.quiet -= 1

    # ------------------------------------------------------------------ redirections

    def redirects(self, redirs: Seq[Redir], st: ShellState, stdin: Stdin
                  ) -> tuple[Stdin, list[Effect], list[AStr]]:
        """Redirections: the command's stdin, the paths written, the texts the rules
        see (``> /path``)."""
        effects: list[Effect] = []
        texts: list[AStr] = []
        for r in redirs:
            if r.fd.startswith("{"):
                st.set_var(r.fd[1:-1], None)
            stdin = self._redirect(r, st, stdin, effects, texts)
        return stdin, effects, texts

    def _redirect(self, r: Redir, st: ShellState, stdin: Stdin, effects: list[Effect],
                  texts: list[AStr]) -> Stdin:
        """One redirection: the stdin after it; what it writes added to the lists."""
        reads_stdin = r.fd in ("", "0")
        if r.op in ("<<", "<<-", "<<<"):
            here = self._here(r, st)
            return here if reads_stdin else stdin
        assert r.target is not None
        fields = self.expand(r.target, st)
        target = fields[0] if len(fields) == 1 else Field((Hole.ANY,), split=True)
        if any(isinstance(p, ProcSub) for p in r.target.parts):
            return Stdin("procsub") if r.op == "<" and reads_stdin else stdin
        tt = target.text
        if r.op in ("<&", ">&") and (tt is None or tt == "-" or tt.isdigit()):
            if tt is None and r.op == ">&" and r.fd == "":
                texts.append(astr("> ", Hole.ANY))
                self._write(st, (Hole.ANY,), effects)
            return stdin
        path = self.path(target, st)
        if r.op == "<":
            return Stdin("file", path=path) if reads_stdin else stdin
        if r.op != "<&":
            op = {">|": ">", "&>": ">", ">&": ">", "&>>": ">>", "<>": ">"}.get(r.op, r.op)
            texts.append(astr(op, " ", *path))
            if static(path) not in ("/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"):
                self._write(st, path, effects)
        return stdin

    def _here(self, r: Redir, st: ShellState) -> Stdin:
        """A here-document or here-string, as the stdin it gives."""
        if r.op == "<<<":
            assert r.target is not None
            value = self.expand_text(r.target, st)
            return Stdin("herestring", text=None if value is None else value + "\n")
        h = r.heredoc
        assert h is not None
        text = h.body if h.word is None else self.expand_text(h.word, st)
        return Stdin("heredoc", text=text)

    def _write(self, st: ShellState, path: AStr, effects: list[Effect]) -> None:
        effects.append(Effect("write", path, source="redirection"))
        self.check_autorun(path, "a redirection")
        st.wrote(path)

    def simple(self, node: Simple, st: ShellState, stdin: Stdin) -> None:
        stdin, effects, texts = self.redirects(node.redirs, st, stdin)
        env = self._assignments(node, st)
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
        name = fields[0].text
        if name is None:
            self._dynamic_command(node)
            return
        raw0 = node.words[0].unquoted_literal
        if raw0 is not None and raw0 in st.maybe_aliases:
            self.unsure(f"{raw0} may be an alias defined earlier")
        ctx = Ctx(self, st, stdin, env, texts, effects, bool(node.redirs))
        self.dispatch(name, fields[1:], ctx)

    def _assignments(self, node: Simple, st: ShellState) -> dict[str, str | None]:
        """The assignments of a simple command: its environment when it has a command
        word, else shell variables set."""
        env: dict[str, str | None] = {}
        for a in node.assigns:
            value = self.assign_value(a, st)
            self.check_assignment(a.name, value, st, prefix=bool(node.words))
            if node.words:
                env[a.name] = value
                continue
            shaped = self._last_shape if value is None else None
            if shaped is not None:
                st.set_pattern(a.name, shaped)
            else:
                st.set_var(a.name, value)
            if a.name in st.integer_vars and value is not None:
                self.arith_text(value, st)
        return env

    def _dynamic_command(self, node: Simple) -> None:
        """The command word is not known: the first reason given."""
        if self.quiet:
            return
        reason = f"{_dynamic_kind(node.words[0])} in command position"
        if reason in self.uncertain:
            self.uncertain.remove(reason)
        self.uncertain.insert(0, reason)

    def dispatch(self, name: str, args: list[Field], ctx: Ctx, *, functions: bool = True,
                 only_builtin: bool = False) -> None:
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
            builtins.run(handler, name, args, ctx)
            return
        if only_builtin:
            self.unsure(f"{name} is not a shell builtin")
            return
        prog, base = self.lookup(name, ctx)
        if prog is None:
            self.record(base, args, ctx.texts, st, ctx.effects)
            return
        self.run_program(prog, base, args, ctx)

    def run_program(self, prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
        """Run a catalogue program's handler (``handlers.run``)."""
        handlers.run(prog, name, args, ctx)

    def lookup(self, name: str, ctx: Ctx) -> tuple[Program | None, str]:
        st = ctx.st
        base = posixpath.basename(name) if "/" in name else name
        if "/" in name:
            found = self._lookup_path(name, base, st)
            if found is not None:
                return found
        else:
            self._check_path_lookup(name, st)
        prog = self.cat.program(base)
        if prog is None and (base.isdigit() or base in ANSWERS):
            return Program(base, why="an answer typed to a program's question"), base
        if prog is None:
            self.unsure(f"runs {base}, a program bastille does not know")
        return prog, base

    def _lookup_path(self, name: str, base: str, st: ShellState
                     ) -> tuple[Program | None, str] | None:
        """A command word with a slash: its program, or None to look ``base`` up."""
        path = resolve(astr(name), st.cwd, symlinks=st.symlinks)
        p = static(path)
        if self.written_match(path, st):
            self.unsure(f"runs {name}, a file written in this session")
        elif st.unknown_writes:
            self.unsure(f"runs {name} after this session wrote to unknown paths")
        if p is not None and any(p.startswith(d) and "/" not in p[len(d):] for d in _STD_DIRS):
            real = posixpath.basename(p)
            if real == base:
                return None
            # a link made in this session to a program under another name (`ln -s
            # /usr/bin/touch ./ls; ./ls`): what runs is that program, with its rules
            prog = self.cat.program(real)
            if prog is None:
                self.unsure(f"runs {name}, a link to {real}, a program bastille does not know")
            return prog, real
        prog = self.cat.program(name) or (self.cat.program(p) if p else None)
        if prog is None:
            prog = self.cat.program(base)  # a copy of a known program: same rules
        if prog is not None:
            return prog, base
        if p is None or p.startswith(_SYSTEM_PREFIXES):
            self.unsure(f"runs {name}, a program bastille does not know")
            return None, base
        # the target's own program (a deploy or build script): what it does is its own
        # behaviour, like any script; copies of carriers are caught where they are made
        # (see programs.copy_check)
        return Program(base, why="a program of the target, outside system dirs"), base

    def _check_path_lookup(self, name: str, st: ShellState) -> None:
        """A command found through PATH: uncertain if it may be a file written here."""
        if st.hashed:
            self.unsure("command lookup was changed in this session (hash -p, enable)")
        for w in st.written:
            s = static(w)
            if s is not None and posixpath.basename(s) == name and (
                    st.path_changed or posixpath.dirname(s) in PATH_DIRS or
                    posixpath.dirname(s).endswith(("/bin", "/sbin"))):
                self.unsure(f"{name} may run a file written in this session")
                break

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

    def path(self, f: Field, st: ShellState) -> AStr:
        """A field used as a path: absolute and normalized against the working dir."""
        if f.split:
            return (Hole.ANY,)
        return resolve(f.chunks, st.cwd, symlinks=st.symlinks)

    def written_match(self, path: AStr, st: ShellState,
                      only: Callable[[AStr], bool] | None = None) -> bool:
        """Could ``path`` be one this session wrote (``only``: of those it wrote, the
        ones that matter)?"""
        s = static(path)
        affixes = P.astr_affixes(path)
        for w in st.written:
            if only is not None and not only(w):
                continue
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
        info = CommandInfo(name, shown, views, list(effects), definition=self.quiet > 0)
        self.commands.append(info)
        return info


_MISSING = object()
