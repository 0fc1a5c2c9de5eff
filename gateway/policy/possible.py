"""Could a rule's regex match *some* value of a partly-known text?

A rule is a Python regex searched in a normalized command (or a glob over a path). When
part of the command is only known at run time (a variable, a substitution, a glob), the
analyser describes the text as a small regular language (``Pattern``: literal text,
holes such as "any string" or "any string without a slash", repetitions). This module
answers exactly one question: is the intersection of that language and the strings the
rule matches non-empty? Both sides are compiled to NFAs (the rule through Python's own
regex parser, ``re._parser``) and the product is searched breadth first.

Over-approximations (they can only make a line *uncertain*, never allow one): look-around
assertions, word boundaries and back-references are treated as "anything goes"; bounded
repetitions above ``MAX_UNROLL`` become unbounded. Everything else (classes, categories,
``IGNORECASE``, ``DOTALL``, anchors) is exact.

Known limits: ``MULTILINE`` ``^`` is allowed anywhere (stricter, never looser).
"""

from __future__ import annotations

import functools
import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

try:  # Python 3.11+
    import re._constants as _c
    import re._parser as _p
except ImportError:  # pragma: no cover
    import sre_constants as _c
    import sre_parse as _p

MAX_UNROLL = 6
MAX_PRODUCT = 200_000  # product states explored before giving up (answer: "could match")
_REPRESENTATIVES = "a Z0_-./\t\n=:~*!#,;+@%é\x01x"


@dataclass(frozen=True)
class Pred:
    """A set of characters: explicit chars, ranges and categories, maybe negated."""

    chars: frozenset[str] = frozenset()
    ranges: tuple[tuple[int, int], ...] = ()
    cats: tuple[str, ...] = ()
    negate: bool = False
    anychar: bool = False  # "." (with or without newline, see ``newline``)
    newline: bool = True
    icase: bool = False

    def test(self, ch: str) -> bool:
        if self.icase:
            return self._test(ch) or self._test(ch.lower()) or self._test(ch.upper())
        return self._test(ch)

    def _test(self, ch: str) -> bool:
        if self.anychar:
            return self.newline or ch != "\n"
        o = ord(ch)
        hit = ch in self.chars or any(a <= o <= b for a, b in self.ranges) or any(
            _CATS[c](ch) for c in self.cats
        )
        return hit != self.negate

    def witnesses(self) -> Iterable[str]:
        yield from self.chars
        for a, b in self.ranges:
            yield chr(a)
            yield chr(b)
        yield from _REPRESENTATIVES


_CATS: dict[str, Callable[[str], bool]] = {
    "digit": lambda c: c.isdigit(),
    "not_digit": lambda c: not c.isdigit(),
    "space": lambda c: c.isspace(),
    "not_space": lambda c: not c.isspace(),
    "word": lambda c: c.isalnum() or c == "_",
    "not_word": lambda c: not (c.isalnum() or c == "_"),
}

ANY = Pred(anychar=True)
NO_SLASH = Pred(frozenset("/"), negate=True)
NO_BLANK = Pred(frozenset(" \t\n"), negate=True)
NO_BLANK_SLASH = Pred(frozenset(" \t\n/"), negate=True)
DIGIT = Pred(cats=("digit",))
DIGIT_OR_MINUS = Pred(frozenset("-"), cats=("digit",))


def lit_pred(ch: str) -> Pred:
    return Pred(frozenset(ch))


@functools.lru_cache(maxsize=65536)
def _meet(a: Pred, b: Pred) -> bool:
    """Is there a character in both sets?"""
    for w in a.witnesses():
        if a.test(w) and b.test(w):
            return True
    for w in b.witnesses():
        if a.test(w) and b.test(w):
            return True
    return False


# --------------------------------------------------------------------------- patterns

# A tiny regex AST shared by both sides:
#   ("pred", Pred) | ("seq", [..]) | ("alt", [..]) | ("star", node) | ("bol",) | ("eol",)
Node = tuple[object, ...]
EMPTY: Node = ("seq", [])


def lit(text: str) -> Node:
    return ("seq", [("pred", lit_pred(c)) for c in text])


def seq(*nodes: Node) -> Node:
    return ("seq", list(nodes))


def alt(*nodes: Node) -> Node:
    return ("alt", list(nodes))


def star(node: Node) -> Node:
    return ("star", node)


def pred(p: Pred) -> Node:
    return ("pred", p)


# --------------------------------------------------------------------------- NFA


