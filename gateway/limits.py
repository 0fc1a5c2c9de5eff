"""Bounds on what a client controls, checked where it enters the gateway.

Every size, count and length a user's client sends is clamped or refused here before
any part of the gateway allocates or computes from it. docs/security.md lists these
limits; change them here only.
"""

from __future__ import annotations

MAX_TERM_COLS = 1000  # terminal width in cells (a 4K screen at a tiny font is ~500)
MAX_TERM_ROWS = 1000  # terminal height in cells
MAX_TERM_PIXELS = 16384  # pixel width/height reported with a terminal size
MAX_TERM_TYPE = 64  # TERM name ("xterm-256color"); longer names are cut


def clamp_term_size(cols: int, rows: int, pixwidth: int = 0,
                    pixheight: int = 0) -> tuple[int, int, int, int]:
    """A client's terminal size made safe: 1..MAX cells (0, "unknown", becomes 80x24)."""
    def cells(value: int, default: int, top: int) -> int:
        value = int(value)
        return default if value <= 0 else min(value, top)

    def pixels(value: int) -> int:
        return min(max(int(value), 0), MAX_TERM_PIXELS)

    return (cells(cols, 80, MAX_TERM_COLS), cells(rows, 24, MAX_TERM_ROWS),
            pixels(pixwidth), pixels(pixheight))
