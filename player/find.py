"""The Find screen: every recorded session, filtered as you type.

Columns: start (``MM-DD HH:MM`` when every row is of this year, else ``YY-MM-DD
HH:MM``; the line under the table has the full date), user, target, kind, duration,
commands/policy decisions (``5/1``), status, review (``F2`` flags raised, ``ok:NAME``
reviewed), integrity, id. They fit 80 columns up to the integrity; the id is also in the
line under the table.

Filters: user, target, kind (``shell``, ``exec``, ``sftp``, ``scp``, ``rsync``,
``desktop`` for RDP, ``player``; ``transfer`` means sftp, scp and rsync; several
separated by commas), time (``2h``, ``3d``, ``2026-11-24T10:00``, or a range ``A..B``
where either side may be empty; ``B`` is exclusive), review state (``v`` cycles: all,
unreviewed, flagged) and full-text search over commands and screen text (the
recorder's FTS5 index). Index queries, review summaries and integrity checks run in
worker threads; the table is updated when they finish, so a large archive never blocks
typing. The integrity column is filled for the first ``VERIFY_ROWS`` rows of a result
(verifying reads the whole recording).

Opening a session posts :class:`FindScreen.Open`; the app decides which screen shows it
(the replay, or the transfer view for sftp/scp/rsync sessions).

Known limits: at most ``LIMIT`` sessions are listed per query (newest first); with a
kind or review filter, the newest ``LIMIT * SCAN_FACTOR`` sessions matching the other
filters are scanned. The user and target filters are exact matches (as in ``bastille
sessions list``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input, Static
from textual.worker import get_current_worker

from player.archive import Archive, integrity_label, is_transfer_only, session_kind
from player.fmt import cell, fmt_duration, fmt_start, highlight, parse_range, safe
from recorder.errors import RecorderError
from recorder.index import SessionRow
from state.reviews import Summary

LIMIT = 1000  # rows per query: a screenful is ~20, more is for scrolling
SCAN_FACTOR = 10  # with a kind or review filter, this many times LIMIT rows are scanned
VERIFY_ROWS = 200  # integrity is computed for the first rows of a result only
INTEGRITY_STYLE = {"verified": "green", "unsigned": "yellow", "live": "bold green"}
STATUS_STYLE = {"live": "bold green", "ended": "", "truncated": "yellow", "damaged": "bold red"}
REVIEW_FILTERS = ("all", "unreviewed", "flagged")
KIND_ALIASES = {"transfer": ("sftp", "scp", "rsync"), "rdp": ("desktop",), "ssh": ("shell",)}


def kind_filter(text: str) -> frozenset[str]:
    """``sftp,scp`` / ``transfer`` -> the set of kinds to keep (empty: all)."""
    out: set[str] = set()
    for word in text.replace(" ", ",").split(","):
        word = word.strip().lower()
        if word:
            out.update(KIND_ALIASES.get(word, (word,)))
    return frozenset(out)


def review_cell(summary: Summary | None) -> Text:
    """``F2 ok:bob``: flags raised, who reviewed; ``!`` when records fail their checks."""
    out = Text(no_wrap=True)
    if summary is None:
        return out
    if summary.flags:
        out.append(f"F{summary.flags}", "bold white on blue")
        out.append(" ")
    if summary.reviewed_by:
        out.append("ok:" + safe(summary.reviewed_by[-1], 12), "green")
    if summary.problems:
        out.append(" !", "bold red")
    return out


class FindScreen(Screen[None]):
    """Session list with instant filters."""

    class Open(Message):
        """Open a session (``search``: jump to the first hit of this text)."""

        def __init__(self, session_id: str, *, search: str = "",
                     transfer_only: bool = False) -> None:
            super().__init__()
            self.session_id = session_id
            self.search = search
            self.transfer_only = transfer_only

    BINDINGS = [
        Binding("slash", "focus_filter('f-text')", "Search"),
        Binding("u", "focus_filter('f-user')", "User"),
        Binding("t", "focus_filter('f-target')", "Target"),
        Binding("k", "focus_filter('f-kind')", "Kind"),
        Binding("s", "focus_filter('f-since')", "Since"),
        Binding("v", "review_filter", "Reviews"),
        Binding("escape", "focus_table", "List", show=False),
        Binding("r", "refresh", "Refresh", show=False),
        Binding("a", "app.approvals", "Approvals"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, archive: Archive, clock: Callable[[], float]) -> None:
        super().__init__()
        self.archive = archive
        self.clock = clock
        self.rows: list[SessionRow] = []
        self.matches: dict[str, str] = {}
        self.reviews: dict[str, Summary] = {}
        self._debounce: Timer | None = None
        self.text_filter = ""
        self.review_filter = "all"

    def compose(self) -> ComposeResult:
        yield Static("bastille player: sessions", id="find-title")
        with Horizontal(id="filters"):
            yield Input(placeholder="user", id="f-user")
            yield Input(placeholder="target", id="f-target")
            yield Input(placeholder="kind", id="f-kind")
            yield Input(placeholder="since: 2h, 3d, A..B", id="f-since")
            yield Input(placeholder="/ search commands + screen", id="f-text")
        yield DataTable(id="sessions", cursor_type="row", zebra_stripes=True)
        yield Static("", id="find-status")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label in (("start", "start"), ("user", "user"), ("target", "target"),
                           ("kind", "kind"), ("dur", "dur"), ("cmds", "cmds"),
                           ("status", "status"), ("review", "review"),
                           ("integrity", "integrity"), ("id", "id")):
            table.add_column(label, key=key)
        table.focus()
        self.reload()

    # ------------------------------------------------------------------ filters

    def action_focus_filter(self, widget_id: str) -> None:
        self.query_one(f"#{widget_id}", Input).focus()

    def action_focus_table(self) -> None:
        self.query_one(DataTable).focus()

    def action_refresh(self) -> None:
        self.reload()

    def action_review_filter(self) -> None:
        i = REVIEW_FILTERS.index(self.review_filter)
        self.review_filter = REVIEW_FILTERS[(i + 1) % len(REVIEW_FILTERS)]
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
        try:
            since, until = parse_range(since_text, self.clock())
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
        kinds = kind_filter(self.query_one("#f-kind", Input).value)
        self._status("searching...")
        self._query(filters, kinds, self.review_filter)

    @work(thread=True, exclusive=True, group="find-query")
    def _query(self, filters: dict[str, object], kinds: frozenset[str], review: str) -> None:
        worker = get_current_worker()
        scan = LIMIT * SCAN_FACTOR if kinds or review != "all" else LIMIT
        try:
            rows = self.archive.sessions(limit=scan, **filters)  # type: ignore[arg-type]
        except RecorderError as exc:
            self.app.call_from_thread(self._status, str(exc), True)
            return
        if kinds:
            rows = [r for r in rows if r.kind in kinds or session_kind(r.kind, r.command) in kinds]
        reviews = self.archive.review_summaries([r.id for r in rows])
        if review == "unreviewed":
            rows = [r for r in rows if r.id not in reviews or not reviews[r.id].reviewed]
        elif review == "flagged":
            rows = [r for r in rows if r.id in reviews and reviews[r.id].flags]
        rows = rows[:LIMIT]
        matches: dict[str, str] = {}
        text = str(filters["text"])
        if text:
            for r in rows[:VERIFY_ROWS]:
                hit = self.archive.first_match(r.id, text)
                if hit is not None:
                    matches[r.id] = f"{hit[1]} at {fmt_duration(hit[0])}: {hit[2].strip()}"
        if worker.is_cancelled:
            return
        self.app.call_from_thread(self._show_rows, rows, matches, reviews)
        batch: dict[str, str] = {}
        flushed = time.monotonic()
        for r in rows[:VERIFY_ROWS]:
            if worker.is_cancelled:
                return
            batch[r.id] = integrity_label(self.archive.verify(r), live=r.status == "live")
            if len(batch) >= 50 or time.monotonic() - flushed > 0.25:
                self.app.call_from_thread(self._set_integrity, batch)
                batch, flushed = {}, time.monotonic()
        if batch and not worker.is_cancelled:
            self.app.call_from_thread(self._set_integrity, batch)

    # ------------------------------------------------------------------ table

    def _show_rows(self, rows: list[SessionRow], matches: dict[str, str],
                   reviews: dict[str, Summary]) -> None:
        self.rows = rows
        self.matches = matches
        self.reviews = reviews
        table = self.query_one(DataTable)
        table.clear()
        year = fmt_start(self.clock(), "%Y")
        start_fmt = "%m-%d %H:%M" if all(fmt_start(r.start, "%Y") == year for r in rows) \
            else "%y-%m-%d %H:%M"
        for r in rows:
            dur = (r.end - r.start) if r.end else None
            table.add_row(
                fmt_start(r.start, start_fmt),
                cell(r.user, 16),
                cell(r.target, 20),
                cell(session_kind(r.kind, r.command), 8),
                fmt_duration(dur),
                Text(f"{r.commands}/{r.policy_events}",
                     "bold" if r.policy_events else ""),
                Text(r.status, STATUS_STYLE.get(r.status, "")),
                review_cell(reviews.get(r.id)),
                "...",
                cell(r.id, 40),
                key=r.id,
            )
        n = len(rows)
        more = f" (first {LIMIT})" if n >= LIMIT else ""
        count = f"{n} session{'s' if n != 1 else ''}{more}"
        shown = "" if self.review_filter == "all" else f", {self.review_filter}"
        self.query_one("#find-title", Static).update(
            Text(f"bastille player: {count}{shown}"))
        self._status(count + shown)
        self._describe_current()

    def _set_integrity(self, labels: dict[str, str]) -> None:
        table = self.query_one(DataTable)
        # The column is resized once per batch, on the widest label: resizing on any
        # other would leave it narrower than a label of this batch (and the width would
        # depend on how verification happened to be split into batches).
        widest = max(labels, key=lambda k: len(labels[k]), default=None)
        for session_id, label in labels.items():
            style = INTEGRITY_STYLE.get(label, "bold red")
            try:
                table.update_cell(
                    session_id, "integrity", Text(label, style),
                    update_width=session_id == widest,
                )
            except Exception:  # the row is gone (a newer query replaced the table)
                continue

    def _status(self, text: str, error: bool = False) -> None:
        widget = self.query_one("#find-status", Static)
        widget.update(cell(text, style="bold red" if error else ""))

    @on(DataTable.RowHighlighted)
    def _highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._describe_current()

    def _describe_current(self) -> None:
        row = self.current_row()
        if row is None:
            return
        line = Text(f"{safe(row.id, 40)}  {fmt_start(row.start, '%Y-%m-%d %H:%M:%S')}  "
                    f"{safe(row.protocol, 8)}/{safe(session_kind(row.kind, row.command), 8)}"
                    f"  from {safe(row.client, 60)}", no_wrap=True, overflow="ellipsis")
        summary = self.reviews.get(row.id)
        if summary is not None and summary.reviewed_by:
            line.append("  reviewed by " + safe(", ".join(summary.reviewed_by), 60), "green")
        if summary is not None and summary.flags:
            line.append(f"  {summary.flags} flag(s)", "bold white on blue")
        hit = self.matches.get(row.id)
        if hit:
            line = Text("match ").append_text(highlight(safe(hit, 300), self.text_filter))
        elif row.command:
            line.append(f"  exec: {safe(row.command, 200)}")
        self.query_one("#find-status", Static).update(line)

    def current_row(self) -> SessionRow | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row < 0 or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        row = next((r for r in self.rows if r.id == key), None)
        if key:
            self.post_message(self.Open(
                key, search=self.text_filter,
                transfer_only=row is not None and is_transfer_only(row.kind, row.command)))
