"""The word layer of the policy's bash parser: one word at a time, with its quoting
(backslash, single and double quotes, ``$'...'``, ``$"..."``) and expansions kept as
parts (``$x``, ``${...}``, ``$(...)``, backquotes, ``$((...))``, ``<(...)``, tilde
prefixes, extglob groups) and here-document bodies with live expansions. It extends the
character layer (``lexer.Lexer``); ``parse.Parser`` extends it with the grammar.
"""

from __future__ import annotations

import re

from gateway.policy.ansi_c import decode_ansi_c
from gateway.policy.lexer import (
    _ASSIGN_RE,
    _EXTGLOB,
    _META,
    _NAME_RE,
    _SPECIAL_PARAMS,
    Incomplete,
    Lexer,
    ParseError,
    _Parts,
    _split_top,
)
from gateway.policy.syntax import (
    ArithSub,
    CmdSub,
    Command,
    Lit,
    Param,
    Part,
    ProcSub,
    Sequence,
    Tilde,
    Word,
)


class WordLexer(Lexer):
    """Reads words (see the module docstring)."""

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
                step = self._word_meta(acc, c, regex, paren)
                if step is None:
                    break
                paren, part = step
                first = first and not part
                continue
            if not self._word_quoting(acc, c):
                assignish = self._word_char(acc, c, first, assign_value, assignish)
            first = False
        parts = acc.done()
        if not parts and self.i == start:
            return None
        return _word(parts, self.s[start : self.i])

    def _word_meta(self, acc: _Parts, c: str, regex: bool, paren: int) -> tuple[int, bool] | None:
        """A metacharacter inside a word: the new depth of regex parentheses and whether
        a part was read, or None when ``c`` ends the word."""
        if c in "<>" and self._la(2)[1:] == "(":
            acc.part(self._procsub())
            return paren, True
        if c == "(" and (regex or (not acc.empty and _last_unquoted(acc) in _EXTGLOB)):
            acc.lit(self._balanced_paren(), False)
            return paren, True
        if regex and c in "()|":
            if c == ")" and paren == 0:
                return None
            paren += {"(": 1, ")": -1}.get(c, 0)
        elif not (regex and paren and c in " \t"):
            return None
        self._get()
        acc.lit(c, False)
        return paren, False

    def _word_quoting(self, acc: _Parts, c: str) -> bool:
        """Quoting or an expansion starting at ``c``; False if ``c`` starts neither."""
        if c == "\\":
            self.i += 1
            d = self.s[self.i] if self.i < len(self.s) else ""
            if d == "":
                raise Incomplete("backslash at the end")
            self.i += 1
            acc.lit(d, True)
        elif c == "'":
            self._single_quote(acc, "unfinished single quote")
        elif c == '"':
            self._get()
            self._dquote(acc)
        elif c == "`":
            self._get()
            acc.part(self._backtick(quoted=False))
        elif c == "$":
            self._dollar(acc, quoted=False)
        else:
            return False
        return True

    def _word_char(
        self, acc: _Parts, c: str, first: bool, assign_value: bool, assignish: bool
    ) -> bool:
        """A plain character or a tilde prefix; whether the word is now ``NAME=``-like."""
        if c == "~" and _tilde_here(acc, first, assign_value, assignish):
            self._tilde(acc)
            return assignish
        self._get()
        if c == "=" and not assignish:
            assignish = _assignment_like(acc, "=")
        acc.lit(c, False)
        return assignish

    def _single_quote(self, acc: _Parts, what: str) -> None:
        """At an opening single quote: its text, literally."""
        self.i += 1
        end = self.s.find("'", self.i)
        if end < 0:
            raise Incomplete(what)
        acc.lit(self.s[self.i : end], True)
        self.i = end + 1

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
            self._ansi_c(acc)
        elif c == '"' and not quoted:
            self._get()
            self.translated = True
            self._dquote(acc)
        elif c == "(":
            acc.part(self._dollar_paren(start, quoted))
        elif c == "[":
            self._get()
            acc.part(ArithSub(self._arith(self._until_bracket("unfinished $[")), quoted))
        elif c == "{":
            acc.part(self._brace_param(start, quoted))
        else:
            self._dollar_name(acc, start, c, quoted)

    def _ansi_c(self, acc: _Parts) -> None:
        """After ``$``, at the quote of ``$'...'``: the decoded string."""
        self.i += 1
        j = self.i
        while j < len(self.s) and self.s[j] != "'":
            j += 2 if self.s[j] == "\\" else 1
        if j >= len(self.s):
            raise Incomplete("unfinished $'...'")
        acc.lit(decode_ansi_c(self.s[self.i : j]), True)
        self.i = j + 1

    def _dollar_paren(self, start: int, quoted: bool) -> Part:
        """After ``$``, at ``(``: ``$((...))`` or a command substitution."""
        if self._la(2) == "((":
            arith = self._try_arith_sub(quoted)
            if arith is not None:
                return arith
        self._get()
        self._enter()
        try:
            body = self._sequence(frozenset({")"}), empty_ok=True)
        finally:
            self.depth -= 1
        self._expect_op(")")
        return CmdSub(_commands(body), self.s[start : self.i], quoted)

    def _try_arith_sub(self, quoted: bool) -> ArithSub | None:
        """``$((...))`` if it is arithmetic; None (nothing read) if it is ``$( (...) )``."""
        save = self.i
        self._eat(2)
        try:
            text = self._balanced_arith()
            return ArithSub(self._arith(text), quoted)
        except Incomplete:
            raise
        except ParseError:
            self.i = save
            return None

    def _dollar_name(self, acc: _Parts, start: int, c: str, quoted: bool) -> None:
        """After ``$``: a name, a digit or a special parameter; else a literal ``$``."""
        m = _NAME_RE.match(self._la(64))
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
        prefix = self._brace_prefix()
        name = self._brace_name()
        subscript, arith = self._brace_subscript()
        c = self._peek()
        if c == "}":
            self._get()
            op = {"#": "#", "!": "!"}.get(prefix, "")
            return Param(name, self.s[start : self.i], quoted, op, None, subscript,
                         tuple(arith))
        if prefix == "!" and c in "*@" and self._la(2)[1:] == "}":
            self._eat(2)
            return Param(name, self.s[start : self.i], quoted, "!", None, subscript)
        return self._brace_tail(start, quoted, prefix, name, subscript, arith)

    def _brace_prefix(self) -> str:
        """``#`` (length) or ``!`` (indirection) before the name of ``${...}``, or ''."""
        c = self._peek()
        la = self._la(3)
        if c in "#!" and la[1:2] not in ("}", "") and not (c == "#" and la[1:2] in ":-=+?"
                                                           and la[2:3] != "}"):
            self._get()
            return c
        return ""

    def _brace_name(self) -> str:
        """The parameter's name in ``${...}``."""
        la = self._la(64)
        m = _NAME_RE.match(la) or re.match(r"\d+", la)
        if m is not None:
            name = m.group(0)
        elif la[:1] and la[0] in _SPECIAL_PARAMS:
            name = la[0]
        else:
            raise ParseError("bad substitution")
        self._eat(len(name))
        return name

    def _brace_subscript(self) -> tuple[str | None, list[str]]:
        """``[sub]`` after the name: the subscript and the arithmetic it holds."""
        if self._peek() != "[":
            return None, []
        self._get()
        sub = self._until_bracket()
        return sub, ([] if sub in ("@", "*") else [sub])

    def _brace_tail(
        self, start: int, quoted: bool, prefix: str, name: str, subscript: str | None,
        arith: list[str],
    ) -> Param:
        """The operator part of ``${name OP word}`` up to the closing brace."""
        c = self._peek()
        la = self._la(3)
        oper = next((o for o in (":-", ":=", ":+", ":?", "-", "=", "+", "?")
                     if la.startswith(o)), None)
        if oper is not None:
            self._eat(len(oper))
            word = self._brace_operand(quoted)
            return Param(name, self.s[start : self.i], quoted, oper if not prefix else "other",
                         word, subscript, tuple(arith), _inner(word))
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
            arith.extend(t for t in _split_top(word.source, ":") if t.strip())
        elif c and c in "#%/^,":
            self._get()
            word = self._brace_operand(quoted)
        else:
            raise ParseError("bad substitution")
        return Param(name, self.s[start : self.i], quoted, "other", None, subscript,
                     tuple(arith), _inner(word))

    def _until_bracket(self, what: str = "unfinished subscript") -> str:
        """After ``[``: up to the matching ``]``; the text between."""
        depth = 1
        out: list[str] = []
        while True:
            c = self._get()
            if c == "":
                raise Incomplete(what)
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
            depth += {"{": 1, "}": -1}.get(c, 0)
            self._operand_char(acc, c, quoted)

    def _operand_char(self, acc: _Parts, c: str, quoted: bool) -> None:
        """One character (or quoted string, or expansion) of a ``${x OP word}`` word."""
        if c == "\\":
            self.i += 1
            d = self.s[self.i] if self.i < len(self.s) else ""
            self.i += 1
            acc.lit(d, True)
        elif c == "'" and not quoted:
            self._single_quote(acc, "unfinished quote")
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
        inner = self._child("".join(out), aliases=self.aliases,
                            expand_aliases=self.expand_aliases, depth=self.depth + 1)
        try:
            cmds = inner.parse_all()
        except Incomplete as exc:
            raise ParseError(f"in backquotes: {exc}") from None
        if inner.translated:
            self.translated = True
        return CmdSub(tuple(cmds), self.s[start : self.i], quoted)

    def _procsub(self) -> ProcSub:
        """``<(...)`` or ``>(...)``."""
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


def _word(parts: list[Part], source: str) -> Word:
    return Word(tuple(parts), source)


def _inner(word: Word) -> tuple[Part, ...]:
    """The expansions inside an operand word (its literal parts left out)."""
    return tuple(p for p in word.parts if not isinstance(p, Lit))


def _tilde_here(acc: _Parts, first: bool, assign_value: bool, assignish: bool) -> bool:
    """A ``~`` here starts a tilde prefix: at the start of a word, or after ``=``/``:``
    in an assignment value (or an argument that looks like one)."""
    if first and not assign_value:
        return True
    return (assign_value or assignish) and (first or _last_unquoted(acc) in (":", "="))


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


def _commands(seq: Sequence) -> tuple[Command, ...]:
    return (seq,)
