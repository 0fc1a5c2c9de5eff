"""The lexical half of the policy's bash parser (``parse.py``): characters, line
continuation, blanks and comments, operators, and words with their quoting and
expansions (``$x``, ``${...}``, ``$(...)``, backquotes, ``$((...))``, ``<(...)``, tilde,
here-document bodies). ``Parser`` extends ``Lexer`` with the grammar of commands.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from gateway.policy.ansi_c import decode_ansi_c
from gateway.policy.syntax import (
    Arith,
    ArithSub,
    Assign,
    CmdSub,
    Command,
    Heredoc,
    Lit,
    Param,
    Part,
    ProcSub,
    Redir,
    Sequence,
    Tilde,
    Word,
)

if TYPE_CHECKING:
    from gateway.policy.parse import Parser

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


class Lexer:
    """Characters and words of bash input (see the module docstring)."""

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
        j, s = self.i, self.s
        if s.find("\\\n", j, j + n + 1) < 0:
            return s[j : j + n]  # no continuation in reach: a plain slice
        out: list[str] = []
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
                p = self._child(body, depth=self.depth + 1)
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
                    acc.part(ArithSub(self._arith(text), quoted))
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
            acc.part(ArithSub(self._arith("".join(out)), quoted))
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
        inner = self._child("".join(out), aliases=self.aliases, expand_aliases=self.expand_aliases,
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



    # ------------------------------------------------------------------ the parser's part

    def _sequence(
        self, terminators: frozenset[str], *, top: bool = False, empty_ok: bool = False
    ) -> Sequence:
        raise NotImplementedError

    def _enter(self) -> None:
        raise NotImplementedError

    def _child(self, text: str, **kw: object) -> Parser:
        """A parser for nested text (a substitution, a here-document body)."""
        raise NotImplementedError

    def _arith(self, text: str) -> Arith:
        raise NotImplementedError


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

