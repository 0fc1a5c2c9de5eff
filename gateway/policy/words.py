"""Shell words after quote removal: what bash would pass as one argv element.

A word is a list of fragments. Literal fragments carry their text after quote removal
(backslashes, single quotes, double quotes, ``$'...'`` ANSI-C strings decoded) and
whether they were quoted (quoted text is never a glob or a brace expansion). Dynamic
fragments (``$var``, ``${...}``, ``$(...)``, backticks, ``$((...))``, ``<(...)``) keep
their source text and their kind: the policy never guesses their value.

Known limits: ``$"..."`` (locale translation) is treated as a plain double-quoted
string; tilde expansion is not performed (``~`` stays literal); a word is not split on
``$IFS`` unless it is dynamic and unquoted (see ``Word.may_split``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# tree-sitter-bash node types whose value is only known at run time.
DYNAMIC_TYPES = frozenset(
    {
        "command_substitution",
        "expansion",
        "simple_expansion",
        "arithmetic_expansion",
        "process_substitution",
    }
)

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Fragment:
    """One piece of a word.

    Attributes:
        text: literal text after quote removal, or the source text of a dynamic part.
        quoted: the piece was inside quotes or escaped (no globbing, no splitting).
        dynamic: None for literal text, else the tree-sitter node type
            (``command_substitution``, ``simple_expansion``...).
    """

    text: str
    quoted: bool
    dynamic: str | None = None


@dataclass(frozen=True)
class Word:
    """One shell word as a sequence of fragments."""

    fragments: tuple[Fragment, ...]
    source: str

    @property
    def is_dynamic(self) -> bool:
        """True if any part of the word is only known at run time."""
        return any(f.dynamic for f in self.fragments)

    @property
    def dynamic_kinds(self) -> set[str]:
        """Node types of the dynamic fragments."""
        return {f.dynamic for f in self.fragments if f.dynamic}

    @property
    def may_split(self) -> bool:
        """True if an unquoted dynamic part may expand to several words."""
        return any(f.dynamic and not f.quoted for f in self.fragments)

    @property
    def has_glob(self) -> bool:
        """True if an unquoted glob character (``*``, ``?``, ``[``) is present."""
        return any(
            not f.quoted and not f.dynamic and any(c in _GLOB_CHARS for c in f.text)
            for f in self.fragments
        )

    @property
    def has_brace(self) -> bool:
        """True if unquoted text looks like a brace expansion (``{a,b}``, ``{1..3}``)."""
        text = "".join("\0" if (f.quoted or f.dynamic) else f.text for f in self.fragments)
        return _BRACE_RE.search(text) is not None

    @property
    def value(self) -> str:
        """The word as the rules see it: literal text, dynamic parts as written."""
        return "".join(f.text for f in self.fragments)

    def with_probe(self, probe: str) -> str:
        """The word with every dynamic part replaced by ``probe``."""
        return "".join(probe if f.dynamic else f.text for f in self.fragments)

    def glob_skeleton(self) -> str:
        """The literal text a glob must start with, e.g. ``/[e]tc`` -> ``/etc``."""
        out: list[str] = []
        for f in self.fragments:
            if f.dynamic:
                break
            if f.quoted:
                out.append(f.text)
                continue
            t = _BRACKET_RE.sub(lambda m: m.group(1)[:1], f.text)
            out.append(t.replace("*", "").replace("?", ""))
        return "".join(out)


_BRACE_RE = re.compile(r"\{[^{}\0]*(?:,|\.\.)[^{}\0]*\}")
_BRACKET_RE = re.compile(r"\[!?\^?([^\]]*)\]")


def literal_word(text: str) -> Word:
    """A word made of quoted literal text (used for synthetic argv)."""
    return Word((Fragment(text, True),), text)


# --------------------------------------------------------------------------- ANSI-C

_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "e": "\x1b",
    "E": "\x1b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "?": "?",
}
_HEX = frozenset("0123456789abcdefABCDEF")


def decode_ansi_c(body: str) -> str:
    """Decode the inside of a ``$'...'`` string the way bash does.

    Args:
        body: the text between ``$'`` and the closing ``'``.

    Returns:
        The decoded string (``\\x72\\x6d`` -> ``rm``). Invalid escapes are kept as
        written, like bash. A NUL ends the string, like bash.
    """
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c != "\\" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        d = body[i + 1]
        i += 2
        if d in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[d])
        elif d in "01234567":
            j = i
            while j < n and j < i + 2 and body[j] in "01234567":
                j += 1
            out.append(chr(int(d + body[i:j], 8) & 0xFF))
            i = j
        elif d in "xuU":
            limit = {"x": 2, "u": 4, "U": 8}[d]
            j = i
            while j < n and j < i + limit and body[j] in _HEX:
                j += 1
            if j == i:
                out.append("\\" + d)
            else:
                code = int(body[i:j], 16)
                out.append(chr(code) if code <= 0x10FFFF else "\ufffd")
                i = j
        elif d == "c" and i < n:
            out.append(chr(ord(body[i]) & 0x1F))
            i += 1
        else:
            out.append("\\" + d)
    text = "".join(out)
    nul = text.find("\0")
    return text if nul < 0 else text[:nul]


# --------------------------------------------------------------------------- lexer


def lex_word(src: bytes, start: int, end: int, dyn_spans: list[tuple[int, int, str]]) -> Word:
    """Quote removal over ``src[start:end]``.

    Args:
        src: the whole command line, UTF-8.
        start: first byte of the word.
        end: byte after the word.
        dyn_spans: sorted ``(start, end, node_type)`` byte ranges of dynamic parts
            inside the word (found by tree-sitter).

    Returns:
        The word's fragments.
    """
    frags: list[Fragment] = []
    buf = bytearray()
    buf_quoted = False

    def flush() -> None:
        nonlocal buf
        if buf:
            frags.append(Fragment(buf.decode("utf-8", "surrogateescape"), buf_quoted))
            buf = bytearray()

    def put(b: bytes, quoted: bool) -> None:
        nonlocal buf_quoted
        if buf and buf_quoted != quoted:
            flush()
        buf_quoted = quoted
        buf.extend(b)

    spans = {s: (e, t) for s, e, t in dyn_spans}
    state = "u"  # u: unquoted, s: single, d: double
    i = start
    while i < end:
        if i in spans and state != "s":
            e, t = spans[i]
            flush()
            frags.append(Fragment(src[i:e].decode("utf-8", "surrogateescape"), state == "d", t))
            i = e
            continue
        c = src[i : i + 1]
        if state == "u":
            if c == b"\\":
                nxt = src[i + 1 : i + 2] if i + 1 < end else b""
                if nxt == b"\n":
                    i += 2
                    continue
                if nxt:
                    # An escaped character is literal and quoted (no glob), whole UTF-8 char.
                    j = i + 2
                    while j < end and (src[j] & 0xC0) == 0x80:
                        j += 1
                    put(src[i + 1 : j], True)
                    i = j
                    continue
                put(b"\\", True)
                i += 1
            elif c == b"'":
                state = "s"
                put(b"", True)
                i += 1
            elif c == b'"':
                state = "d"
                put(b"", True)
                i += 1
            elif c == b"$" and src[i + 1 : i + 2] == b"'" and i + 1 < end:
                j = i + 2
                while j < end and src[j : j + 1] != b"'":
                    j += 2 if src[j : j + 1] == b"\\" else 1
                body = src[i + 2 : min(j, end)].decode("utf-8", "surrogateescape")
                put(decode_ansi_c(body).encode("utf-8", "surrogateescape"), True)
                i = j + 1
            elif c == b"$" and src[i + 1 : i + 2] == b'"' and i + 1 < end:
                state = "d"
                put(b"", True)
                i += 2
            else:
                put(c, False)
                i += 1
        elif state == "s":
            if c == b"'":
                state = "u"
            else:
                put(c, True)
            i += 1
        else:  # double quotes
            if c == b'"':
                state = "u"
                i += 1
            elif c == b"\\" and i + 1 < end and src[i + 1 : i + 2] in (b"$", b"`", b'"', b"\\"):
                put(src[i + 1 : i + 2], True)
                i += 2
            elif c == b"\\" and src[i + 1 : i + 2] == b"\n":
                i += 2
            else:
                put(c, True)
                i += 1
    flush()
    return Word(tuple(frags), src[start:end].decode("utf-8", "surrogateescape"))
