"""A Textual widget showing a recorded terminal screen with its colours and cursor.

The screen model is the recorder's guarded pyte terminal (``recorder.screen.Terminal``);
:func:`render_screen` turns its buffer into Rich text (16 colours, 256 colours and true
colour, bold/italic/underline/strike/reverse/blink), draws the cursor as a reverse
cell, and highlights search matches. The widget is exactly as large as the recorded
terminal; a smaller window scrolls it.

Known limits: pyte has no alternate screen, so a full-screen program (vim, htop, less)
is drawn over the shell's screen and the shell's screen is not restored when it exits
(the program's own redraw is what shows); double-width characters rely on pyte's cell
model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from rich.style import Style
from rich.text import Text
from textual.app import RenderResult
from textual.geometry import Size
from textual.widget import Widget

from recorder.screen import Terminal

_HIGHLIGHT = Style(color="black", bgcolor="yellow", bold=True)
_CURSOR = Style(reverse=True)


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
        row = s.buffer[y]
        line = Text(no_wrap=True, end="")
        run: list[str] = []
        run_style: Style | None = None
        for x in range(s.columns):
            c = row[x]
            style = cell_style(
                c.fg, c.bg, c.bold, c.italics, c.underscore, c.strikethrough, c.reverse, c.blink
            )
            if style is not run_style and run:
                line.append("".join(run), run_style)
                run = []
            run_style = style
            run.append(c.data)
        if run:
            line.append("".join(run), run_style)
        if highlight:
            line.highlight_words([highlight], _HIGHLIGHT, case_sensitive=False)
        if show_cursor and not cur.hidden and y == cur.y and 0 <= cur.x < s.columns:
            line.stylize(_CURSOR, cur.x, cur.x + 1)
        out.append_text(line)
        if y < s.lines - 1:
            out.append("\n")
    return out


@dataclass(frozen=True)
class Frame:
    """A rendered screen, built in a worker thread and shown on the UI thread."""

    text: Text
    lines: list[str]
    size: tuple[int, int]
    cursor: tuple[int, int] = (0, 0)


def make_frame(term: Terminal, *, highlight: str = "") -> Frame:
    """Render ``term`` (the caller holds whatever lock protects it)."""
    cur = term.screen.cursor
    return Frame(
        render_screen(term, highlight=highlight), term.display(), term.size, (cur.x, cur.y)
    )


class TerminalView(Widget):
    """Shows one terminal frame; call :meth:`show` with a new terminal to update it."""

    DEFAULT_CSS = """
    TerminalView { width: auto; height: auto; background: black; color: white; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._text = Text("")
        self._term_size = (80, 24)
        self.lines: list[str] = []

    def show(self, frame: Frame) -> None:
        """Show a frame (UI thread)."""
        self._text = frame.text
        self.lines = frame.lines
        old = self._term_size
        self._term_size = frame.size
        self.refresh(layout=old != self._term_size)

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return self._term_size[0]

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return self._term_size[1]

    def render(self) -> RenderResult:
        return self._text

    def screen_text(self) -> str:
        """The screen as plain text (trailing spaces and blank trailing rows removed)."""
        lines = [line.rstrip() for line in self.lines]
        while lines and not lines[-1]:
            lines.pop()
        return "\n".join(lines) + "\n" if lines else ""
