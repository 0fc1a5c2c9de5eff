"""The lexical base of the policy's bash parser: characters, line continuation, blanks
and comments, operators and reserved words, here-document bodies, and the constants and
errors the other two layers share. ``lexwords.WordLexer`` adds words (quoting and
expansions); ``parse.Parser`` adds the grammar of commands on top of both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NoReturn, Self

from gateway.policy.syntax import (
    Arith,
    ArithSub,
    Assign,
    Command,
    Heredoc,
    Lit,
    Part,
    Redir,
    Sequence,
    Tilde,
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
    """Characters, operators and here-documents of bash input (the module docstring).

    The word and grammar layers fill in the hooks at the end of the class.
    """

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

    def _fail(self, what: str) -> NoReturn:
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
            if c in "'\"":
                out.append(c)
                self._arith_quote(c, out)
                continue
            if c == ")" and depth == 0:
                if self._peek() == ")":
                    self._get()
                    return "".join(out)
                raise ParseError("not an arithmetic command")
            depth += {"(": 1, ")": -1}.get(c, 0)
            out.append(c)

    def _arith_quote(self, q: str, out: list[str]) -> None:
        """Inside ``(( ))``, after an opening quote ``q``: up to and including its end."""
        while True:
            d = self._get()
            if d == "":
                raise Incomplete("unfinished quote")
            out.append(d)
            if d == "\\" and q == '"':
                out.append(self._get())
                continue
            if d == q:
                return

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

    # ------------------------------------------------------------------ hooks

    def _heredoc_word(self) -> Word:
        """A here-document body with an unquoted delimiter (the word layer)."""
        raise NotImplementedError

    def _sequence(
        self, terminators: frozenset[str], *, top: bool = False, empty_ok: bool = False
    ) -> Sequence:
        """A list of commands (the grammar layer)."""
        raise NotImplementedError

    def _enter(self) -> None:
        """One level deeper into nested constructs (the grammar layer)."""
        raise NotImplementedError

    def _child(self, text: str, **kw: object) -> Self:
        """A parser for nested text (a substitution, a here-document body)."""
        raise NotImplementedError

    def _arith(self, text: str) -> Arith:
        """An arithmetic expression (the grammar layer)."""
        raise NotImplementedError

    def parse_all(self) -> list[Command]:
        """Every command of the text (the grammar layer)."""
        raise NotImplementedError


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