class NFA:
    """Thompson NFA: per state, epsilon edges, char edges, assertion edges."""

    def __init__(self) -> None:
        self.eps: list[list[int]] = []
        self.chars: list[list[tuple[Pred, int]]] = []
        self.asserts: list[list[tuple[str, int]]] = []
        self.start = 0
        self.accept = 0

    def new(self) -> int:
        self.eps.append([])
        self.chars.append([])
        self.asserts.append([])
        return len(self.eps) - 1

    def build(self, node: Node) -> NFA:
        self.start = self.new()
        self.accept = self._build(node, self.start)
        self.closure = [self._closure(s) for s in range(len(self.eps))]
        return self

    def _build(self, node: Node, s: int) -> int:
        kind = node[0]
        if kind == "pred":
            e = self.new()
            self.chars[s].append((node[1], e))  # type: ignore[arg-type]
            return e
        if kind == "seq":
            for n in node[1]:  # type: ignore[attr-defined]
                s = self._build(n, s)
            return s
        if kind == "alt":
            e = self.new()
            for n in node[1]:  # type: ignore[attr-defined]
                b = self.new()
                self.eps[s].append(b)
                self.eps[self._build(n, b)].append(e)
            return e
        if kind == "star":
            b = self.new()
            self.eps[s].append(b)
            end = self._build(node[1], b)  # type: ignore[arg-type]
            self.eps[end].append(b)
            e = self.new()
            self.eps[b].append(e)
            return e
        if kind in ("bol", "eol"):
            e = self.new()
            self.asserts[s].append((str(kind), e))
            return e
        raise ValueError(f"bad node {kind!r}")

    def _closure(self, s: int) -> tuple[int, ...]:
        seen = {s}
        stack = [s]
        while stack:
            x = stack.pop()
            for y in self.eps[x]:
                if y not in seen:
                    seen.add(y)
                    stack.append(y)
        return tuple(seen)


def intersects(rule: NFA, text: NFA, *, limit: int = MAX_PRODUCT) -> bool:
    """True if some string of ``text`` contains a match of ``rule`` (search semantics)."""
    t_final = _finals(text)
    start = (rule.start, text.start, True, False)
    seen = {start}
    queue = deque([start])
    while queue:
        if len(seen) > limit:
            return True  # fail closed: "could match"
        nxt = _successors(rule, text, t_final, queue.popleft())
        if nxt is None:
            return True
        for st in nxt:
            if st not in seen:
                seen.add(st)
                queue.append(st)
    return False


_State = tuple[int, int, bool, bool]  # rule state, text state, at the start, text ended


def _successors(rule: NFA, text: NFA, t_final: set[int], state: _State) -> list[_State] | None:
    """The product states after ``state``; None when the rule has matched."""
    r, t, at_start, ended = state
    nxt: list[_State] = []
    for r2 in rule.closure[r]:
        if r2 == rule.accept and (not ended or t in t_final):
            return None
        for kind, r3 in rule.asserts[r2]:
            if kind == "bol" and at_start:
                nxt.append((r3, t, at_start, ended))
            elif kind == "eol" and _can_end(text, t, t_final):
                nxt.append((r3, t, at_start, True))
        if not ended:
            _char_steps(rule, text, r2, t, at_start, nxt)
    return nxt


def _char_steps(rule: NFA, text: NFA, r2: int, t: int, at_start: bool,
                nxt: list[_State]) -> None:
    """Steps of the text (epsilon moves), and of both on a character they share."""
    for t2 in text.closure[t]:
        if t2 != t:
            nxt.append((r2, t2, at_start, False))
        for tp, t3 in text.chars[t2]:
            for rp, r3 in rule.chars[r2]:
                if _meet(rp, tp):
                    nxt.append((r3, t3, False, False))


def _finals(text: NFA) -> set[int]:
    """States from which the text can end (accept reachable by epsilon)."""
    return {s for s in range(len(text.eps)) if text.accept in text.closure[s]}


def _can_end(text: NFA, t: int, finals: set[int]) -> bool:
    if t in finals:
        return True
    # "$" also matches before a final newline
    for t2 in text.closure[t]:
        for tp, t3 in text.chars[t2]:
            if tp.test("\n") and t3 in finals:
                return True
    return False


# --------------------------------------------------------------------------- regex -> AST


