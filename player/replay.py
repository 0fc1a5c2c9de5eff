"""The Replay screen: one recorded session played back beside its timeline panel.

Keys (the footer shows the main ones; docs/player.md has them all): space play/pause,
+/- speed (0.25x-16x), i skip idle time, left/right -/+5 s, home/end, g go to a time,
n/p next/previous command, >/< next/previous timeline event, ./, next/previous output
chunk, / search in the session, ]/[ next/previous hit, t timeline panel on/off, tab
focus the panel (enter jumps there), pageup/pagedown scrollback, shift+arrows pan, c
copy the screen, y copy the current command, f follow a live session, m mark reviewed,
a add a note, x flag, k kill a live session, escape back.

All seeking and pyte feeding runs in one worker thread at a time; the UI thread only
shows finished frames. When the worker falls behind (very fast playback of heavy
output), frames are skipped, never queued.

A recorded terminal larger than the space for it is panned, never squeezed: the view
follows the cursor, shift+arrows move it, and the status line says which columns and
rows are shown. While paused, pageup enters the scrollback (the lines that scrolled off
the top, recovered by :func:`player.cursor.scrollback`); escape or playing leaves it.

Live sessions are followed as they happen (``f`` toggles): every ``LIVE_REFRESH``
seconds the recording is reopened and, while following, the view jumps to its end; the
flush interval of the gateway's recorder (~1 s) bounds how fresh it is.

Known limits: the same as :mod:`player.cursor` (burst sampling); following reopens the
recording and rebuilds its keyframes each time (they are only cached for finished
recordings), so following a very long live session costs CPU.
"""

from __future__ import annotations

import bisect
import os
import stat
import tempfile
import time
from pathlib import Path

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, ScrollableContainer, Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Static

from player.archive import Archive, Mark, SessionData, integrity_label
from player.cursor import Cursor, scrollback
from player.events_panel import EventsPanel
from player.fmt import cell, fmt_clock, fmt_start, parse_time, safe
from player.playback import PlaybackScreen
from player.render import Frame, make_frame
from player.session_actions import SessionScreen
from player.terminal_view import TerminalView
from player.timeline import Timeline
from recorder.errors import RecorderError

TICK = 0.1  # seconds between playback frames (10 fps is plenty for a terminal)
LIVE_REFRESH = 1.5  # seconds between reloads of a live session
IDLE_LIMIT = 1.0  # with idle skipping, a pause longer than this is cut short
SEEK_STEP = 5.0
PANEL_WIDTH = 40  # the timeline panel is shown at start when the terminal fits beside it
PANEL_MAX = 72
PAN_COLS, PAN_ROWS = 8, 4
# malformed recordings or keyframe caches: reported on screen, never a crash
_BAD_DATA = (RecorderError, ValueError, KeyError, TypeError, IndexError, OverflowError)


def copy_dir() -> Path:
    """Where copies are also written: a directory private to this user (0700).

    Raises:
        OSError: it cannot be created, or it exists but is not ours or not private
            (someone else could read what is copied, or plant a symlink there).
    """
    base = Path(os.environ.get("BASTILLE_PLAYER_COPY_DIR") or tempfile.gettempdir())
    path = base / f"bastille-player-{os.getuid()}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise OSError(f"{path} is not a private directory of this user")
    return path


