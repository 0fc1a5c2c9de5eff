"""Aligned tables for the command line: every cell sanitised, columns sized to fit.

:func:`render` sizes each column to its widest cell (by terminal width: wide characters
count two, combining marks none), caps the columns given a ``limit`` (the cell is cut
with ``…``), right-aligns the numeric columns named in ``right``, and never pads the
last column. Cells pass through :func:`common.safetext.visible`, so a user name or a
command from a target cannot move the cursor or recolour the terminal.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence

from common.safetext import visible

GAP = "  "


def width(text: str) -> int:
    """Columns ``text`` takes on a terminal."""
    total = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        total += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return total


def cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` columns (``…`` marks a cut)."""
    if width(text) <= limit:
        return text
    out, used = [], 0
    for ch in text:
        w = 0 if unicodedata.combining(ch) else (
            2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1)
        if used + w > limit - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def _pad(text: str, size: int, right: bool) -> str:
    fill = " " * max(0, size - width(text))
    return fill + text if right else text + fill


def render(headers: Sequence[str], rows: Iterable[Sequence[object]], *,
           right: Iterable[int] = (), limit: Mapping[int, int] | None = None) -> list[str]:
    """The lines of a table (header first); see the module docstring."""
    limits = dict(limit or {})
    cells = [[cut(visible("" if c is None else str(c)), limits.get(i, 10**6))
              for i, c in enumerate(row)] for row in rows]
    head = [str(h) for h in headers]
    sizes = [width(h) for h in head]
    for row in cells:
        for i, c in enumerate(row):
            sizes[i] = max(sizes[i], width(c))
    aligned = set(right)
    last = len(head) - 1
    out = []
    for row in [head, *cells]:
        parts = [c if i == last and i not in aligned else _pad(c, sizes[i], i in aligned)
                 for i, c in enumerate(row)]
        out.append(GAP.join(parts).rstrip())
    return out
