"""The timeline panel: every event of the session in a list beside the replayed screen.

A row per command (with its decision), approval, transfer, forward, resize, kill,
evasion signal, gap, marker, note and flag; the mark and colour of each kind come from
:mod:`player.marks`. The lines under the list describe the highlighted row completely
(rule, reason, approver, sha256...). Enter posts :class:`EventsPanel.Jump`; while the
list is not focused its cursor follows the playback position.
"""

from __future__ import annotations

import bisect

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from player.details import (
    PanelRow,
    details_text,
    entry_details,
    glyph,
    panel_rows,
    review_details,
    row_text,
)
from player.fmt import fmt_offset
from recorder.timeline import Entry
from state.reviews import Review


class EventsPanel(Vertical):
    """The timeline panel (toggle it with ``t``, focus it with ``tab``)."""

    DEFAULT_CSS = """
    EventsPanel { width: 40; border-left: vkey $primary; }
    EventsPanel > #events-title { height: 1; background: $primary-background; }
    EventsPanel > DataTable { height: 1fr; scrollbar-size-horizontal: 0; }
    EventsPanel > #events-detail { height: auto; max-height: 14; background: $boost; }
    """

    class Jump(Message):
        """Show the replay at ``time`` (the row's ``key`` is what was chosen)."""

        def __init__(self, time: float, key: str) -> None:
            super().__init__()
            self.time = time
            self.key = key

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: list[PanelRow] = []
        self._times: list[float] = []
        self._entries: dict[str, Entry] = {}
        self._reviews: dict[str, Review] = {}

    def compose(self) -> ComposeResult:
        yield Static("timeline", id="events-title")
        table: DataTable[Text | str] = DataTable(id="events", cursor_type="row",
                                                 show_header=False)
        yield table
        yield Static("", id="events-detail")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("time", key="time")
        table.add_column("m", key="mark")
        table.add_column("what", key="what")

    def set_events(self, entries: list[Entry], reviews: list[Review], title: str = "") -> None:
        """Show a session's timeline (UI thread)."""
        table = self.query_one(DataTable)
        keep = table.cursor_row if self.rows else 0
        old = self.rows
        rows = panel_rows(entries, reviews)
        self.rows = rows
        self._times = [r.time for r in rows]
        self._entries = {e.key: e for e in entries}
        self._reviews = {f"r{r.id}": r for r in reviews}
        start = len(old)
        if not (old and len(rows) >= start and rows[:start] == old):
            table.clear()  # not just more of the same (a live session grows): redraw
            start = 0
        for i in range(start, len(rows)):
            row = rows[i]
            table.add_row(fmt_offset(row.time), glyph(row.kind), row_text(row), key=str(i))
        n = len(self.rows)
        self.query_one("#events-title", Static).update(
            title or f"timeline: {n} event{'s' if n != 1 else ''}")
        if self.rows:
            table.move_cursor(row=min(keep, n - 1), scroll=False)
        self._describe()

    def follow(self, position: float) -> None:
        """Move the cursor to the last row at or before ``position`` (unless focused)."""
        table = self.query_one(DataTable)
        if table.has_focus or not self.rows:
            return
        idx = bisect.bisect_right(self._times, position + 1e-6) - 1
        if idx >= 0 and idx != table.cursor_row:
            table.move_cursor(row=idx)

    def current(self) -> PanelRow | None:
        table = self.query_one(DataTable)
        row = table.cursor_row
        return self.rows[row] if self.rows and 0 <= row < len(self.rows) else None

    def current_entry(self) -> Entry | None:
        row = self.current()
        return self._entries.get(row.key) if row is not None else None

    def focus_list(self) -> None:
        self.query_one(DataTable).focus()

    @property
    def list_focused(self) -> bool:
        return self.query_one(DataTable).has_focus

    @on(DataTable.RowHighlighted)
    def _highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._describe()

    def _describe(self) -> None:
        row = self.current()
        detail = self.query_one("#events-detail", Static)
        if row is None:
            detail.update("")
            return
        entry = self._entries.get(row.key)
        review = self._reviews.get(row.key)
        if entry is not None:
            lines = entry_details(entry)
            if row.flagged:
                lines.append(("flagged", "yes"))
        elif review is not None:
            lines = review_details(review)
        else:
            lines = [("when", fmt_offset(row.time)), ("what", row.text)]
        detail.update(details_text(lines))

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        row = self.current()
        if row is not None:
            self.post_message(self.Jump(row.time, row.key))
