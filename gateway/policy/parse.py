"""A bash parser for the policy: bash's own lexing, as far as it goes, and no further.

``Parser(text).next()`` reads one *complete command* at a time (up to an unquoted
newline, here-document bodies included), so the analyser can apply what a command
changes (aliases above all: they are expanded while reading, like bash does) before the
next one is read. What it implements, as bash 5.2 does it:

* line continuation (backslash-newline removed everywhere but in single quotes,
  comments and quoted here-documents), comments, blanks;
* quoting: backslash, single and double quotes, ``$'...'`` (ANSI-C, decoded),
  ``$"..."`` (locale strings, flagged), backquotes (with their backslash rules);
* expansions kept as parts: ``$x``, ``${...}`` (operators, subscripts, nested words),
  ``$(...)`` and backquotes (parsed recursively), ``$((...))``/``$[...]`` (names and
  nested expansions collected), ``<(...)``/``>(...)``, tilde prefixes, extglob patterns;
* every operator, redirection (``N>``, ``{var}>``, ``&>``, ``<<<``, ``<<-``...) and
  here-document (quoted or not, tab-stripped, delimiter lines joined like bash);
* every compound command: ``( )``, ``{ }``, ``if``, ``for``/``select`` (including
  ``for ((;;))`` and the ``{ }`` body form), ``while``/``until``, ``case`` (``;;``,
  ``;&``, ``;;&``, ``(pattern)``), ``function``/``name()``, ``[[ ]]`` (with ``=~``),
  ``(( ))``, ``coproc``, ``time [-p]``, ``!``; array assignments ``a=(...)``;
* alias expansion of command words (recursion guarded, trailing-blank aliases expand the
  next word), when the caller says aliases are on.

Anything else is a ``ParseError``; input that ends inside a construct is ``Incomplete``.
The analyser treats both as uncertain: there is no "best effort" here.

Known limits: history expansion is not performed (the analyser flags it); ``$"..."``
is read as a double-quoted string; bash's POSIX mode differences are not modelled.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from gateway.policy.ansi_c import decode_ansi_c
from gateway.policy.syntax import (
    AndOr,
    Arith,
    ArithCmd,
    ArithFor,
    ArithSub,
    Assign,
    Case,
    CaseItem,
    CmdSub,
    Command,
    Cond,
    Coproc,
    For,
    FuncDef,
    Group,
    Heredoc,
    If,
    Lit,
    Param,
    Parsed,
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

MAX_DEPTH = 48  # nesting of substitutions and compound commands
MAX_ALIAS_EXPANSIONS = 200  # per parser: bash guards recursion, we also guard volume


class ParseError(Exception):
    """The text is not valid bash (bash would refuse it too, or we cannot tell).

    ``pos`` is where reading stopped in ``text`` (the parser's text, aliases expanded).
    """

    def __init__(self, msg: str, pos: int = -1, text: str = "") -> None:
        super().__init__(msg)
        self.pos = pos
        self.text = text


class Incomplete(ParseError):
    """The text ends inside a construct: an interactive bash would ask for more."""


_BLANK = " \t"
_META = " \t\n;&|<>()"
_RESERVED = frozenset(
    {
        "if",
        "then",
        "elif",
        "else",
        "fi",
        "for",
        "in",
        "do",
        "done",
        "while",
        "until",
        "case",
        "esac",
        "select",
        "function",
        "time",
        "{",
        "}",
        "!",
        "[[",
        "]]",
        "coproc",
    }
)
_OPS = (
    ";;&",
    "&>>",
    "<<<",
    "<<-",
    "&&",
    "||",
    ";;",
    ";&",
    "|&",
    "&>",
    "<<",
    "<>",
    "<&",
    ">&",
    ">>",
    ">|",
    "<",
    ">",
    "&",
    ";",
    "|",
    "(",
    ")",
)
_REDIR_OPS = frozenset({"&>>", "<<<", "<<-", "&>", "<<", "<>", "<&", ">&", ">>", ">|", "<", ">"})
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGN_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\[[^\]]*\])?(\+?)=")
_ALIAS_CHARS = re.compile(r"[^ \t\n;&|<>()'\"`\\$=/]+")
_SPECIAL_PARAMS = "@*#?-$!0_"
_DECLARATION = frozenset({"declare", "typeset", "local", "export", "readonly"})
_EXTGLOB = "?*+@!"


def _word(parts: list[Part], source: str) -> Word:
    return Word(tuple(parts), source)


class _Parts:
    """Accumulates word parts, merging adjacent literals of the same quoting."""

    def __init__(self) -> None:
        self.parts: list[Part] = []
        self._buf: list[str] = []
        self._quoted = False

    def lit(self, text: str, quoted: bool) -> None:
        if self._buf and self._quoted != quoted:
            self.flush()
        self._quoted = quoted
        self._buf.append(text)

    def part(self, p: Part) -> None:
        self.flush()
        self.parts.append(p)

    def flush(self) -> None:
        if self._buf:
            self.parts.append(Lit("".join(self._buf), self._quoted))
            self._buf = []

    def done(self) -> list[Part]:
        self.flush()
        return self.parts

    @property
    def empty(self) -> bool:
        return not self._buf and not self.parts


class Parser:
    """Reads complete commands from ``text`` (see the module docstring)."""

    def __init__(
        self,
        text: str,
        *,
        aliases: Mapping[str, str] | None = None,
        expand_aliases: bool = False,
        depth: int = 0,
    ) -> None:
        self.s = text
        self.i = 0
        self.aliases = aliases or {}
        self.expand_aliases = expand_aliases
        self.depth = depth
        self.pending: list[Redir] = []  # here-documents waiting for their bodies
        self._alias_stack: list[tuple[str, int]] = []
        self._alias_count = 0
        self._alias_next = False  # the previous alias ended with a blank
        self._alias_next_at = 0
        self.translated = False  # a $"..." string was seen
        self.heredocs: list[Heredoc] = []

    # ------------------------------------------------------------------ characters

    def _skip_lc(self) -> None:
        s = self.s
        while s.startswith("\\\n", self.i):
            self.i += 2

    def _la(self, n: int) -> str:
        """The next ``n`` logical characters (line continuations removed)."""
        out: list[str] = []
        j, s = self.i, self.s
        while len(out) < n and j < len(s):
            if s.startswith("\\\n", j):
                j += 2
                continue
            out.append(s[j])
            j += 1
        return "".join(out)

    def _peek(self) -> str:
        self._skip_lc()
        return self.s[self.i] if self.i < len(self.s) else ""

    def _get(self) -> str:
        self._skip_lc()
        if self.i >= len(self.s):
            return ""
        c = self.s[self.i]
        self.i += 1
        return c

    def _eat(self, n: int) -> None:
        for _ in range(n):
            self._get()

    def _skip_blanks(self) -> None:
        while True:
            c = self._peek()
            if c and c in _BLANK:
                self.i += 1
            else:
                return

    def _skip_comment(self) -> None:
        if self._peek() == "#":
            while self.i < len(self.s) and self.s[self.i] != "\n":
                self.i += 1

    def _skip_space(self, newlines: bool) -> None:
        """Blanks and comments; newlines too when ``newlines`` (reading here-documents)."""
        while True:
            self._skip_blanks()
            self._skip_comment()
            if newlines and self._peek() == "\n":
                self.i += 1
                self._read_heredocs()
                continue
            return

    def _at_end(self) -> bool:
        return self._peek() == ""

    # ------------------------------------------------------------------ tokens

    def _peek_op(self) -> str | None:
        """The operator at the current position, ``"\\n"``, ``""`` (end) or None (word)."""
        self._skip_blanks()
        self._skip_comment()
        c = self._peek()
        if c == "":
            return ""
        if c == "\n":
            return "\n"
        if c not in ";&|<>()":
            return None
        la = self._la(3)
        if la[:2] in ("<(", ">("):
            return None  # process substitution starts a word
        for op in _OPS:
            if la.startswith(op):
                return op
        return None

    def _peek_word_text(self) -> str:
        """The upcoming word if it is plain (no quotes or expansions), else ''."""
        self._skip_blanks()
        la = self._la(64)
        m = re.match(r"[^ \t\n;&|<>()'\"`\\$]+", la)
        if m is None:
            return ""
        end = m.end()
        if end < len(la) and la[end] not in _META:
            return ""
        return m.group(0)

    def _peek_reserved(self) -> str | None:
        word = self._peek_word_text()
        return word if word in _RESERVED else None

    def _expect_reserved(self, word: str) -> None:
        self._skip_space(newlines=False)
        got = self._peek_reserved()
        if got != word:
            self._fail(f"expected {word!r}")
        self._eat(len(word))

    def _fail(self, what: str) -> None:
        if self._at_end():
            raise Incomplete(what, self.i, self.s)
        raise ParseError(f"{what} at {self._la(12)!r}", self.i, self.s)

    def _expect_op(self, op: str) -> None:
        if self._peek_op() != op:
            self._fail(f"expected {op!r}")
        self._eat(len(op))

    def _newline(self) -> None:
        """Consume a newline and read the here-documents that follow it."""
        self._get()
        self._read_heredocs()

    def _skip_newlines(self) -> None:
        while self._peek_op() == "\n":
            self._newline()

    # ------------------------------------------------------------------ complete commands

    def next(self) -> Parsed | None:
        """Read the next complete command; None at the end of the text."""
        self._skip_blanks()
        self._skip_comment()
        if self._at_end():
            return None
        start = self.i
        if self._peek() == "\n":
            self._newline()
            return Parsed(None, "")
        self.heredocs = []
        seq = self._sequence(frozenset(), top=True)
        if self.pending:
            raise Incomplete("here-document without its body")
        return Parsed(seq, self.s[start : self.i], list(self.heredocs))

    def parse_all(self) -> list[Command]:
        """Every command of the text (for substitutions parsed on their own)."""
        out: list[Command] = []
        while True:
            p = self.next()
            if p is None:
                return out
            if p.command is not None:
                out.append(p.command)

    # ------------------------------------------------------------------ grammar

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError("nested too deeply")

    def _sequence(
        self, terminators: frozenset[str], *, top: bool = False, empty_ok: bool = False
    ) -> Sequence:
        """A list of and-or lists; stops before a terminator (or a newline at top)."""
        items: list[tuple[Command, bool]] = []
        while True:
            if not top:
                self._skip_space(newlines=True)
            op = self._peek_op()
            if op == "":
                if top:
                    break
                raise Incomplete("unfinished compound command")
            if op == "\n":
                if top:
                    self._newline()
                    break
            if op is None and self._peek_reserved() in terminators:
                break
            if op is not None and op in terminators:
                break
            if op is not None and op not in ("(", "<", ">", ">>", "<<", "<<-", "<<<", "&>",
                                             "&>>", "<>", ">|", "<&", ">&"):
                self._fail(f"unexpected {op!r}")
            cmd = self._and_or()
            op = self._peek_op()
            if op in (";", "&"):
                self._eat(1)
                items.append((cmd, op == "&"))
                continue
            items.append((cmd, False))
            if op == "\n":
                if top:
                    self._newline()
                    break
                continue
            if op == "" and top:
                break
            if op == "":
                raise Incomplete("unfinished compound command")
            if op is None and self._peek_reserved() in terminators:
                break
            if op is not None and op in terminators:
                break
            self._fail("unexpected token")
        if not items and not top and not empty_ok:
            self._fail("empty command list")
        return Sequence(tuple(items))

    def _and_or(self) -> Command:
        first = self._pipeline()
        rest: list[tuple[str, Command]] = []
        while (op := self._peek_op()) in ("&&", "||"):
            assert op is not None
            self._eat(2)
            self._skip_space(newlines=True)
            rest.append((op, self._pipeline()))
        return AndOr(first, tuple(rest)) if rest else first

    def _pipeline(self) -> Command:
        timed = negated = False
        while True:
            r = self._peek_reserved()
            if r == "time" and not timed:
                self._eat(4)
                timed = True
                w = self._peek_word_text()
                if w == "-p":
                    self._eat(2)
                    if self._peek_word_text() == "--":
                        self._eat(2)
                continue
            if r == "!":
                self._eat(1)
                negated = not negated
                continue
            break
        op = self._peek_op()
        if timed and (op in ("", "\n", ";", "&") or (op is None and self._peek_reserved()
                                                       in ("}", "fi", "done", "esac"))):
            return Pipeline((), negated, timed)
        cmds = [self._command()]
        while (op := self._peek_op()) in ("|", "|&"):
            assert op is not None
            self._eat(len(op))
            self._skip_space(newlines=True)
            cmds.append(self._command())
        if len(cmds) == 1 and not timed and not negated:
            return cmds[0]
        return Pipeline(tuple(cmds), negated, timed)

    def _command(self) -> Command:
        self._enter()
        try:
            return self._command_inner()
        finally:
            self.depth -= 1

    def _command_inner(self) -> Command:
        while True:
            self._skip_blanks()
            op = self._peek_op()
            if op == "(":
                if self._la(2) == "((":
                    arith = self._try_arith_command()
                    if arith is not None:
                        return self._redirected(arith)
                self._eat(1)
                body = self._sequence(frozenset({")"}))
                self._expect_op(")")
                return self._redirected(Subshell(body))
            if op is not None and op not in _REDIR_OPS:
                self._fail(f"unexpected {op!r}")
            r = self._peek_reserved() if op is None else None
            if r is not None:
                return self._compound(r)
            if op is None and self._try_alias():
                continue
            return self._simple()

    def _redirected(self, cmd: Command) -> Command:
        redirs: list[Redir] = []
        while True:
            r = self._maybe_redir()
            if r is None:
                break
            redirs.append(r)
        return Redirected(cmd, tuple(redirs)) if redirs else cmd

    def _compound(self, r: str) -> Command:
        if r == "{":
            self._eat(1)
            body = self._sequence(frozenset({"}"}))
            self._expect_reserved("}")
            return self._redirected(Group(body))
        if r == "if":
            return self._redirected(self._if())
        if r in ("while", "until"):
            self._eat(len(r))
            cond = self._sequence(frozenset({"do"}))
            self._expect_reserved("do")
            body = self._sequence(frozenset({"done"}))
            self._expect_reserved("done")
            return self._redirected(While(cond, body, r == "until"))
        if r in ("for", "select"):
            return self._redirected(self._for(r))
        if r == "case":
            return self._redirected(self._case())
        if r == "function":
            self._eat(8)
            self._skip_blanks()
            name = self._read_word()
            if name is None or name.literal is None:
                self._fail("bad function name")
            assert name is not None and name.literal is not None
            self._skip_blanks()
            if self._la(1) == "(":
                self._eat(1)
                self._skip_blanks()
                self._expect_op(")")
            self._skip_space(newlines=True)
            start = self.i
            fbody = self._command()
            return FuncDef(name.literal, fbody, self.s[start : self.i])
        if r == "[[":
            self._eat(2)
            return self._redirected(self._cond())
        if r == "coproc":
            self._eat(6)
            self._skip_blanks()
            cname: str | None = None
            w = self._peek_word_text()
            if w and w not in _RESERVED and _NAME_RE.fullmatch(w):
                save = self.i
                self._eat(len(w))
                self._skip_blanks()
                if self._peek_reserved() in ("{", "if", "while", "until", "for", "case", "[[") \
                        or self._peek_op() == "(":
                    cname = w
                else:
                    self.i = save
            return Coproc(cname, self._command())
        self._fail(f"unexpected {r!r}")
        raise AssertionError  # pragma: no cover

    def _if(self) -> If:
        self._eat(2)
        clauses: list[tuple[Sequence, Sequence]] = []
        else_: Sequence | None = None
        while True:
            cond = self._sequence(frozenset({"then"}))
            self._expect_reserved("then")
            body = self._sequence(frozenset({"elif", "else", "fi"}))
            clauses.append((cond, body))
            self._skip_space(newlines=False)
            r = self._peek_reserved()
            if r == "elif":
                self._eat(4)
                continue
            if r == "else":
                self._eat(4)
                else_ = self._sequence(frozenset({"fi"}))
            self._expect_reserved("fi")
            return If(tuple(clauses), else_)

    def _for(self, kw: str) -> Command:
        self._eat(len(kw))
        self._skip_blanks()
        if kw == "for" and self._la(2) == "((":
            self._eat(2)
            text = self._balanced_arith()
            parts = _split_top(text, ";")
            if len(parts) != 3:
                raise ParseError("bad for (( ))")
            exprs = [parse_arith(p, self) for p in parts]
            self._skip_blanks()
            if self._peek_op() == ";":
                self._eat(1)
            self._skip_space(newlines=True)
            body = self._loop_body()
            return ArithFor(exprs[0], exprs[1], exprs[2], body)
        name = self._peek_word_text()
        if not name or not _NAME_RE.fullmatch(name):
            self._fail(f"bad {kw} variable")
        self._eat(len(name))
        self._skip_blanks()
        words: tuple[Word, ...] | None = None
        op = self._peek_op()
        if op == ";":
            self._eat(1)
        self._skip_space(newlines=True)
        if self._peek_reserved() == "in":
            self._eat(2)
            items: list[Word] = []
            while True:
                self._skip_blanks()
                op = self._peek_op()
                if op in (";", "\n"):
                    if op == ";":
                        self._eat(1)
                    break
                if op == "":
                    raise Incomplete("unfinished for")
                if op is not None:
                    self._fail("unexpected token in word list")
                w = self._read_word()
                if w is None:
                    self._fail("bad word")
                assert w is not None
                items.append(w)
            words = tuple(items)
            self._skip_space(newlines=True)
        body = self._loop_body()
        return For(name, words, body, kw == "select")

    def _loop_body(self) -> Sequence:
        self._skip_space(newlines=True)
        r = self._peek_reserved()
        if r == "{":
            self._eat(1)
            body = self._sequence(frozenset({"}"}))
            self._expect_reserved("}")
            return body
        self._expect_reserved("do")
        body = self._sequence(frozenset({"done"}))
        self._expect_reserved("done")
        return body

    def _case(self) -> Case:
        self._eat(4)
        self._skip_blanks()
        word = self._read_word()
        if word is None:
            self._fail("case without a word")
        assert word is not None
        self._skip_space(newlines=True)
        self._expect_reserved("in")
        items: list[CaseItem] = []
        while True:
            self._skip_space(newlines=True)
            if self._peek_reserved() == "esac":
                self._eat(4)
                return Case(word, tuple(items))
            if self._peek_op() == "(":
                self._eat(1)
            patterns: list[Word] = []
            while True:
                self._skip_blanks()
                w = self._read_word()
                if w is None:
                    self._fail("bad case pattern")
                assert w is not None
                patterns.append(w)
                self._skip_blanks()
                op = self._peek_op()
                if op == "|":
                    self._eat(1)
                    continue
                if op == ")":
                    self._eat(1)
                    break
                self._fail("bad case pattern")
            self._skip_space(newlines=True)
            body: Sequence | None = None
            op = self._peek_op()
            if not (op in (";;", ";&", ";;&") or (op is None and self._peek_reserved() == "esac")):
                body = self._sequence(frozenset({";;", ";&", ";;&", "esac"}))
            op = self._peek_op()
            if op in (";;", ";&", ";;&"):
                assert op is not None
                self._eat(len(op))
                items.append(CaseItem(tuple(patterns), body, op))
                continue
            items.append(CaseItem(tuple(patterns), body, ""))
            self._skip_space(newlines=True)
            self._expect_reserved("esac")
            return Case(word, tuple(items))

    def _cond(self) -> Cond:
        items: list[Word | str] = []
        regex_next = False
        while True:
            self._skip_space(newlines=True)
            if self._at_end():
                raise Incomplete("unfinished [[")
            if self._peek_word_text() == "]]":
                self._eat(2)
                if not items:
                    raise ParseError("empty [[ ]]")
                return Cond(tuple(items))
            la = self._la(2)
            if la in ("&&", "||"):
                self._eat(2)
                items.append(la)
                continue
            c = self._peek()
            if c in "()<>" and la not in ("<(", ">("):
                self._eat(1)
                items.append(c)
                continue
            if c in ";&|":
                self._fail("unexpected token in [[ ]]")
            w = self._read_word(regex=regex_next)
            if w is None:
                self._fail("bad word in [[ ]]")
            assert w is not None
            items.append(w)
            regex_next = w.unquoted_literal == "=~"

    def _try_arith_command(self) -> ArithCmd | None:
        save = self.i
        self._eat(2)
        try:
            text = self._balanced_arith()
        except ParseError:
            self.i = save
            return None
        return ArithCmd(parse_arith(text, self))

    def _balanced_arith(self) -> str:
        """After ``((``: read to the matching ``))``; the text between."""
        depth = 0
        out: list[str] = []
        while True:
            c = self._get()
            if c == "":
                raise Incomplete("unfinished (( ))")
            if c == "(":
                depth += 1
            elif c == ")":
                if depth == 0:
                    if self._peek() == ")":
                        self._get()
                        return "".join(out)
                    raise ParseError("not an arithmetic command")
                depth -= 1
            elif c in "'\"":
                q = c
                out.append(c)
                while True:
                    d = self._get()
                    if d == "":
                        raise Incomplete("unfinished quote")
                    out.append(d)
                    if d == "\\" and q == '"':
                        out.append(self._get())
                        continue
                    if d == q:
                        break
                continue
            out.append(c)

    # ------------------------------------------------------------------ simple commands

    def _try_alias(self) -> bool:
        """Expand an alias at the current command word; True if the text changed."""
        if not self.expand_aliases or not self.aliases:
            return False
        self._skip_blanks()
        self._skip_lc()
        start = self.i
        m = _ALIAS_CHARS.match(self._la(256))
        if m is None:
            return False
        name = m.group(0)
        after = self._la(len(name) + 1)[len(name) :]
        if after and after not in _META:
            return False
        if name not in self.aliases or name in _RESERVED:
            return False
        self._alias_stack = [(n, e) for n, e in self._alias_stack if e > start]
        if any(n == name for n, _ in self._alias_stack):
            return False
        self._alias_count += 1
        if self._alias_count > MAX_ALIAS_EXPANSIONS:
            raise ParseError("too many alias expansions")
        # raw end of the name (line continuations inside it included)
        j, seen = start, 0
        while seen < len(name):
            if self.s.startswith("\\\n", j):
                j += 2
                continue
            j += 1
            seen += 1
        value = self.aliases[name]
        self.s = self.s[:start] + value + self.s[j:]
        self.i = start
        self._alias_stack = [(n, e + len(value) - (j - start)) for n, e in self._alias_stack]
        self._alias_stack.append((name, start + len(value)))
        self._alias_next = value.endswith((" ", "\t"))
        self._alias_next_at = start + len(value)
        return True

    def _simple(self) -> Command:
        assigns: list[Assign] = []
        words: list[Word] = []
        redirs: list[Redir] = []
        while True:
            self._skip_blanks()
            r = self._maybe_redir()
            if r is not None:
                redirs.append(r)
                continue
            op = self._peek_op()
            if op is not None:
                break
            if words and self._alias_next and self.i >= self._alias_next_at:
                self._alias_next = False
                if self._try_alias():
                    continue
            if not words or words[0].unquoted_literal in _DECLARATION:
                arr = self._try_array_assign()
                if arr is not None:
                    if words:
                        words.append(_array_word(arr))
                    else:
                        assigns.append(arr)
                    continue
            start = self.i
            w = self._read_word()
            if w is None:
                self._fail("unexpected character")
            assert w is not None
            if not words:
                a = self._as_assign(w, self.s[start : self.i])
                if a is not None:
                    assigns.append(a)
                    continue
                if self._peek_op() == "(" and w.literal is not None and not words:
                    # name () compound-command
                    save = self.i
                    self._eat(1)
                    self._skip_blanks()
                    if self._peek_op() == ")":
                        self._eat(1)
                        self._skip_space(newlines=True)
                        body_start = self.i
                        body = self._command()
                        if assigns or redirs:
                            raise ParseError("assignment before a function definition")
                        return FuncDef(w.literal, body, self.s[body_start : self.i])
                    self.i = save
                    self._fail("unexpected '('")
            words.append(w)
        if not words and not assigns and not redirs:
            self._fail("empty command")
        self._alias_next = False
        return Simple(tuple(assigns), tuple(words), tuple(redirs))

    def _as_assign(self, w: Word, raw: str) -> Assign | None:
        """``NAME=value`` (name unquoted) -> Assign, else None."""
        first = w.parts[0] if w.parts else None
        if not isinstance(first, Lit) or first.quoted:
            return None
        logical = raw.replace("\\\n", "")
        m = _ASSIGN_RE.match(logical)
        if m is None:
            return None
        if not first.text.startswith(m.group(1)):
            return None
        sub = m.group(2)[1:-1] if m.group(2) else None
        value_src = logical[m.end() :]
        p = Parser(value_src, aliases=None, depth=self.depth + 1)
        value = p._read_word(assign_value=True) if value_src else Word((), "")
        if p.translated:
            self.translated = True
        if value is None or not p._at_end():
            raise ParseError("bad assignment value")
        return Assign(m.group(1), value, bool(m.group(3)), None, sub, logical)

    def _try_array_assign(self) -> Assign | None:
        la = self._la(300)
        m = _ASSIGN_RE.match(la)
        if m is None or la[m.end() : m.end() + 1] != "(":
            return None
        self._eat(m.end() + 1)
        start = self.i
        items: list[Word] = []
        while True:
            self._skip_space(newlines=True)
            if self._peek_op() == ")":
                src = self.s[start : self.i]
                self._eat(1)
                sub = m.group(2)[1:-1] if m.group(2) else None
                return Assign(m.group(1), None, bool(m.group(3)), tuple(items), sub,
                              m.group(0) + "(" + src + ")")
            if self._at_end():
                raise Incomplete("unfinished array")
            w = self._read_word()
            if w is None:
                self._fail("bad array element")
            assert w is not None
            items.append(w)

    def _maybe_redir(self) -> Redir | None:
        """A redirection at the current position (with its fd prefix), or None."""
        self._skip_blanks()
        la = self._la(40)
        fd = ""
        m = re.match(r"(\d+|\{[A-Za-z_][A-Za-z0-9_]*\})(?=[<>])", la)
        if m is not None and la[m.end() : m.end() + 2] not in ("<(", ">("):
            fd = m.group(1)
            la = la[m.end() :]
        op = next((o for o in _OPS if la.startswith(o)), None)
        if op is None or op not in _REDIR_OPS or la[:2] in ("<(", ">("):
            return None
        self._eat(len(fd) + len(op))
        self._skip_blanks()
        if self._peek_op() not in (None,):
            self._fail(f"{op} without a target")
        w = self._read_word()
        if w is None:
            self._fail(f"{op} without a target")
        assert w is not None
        if op in ("<<", "<<-"):
            delim, quoted = _heredoc_delimiter(w)
            h = Redir(fd, op, w, Heredoc(delim, quoted, op == "<<-"))
            self.pending.append(h)
            return h
        return Redir(fd, op, w)

    def _read_line(self, join: bool) -> tuple[str, bool]:
        """One physical line (continued lines joined when ``join``); False at the end."""
        out: list[str] = []
        while True:
            end = self.s.find("\n", self.i)
            if end < 0:
                out.append(self.s[self.i :])
                self.i = len(self.s)
                return "".join(out), False
            seg = self.s[self.i : end]
            self.i = end + 1
            if join and (len(seg) - len(seg.rstrip("\\"))) % 2 == 1:
                out.append(seg[:-1])
                continue
            out.append(seg)
            return "".join(out), True

    def _read_heredocs(self) -> None:
        pending, self.pending = self.pending, []
        for r in pending:
            assert r.heredoc is not None
            h = r.heredoc
            lines: list[str] = []
            complete = False
            while self.i < len(self.s):
                line, _ = self._read_line(join=not h.quoted)
                cmp = line.lstrip("\t") if h.strip_tabs else line
                if cmp == h.delimiter:
                    complete = True
                    break
                lines.append(cmp)
            if not complete:
                raise Incomplete("here-document without its delimiter line")
            body = "".join(x + "\n" for x in lines)
            word = None
            if not h.quoted:
                p = Parser(body, depth=self.depth + 1)
                word = p._heredoc_word()
                if p.translated:
                    self.translated = True
            done = Heredoc(h.delimiter, h.quoted, h.strip_tabs, body, word, True)
            r.heredoc = done
            self.heredocs.append(done)

    # ------------------------------------------------------------------ words

    def _read_word(self, *, regex: bool = False, assign_value: bool = False) -> Word | None:
        """Read one word at the current position; None if a word cannot start here."""
        self._skip_lc()
        start = self.i
        acc = _Parts()
        first = True
        paren = 0
        assignish = False  # NAME= seen: "~" after "=" and ":" is a tilde prefix
        while True:
            c = self._peek()
            if c == "":
                break
            if c in _META:
                if c in "<>" and self._la(2)[1:] == "(":
                    acc.part(self._procsub())
                    first = False
                    continue
                if c == "(" and (regex or (not acc.empty and _last_unquoted(acc) in _EXTGLOB)):
                    acc.lit(self._balanced_paren(), False)
                    first = False
                    continue
                if regex and c in "()|" and c != " ":
                    if c == "(":
                        paren += 1
                    elif c == ")":
                        if paren == 0:
                            break
                        paren -= 1
                    self._get()
                    acc.lit(c, False)
                    continue
                if regex and paren and c in " \t":
                    self._get()
                    acc.lit(c, False)
                    continue
                break
            if c == "\\":
                self.i += 1
                d = self.s[self.i] if self.i < len(self.s) else ""
                if d == "":
                    raise Incomplete("backslash at the end")
                self.i += 1
                acc.lit(d, True)
            elif c == "'":
                self.i += 1
                end = self.s.find("'", self.i)
                if end < 0:
                    raise Incomplete("unfinished single quote")
                acc.lit(self.s[self.i : end], True)
                self.i = end + 1
            elif c == '"':
                self._get()
                self._dquote(acc)
            elif c == "`":
                self._get()
                acc.part(self._backtick(quoted=False))
            elif c == "$":
                self._dollar(acc, quoted=False)
            elif c == "~" and first and not assign_value:
                self._tilde(acc)
            elif c == "~" and (assign_value or assignish) and (
                    first or _last_unquoted(acc) in (":", "=")):
                self._tilde(acc)
            else:
                self._get()
                if c == "=" and not assignish:
                    assignish = _assignment_like(acc, "=")
                acc.lit(c, False)
            first = False
        parts = acc.done()
        if not parts and self.i == start:
            return None
        return _word(parts, self.s[start : self.i])

    def _tilde(self, acc: _Parts) -> None:
        la = self._la(64)
        m = re.match(r"~[A-Za-z0-9._+-]*", la)
        assert m is not None
        end = m.end()
        nxt = la[end : end + 1]
        if nxt and nxt not in "/:" and nxt not in _META:
            self._get()
            acc.lit("~", False)
            return
        self._eat(end)
        acc.part(Tilde(m.group(0)))

    def _balanced_paren(self) -> str:
        """An extglob group ``(...)`` read as literal pattern text."""
        depth = 0
        out: list[str] = []
        while True:
            c = self._get()
            if c == "":
                raise Incomplete("unfinished pattern")
            out.append(c)
            if c == "\\":
                out.append(self._get())
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    return "".join(out)

    def _dquote(self, acc: _Parts) -> None:
        """After an opening double quote: up to the closing one."""
        while True:
            c = self._get()
            if c == "":
                raise Incomplete("unfinished double quote")
            if c == '"':
                acc.lit("", True)
                return
            if c == "\\":
                d = self.s[self.i] if self.i < len(self.s) else ""
                if d in ('$', '`', '"', "\\"):
                    self.i += 1
                    acc.lit(d, True)
                else:
                    acc.lit("\\", True)
            elif c == "`":
                acc.part(self._backtick(quoted=True))
            elif c == "$":
                self.i -= 1
                self._dollar(acc, quoted=True)
            else:
                acc.lit(c, True)

    def _heredoc_word(self) -> Word:
        """A here-document body with an unquoted delimiter: expansions are live."""
        acc = _Parts()
        while True:
            c = self._get()
            if c == "":
                return _word(acc.done(), self.s)
            if c == "\\":
                d = self.s[self.i] if self.i < len(self.s) else ""
                if d in ("$", "`", "\\"):
                    self.i += 1
                    acc.lit(d, True)
                else:
                    acc.lit("\\", True)
            elif c == "`":
                acc.part(self._backtick(quoted=True))
            elif c == "$":
                self.i -= 1
                self._dollar(acc, quoted=True)
            else:
                acc.lit(c, True)

    def _dollar(self, acc: _Parts, *, quoted: bool) -> None:
        """At a ``$``: an expansion, an ANSI-C/locale string, or a literal ``$``."""
        start = self.i
        self._get()
        c = self._peek()
        if c == "'" and not quoted:
            self.i += 1
            j = self.i
            while j < len(self.s) and self.s[j] != "'":
                j += 2 if self.s[j] == "\\" else 1
            if j >= len(self.s):
                raise Incomplete("unfinished $'...'")
            acc.lit(decode_ansi_c(self.s[self.i : j]), True)
            self.i = j + 1
            return
        if c == '"' and not quoted:
            self._get()
            self.translated = True
            self._dquote(acc)
            return
        if c == "(":
            if self._la(2) == "((":
                save = self.i
                self._eat(2)
                try:
                    text = self._balanced_arith()
                    acc.part(ArithSub(parse_arith(text, self), quoted))
                    return
                except Incomplete:
                    raise
                except ParseError:
                    self.i = save
            self._get()
            self._enter()
            try:
                body = self._sequence(frozenset({")"}), empty_ok=True)
            finally:
                self.depth -= 1
            self._expect_op(")")
            acc.part(CmdSub(_commands(body), self.s[start : self.i], quoted))
            return
        if c == "[":
            self._get()
            depth = 1
            out: list[str] = []
            while True:
                d = self._get()
                if d == "":
                    raise Incomplete("unfinished $[")
                if d == "[":
                    depth += 1
                elif d == "]":
                    depth -= 1
                    if depth == 0:
                        break
                out.append(d)
            acc.part(ArithSub(parse_arith("".join(out), self), quoted))
            return
        if c == "{":
            acc.part(self._brace_param(start, quoted))
            return
        la = self._la(64)
        m = _NAME_RE.match(la)
        if m is not None:
            self._eat(m.end())
            acc.part(Param(m.group(0), self.s[start : self.i], quoted))
            return
        if c and (c.isdigit() or c in _SPECIAL_PARAMS):
            self._get()
            acc.part(Param(c, self.s[start : self.i], quoted))
            return
        acc.lit("$", quoted)

    def _brace_param(self, start: int, quoted: bool) -> Param:
        """``${...}`` (the ``$`` consumed, at the ``{``)."""
        self._get()
        prefix = ""
        c = self._peek()
        la = self._la(3)
        if c in "#!" and la[1:2] not in ("}", "") and not (c == "#" and la[1:2] in ":-=+?"
                                                           and la[2:3] != "}"):
            prefix = c
            self._get()
        la = self._la(64)
        m = _NAME_RE.match(la) or re.match(r"\d+", la)
        if m is not None:
            name = m.group(0)
        elif la[:1] and la[0] in _SPECIAL_PARAMS:
            name = la[0]
        else:
            raise ParseError("bad substitution")
        self._eat(len(name))
        subscript: str | None = None
        arith: list[str] = []
        if self._peek() == "[":
            self._get()
            sub = self._until_bracket()
            subscript = sub
            if sub not in ("@", "*"):
                arith.append(sub)
        c = self._peek()
        if c == "}":
            self._get()
            op = {"#": "#", "!": "!"}.get(prefix, "")
            return Param(name, self.s[start : self.i], quoted, op, None, subscript,
                         tuple(arith))
        if prefix == "!" and c in "*@" and self._la(2)[1:] == "}":
            self._eat(2)
            return Param(name, self.s[start : self.i], quoted, "!", None, subscript)
        la = self._la(3)
        oper = next((o for o in (":-", ":=", ":+", ":?", "-", "=", "+", "?")
                     if la.startswith(o)), None)
        if oper is not None:
            self._eat(len(oper))
            word = self._brace_operand(quoted)
            inner = tuple(p for p in word.parts if not isinstance(p, Lit))
            return Param(name, self.s[start : self.i], quoted, oper if not prefix else "other",
                         word, subscript, tuple(arith), inner)
        transform = ""
        if c == "@":
            self._get()
            transform = self._get()
            if self._get() != "}":
                raise ParseError("bad substitution")
            return Param(name, self.s[start : self.i], quoted, "other", None, subscript,
                         tuple(arith), (), transform)
        if c == ":":
            # ${x:off[:len]}: arithmetic offsets
            self._get()
            word = self._brace_operand(quoted)
            text = word.source
            arith.extend(t for t in _split_top(text, ":") if t.strip())
            return Param(name, self.s[start : self.i], quoted, "other", None, subscript,
                         tuple(arith), tuple(p for p in word.parts if not isinstance(p, Lit)))
        if c and c in "#%/^,":
            self._get()
            word = self._brace_operand(quoted)
            inner = tuple(p for p in word.parts if not isinstance(p, Lit))
            return Param(name, self.s[start : self.i], quoted, "other", None, subscript,
                         tuple(arith), inner)
        raise ParseError("bad substitution")

    def _until_bracket(self) -> str:
        depth = 1
        out: list[str] = []
        while True:
            c = self._get()
            if c == "":
                raise Incomplete("unfinished subscript")
            if c == "[":
                depth += 1
            elif c == "]":
                depth -= 1
                if depth == 0:
                    return "".join(out)
            out.append(c)

    def _brace_operand(self, quoted: bool) -> Word:
        """The word after a ``${x OP`` operator, up to the matching ``}``."""
        start = self.i
        acc = _Parts()
        depth = 0
        while True:
            c = self._peek()
            if c == "":
                raise Incomplete("unfinished ${")
            if c == "}" and depth == 0:
                src = self.s[start : self.i]
                self._get()
                return _word(acc.done(), src)
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            if c == "\\":
                self.i += 1
                d = self.s[self.i] if self.i < len(self.s) else ""
                self.i += 1
                acc.lit(d, True)
            elif c == "'" and not quoted:
                self.i += 1
                end = self.s.find("'", self.i)
                if end < 0:
                    raise Incomplete("unfinished quote")
                acc.lit(self.s[self.i : end], True)
                self.i = end + 1
            elif c == '"':
                self._get()
                self._dquote(acc)
            elif c == "`":
                self._get()
                acc.part(self._backtick(quoted=True))
            elif c == "$":
                self._dollar(acc, quoted=quoted)
            else:
                self._get()
                acc.lit(c, quoted)

    def _backtick(self, *, quoted: bool) -> CmdSub:
        """After an opening backquote: the command up to the closing one."""
        start = self.i - 1
        out: list[str] = []
        while True:
            if self.i >= len(self.s):
                raise Incomplete("unfinished backquote")
            c = self.s[self.i]
            self.i += 1
            if c == "`":
                break
            if c == "\\" and self.i < len(self.s):
                d = self.s[self.i]
                if d in ("$", "`", "\\") or (quoted and d == '"'):
                    out.append(d)
                    self.i += 1
                    continue
                if d == "\n":
                    self.i += 1
                    continue
            out.append(c)
        inner = Parser("".join(out), aliases=self.aliases, expand_aliases=self.expand_aliases,
                       depth=self.depth + 1)
        try:
            cmds = inner.parse_all()
        except Incomplete as exc:
            raise ParseError(f"in backquotes: {exc}") from None
        if inner.translated:
            self.translated = True
        return CmdSub(tuple(cmds), self.s[start : self.i], quoted)

    def _procsub(self) -> ProcSub:
        start = self.i
        direction = self._get()
        self._get()
        self._enter()
        try:
            body = self._sequence(frozenset({")"}))
        finally:
            self.depth -= 1
        self._expect_op(")")
        return ProcSub(_commands(body), direction, self.s[start : self.i])


def _last_unquoted(acc: _Parts) -> str:
    """The last character accumulated if it is unquoted literal text, else ``"\0"``."""
    if acc._buf and not acc._quoted and acc._buf[-1]:
        return acc._buf[-1][-1]
    return "\0"


def _assignment_like(acc: _Parts, nxt: str) -> bool:
    """The word so far plus ``nxt`` is ``NAME=`` unquoted: bash expands ``~`` after
    ``=`` and ``:`` in such words even when they are arguments."""
    if acc.parts or acc._quoted or not acc._buf:
        return False
    return _ASSIGN_RE.fullmatch("".join(acc._buf) + nxt) is not None


def _array_word(a: Assign) -> Word:
    """``NAME=(items)`` given to a declaration builtin, as one word keeping the parts."""
    parts: list[Part] = [Lit(f"{a.name}{'+' if a.append else ''}=(", True)]
    for k, item in enumerate(a.array or ()):
        if k:
            parts.append(Lit(" ", True))
        parts.extend(item.parts)
    parts.append(Lit(")", True))
    return Word(tuple(parts), a.source)


def _raw(p: Part) -> str:
    if isinstance(p, Lit | Tilde):
        return p.text
    if isinstance(p, ArithSub):
        return f"$(({p.expr.source}))"
    return p.source


def _commands(seq: Sequence) -> tuple[Command, ...]:
    return (seq,)


def _heredoc_delimiter(w: Word) -> tuple[str, bool]:
    """The delimiter after quote removal, and whether any part of it was quoted."""
    quoted = any(c in w.source for c in "'\"\\")
    return "".join(_raw(p) for p in w.parts), quoted


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses, brackets and quotes."""
    out: list[str] = []
    depth = 0
    cur: list[str] = []
    quote = ""
    for c in text:
        if quote:
            cur.append(c)
            if c == quote:
                quote = ""
            continue
        if c in "'\"":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == sep and depth == 0:
            out.append("".join(cur))
            cur = []
            continue
        cur.append(c)
    out.append("".join(cur))
    return out


_ARITH_TOKEN = re.compile(
    r"(?P<num>[0-9][A-Za-z0-9_#@]*)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<other>.)", re.S
)


def parse_arith(text: str, parent: Parser | None = None) -> Arith:
    """An arithmetic expression: the expansions in it and its bare variable names."""
    depth = parent.depth + 1 if parent is not None else 0
    if depth > MAX_DEPTH:
        raise ParseError("nested too deeply")
    p = Parser(text, aliases=parent.aliases if parent else None,
               expand_aliases=parent.expand_aliases if parent else False, depth=depth)
    acc = _Parts()
    names: list[str] = []
    subscripts: list[str] = []
    while not p._at_end():
        c = p._peek()
        if c == "$":
            p._dollar(acc, quoted=True)
            continue
        if c == "`":
            p._get()
            acc.part(p._backtick(quoted=True))
            continue
        if c == "\\":
            p._get()
            p._get()
            continue
        if c == "[":
            p._get()
            subscripts.append(p._until_bracket())
            continue
        m = _ARITH_TOKEN.match(p.s, p.i)
        assert m is not None
        if m.lastgroup == "name":
            names.append(m.group(0))
        p.i = m.end()
    if p.translated and parent is not None:
        parent.translated = True
    return Arith(text, tuple(x for x in acc.done() if not isinstance(x, Lit)), tuple(names),
                 tuple(subscripts))
