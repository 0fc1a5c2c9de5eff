"""Word expansion for the analyser, as bash does it: brace expansion, tilde,
parameters (``${x:-y}``, ``${#x}``, ``${!x}``...), command and arithmetic substitution,
word splitting on ``IFS`` and globbing, with the values the ``ShellState`` knows and
*holes* (``values.Hole``) where it does not; arithmetic and ``[[ ]]`` operands that
name variables (``a[$(cmd)]`` runs ``cmd``).

``Expander`` is a mixin of ``analyze.Analyzer`` (it calls back into the analyser for the
commands inside substitutions).
"""

from __future__ import annotations

import posixpath
import re

from gateway.policy import possible as P
from gateway.policy.catalogue import Catalogue
from gateway.policy.lexer import ParseError
from gateway.policy.parse import parse_arith
from gateway.policy.records import Stdin
from gateway.policy.state import ShellState
from gateway.policy.syntax import (
    Arith,
    ArithSub,
    CmdSub,
    Command,
    Cond,
    Lit,
    Param,
    Part,
    ProcSub,
    Sequence,
    Simple,
    Tilde,
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
    static,
)

NUMERIC_VARS = frozenset(
    "RANDOM SRANDOM SECONDS LINENO BASHPID PPID UID EUID SHLVL HISTCMD EPOCHSECONDS "
    "COLUMNS LINES OPTIND OPTERR ? # $ !".split()
)

_NUMBER_RE = re.compile(r"\s*-?(?:0[xX][0-9a-fA-F]+|\d+(?:#[0-9A-Za-z@_]+)?)\s*\Z")


class Expander:
    """The expansion half of ``Analyzer`` (see the module docstring)."""

    exec_mode: bool

    def unsure(self, reason: str) -> None:
        raise NotImplementedError

    def cmd(self, node: Command, st: ShellState, stdin: Stdin) -> None:
        raise NotImplementedError

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
        b = _Fields(st.ifs if split else "", split)
        for it in items:
            if isinstance(it, tuple):
                ch, quoted = it
                if ch:
                    b.add(ch, bool(quoted))
                b.produced[-1] = True
                continue
            assert isinstance(it, Part)
            if isinstance(it, Tilde):
                for c in _tilde(it.text, st):
                    b.add(c, False)
                b.produced[-1] = True
                continue
            values = self.part_value(it, st)
            quoted = _quoted(it)
            for k, v in enumerate(values):
                if k:  # "$@" in quotes: one field per positional parameter
                    b.new(True)
                b.value(v, quoted)
        return b.done(glob and not st.options.get("noglob"))

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
        special = self._param_special(p, st)
        if special is not None:
            return special
        value = self._param_value(p, st)
        if isinstance(value, list):
            return value
        if p.op in (":-", "-", ":=", "=", ":+", "+", ":?", "?"):
            return self._param_operator(p, value, st)
        if p.op == "other" or value is None:
            name = p.name
            numeric = name in NUMERIC_VARS or name in st.numeric
            if name in NUMERIC_VARS and p.op != "other":
                return [Hole.DIGITS]
            return [Hole.NUMBER] if numeric and p.op != "other" else [Hole.ANY]
        return [value]

    def _param_special(self, p: Param, st: ShellState) -> list[str | Hole] | None:
        """``${x@P}``, ``${!x}``, ``${#x}``, ``$@``/``$*``; None for the others."""
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
        return None

    def _param_value(self, p: Param, st: ShellState) -> str | list[str | Hole] | None:
        """The parameter's value (None: unknown), or already its expansion (a list)."""
        name = p.name
        if name.isdigit():
            n = int(name)
            if n == 0 or st.positional is None:
                return [Hole.ANY]
            return st.positional[n - 1] if n - 1 < len(st.positional) else ""
        if name in ("?", "#", "$", "!"):
            return [Hole.DIGITS]
        if name in ("-", "_"):
            return [Hole.ANY]
        value = st.get(name)
        if p.subscript is not None:
            return None
        if value is None and name in st.patterns and p.op == "":
            return [st.patterns[name]]  # type: ignore[list-item]
        return value

    def _param_operator(self, p: Param, value: str | None, st: ShellState
                        ) -> list[str | Hole]:
        """``${x:-w}``, ``${x:=w}``, ``${x:+w}``, ``${x:?w}`` and their forms without ':'."""
        operand = self.expand_text(p.word, st) if p.word is not None else ""
        if p.op in (":=", "=") and (value is None or (p.op == ":=" and value == "")):
            st.set_var(p.name, operand if value is not None else None)
        if value is None:
            return [Hole.ANY]
        given: str | Hole = operand if operand is not None else Hole.ANY
        if p.op in (":-", ":=") and value == "":
            return [given]
        if p.op == ":+":
            return [given] if value else [""]
        if p.op == "+":
            return [given]
        return [value]

    # ------------------------------------------------------------------ paths


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
            i = _skip(value, i + 1, ws)
            continue
        if c in ws:
            j = _skip(value, i, ws)
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


def _skip(value: str, i: int, chars: str) -> int:
    """The first index from ``i`` whose character is not in ``chars``."""
    while i < len(value) and value[i] in chars:
        i += 1
    return i


class _Fields:
    """The fields one word becomes, while they are built: their pieces ``(text or
    Hole, quoted)`` and whether each exists (a quoted "" exists, an empty $x does not)."""

    def __init__(self, ifs: str | None, split: bool) -> None:
        self.ifs = ifs  # None: IFS is not known
        self.split = split
        self.fields: list[list[tuple[object, bool]]] = [[]]
        self.produced = [False]
        self.split_unknown = False

    def add(self, chunk: object, quoted: bool) -> None:
        self.fields[-1].append((chunk, quoted))
        self.produced[-1] = True

    def new(self, made: bool) -> None:
        self.fields.append([])
        self.produced.append(made)

    def value(self, v: str | Hole | tuple[object, ...], quoted: bool) -> None:
        """One value of an expansion: text, a hole, or a glob-matched name (a tuple)."""
        if isinstance(v, tuple):  # a glob-matched file name: literal parts and holes
            for c in v:
                self.add(c, True)
            self.produced[-1] = True
            return
        if isinstance(v, Hole):
            self.add(v, quoted)
            if not quoted and self.split and v not in _NO_SPLIT:
                self.split_unknown = True
            return
        if quoted or not self.split or self.ifs == "":
            self.fields[-1].append((v, True))
            if quoted or v:
                self.produced[-1] = True
            return
        if self.ifs is None:
            self.add(Hole.ANY, False)
            self.split_unknown = True
            return
        self._split(v, self.ifs)

    def _split(self, v: str, ifs: str) -> None:
        """Unquoted text: split on IFS into this field and new ones."""
        for j, piece in enumerate(_ifs_split(v, ifs)):
            if j:
                self.new(False)
            if piece:
                self.add(piece, False)

    def done(self, glob: bool) -> list[Field]:
        return [_make_field(segs, glob, self.split_unknown)
                for segs, made in zip(self.fields, self.produced, strict=True)
                if made or segs]


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
        if g.startswith("**/") and s is None:
            continue  # a tree copied under unknown names (rsync, tar): its own files
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
