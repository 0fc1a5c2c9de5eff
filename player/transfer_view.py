"""The transfer view: sessions that move files (sftp, scp, rsync) open as a list.

One row per file transfer (direction, path, size, sha256), file operation (remove,
mkdir, rename) and decision (denied or held paths); the lines below describe the
highlighted row completely. ``o`` opens the protocol trace (:class:`TraceScreen`: every
recorded chunk of the SFTP/SCP/rsync stream with its direction, size and bytes, as a
hex dump), ``r`` the terminal replay (what the client printed, for scp/rsync).

Reviews (``m``, ``a``, ``x``) and ``k`` work as in the replay; a note or flag is placed
at the highlighted row's time.

Known limits: the trace shows at most ``TRACE_ROWS`` chunks and the first
``DUMP_BYTES`` bytes of each; the recording holds the stream as the masker left it.
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from player.archive import Archive, SessionData, integrity_label
from player.details import active_flags, details_text, entry_details
from player.fmt import cell, fmt_offset, fmt_size, fmt_start, safe
from player.marks import look
from player.session_actions import SessionScreen
from recorder import events as ev
from recorder.errors import RecorderError
from recorder.timeline import Entry

TRACE_ROWS = 20_000
DUMP_BYTES = 1024
_SHOWN = ("transfer", "file_op", "denied", "held", "approved", "rejected", "expired", "allowed",
          "policy", "kill", "gap", "evasion", "marker", "exit")
_BAD_DATA = (RecorderError, ValueError, KeyError, TypeError, IndexError, OverflowError)


def hexdump(data: bytes, limit: int = DUMP_BYTES) -> str:
    """``offset  hex bytes  |ascii|`` lines of the first ``limit`` bytes."""
    out = []
    for off in range(0, min(len(data), limit), 16):
        chunk = data[off : off + 16]
        hexpart = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        out.append(f"{off:06x}  {hexpart:<47}  |{text}|")
    if len(data) > limit:
        out.append(f"... {len(data) - limit} more bytes")
    return "\n".join(out)


class TransferScreen(SessionScreen):
    """A transfer-only session as a list of what moved."""

    AUTO_FOCUS = "#transfers"

    class OpenTrace(Message):
        """Show the protocol trace of a session."""

        def __init__(self, session_id: str) -> None:
            super().__init__()
            self.session_id = session_id

    class OpenReplay(Message):
        """Show the terminal replay of a session (whatever kind it is)."""

        def __init__(self, session_id: str) -> None:
            super().__init__()
            self.session_id = session_id

    BINDINGS = [
        Binding("o", "trace", "Protocol trace"),
        Binding("r", "replay", "Terminal"),
        *SessionScreen.REVIEW_BINDINGS,
        Binding("escape,q", "back", "Back"),
    ]

    def __init__(self, archive: Archive, session_id: str, *, standalone: bool = False) -> None:
        super().__init__(archive, session_id)
        self.standalone = standalone
        self.rows: list[Entry] = []
        self.integrity = "..."
        self.error = ""

    def compose(self) -> ComposeResult:
        yield Static("loading...", id="transfer-title")
        table: DataTable[Text | str] = DataTable(id="transfers", cursor_type="row")
        yield table
        yield Static("", id="transfer-detail")
        yield self.kill_box()
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        table = self.query_one("#transfers", DataTable)
        for name in ("time", "m", "what", "path", "size", "sha256"):
            table.add_column(name, key=name)
        self._load()

    @work(thread=True, exclusive=True, group="transfer-load")
    def _load(self) -> None:
        try:
            data = self.archive.open(self.session_id)
        except _BAD_DATA as exc:
            self.app.call_from_thread(self._failed, f"cannot open {self.session_id}: {exc}")
            return
        self.app.call_from_thread(self._loaded, data)
        if data.row is not None:
            label = integrity_label(self.archive.verify(data.row), live=data.live)
            self.app.call_from_thread(self._set_integrity, label)

    def _failed(self, message: str) -> None:
        self.error = message
        self.query_one("#transfer-title", Static).update(cell(message, style="bold red"))

    def _loaded(self, data: SessionData) -> None:
        self.data = data
        self._show()

    def _set_integrity(self, label: str) -> None:
        self.integrity = label
        self._title()

    def _title(self) -> None:
        d = self.data
        if d is None:
            return
        h = d.rec.header
        title = Text(no_wrap=True, overflow="ellipsis")
        title.append(safe(f"{h.get('user', '')}@{h.get('target', '')}", 60))
        title.append(f" {safe(d.kind, 12)} {fmt_start(d.rec.start_time, '%Y-%m-%d %H:%M:%S')}"
                     f"  {len([e for e in d.entries if e.kind == 'transfer'])} transfer(s)  ")
        title.append("live" if d.live else d.rec.status,
                     "bold green" if d.live else ("" if d.rec.status == "ended" else "bold red"))
        title.append("  ")
        title.append("chain intact so far" if self.integrity == "live" else self.integrity,
                     "green" if self.integrity in ("verified", "live") else
                     ("yellow" if self.integrity in ("unsigned", "...") else "bold red"))
        summary = d.review_summary
        if summary.reviewed_by:
            title.append("  reviewed by " + safe(", ".join(summary.reviewed_by), 40), "green")
        if summary.flags:
            title.append(f"  {summary.flags} flag(s)", "bold white on blue")
        self.query_one("#transfer-title", Static).update(title)

    def _show(self) -> None:
        d = self.data
        if d is None:
            return
        self._title()
        flagged = {r.entry for r in active_flags(d.reviews).values() if r.entry}
        table = self.query_one("#transfers", DataTable)
        keep = table.cursor_row
        table.clear()
        self.rows = [e for e in d.entries if e.kind in _SHOWN]
        for i, e in enumerate(self.rows):
            f = e.fields
            lk = look(e.kind)
            what = Text()
            if e.key in flagged:
                what.append("F ", look("flag").style)
            if e.kind == "transfer":
                what.append(safe(f.get("direction", ""), 12))
                path = cell(f.get("path", ""), 200)
                size = fmt_size(f.get("size"))
                sha = cell(f.get("sha256") or "(not in order)", 64)
            elif e.kind == "file_op":
                what.append(safe(f.get("op", ""), 12))
                new = f" -> {f.get('new_path')}" if f.get("new_path") else ""
                path = cell(f"{f.get('path', '')}{new}", 200)
                size, sha = "", Text("")
            else:
                what.append(lk.label)
                path = cell(e.text, 200)
                size, sha = "", Text("")
            table.add_row(fmt_offset(e.time), Text(lk.glyph, lk.style), what, path, size, sha,
                          key=str(i))
        if not self.rows:
            self.query_one("#transfer-detail", Static).update(
                "no file was transferred in this session (o: protocol trace)")
        elif 0 <= keep < len(self.rows):
            table.move_cursor(row=keep)
        self._describe()

    @on(DataTable.RowHighlighted, "#transfers")
    def _highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._describe()

    def _current(self) -> Entry | None:
        table = self.query_one("#transfers", DataTable)
        row = table.cursor_row
        return self.rows[row] if self.rows and 0 <= row < len(self.rows) else None

    def _describe(self) -> None:
        e = self._current()
        if e is None:
            return
        self.position = e.time
        self.query_one("#transfer-detail", Static).update(details_text(entry_details(e)))

    def _flag_target(self) -> tuple[float, str | None]:
        e = self._current()
        return (e.time, e.key) if e is not None else (self.position, None)

    def _reviews_changed(self) -> None:
        self._show()

    def action_trace(self) -> None:
        self.post_message(self.OpenTrace(self.session_id))

    def action_replay(self) -> None:
        self.post_message(self.OpenReplay(self.session_id))

    def action_back(self) -> None:
        if self.close_kill_box():
            return
        if self.standalone:
            self.app.exit(0)
        else:
            self.app.pop_screen()


class TraceScreen(Screen[None]):
    """The recorded byte stream of a session, chunk by chunk, with a hex dump."""

    AUTO_FOCUS = "#trace"
    BINDINGS = [Binding("escape,q", "back", "Back")]

    def __init__(self, archive: Archive, session_id: str) -> None:
        super().__init__()
        self.archive = archive
        self.session_id = session_id
        self.chunks: list[tuple[float, int, int, bytes]] = []
        self.total = 0

    def compose(self) -> ComposeResult:
        yield Static(f"protocol trace of {safe(self.session_id, 80)}: loading...",
                     id="trace-title", markup=False)
        table: DataTable[Text | str] = DataTable(id="trace", cursor_type="row")
        yield table
        yield Static("", id="trace-dump", markup=False)
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        table = self.query_one("#trace", DataTable)
        for name in ("time", "direction", "bytes", "start"):
            table.add_column(name, key=name)
        self._load()

    @work(thread=True, exclusive=True, group="trace-load")
    def _load(self) -> None:
        try:
            data = self.archive.open(self.session_id)
            chunks: list[tuple[float, int, int, bytes]] = []
            total = 0
            for e in data.rec.events((ev.OUTPUT, ev.STDERR, ev.INPUT)):
                total += 1
                if len(chunks) < TRACE_ROWS:
                    chunks.append((e.time, e.type, len(e.data), e.data[:DUMP_BYTES]))
        except _BAD_DATA as exc:
            self.app.call_from_thread(self._title, f"cannot read {self.session_id}: {exc}")
            return
        self.app.call_from_thread(self._show, chunks, total)

    def _title(self, text: str) -> None:
        self.query_one("#trace-title", Static).update(cell(text))

    def _show(self, chunks: list[tuple[float, int, int, bytes]], total: int) -> None:
        self.chunks, self.total = chunks, total
        table = self.query_one("#trace", DataTable)
        names = {ev.OUTPUT: "target -> user", ev.STDERR: "target -> user (stderr)",
                 ev.INPUT: "user -> target"}
        for i, (t, typ, size, data) in enumerate(chunks):
            preview = data[:16].hex(" ")
            table.add_row(fmt_offset(t), names.get(typ, str(typ)), str(size), preview,
                          key=str(i))
        more = f" (first {len(chunks)})" if total > len(chunks) else ""
        self._title(f"protocol trace of {self.session_id}: {total} chunks{more}")
        self._dump()

    @on(DataTable.RowHighlighted, "#trace")
    def _highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._dump()

    def _dump(self) -> None:
        table = self.query_one("#trace", DataTable)
        row = table.cursor_row
        if not self.chunks or not 0 <= row < len(self.chunks):
            return
        _t, _typ, size, data = self.chunks[row]
        dump = hexdump(data)
        if size > len(data):
            dump += f"\n... {size - len(data)} more bytes"
        self.query_one("#trace-dump", Static).update(Text(dump))

    def action_back(self) -> None:
        self.app.pop_screen()
