"""Strings the analyser only partly knows, and paths normalized like the kernel would.

An ``AStr`` is a tuple of chunks: literal text, or a *hole* standing for any string of
a kind (``ANY``: anything; ``SEG``: no slash, what a glob ``*`` can produce; ``DIGITS``;
``WORD``: no blank). A ``Field`` is one argv element as far as the analyser knows it,
with two flags: ``glob`` (an unquoted pattern: it may become several fields, each
matching) and ``split`` (an unquoted unknown expansion: it may become any number of
fields, options included).

Paths: ``resolve(chunks, cwd)`` makes a path absolute against the tracked working
directory and normalizes it (``.``, ``..``, ``//``, ``/proc/self/root``,
``/proc/self/cwd``, symlinks created in this session). The home directory is kept as the
symbolic root ``~`` (its real value is the target's business); ``..`` above it, an
unknown working directory, or a hole that may hold ``..`` give an unknown prefix
(``PATH_HOLE``).

Known limits: symlinks that exist on the target before the session are unknown (a path
through one is decided as written).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum


class Hole(Enum):
    """Kinds of unknown text."""

    ANY = "any"
    SEG = "seg"  # no "/" (glob * and ?)
    DIGITS = "digits"  # [0-9]* ($$, $!, $#, $?, lengths)
    NUMBER = "number"  # -?[0-9]* (arithmetic results, numeric variables)
    WORD = "word"  # no blank (an unknown directory path)
    TOKEN = "token"  # no blank, no slash (a host name, a user name, a date)
    OPTS = "opts"  # zero or more " -..." option words (reordered options)


Chunk = str | Hole
AStr = tuple[Chunk, ...]


def astr(*chunks: Chunk) -> AStr:
    """Build an ``AStr``, merging adjacent literals and dropping empty ones."""
    out: list[Chunk] = []
    for c in chunks:
        if isinstance(c, str):
            if not c:
                continue
            if out and isinstance(out[-1], str):
                out[-1] = out[-1] + c
                continue
        out.append(c)
    return tuple(out)


def concat(*parts: Iterable[Chunk]) -> AStr:
    return astr(*(c for p in parts for c in p))


def static(a: AStr) -> str | None:
    """The text if ``a`` has no hole."""
    if not a:
        return ""
    if len(a) == 1 and isinstance(a[0], str):
        return a[0]
    if all(isinstance(c, str) for c in a):
        return "".join(c for c in a if isinstance(c, str))
    return None


def show(a: AStr) -> str:
    """Human form for reasons and approvals: holes as ``…``."""
    return "".join(c if isinstance(c, str) else "…" for c in a)


def has_hole(a: AStr) -> bool:
    return any(not isinstance(c, str) for c in a)


def literal_prefix(a: AStr) -> str:
    out: list[str] = []
    for c in a:
        if not isinstance(c, str):
            break
        out.append(c)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Field:
    """One argv element as the analyser knows it (see the module docstring)."""

    chunks: AStr
    glob: bool = False
    split: bool = False
    quoted_start: bool = False  # the first character was quoted (cannot start an option)
    # a path resolved against an unknown working directory: it is absolute and
    # normalized, so its holes hold no ".." and it cannot be an option
    canonical: bool = False

    @property
    def text(self) -> str | None:
        """The exact text, when fully known (and not a pattern)."""
        if self.glob or self.split:
            return None
        return static(self.chunks)

    @property
    def known(self) -> bool:
        return self.text is not None

    @property
    def maybe_option(self) -> bool:
        """Could this field be (or expand to) an option word?"""
        if self.split:
            return True
        if self.canonical:
            return False
        first = self.chunks[0] if self.chunks else ""
        if isinstance(first, str):
            return first.startswith("-") and not self.quoted_start
        return first is not Hole.DIGITS

    def show(self) -> str:
        return show(self.chunks)


def lit(text: str) -> Field:
    return Field(astr(text))


# --------------------------------------------------------------------------- globs

_GLOB_RE = re.compile(r"[*?]|\[(?:!|\^)?\]?[^\]]*\]|[?*+@!]\(")


def has_glob_chars(text: str) -> bool:
    return _GLOB_RE.search(text) is not None


def glob_chunks(text: str) -> AStr:
    """An unquoted pattern as chunks: wildcards become ``SEG`` holes."""
    out: list[Chunk] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "?*+@!" and i + 1 < n and text[i + 1] == "(":
            depth, j = 0, i + 1
            while j < n:
                if text[j] == "(":
                    depth += 1
                elif text[j] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            out.append(Hole.SEG)
            i = j + 1
            continue
        if c in "*?":
            out.append(Hole.SEG)
        elif c == "[":
            j = text.find("]", i + 2)
            if j < 0:
                out.append(c)
            else:
                out.append(Hole.SEG)
                i = j
        else:
            out.append(c)
        i += 1
    return astr(*out)


# --------------------------------------------------------------------------- braces


def brace_expand(items: list[tuple[str, bool] | object], limit: int = 256) -> list[list[object]]:
    """Bash brace expansion over a word flattened into items.

    Items are ``(char, quoted)`` pairs for literal characters and any other object for
    an expansion part (never split by braces). Returns the expanded item lists, or
    raises ``ValueError`` past ``limit`` words.
    """
    start = _find_brace(items)
    if start is None:
        return [items]
    open_i, alts, close_i = start
    pre, post = items[:open_i], items[close_i + 1 :]
    out: list[list[object]] = []
    for alt in alts:
        out.extend(brace_expand(pre + alt + post, limit))
        if len(out) > limit:
            raise ValueError("brace expansion too large")
    return out


def _is(item: object, ch: str) -> bool:
    return isinstance(item, tuple) and len(item) == 2 and item[0] == ch and item[1] is False


def _find_brace(items: list[object]) -> tuple[int, list[list[object]], int] | None:
    """The first valid brace expression: (open index, alternatives, close index)."""
    for i in range(len(items)):
        if not _is(items[i], "{") or (i > 0 and _is(items[i - 1], "$")):
            continue
        found = _brace_at(items, i)
        if found is not None:
            return found
    return None


def _brace_at(items: list[object], i: int) -> tuple[int, list[list[object]], int] | None:
    """The brace expression opened at ``i``, if it is a valid one."""
    depth = 0
    commas: list[int] = []
    for j in range(i + 1, len(items)):
        if _is(items[j], "{"):
            depth += 1
        elif _is(items[j], "}"):
            if depth == 0:
                return _brace_alternatives(items, i, j, commas)
            depth -= 1
        elif _is(items[j], ",") and depth == 0:
            commas.append(j)
    return None


def _brace_alternatives(items: list[object], i: int, j: int, commas: list[int]
                        ) -> tuple[int, list[list[object]], int] | None:
    """``{a,b}`` or ``{1..3}`` between ``i`` and ``j``; None if it is neither."""
    if commas:
        alts: list[list[object]] = []
        prev = i + 1
        for c in [*commas, j]:
            alts.append(items[prev:c])
            prev = c + 1
        return i, alts, j
    seq = _sequence(items[i + 1 : j])
    if seq is not None:
        return i, [[(ch, True) for ch in s] for s in seq], j
    return None


_SEQ_RE = re.compile(r"(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?$"
                     r"|([A-Za-z])\.\.([A-Za-z])(?:\.\.(-?\d+))?$")


def _sequence(body: list[object]) -> list[str] | None:
    if not all(isinstance(b, tuple) and len(b) == 2 and b[1] is False for b in body):
        return None
    text = "".join(b[0] for b in body)  # type: ignore[index]
    m = _SEQ_RE.match(text)
    if m is None:
        return None
    if m.group(1) is not None:
        a, b = int(m.group(1)), int(m.group(2))
        step = abs(int(m.group(3) or 1)) or 1
        if abs(b - a) // step > 4096:
            raise ValueError("brace sequence too long")
        width = max(len(m.group(1)), len(m.group(2))) if (
            m.group(1).lstrip("-").startswith("0") or m.group(2).lstrip("-").startswith("0")
        ) else 0
        rng = range(a, b + (1 if b >= a else -1), step if b >= a else -step)
        return [str(v).zfill(width) if width else str(v) for v in rng]
    x, y = ord(m.group(4)), ord(m.group(5))
    step = abs(int(m.group(6) or 1)) or 1
    rng = range(x, y + (1 if y >= x else -1), step if y >= x else -step)
    return [chr(v) for v in rng]


# --------------------------------------------------------------------------- paths

PATH_HOLE: AStr = (Hole.WORD,)  # an unknown absolute directory (no blanks)


def _components(a: AStr) -> list[AStr]:
    """Split on literal '/' (holes stay inside their component)."""
    comps: list[list[Chunk]] = [[]]
    for c in a:
        if isinstance(c, str):
            parts = c.split("/")
            for k, p in enumerate(parts):
                if k:
                    comps.append([])
                if p:
                    comps[-1].append(p)
        else:
            comps[-1].append(c)
    return [astr(*x) for x in comps if x]


def resolve(
    a: AStr,
    cwd: AStr,
    *,
    symlinks: Mapping[str, AStr] | None = None,
) -> AStr:
    """``a`` as an absolute normalized path (see the module docstring)."""
    start = _start(a, cwd)
    if start is None:
        return (Hole.ANY,)  # may be absolute or relative, may hold ".."
    root, comps = start
    out: list[AStr] = []
    for comp in comps:
        t = static(comp)
        if t in ("", "."):
            continue
        if t == "..":
            if out:
                out.pop()
            elif root != ("/",):
                root = PATH_HOLE
            continue
        if t is None and any(c is Hole.ANY or c is Hole.WORD for c in comp):
            return (Hole.ANY,)  # an unknown part may hold "../": the path is unknown
        out.append(comp)
        alias = _alias(_join(root, out), cwd, symlinks)
        if alias is not None:
            if alias == (Hole.ANY,):
                return alias
            root, out = _split_root(alias)
    return _join(root, out)


def _start(a: AStr, cwd: AStr) -> tuple[AStr, list[AStr]] | None:
    """Where a path starts (``/``, ``~user``, or the working directory) and its
    components; None when that is not known."""
    first = a[0] if a else ""
    if isinstance(first, str) and first.startswith("/"):
        return ("/",), _components(a)
    if isinstance(first, str) and first.startswith("~"):
        user, _, tail = first.partition("/")
        return (user,), _components(astr(tail, *a[1:]))
    if not isinstance(first, str) and first in (Hole.ANY, Hole.WORD):
        return None
    root, base = _split_root(cwd)
    return root, [*base, *_components(a)]


def _alias(path: AStr, cwd: AStr, symlinks: Mapping[str, AStr] | None) -> AStr | None:
    """What a known path stands for: ``/proc/self/cwd``... or a symlink made here."""
    js = static(path)
    if js is None:
        return None
    alias = _proc_alias(js, cwd)
    if alias is None and symlinks and js in symlinks:
        alias = symlinks[js]
    return alias


def _proc_alias(path: str, cwd: AStr) -> AStr | None:
    m = re.match(r"^/proc/(?:self|thread-self|\d+)(?:/task/\d+)?/(root|cwd)$", path)
    if m is None:
        if re.match(r"^/(?:dev/fd|proc/(?:self|\d+)/fd|dev/std(?:in|out|err))/?", path):
            return PATH_HOLE
        return None
    if m.group(1) == "root":
        return ("/",)
    return cwd if "self" in path or "thread-self" in path else PATH_HOLE


def _split_root(p: AStr) -> tuple[AStr, list[AStr]]:
    first = p[0] if p else ""
    if isinstance(first, str) and first.startswith("/"):
        return ("/",), _components(p)
    if isinstance(first, str) and first.startswith("~"):
        t = first.split("/", 1)
        rest = astr(t[1] if len(t) > 1 else "", *p[1:])
        return (t[0],), _components(rest)
    return PATH_HOLE, _components(astr(*p[1:])) if p else []


def _join(root: AStr, comps: list[AStr]) -> AStr:
    if root == ("/",):
        if not comps:
            return ("/",)
        out: list[Chunk] = []
        for c in comps:
            out.append("/")
            out.extend(c)
        return astr(*out)
    out2: list[Chunk] = list(root)
    for c in comps:
        out2.append("/")
        out2.extend(c)
    return astr(*out2)


def is_under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def norm_path(arg: str) -> str:
    """Normalize an absolute path argument, or the value of ``key=/path``
    (``/tmp/../etc`` -> ``/etc``, ``//x`` -> ``/x``)."""
    if arg.startswith("/"):
        p = posixpath.normpath(arg)
        return "/" + p.lstrip("/") if p.startswith("//") else p
    key, eq, value = arg.partition("=")
    if eq and value.startswith("/") and key and "/" not in key:
        return f"{key}={norm_path(value)}"
    return arg
