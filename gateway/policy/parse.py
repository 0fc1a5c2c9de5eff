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
from typing import Self

from gateway.policy.lexer import (  # the parser extends the lexer
    _ALIAS_CHARS,
    _ARITH_TOKEN,
    _ASSIGN_RE,
    _DECLARATION,
    _META,
    _NAME_RE,
    _OPS,
    _REDIR_OPS,
    _RESERVED,
    MAX_ALIAS_EXPANSIONS,
    MAX_DEPTH,
    Incomplete,
    ParseError,
    _array_word,
    _heredoc_delimiter,
    _Parts,
    _split_top,
)
from gateway.policy.lexwords import WordLexer
from gateway.policy.syntax import (
    AndOr,
    Arith,
    ArithCmd,
    ArithFor,
    Assign,
    Case,
    CaseItem,
    Command,
    Cond,
    Coproc,
    For,
    FuncDef,
    Group,
    Heredoc,
    If,
    Lit,
    Parsed,
    Pipeline,
    Redir,
    Redirected,
    Sequence,
    Simple,
    Subshell,
    While,
    Word,
)

# operators that can start a command (a subshell, or a redirection before the words)
_COMMAND_START_OPS = frozenset({"(", "<", ">", ">>", "<<", "<<-", "<<<", "&>", "&>>", "<>",
                                ">|", "<&", ">&"})


