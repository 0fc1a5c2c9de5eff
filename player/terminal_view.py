"""A Textual widget showing a recorded terminal screen (see :mod:`player.render`).

The widget is exactly as large as the frame it shows (the recorded terminal, plus the
scrollback lines when paused in scrollback); the replay screen puts it in a container
that pans over it when the window is smaller (no scrollbars: the status line says which
part is shown).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import RenderResult
from textual.geometry import Size
from textual.widget import Widget

from player.render import Frame


class TerminalView(Widget):
    """Shows one terminal frame; call :meth:`show` with a new frame to update it."""

    DEFAULT_CSS = """
    TerminalView { width: auto; height: auto; background: black; color: white; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._text = Text("")
        self._term_size = (80, 24)
        self.lines: list[str] = []
        self.screen_lines: list[str] = []
        self.history = 0
        self.cursor = (0, 0)

    def show(self, frame: Frame) -> None:
        """Show a frame (UI thread)."""
        self._text = frame.text
        self.lines = frame.lines
        self.screen_lines = frame.screen_lines or frame.lines
        self.history = frame.history
        self.cursor = frame.cursor
        old = self._term_size
        self._term_size = frame.size
        self.refresh(layout=old != self._term_size)

    @property
    def term_size(self) -> tuple[int, int]:
        return self._term_size

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return self._term_size[0]

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return self._term_size[1]

    def render(self) -> RenderResult:
        return self._text

    def screen_text(self) -> str:
        """The screen as plain text (trailing spaces and blank trailing rows removed)."""
        lines = [line.rstrip() for line in self.screen_lines]
        while lines and not lines[-1]:
            lines.pop()
        return "\n".join(lines) + "\n" if lines else ""
