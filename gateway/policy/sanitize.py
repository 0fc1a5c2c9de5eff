"""Make terminal output safe to feed to pyte 0.8.2.

pyte 0.8.2 raises on some private CSI sequences (``ESC[>4;2m``, sent by vim) and its
parser is quadratic on a long run of CSI parameter bytes. ``sanitize`` drops, in one
linear regex pass:

* CSI sequences with a private prefix other than ``?`` (``<``, ``=``, ``>``);
* CSI sequences whose parameter string is longer than ``MAX_PARAMS`` bytes;
* an unterminated CSI sequence (no final byte before the end of the data or an
  invalid byte).

Known limits: dropping a sequence may leave the rendered screen slightly different
from a real terminal's for those sequences; none of them edits the command line in
bash, zsh or readline.
"""

from __future__ import annotations

import re

MAX_PARAMS = 32
_CSI_RE = re.compile(rb"\x1b\[([\x30-\x3f]*)([\x20-\x2f]*)([\x40-\x7e]?)")
_ANY_ESC_RE = re.compile(
    rb"\x1b\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"  # CSI
    rb"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC
    rb"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC
    rb"|\x1b[\x20-\x2f]*[\x30-\x7e]?"  # two-byte and charset escapes
)


def _keep(m: re.Match[bytes]) -> bytes:
    params, final = m.group(1), m.group(3)
    if not final or len(params) > MAX_PARAMS or params[:1] in (b"<", b"=", b">"):
        return b""
    return m.group(0)


def sanitize(data: bytes) -> bytes:
    """Drop the CSI sequences pyte 0.8.2 crashes or stalls on (linear time)."""
    if b"\x1b[" not in data:
        return data
    return _CSI_RE.sub(_keep, data)


def strip_escapes(data: bytes) -> bytes:
    """Remove every escape sequence (CSI, OSC, DCS, two-byte) from ``data``."""
    if b"\x1b" not in data:
        return data
    return _ANY_ESC_RE.sub(b"", data)
