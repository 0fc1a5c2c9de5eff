"""ANSI-C quoting: ``$'...'`` strings decoded the way bash decodes them."""

from __future__ import annotations

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