@functools.lru_cache(maxsize=4096)
def rule_nfa(pattern: str, flags: int = 0) -> NFA:
    """The NFA of ``.*PATTERN`` (search semantics) for a Python regex."""
    parsed = _p.parse(pattern, flags)
    gflags = parsed.state.flags
    body = _convert(parsed, gflags)
    return NFA().build(seq(star(pred(ANY)), body))


def _convert(sub: object, flags: int) -> Node:
    items: list[Node] = []
    for op, av in sub:  # type: ignore[attr-defined]
        items.append(_op(op, av, flags))
    return ("seq", items)


def _op(op: object, av: Any, flags: int) -> Node:
    icase = bool(flags & re.IGNORECASE)
    if op is _c.LITERAL:
        return pred(Pred(frozenset(chr(av)), icase=icase))
    if op is _c.NOT_LITERAL:
        return pred(Pred(frozenset(chr(av)), negate=True, icase=icase))
    if op is _c.ANY:
        return pred(Pred(anychar=True, newline=bool(flags & re.DOTALL)))
    if op is _c.IN:
        return pred(_in(av, icase))
    if op is _c.BRANCH:
        return alt(*(_convert(b, flags) for b in av[1]))
    if op is _c.SUBPATTERN:
        _group, add, remove, p = av
        return _convert(p, (flags | add) & ~remove)
    if op is _c.ATOMIC_GROUP:
        return _convert(av, flags)
    if op in (_c.MAX_REPEAT, _c.MIN_REPEAT, getattr(_c, "POSSESSIVE_REPEAT", None)):
        return _repeat(av, flags)
    return _op_other(op, av, flags, icase)


def _repeat(av: Any, flags: int) -> Node:
    lo, hi, p = av
    node = _convert(p, flags)
    parts = [node] * min(lo, MAX_UNROLL)
    if lo > MAX_UNROLL or hi is _c.MAXREPEAT or hi - lo > MAX_UNROLL:
        parts.append(star(node))
    else:
        parts.extend(alt(node, EMPTY) for _ in range(hi - lo))
    return ("seq", parts)


def _op_other(op: object, av: Any, flags: int, icase: bool) -> Node:
    """Anchors, look-arounds, back-references, categories."""
    if op is _c.AT:
        return _anchor(av, flags)
    if op in (_c.ASSERT, _c.ASSERT_NOT):
        return EMPTY  # look-around: over-approximated
    if op is _c.GROUPREF:
        return star(pred(ANY))
    if op is _c.GROUPREF_EXISTS:
        _g, yes, no = av
        return alt(_convert(yes, flags), _convert(no, flags) if no else EMPTY)
    if op is _c.CATEGORY:
        return pred(_in([(op, av)], icase))
    raise ValueError(f"unsupported regex construct {op}")


def _anchor(av: Any, flags: int) -> Node:
    if av in (_c.AT_BEGINNING, _c.AT_BEGINNING_STRING):
        if av is _c.AT_BEGINNING and flags & re.MULTILINE:
            return EMPTY
        return ("bol",)
    if av in (_c.AT_END, _c.AT_END_STRING):
        if av is _c.AT_END and flags & re.MULTILINE:
            return EMPTY
        return ("eol",)
    return EMPTY  # \b, \B: over-approximated


_CAT_NAMES = {
    "CATEGORY_DIGIT": "digit",
    "CATEGORY_NOT_DIGIT": "not_digit",
    "CATEGORY_SPACE": "space",
    "CATEGORY_NOT_SPACE": "not_space",
    "CATEGORY_WORD": "word",
    "CATEGORY_NOT_WORD": "not_word",
}


def _in(items: list[tuple[object, object]], icase: bool) -> Pred:
    chars: set[str] = set()
    ranges: list[tuple[int, int]] = []
    cats: list[str] = []
    negate = False
    for op, av in items:
        if op is _c.NEGATE:
            negate = True
        elif op is _c.LITERAL:
            chars.add(chr(av))  # type: ignore[arg-type]
        elif op is _c.RANGE:
            ranges.append(av)  # type: ignore[arg-type]
        elif op is _c.CATEGORY:
            name = _CAT_NAMES.get(str(av))
            if name is None:
                raise ValueError(f"unsupported category {av}")
            cats.append(name)
        else:
            raise ValueError(f"unsupported class item {op}")
    return Pred(frozenset(chars), tuple(ranges), tuple(cats), negate, icase=icase)


# --------------------------------------------------------------------------- text -> AST


