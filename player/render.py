"""Recorded terminal screens as Rich text (no Textual here; runs in worker threads).

The screen model is the recorder's guarded pyte terminal (``recorder.screen.Terminal``);
:func:`render_screen` turns its buffer into Rich text (16 colours, 256 colours and true
colour, bold/italic/underline/strike/reverse/blink), draws the cursor as a reverse
cell, and highlights search matches. :func:`make_frame` adds the lines that scrolled
off the top (scrollback) when it is given them.

Known limits: double-width characters rely on pyte's cell model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from rich.style import Style
from rich.text import Text

from recorder.screen import Terminal

_HIGHLIGHT = Style(color="black", bgcolor="yellow", bold=True)
_CURSOR = Style(reverse=True)
Row = Mapping[int, Any]  # one pyte buffer row: column -> Char


def _color(name: str) -> str | None:
    if not name or name == "default":
        return None
    if name.startswith("bright"):
        base = name[6:]
        return "bright_" + ("yellow" if base == "brown" else base)
    if name == "brown":
        return "yellow"
    if len(name) == 6:
        try:
            int(name, 16)
        except ValueError:
            return None
        return "#" + name
    return name


@lru_cache(maxsize=4096)
def cell_style(
    fg: str, bg: str, bold: bool, italics: bool, underscore: bool, strike: bool, reverse: bool,
    blink: bool,
) -> Style:  # fmt: skip
    """The Rich style of one pyte cell's attributes."""
    try:
        return Style(
            color=_color(fg),
            bgcolor=_color(bg),
            bold=bold or None,
            italic=italics or None,
            underline=underscore or None,
            strike=strike or None,
            reverse=reverse or None,
            blink=blink or None,
        )
    except Exception:  # an unknown colour name: keep the text, drop the colour
        return Style(bold=bold or None, reverse=reverse or None)


def render_row(row: Row, columns: int, *, highlight: str = "") -> Text:
    """One buffer row as Rich text of ``columns`` cells."""
    line = Text(no_wrap=True, end="")
    run: list[str] = []
    run_style: Style | None = None
    for x in range(columns):
        c = row.get(x) if not hasattr(row, "default") else row[x]
        if c is None:
            style, data = cell_style("default", "default", False, False, False, False, False,
                                     False), " "
        else:
            style = cell_style(
                c.fg, c.bg, c.bold, c.italics, c.underscore, c.strikethrough, c.reverse, c.blink
            )
            data = c.data
        if style is not run_style and run:
            line.append("".join(run), run_style)
            run = []
        run_style = style
        run.append(data)
    if run:
        line.append("".join(run), run_style)
    if highlight:
        line.highlight_words([highlight], _HIGHLIGHT, case_sensitive=False)
    return line


def row_text(row: Row, columns: int) -> str:
    """One buffer row as plain text (trailing spaces kept)."""
    out = []
    for x in range(columns):
        c = row.get(x) if not hasattr(row, "default") else row[x]
        out.append(" " if c is None else c.data)
    return "".join(out)


def render_screen(term: Terminal, *, highlight: str = "", show_cursor: bool = True) -> Text:
    """The terminal's visible screen as Rich text (one line per row).

    Args:
        term: the terminal model.
        highlight: text to highlight wherever it is on screen (case-insensitive).
        show_cursor: draw the cursor as a reverse cell (unless the program hid it).
    """
    s = term.screen
    out = Text(no_wrap=True, overflow="crop", end="")
    cur = s.cursor
    for y in range(s.lines):
        line = render_row(s.buffer[y], s.columns, highlight=highlight)
        if show_cursor and not cur.hidden and y == cur.y and 0 <= cur.x < s.columns:
            line.stylize(_CURSOR, cur.x, cur.x + 1)
        out.append_text(line)
        if y < s.lines - 1:
            out.append("\n")
    return out


@dataclass(frozen=True)
class Frame:
    """A rendered screen, built in a worker thread and shown on the UI thread.

    ``history`` is the number of scrollback lines above the screen (0 when live or
    playing); ``cursor`` is in frame coordinates (history included).
    """

    text: Text
    lines: list[str]
    size: tuple[int, int]
    cursor: tuple[int, int] = (0, 0)
    history: int = 0
    screen_lines: list[str] = field(default_factory=list)


def make_frame(term: Terminal, *, highlight: str = "",
               history: Sequence[Row] = ()) -> Frame:
    """Render ``term`` (the caller holds whatever lock protects it), with ``history``
    (scrolled-off rows, oldest first) above the screen."""
    cur = term.screen.cursor
    cols, rows = term.size
    screen = render_screen(term, highlight=highlight)
    display = term.display()
    if not history:
        return Frame(screen, display, term.size, (cur.x, cur.y), 0, display)
    text = Text(no_wrap=True, overflow="crop", end="")
    lines: list[str] = []
    for row in history:
        text.append_text(render_row(row, cols, highlight=highlight))
        text.append("\n")
        lines.append(row_text(row, cols))
    text.append_text(screen)
    n = len(history)
    return Frame(text, lines + display, (cols, rows + n), (cur.x, cur.y + n), n, display)