class GotoScreen(ModalScreen[float | None]):
    """Asks for a time to go to."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, now: float) -> None:
        super().__init__()
        self.now = now

    def compose(self) -> ComposeResult:
        with Vertical(id="goto"):
            yield Label("Go to time (90, 1:30, 1:02:03, +30, -10):")
            yield Input(placeholder=fmt_clock(self.now), id="goto-input")
            yield Static("", id="goto-error")

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        value = parse_time(event.value, self.now)
        if value is None:
            self.query_one("#goto-error", Static).update(
                cell(f"not a time: {event.value!r}", style="bold red"))
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ReplayScreen(PlaybackScreen):
    """Plays one session (``standalone``: opened from the command line, back quits)."""

    AUTO_FOCUS = ""  # keys go to the screen's bindings, not to a widget

    BINDINGS = [
        Binding("space", "toggle_play", "Play"),
        Binding("left", "seek(-5)", "-5s", show=False),
        Binding("right", "seek(5)", "+5s", show=False),
        Binding("plus,equals_sign", "speed(1)", "Speed+", show=False),
        Binding("minus", "speed(-1)", "Speed-", show=False),
        Binding("i", "toggle_idle", "Idle", show=False),
        Binding("n", "command(1)", "Cmd+"),
        Binding("p", "command(-1)", "Cmd-", show=False),
        Binding("greater_than_sign", "event(1)", "Event+", show=False),
        Binding("less_than_sign", "event(-1)", "Event-", show=False),
        Binding("full_stop", "chunk(1)", "Step+", show=False),
        Binding("comma", "chunk(-1)", "Step-", show=False),
        Binding("t", "toggle_panel", "Timeline"),
        Binding("slash", "search", "Find"),
        Binding("right_square_bracket", "hit(1)", "Hit+", show=False),
        Binding("left_square_bracket", "hit(-1)", "Hit-", show=False),
        Binding("g", "goto", "Go to", show=False),
        Binding("pageup", "scrollback(-1)", "Scrollback", show=False),
        Binding("pagedown", "scrollback(1)", "Scroll down", show=False),
        Binding("shift+left", "pan(-1,0)", "Pan", show=False),
        Binding("shift+right", "pan(1,0)", "Pan", show=False),
        Binding("shift+up", "pan(0,-1)", "Pan", show=False),
        Binding("shift+down", "pan(0,1)", "Pan", show=False),
        Binding("c", "copy_screen", "Copy", show=False),
        Binding("y", "copy_command", "Yank cmd", show=False),
        Binding("home", "jump(0)", "Start", show=False),
        Binding("end", "jump(1)", "End", show=False),
        Binding("f", "follow", "Follow", show=False),
        *SessionScreen.REVIEW_BINDINGS,
        Binding("escape,q", "back", "Back"),
    ]

    def __init__(
        self, archive: Archive, session_id: str, *, search: str = "", standalone: bool = False
    ) -> None:
        super().__init__(archive, session_id)
        self.standalone = standalone
        self.cursor: Cursor | None = None
        self.search_text = search
        self.hits: list[Mark] = []
        self.integrity = "..."
        self.error = ""
        self._busy = False
        self._want: float | None = None
        self._last_tick = time.monotonic()
        self.last_copy: Path | None = None
        self.following = False
        self._reloading = False
        self.in_scrollback = False
        self.panel_visible: bool | None = None  # None: decided when the session is loaded

    def compose(self) -> ComposeResult:
        yield Static("loading...", id="replay-title")
        with Horizontal(id="replay-body"):
            with ScrollableContainer(id="screen-box", can_focus=False):
                yield TerminalView(id="term")
            panel = EventsPanel(id="events-panel")
            panel.display = False
            yield panel
        yield Timeline(id="timeline")
        yield Static("", id="replay-status")
        box = Input(placeholder="search in this session (enter)", id="replay-search")
        box.display = False
        yield box
        yield self.kill_box()
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.set_interval(TICK, self._tick)
        self.set_interval(LIVE_REFRESH, self._refresh_live)
        self._load()

    # ------------------------------------------------------------------ loading

    @work(thread=True, exclusive=True, group="replay-load")
    def _load(self) -> None:
        try:
            data = self.archive.open(self.session_id)
            cursor = Cursor(data)
            frame = make_frame(cursor.term, highlight=self.search_text)
        except _BAD_DATA as exc:
            self.app.call_from_thread(self._failed, f"cannot replay {self.session_id}: {exc}")
            return
        try:
            hits = self.archive.search(data, self.search_text) if self.search_text else []
        except RecorderError as exc:  # the index failed: the replay still works
            self.app.call_from_thread(self.notify, safe(exc), severity="warning", markup=False)
            hits = []
        self.app.call_from_thread(self._loaded, data, cursor, frame, hits)
        label = "unknown"
        if data.row is not None:
            label = integrity_label(self.archive.verify(data.row), live=data.live)
        self.app.call_from_thread(self._set_integrity, label)

    def _failed(self, message: str) -> None:
        self.error = message
        self.query_one("#replay-title", Static).update(cell(message, style="bold red"))
        self.notify(safe(message), severity="error", markup=False)

    def _loaded(self, data: SessionData, cursor: Cursor, frame: Frame, hits: list[Mark]) -> None:
        self.data = data
        self.cursor = cursor
        self.hits = hits
        panel = self.query_one(EventsPanel)
        if self.panel_visible is None:
            cols = data.rec.size[0]
            self.panel_visible = self.app.size.width >= cols + PANEL_WIDTH
        panel.display = self.panel_visible
        self._size_panel()
        self._show_panel()
        self._show_frame(frame)
        self._update_title()
        self._update_status()
        if hits:
            self._goto(hits[0].time)
        elif data.live:
            self.following = True
            self._goto(data.duration)
        approver = self._approver()
        if data.live and data.row is not None and approver.on_watch is not None:
            approver.on_watch(data.row.id)  # watching a live session is audited
        if self.archive.review_error:
            self.notify(safe(self.archive.review_error), severity="warning", markup=False)

    def _show_panel(self) -> None:
        d = self.data
        if d is None:
            return
        panel = self.query_one(EventsPanel)
        panel.set_events(d.entries, d.reviews)
        panel.follow(self.position)

    def _reviews_changed(self) -> None:
        self._show_panel()
        self._update_title()
        self._update_status()

    # ------------------------------------------------------------------ live sessions

    def _refresh_live(self) -> None:
        d = self.data
        if d is None or self._reloading or not d.live:
            return
        self._reloading = True
        self._reload()

    @work(thread=True, exclusive=True, group="replay-reload")
    def _reload(self) -> None:
        try:
            data = self.archive.open(self.session_id)
            cursor = Cursor(data)
        except _BAD_DATA:
            self.app.call_from_thread(self._reloaded, None, None)
            return
        self.app.call_from_thread(self._reloaded, data, cursor)

    def _reloaded(self, data: SessionData | None, cursor: Cursor | None) -> None:
        self._reloading = False
        old = self.data
        if data is None or cursor is None or old is None:
            return
        ended = not data.live
        if data.duration <= old.duration and not ended and \
                len(data.entries) == len(old.entries):
            return
        at_end = self.position >= old.duration - 0.5
        self.data, self.cursor = data, cursor
        self._show_panel()
        self._update_title()
        self._goto(data.duration if self.following and at_end else self.position)
        if ended:
            self.following = False
            self.notify("the session has ended")
            if data.row is not None:
                self._recheck(data)

    @work(thread=True, exclusive=True, group="replay-verify")
    def _recheck(self, data: SessionData) -> None:
        if data.row is not None:
            label = integrity_label(self.archive.verify(data.row), live=data.live)
            self.app.call_from_thread(self._set_integrity, label)

    def action_follow(self) -> None:
        d = self.data
        if d is None or not d.live:
            self.notify("only a live session can be followed", severity="warning")
            return
        self.following = not self.following
        if self.following:
            self.playing = False
            self._goto(d.duration)
        self._update_status()

    def _set_integrity(self, label: str) -> None:
        self.integrity = label
        self._update_title()

    def _update_title(self) -> None:
        d = self.data
        if d is None:
            return
        h = d.rec.header
        start = fmt_start(d.rec.start_time, "%Y-%m-%d %H:%M:%S")
        style = ("green" if self.integrity in ("verified", "live") else
                 ("yellow" if self.integrity in ("unsigned", "...") else "bold red"))
        title = Text(no_wrap=True, overflow="ellipsis")
        title.append(safe(f"{h.get('user', '')}@{h.get('target', '')}", 60))
        title.append(f" {safe(h.get('protocol', ''), 10)}/{safe(d.kind, 12)} {start}  ")
        if d.live:
            title.append("live", "bold green")
        else:
            status = d.rec.status
            title.append(status, "" if status == "ended" else "bold red")
        title.append("  ")
        title.append("chain intact so far" if self.integrity == "live" else self.integrity,
                     style)
        summary = d.review_summary
        if summary.reviewed_by:
            title.append("  reviewed by " + safe(", ".join(summary.reviewed_by), 40), "green")
        if summary.flags:
            title.append(f"  {summary.flags} flag{'s' if summary.flags != 1 else ''}",
                         "bold white on blue")
        if summary.problems:
            title.append(f"  {summary.problems} review record(s) fail their checks", "bold red")
        if not d.live:
            for p in d.rec.problems[:1]:
                title.append(f"  {safe(p, 200)}", "yellow")
        self.query_one("#replay-title", Static).update(title)

    def _view_indicator(self) -> Text | None:
        """Which part of the recorded terminal is shown, when not all of it is."""
        box = self.query_one("#screen-box", ScrollableContainer)
        view = self.query_one(TerminalView)
        cols, rows = view.term_size
        w, h = box.size.width, box.size.height
        if self.in_scrollback:
            top = int(box.scroll_y)
            return Text(f" scrollback: lines {top + 1}-{min(top + h, rows)} of {rows} "
                        "(pgup/pgdn, esc) ", "bold black on cyan")
        if not w or not h or (cols <= w and rows <= h):
            return None
        x, y = int(box.scroll_x), int(box.scroll_y)
        return Text(f" view cols {x + 1}-{min(x + w, cols)}/{cols} rows "
                    f"{y + 1}-{min(y + h, rows)}/{rows} (shift+arrows) ",
                    "bold black on yellow")

    def _update_status(self) -> None:
        d = self.data
        if d is None:
            return
        state = "following" if self.following else ("playing" if self.playing else "paused")
        idle = "skip-idle" if self.skip_idle else "real-time"
        line = Text(
            f"{fmt_clock(self.position)}/{fmt_clock(d.duration)} {state} {self.speed:g}x {idle}",
            no_wrap=True, overflow="ellipsis")
        indicator = self._view_indicator()
        if indicator is not None:
            line.append(" ")
            line.append_text(indicator)
        if self.hits:
            line.append(f"  {len(self.hits)} hits", "yellow")
        if d.rec.header.get("protocol") == "rdp":
            line.append("  RDP: the desktop is not drawn here (bastille export --format mp4)",
                        "yellow")
        cmd = d.command_at(self.position)
        if cmd is not None:
            line.append("  $ " + safe(cmd.fields.get("command", ""), 200), "cyan")
        self.query_one("#replay-status", Static).update(line)
        self.query_one(Timeline).update_state(d.duration, self.position, [*d.marks, *self.hits])
        self.query_one(EventsPanel).follow(self.position)

    # ------------------------------------------------------------------ moving

    def _goto(self, t: float) -> None:
        """Show the screen at session time ``t`` (asynchronously; latest request wins)."""
        if self.data is None:
            return
        self.in_scrollback = False
        self._want = min(max(t, 0.0), self.data.duration)
        self.position = self._want
        self._update_status()
        if not self._busy:
            self._start_render()

    def _start_render(self) -> None:
        if self._want is None:
            return
        t, self._want = self._want, None
        self._busy = True
        self._render_at(t)

    @work(thread=True, group="replay-render")
    def _render_at(self, t: float) -> None:
        cursor = self.cursor
        if cursor is None:
            return
        try:
            with cursor.lock:
                cursor.advance(t)
                frame = make_frame(cursor.term, highlight=self.search_text)
        except _BAD_DATA as exc:
            self.app.call_from_thread(self._failed, f"cannot replay {self.session_id}: {exc}")
            frame = None
        self.app.call_from_thread(self._rendered, frame)

    def _rendered(self, frame: Frame | None) -> None:
        self._busy = False
        if frame is not None and not self.in_scrollback:
            self._show_frame(frame)
        if self._want is not None:
            self._start_render()

    def _show_frame(self, frame: Frame) -> None:
        self.query_one(TerminalView).show(frame)
        self.call_after_refresh(self._follow_cursor, frame)

    def _follow_cursor(self, frame: Frame) -> None:
        """Pan so that the cursor is visible (the recorded terminal may be larger)."""
        box = self.query_one("#screen-box", ScrollableContainer)
        w, h = box.size.width, box.size.height
        x, y = frame.cursor
        if frame.history:
            box.scroll_to(y=max(0, frame.size[1] - h), animate=False)
        else:
            if h and not box.scroll_y <= y < box.scroll_y + h:
                box.scroll_to(y=max(0, y - h + 1), animate=False)
            if w and not box.scroll_x <= x < box.scroll_x + w:
                box.scroll_to(x=max(0, x - w + 1), animate=False)
        self._update_status()

    def on_resize(self, _event: events.Resize) -> None:
        self._size_panel()
        self._update_status()

    def _size_panel(self) -> None:
        """The panel takes what the recorded terminal leaves (PANEL_WIDTH to
        PANEL_MAX columns); when nothing is left it takes PANEL_WIDTH and the terminal
        is panned."""
        d = self.data
        if d is None:
            return
        spare = self.app.size.width - d.rec.size[0]
        width = min(spare, PANEL_MAX) if spare >= PANEL_WIDTH else PANEL_WIDTH
        self.query_one(EventsPanel).styles.width = width

    def _tick(self) -> None:
        now = time.monotonic()
        elapsed, self._last_tick = now - self._last_tick, now
        d = self.data
        if not self.playing or d is None or self._busy:
            return
        t = self.position + elapsed * self.speed
        if self.skip_idle:
            i = bisect.bisect_right(d.output_times, self.position) - 1
            last_out = d.output_times[i] if i >= 0 else 0.0
            nxt = d.next_output_after(self.position)
            if t - last_out > IDLE_LIMIT and nxt is not None and nxt > t:
                t = nxt
        if t >= d.duration:
            t = d.duration
            self.playing = False
        self._goto(t)

    # ------------------------------------------------------------------ actions

    def action_toggle_play(self) -> None:
        if self.data is None:
            return
        if not self.playing and self.position >= self.data.duration:
            self._goto(0.0)
        self.playing = not self.playing
        if self.in_scrollback:
            self._goto(self.position)
        self._last_tick = time.monotonic()
        self._update_status()

    def action_command(self, direction: int) -> None:
        if self.data is not None:
            self._step([m.time for m in self.data.commands], int(direction), "command")

    def action_chunk(self, direction: int) -> None:
        d = self.data
        if d is None:
            return
        t = d.next_output_after(self.position) if int(direction) > 0 else \
            d.output_before(self.position)
        if t is None:
            self.notify(f"no {'next' if int(direction) > 0 else 'previous'} output")
            return
        self.playing = False
        self._goto(t)

    def action_hit(self, direction: int) -> None:
        self._step([h.time for h in self.hits], int(direction), "search hit")

    def action_toggle_panel(self) -> None:
        panel = self.query_one(EventsPanel)
        self.panel_visible = not panel.display
        panel.display = self.panel_visible
        if not self.panel_visible and panel.list_focused:
            self.set_focus(None)
        self.call_after_refresh(self._update_status)

    def _flag_target(self) -> tuple[float, str | None]:
        panel = self.query_one(EventsPanel)
        if panel.display and panel.list_focused:
            row = panel.current()
            if row is not None:
                return row.time, row.key
        return self.position, None

    @on(EventsPanel.Jump)
    def _jump(self, event: EventsPanel.Jump) -> None:
        self.playing = False
        self.following = False
        self._goto(event.time)

    def action_pan(self, dx: int, dy: int) -> None:
        box = self.query_one("#screen-box", ScrollableContainer)
        box.scroll_to(x=max(0, box.scroll_x + int(dx) * PAN_COLS),
                      y=max(0, box.scroll_y + int(dy) * PAN_ROWS), animate=False)
        self.call_after_refresh(self._update_status)

    def action_scrollback(self, direction: int) -> None:
        if self.data is None:
            return
        box = self.query_one("#screen-box", ScrollableContainer)
        if not self.in_scrollback:
            if int(direction) > 0:
                return
            self.playing = False
            self.following = False
            self.in_scrollback = True
            self._update_status()
            self._load_scrollback(self.data, self.position)
            return
        page = max(box.size.height - 1, 1)
        box.scroll_to(y=max(0, box.scroll_y + int(direction) * page), animate=False)
        self.call_after_refresh(self._update_status)

    @work(thread=True, exclusive=True, group="replay-scrollback")
    def _load_scrollback(self, data: SessionData, t: float) -> None:
        try:
            term, history = scrollback(data, t)
            frame = make_frame(term, highlight=self.search_text, history=history)
        except _BAD_DATA as exc:
            self.app.call_from_thread(self._failed, f"cannot replay {self.session_id}: {exc}")
            return
        self.app.call_from_thread(self._scrollback_ready, frame, t)

    def _scrollback_ready(self, frame: Frame, t: float) -> None:
        if not self.in_scrollback or abs(t - self.position) > 1e-9:
            return
        self.query_one(TerminalView).show(frame)

        def scroll() -> None:
            box = self.query_one("#screen-box", ScrollableContainer)
            top = max(0, frame.size[1] - box.size.height)
            box.scroll_to(y=max(0, top - max(box.size.height - 1, 1)), animate=False)
            self._update_status()

        self.call_after_refresh(scroll)
        if not frame.history:
            self.notify("no lines scrolled off the screen before this moment")

    def action_search(self) -> None:
        box = self.query_one("#replay-search", Input)
        box.display = True
        box.value = self.search_text
        box.focus()

    @on(Input.Submitted, "#replay-search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        box = self.query_one("#replay-search", Input)
        box.display = False
        self.set_focus(None)
        self.search_text = event.value.strip()
        if self.data is not None:
            self._search(self.data, self.search_text)

    @work(thread=True, exclusive=True, group="replay-search")
    def _search(self, data: SessionData, text: str) -> None:
        try:
            hits = self.archive.search(data, text)
        except RecorderError as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        self.app.call_from_thread(self._searched, text, hits)

    def _searched(self, text: str, hits: list[Mark]) -> None:
        self.hits = hits
        if not text:
            self._goto(self.position)
            return
        if not hits:
            self.notify(f"{safe(text, 100)!r} not found in this session", severity="warning",
                        markup=False)
            self._goto(self.position)
            return
        after = [h for h in hits if h.time >= self.position - 1e-3]
        self.playing = False
        self._goto((after or hits)[0].time)

    def action_goto(self) -> None:
        def done(value: float | None) -> None:
            if value is not None:
                self.playing = False
                self._goto(value)

        self.app.push_screen(GotoScreen(self.position), done)

    def _copy(self, text: str, what: str) -> None:
        if not text:
            self.notify(f"nothing to copy ({what} is empty)", severity="warning")
            return
        self.app.copy_to_clipboard(text)
        try:
            path = copy_dir() / f"{self.session_id}-{int(self.position * 1000)}-{what}.txt"
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
            fd = os.open(path, flags, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            self.notify(f"copied {what} to the clipboard; file copy failed: {safe(exc)}",
                        markup=False)
            return
        self.last_copy = path
        self.notify(f"copied {what} to the clipboard and {safe(path)}", markup=False)

    def action_copy_screen(self) -> None:
        self._copy(self.query_one(TerminalView).screen_text(), "screen")

    def action_copy_command(self) -> None:
        cmd = self.data.command_at(self.position) if self.data else None
        self._copy(str(cmd.fields.get("command", "")) + "\n" if cmd else "", "command")

    def action_back(self) -> None:
        if self.close_kill_box():
            return
        box = self.query_one("#replay-search", Input)
        if box.display:
            box.display = False
            self.set_focus(None)
            return
        if self.in_scrollback:
            self._goto(self.position)
            return
        panel = self.query_one(EventsPanel)
        if panel.list_focused:
            self.set_focus(None)
            return
        self.playing = False
        if self.standalone:
            self.app.exit(0)
        else:
            self.app.pop_screen()

    @on(Timeline.Seek)
    def _timeline_click(self, event: Timeline.Seek) -> None:
        self._goto(event.time)