def astr_node(a: tuple[object, ...]) -> Node:
    """A partly-known string (``values.AStr``) as a pattern."""
    from gateway.policy.values import Hole

    out: list[Node] = []
    for c in a:
        if isinstance(c, str):
            out.append(lit(c))
        elif c is Hole.ANY:
            out.append(star(pred(ANY)))
        elif c is Hole.SEG:
            out.append(star(pred(NO_SLASH)))
        elif c is Hole.DIGITS:
            out.append(star(pred(DIGIT)))
        elif c is Hole.NUMBER:
            out.append(star(pred(DIGIT_OR_MINUS)))
        elif c is Hole.WORD:
            out.append(star(pred(NO_BLANK)))
        elif c is Hole.TOKEN:
            out.append(star(pred(NO_BLANK_SLASH)))
        elif c is Hole.OPTS:
            out.append(star(seq(lit(" -"), star(pred(NO_BLANK)))))
        else:
            raise ValueError(f"bad chunk {c!r}")
    return ("seq", out)


def text_nfa(node: Node) -> NFA:
    return NFA().build(node)


@functools.lru_cache(maxsize=4096)
def astr_nfa(a: tuple[object, ...]) -> NFA:
    """``text_nfa(astr_node(a))``, cached (paths are checked again and again)."""
    return NFA().build(astr_node(a))


# --------------------------------------------------------------------------- quick checks


def astr_affixes(a: tuple[object, ...]) -> tuple[str, str]:
    """The literal text before the first unknown part and after the last one."""
    holes = [k for k, c in enumerate(a) if not isinstance(c, str)]
    if not holes:
        s = "".join(c for c in a if isinstance(c, str))
        return s, s
    pre = "".join(c for c in a[: holes[0]] if isinstance(c, str))
    suf = "".join(c for c in a[holes[-1] + 1 :] if isinstance(c, str))
    return pre, suf


def glob_affixes(glob: str) -> tuple[str, str]:
    """The literal text before the first wildcard and after the last one."""
    first = min((i for i in (glob.find(c) for c in "*?[") if i >= 0), default=-1)
    if first < 0:
        return glob, glob
    if "[" in glob:
        return glob[:first], ""
    last = max(glob.rfind("*"), glob.rfind("?"))
    return glob[:first], glob[last + 1 :]


def affixes_clash(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """True when no string can have both literal prefixes and both literal suffixes
    (a cheap test before an automaton product, for whole-string matches)."""
    (p1, s1), (p2, s2) = a, b
    return not (p1.startswith(p2) or p2.startswith(p1)) or not (
        s1.endswith(s2) or s2.endswith(s1))


# --------------------------------------------------------------------------- glob -> AST


def glob_node(glob: str) -> Node:
    """A path glob (``*`` no slash, ``**`` anything, ``?``, ``[...]``) as a full match."""
    out: list[Node] = [("bol",)]
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if glob.startswith("**", i):
            out.append(star(pred(ANY)))
            i += 2
            if glob.startswith("/", i) and i - 2 > 0 and glob[i - 3] == "/":
                # "/**/" also matches "/"
                out[-1] = alt(seq(star(pred(ANY)), lit("/")), EMPTY)
                i += 1
            continue
        if c == "*":
            out.append(star(pred(NO_SLASH)))
        elif c == "?":
            out.append(pred(NO_SLASH))
        elif c == "[" and (j := glob.find("]", i + 2)) >= 0:
            out.append(pred(_glob_class(glob[i + 1 : j])))
            i = j
        else:
            out.append(lit(c))
        i += 1
    out.append(("eol",))
    return ("seq", out)


def _glob_class(body: str) -> Pred:
    """The inside of a glob's ``[...]``."""
    neg = body[:1] in ("!", "^")
    if neg:
        body = body[1:]
    chars: set[str] = set()
    ranges: list[tuple[int, int]] = []
    k = 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            ranges.append((ord(body[k]), ord(body[k + 2])))
            k += 3
        else:
            chars.add(body[k])
            k += 1
    return Pred(frozenset(chars), tuple(ranges), negate=neg)


@functools.lru_cache(maxsize=1024)
def glob_nfa(glob: str) -> NFA:
    return NFA().build(glob_node(glob))


@functools.lru_cache(maxsize=4096)
def glob_to_regex(glob: str) -> re.Pattern[str]:
    """The same glob as a compiled regex (for fully known paths)."""
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        if glob.startswith("/**/", i):
            out.append("(?:/.*)?/")
            i += 4
            continue
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        c = glob[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = glob.find("]", i + 2)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = glob[i + 1 : j]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.S)