class Parser(WordLexer):
    """Reads complete commands from ``text`` (see the module docstring)."""

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
            if self._list_ends(terminators, top):
                break
            cmd = self._and_or()
            op = self._peek_op()
            if op in (";", "&"):
                self._eat(1)
                items.append((cmd, op == "&"))
                continue
            items.append((cmd, False))
            if self._list_ends_after(op, terminators, top):
                break
        if not items and not top and not empty_ok:
            self._fail("empty command list")
        return Sequence(tuple(items))

    def _at_terminator(self, op: str | None, terminators: frozenset[str]) -> bool:
        if op is None:
            return self._peek_reserved() in terminators
        return op in terminators

    def _list_ends(self, terminators: frozenset[str], top: bool) -> bool:
        """Before a command of a list: whether the list ends here."""
        op = self._peek_op()
        if op == "":
            if top:
                return True
            raise Incomplete("unfinished compound command")
        if op == "\n" and top:
            self._newline()
            return True
        if self._at_terminator(op, terminators):
            return True
        if op is not None and op not in _COMMAND_START_OPS:
            self._fail(f"unexpected {op!r}")
        return False

    def _list_ends_after(self, op: str | None, terminators: frozenset[str], top: bool) -> bool:
        """After a command of a list (not ended by ``;`` or ``&``): whether the list ends."""
        if op == "\n":
            if top:
                self._newline()
                return True
            return False
        if op == "":
            if top:
                return True
            raise Incomplete("unfinished compound command")
        if self._at_terminator(op, terminators):
            return True
        self._fail("unexpected token")

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
            return self._redirected(self._while(r))
        if r in ("for", "select"):
            return self._redirected(self._for(r))
        if r == "case":
            return self._redirected(self._case())
        if r == "function":
            return self._function()
        if r == "[[":
            self._eat(2)
            return self._redirected(self._cond())
        if r == "coproc":
            return self._coproc()
        self._fail(f"unexpected {r!r}")

    def _while(self, r: str) -> While:
        self._eat(len(r))
        cond = self._sequence(frozenset({"do"}))
        self._expect_reserved("do")
        body = self._sequence(frozenset({"done"}))
        self._expect_reserved("done")
        return While(cond, body, r == "until")

    def _function(self) -> FuncDef:
        """``function name [()] body``."""
        self._eat(8)
        self._skip_blanks()
        name = self._read_word()
        if name is None or name.literal is None:
            self._fail("bad function name")
        self._skip_blanks()
        if self._la(1) == "(":
            self._eat(1)
            self._skip_blanks()
            self._expect_op(")")
        self._skip_space(newlines=True)
        start = self.i
        fbody = self._command()
        return FuncDef(name.literal, fbody, self.s[start : self.i])

    def _coproc(self) -> Coproc:
        """``coproc [NAME] command`` (a name only before a compound command)."""
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
            return self._arith_for()
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
            words = self._for_words()
            self._skip_space(newlines=True)
        body = self._loop_body()
        return For(name, words, body, kw == "select")

    def _arith_for(self) -> ArithFor:
        """``for (( init; test; step ))`` and its body."""
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

    def _for_words(self) -> tuple[Word, ...]:
        """The words after ``for NAME in``, up to ``;`` or a newline."""
        items: list[Word] = []
        while True:
            self._skip_blanks()
            op = self._peek_op()
            if op in (";", "\n"):
                if op == ";":
                    self._eat(1)
                return tuple(items)
            if op == "":
                raise Incomplete("unfinished for")
            if op is not None:
                self._fail("unexpected token in word list")
            w = self._read_word()
            if w is None:
                self._fail("bad word")
            items.append(w)

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
        self._skip_space(newlines=True)
        self._expect_reserved("in")
        items: list[CaseItem] = []
        while True:
            self._skip_space(newlines=True)
            if self._peek_reserved() == "esac":
                self._eat(4)
                return Case(word, tuple(items))
            patterns = self._case_patterns()
            self._skip_space(newlines=True)
            body: Sequence | None = None
            op = self._peek_op()
            if not (op in (";;", ";&", ";;&") or (op is None and self._peek_reserved() == "esac")):
                body = self._sequence(frozenset({";;", ";&", ";;&", "esac"}))
            op = self._peek_op()
            if op in (";;", ";&", ";;&"):
                assert op is not None
                self._eat(len(op))
                items.append(CaseItem(patterns, body, op))
                continue
            items.append(CaseItem(patterns, body, ""))
            self._skip_space(newlines=True)
            self._expect_reserved("esac")
            return Case(word, tuple(items))

    def _case_patterns(self) -> tuple[Word, ...]:
        """``[(] pattern [| pattern]... )`` of a case item."""
        if self._peek_op() == "(":
            self._eat(1)
        patterns: list[Word] = []
        while True:
            self._skip_blanks()
            w = self._read_word()
            if w is None:
                self._fail("bad case pattern")
            patterns.append(w)
            self._skip_blanks()
            op = self._peek_op()
            if op == "|":
                self._eat(1)
                continue
            if op == ")":
                self._eat(1)
                return tuple(patterns)
            self._fail("bad case pattern")

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
            if self._peek_op() is not None:
                break
            if words and self._alias_again():
                continue
            if self._array_item(assigns, words):
                continue
            start = self.i
            w = self._read_word() or self._fail("unexpected character")
            if not words:
                a = self._as_assign(w, self.s[start : self.i])
                if a is not None:
                    assigns.append(a)
                    continue
                if self._peek_op() == "(" and w.literal is not None:
                    return self._funcdef(w.literal, bool(assigns or redirs))
            words.append(w)
        if not words and not assigns and not redirs:
            self._fail("empty command")
        self._alias_next = False
        return Simple(tuple(assigns), tuple(words), tuple(redirs))

    def _alias_again(self) -> bool:
        """After an alias whose value ends with a blank: expand the next word too."""
        if self._alias_next and self.i >= self._alias_next_at:
            self._alias_next = False
            return self._try_alias()
        return False

    def _array_item(self, assigns: list[Assign], words: list[Word]) -> bool:
        """``NAME=(...)`` before the command word or after a declaration builtin."""
        if words and words[0].unquoted_literal not in _DECLARATION:
            return False
        arr = self._try_array_assign()
        if arr is None:
            return False
        if words:
            words.append(_array_word(arr))
        else:
            assigns.append(arr)
        return True

    def _funcdef(self, name: str, prefixed: bool) -> FuncDef:
        """``name () compound-command``, at the ``(``."""
        save = self.i
        self._eat(1)
        self._skip_blanks()
        if self._peek_op() != ")":
            self.i = save
            self._fail("unexpected '('")
        self._eat(1)
        self._skip_space(newlines=True)
        body_start = self.i
        body = self._command()
        if prefixed:
            raise ParseError("assignment before a function definition")
        return FuncDef(name, body, self.s[body_start : self.i])

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

    def _child(self, text: str, **kw: object) -> Self:
        return type(self)(text, **kw)  # type: ignore[arg-type]

    def _arith(self, text: str) -> Arith:
        return parse_arith(text, self)


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
