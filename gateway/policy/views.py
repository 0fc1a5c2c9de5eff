"""The texts the rules see for one command (``View``): as typed, normalized (options,
absolute paths), and with relative paths resolved against the session's working
directory; dynamic parts stay holes the rules are checked against ("could match")."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.policy import possible as P
from gateway.policy.options import normalize_options
from gateway.policy.state import ShellState
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
    if any(a.split for a in args):
        return _split_tokens(name, args), False
    return _dynamic_tokens(name, args), False


def _split_tokens(name: str, args: list[Field]) -> list[object]:
    """An argument splits into words that are not known: any text between the known
    ones, in any order."""
    statics = [a.text for a in args if a.text is not None]
    norm = normalize_options(name, [s for s in statics if s is not None])
    toks: list[object] = [name, Hole.ANY]
    for x in norm:
        toks.extend([_norm_path(x), Hole.ANY])
    for a in args:
        if a.text is None and not a.split:
            toks.extend([_norm_dyn(a), Hole.ANY])
    return toks


def _dynamic_tokens(name: str, args: list[Field]) -> list[object]:
    """Arguments partly unknown, each one word: an unknown one that may be an option can
    sit among the options."""
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
        return [("alt", [as_operand, *alts])]
    toks = _tokens(name, mapped, sentinels)
    if capable:
        gapped: list[object] = []
        for t in toks:
            gapped.extend([t, Hole.OPTS])
        return gapped
    return toks


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
