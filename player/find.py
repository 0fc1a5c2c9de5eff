"""The Find screen: every recorded session, filtered as you type.

Filters: user, target, time (``2h``, ``3d``, ``2026-11-24T10:00``, or a range ``A..B``
where either side may be empty; ``B`` is exclusive) and full-text search
over commands and screen text (the recorder's FTS5 index). Index queries and integrity
checks run in worker threads; the table is updated when they finish, so a large archive
never blocks typing. The integrity column is filled for the first ``VERIFY_ROWS`` rows
of a result (verifying reads the whole recording).

Known limits: at most ``LIMIT`` sessions are listed per query (newest first); the
user and target filters are exact matches (as in ``bastille sessions list``).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input, Static
from textual.worker import get_current_worker

from player.data import Archive, integrity_label
from recorder.errors import RecorderError
from recorder.index import SessionRow
from state.timeparse import parse_when

LIMIT = 1000  # rows per query: a screenful is ~20, more is for scrolling
VERIFY_ROWS = 200  # integrity is computed for the first rows of a result only
INTEGRITY_STYLE = {"verified": "green", "unsigned": "yellow"}
STATUS_STYLE = {"live": "bold green", "ended": "", "truncated": "yellow", "damaged": "bold red"}


def fmt_start(t: float, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Local time of a unix time ("-" when unknown, "?" when out of range)."""
    if not t:
        return "-"
    try:
        return dt.datetime.fromtimestamp(t).strftime(fmt)
    except (OverflowError, OSError, ValueError):
        return "?"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(max(seconds, 0))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s"


def highlight(text: str, term: str) -> Text:
    """``text`` with every case-insensitive occurrence of ``term`` highlighted."""
    out = Text(text)
    if term:
        out.highlight_words([term], "bold black on yellow", case_sensitive=False)
    return out


