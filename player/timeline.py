"""A one-line timeline bar of a session: position, decisions, transfers, notes, hits.

Each cell stands for ``duration / width`` seconds; when several marks fall in one cell
the most important kind is drawn (see :mod:`player.marks`). Clicking a cell seeks there
(mouse optional; the keys do the same).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.style import Style
from rich.text import Text
from textual import events
from textual.app import RenderResult
from textual.message import Message
from textual.widget import Widget

from player.archive import Mark
from player.marks import LOOKS


def render_timeline(width: int, duration: float, position: float, marks: Sequence[Mark]) -> Text:
    """The timeline as Rich text of exactly ``width`` cells."""
    width = max(width, 1)
    cells: list[tuple[str, str, int]] = [("-", "grey50", 0)] * width
    span = duration if duration > 0 else 1.0

    def cell(t: float) -> int:
        return min(width - 1, max(0, int(t / span * width)))

    for m in marks:
        look = LOOKS.get(m.kind)
        if look is None:
            continue
        i = cell(m.time)
        if look.priority > cells[i][2]:
            cells[i] = (look.glyph, look.style, look.priority)
    pos = cell(position)
    text = Text(no_wrap=True, end="")
    for i, (char, style, _prio) in enumerate(cells):
        if i == pos:
            text.append(char if char != "-" else " ", Style.parse(style) + Style(reverse=True))
        else:
            text.append(char, style)
    return text


class Timeline(Widget):
    """The session timeline bar; posts :class:`Timeline.Seek` when clicked."""

    DEFAULT_CSS = "Timeline { height: 1; width: 1fr; }"

    class Seek(Message):
        """The user clicked the timeline at session time ``time``."""

        def __init__(self, time: float) -> None:
            super().__init__()
            self.time = time

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.duration = 0.0
        self.position = 0.0
        self.marks: list[Mark] = []
        self._drawn: tuple[float, int, int, int, int, int] | None = None

    def update_state(self, duration: float, position: float, marks: Sequence[Mark]) -> None:
        """Redrawn only when something visible changed (called ten times a second)."""
        width = max(self.size.width, 1)
        span = duration if duration > 0 else 1.0
        cell = min(width - 1, max(0, int(position / span * width)))
        key = (duration, cell, width, len(marks), id(marks[0]) if marks else 0,
               id(marks[-1]) if marks else 0)
        self.duration = duration
        self.position = position
        if key == self._drawn:
            return
        self._drawn = key
        self.marks = list(marks)
        self.refresh()

    def render(self) -> RenderResult:
        return render_timeline(self.size.width, self.duration, self.position, self.marks)

    def on_click(self, event: events.Click) -> None:
        width = max(self.size.width, 1)
        self.post_message(self.Seek(self.duration * event.x / width))