class FindScreen(Screen[None]):
    """Session list with instant filters."""

    BINDINGS = [
        Binding("slash", "focus_filter('f-text')", "Search"),
        Binding("u", "focus_filter('f-user')", "User"),
        Binding("t", "focus_filter('f-target')", "Target"),
        Binding("s", "focus_filter('f-since')", "Since"),
        Binding("escape", "focus_table", "List", show=False),
        Binding("r", "refresh", "Refresh"),
        Binding("a", "app.approvals", "Approvals"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, archive: Archive, clock: Callable[[], float]) -> None:
        super().__init__()
        self.archive = archive
        self.clock = clock
        self.rows: list[SessionRow] = []
        self.matches: dict[str, str] = {}
        self._debounce: Timer | None = None
        self.text_filter = ""

    def compose(self) -> ComposeResult:
        yield Static("bastille player: sessions", id="find-title")
        with Horizontal(id="filters"):
            yield Input(placeholder="user", id="f-user")
            yield Input(placeholder="target", id="f-target")
            yield Input(placeholder="since: 2h, 3d, A..B", id="f-since")
            yield Input(placeholder="/ search commands + screen", id="f-text")
        yield DataTable(id="sessions", cursor_type="row", zebra_stripes=True)
        yield Static("", id="find-status")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("start", key="start")
        table.add_column("user", key="user")
        table.add_column("target", key="target")
        table.add_column("dur", key="dur")
        table.add_column("cmds", key="cmds")
        table.add_column("pol", key="pol")
        table.add_column("status", key="status")
        table.add_column("integrity", key="integrity")
        table.add_column("id", key="id")
        table.focus()
        self.reload()

    # ------------------------------------------------------------------ filters

    def action_focus_filter(self, widget_id: str) -> None:
        self.query_one(f"#{widget_id}", Input).focus()

    def action_focus_table(self) -> None:
        self.query_one(DataTable).focus()

    def action_refresh(self) -> None:
        self.reload()

    @on(Input.Changed)
    def _changed(self, _event: Input.Changed) -> None:
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(0.15, self.reload)

    @on(Input.Submitted)
    def _submitted(self, _event: Input.Submitted) -> None:
        self.reload()
        self.query_one(DataTable).focus()

    def _filters(self) -> dict[str, object] | str:
        user = self.query_one("#f-user", Input).value.strip()
        target = self.query_one("#f-target", Input).value.strip()
        since_text = self.query_one("#f-since", Input).value.strip()
        text = self.query_one("#f-text", Input).value.strip()
        since: float | None = None
        until: float | None = None
        first, sep, second = since_text.partition("..")
        try:
            if first.strip():
                since = parse_when(first.strip(), now=self.clock())
            if sep and second.strip():
                until = parse_when(second.strip(), now=self.clock())
        except ValueError as exc:
            return str(exc)
        return {"user": user, "target": target, "since": since, "until": until, "text": text}

    def reload(self) -> None:
        """Query the index again with the current filters (in a worker)."""
        filters = self._filters()
        if isinstance(filters, str):
            self._status(filters, error=True)
            return
        self.text_filter = str(filters["text"])
        self._status("searching...")
        self._query(filters)

    @work(thread=True, exclusive=True, group="find-query")
    def _query(self, filters: dict[str, object]) -> None:
        worker = get_current_worker()
        try:
            rows = self.archive.sessions(limit=LIMIT, **filters)  # type: ignore[arg-type]
        except RecorderError as exc:
            self.app.call_from_thread(self._status, str(exc), True)
            return
        matches: dict[str, str] = {}
        text = str(filters["text"])
        if text:
            for r in rows[:VERIFY_ROWS]:
                hit = self.archive.first_match(r.id, text)
                if hit is not None:
                    matches[r.id] = f"{hit[1]} at {fmt_duration(hit[0])}: {hit[2].strip()}"
        if worker.is_cancelled:
            return
        self.app.call_from_thread(self._show_rows, rows, matches)
        batch: dict[str, str] = {}
        flushed = time.monotonic()
        for r in rows[:VERIFY_ROWS]:
            if worker.is_cancelled:
                return
            batch[r.id] = integrity_label(self.archive.verify(r))
            if len(batch) >= 50 or time.monotonic() - flushed > 0.25:
                self.app.call_from_thread(self._set_integrity, batch)
                batch, flushed = {}, time.monotonic()
        if batch and not worker.is_cancelled:
            self.app.call_from_thread(self._set_integrity, batch)

    # ------------------------------------------------------------------ table

    def _show_rows(self, rows: list[SessionRow], matches: dict[str, str]) -> None:
        self.rows = rows
        self.matches = matches
        table = self.query_one(DataTable)
        table.clear()
        for r in rows:
            dur = (r.end - r.start) if r.end else None
            table.add_row(
                fmt_start(r.start),
                r.user,
                r.target,
                fmt_duration(dur),
                str(r.commands),
                str(r.policy_events),
                Text(r.status, STATUS_STYLE.get(r.status, "")),
                "...",
                r.id,
                key=r.id,
            )
        n = len(rows)
        more = f" (first {LIMIT})" if n >= LIMIT else ""
        count = f"{n} session{'s' if n != 1 else ''}{more}"
        self.query_one("#find-title", Static).update(f"bastille player: {count}")
        self._status(count)
        self._describe_current()

    def _set_integrity(self, labels: dict[str, str]) -> None:
        table = self.query_one(DataTable)
        for i, (session_id, label) in enumerate(labels.items()):
            style = INTEGRITY_STYLE.get(label, "bold red")
            try:
                table.update_cell(
                    session_id, "integrity", Text(label, style), update_width=i == len(labels) - 1
                )
            except Exception:  # the row is gone (a newer query replaced the table)
                continue

    def _status(self, text: str, error: bool = False) -> None:
        widget = self.query_one("#find-status", Static)
        widget.update(Text(text, "bold red" if error else ""))

    @on(DataTable.RowHighlighted)
    def _highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._describe_current()

    def _describe_current(self) -> None:
        row = self.current_row()
        if row is None:
            return
        line = Text(f"{row.id}  {row.protocol}/{row.kind}  from {row.client}")
        hit = self.matches.get(row.id)
        if hit:
            line = Text("match ").append_text(highlight(hit, self.text_filter))
        elif row.command:
            line.append(f"  exec: {row.command}")
        self.query_one("#find-status", Static).update(line)

    def current_row(self) -> SessionRow | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row < 0 or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        from player.replay import ReplayScreen

        key = event.row_key.value
        if key:
            self.app.push_screen(ReplayScreen(self.archive, key, search=self.text_filter))
