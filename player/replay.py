"""The Replay screen: one recorded session played back in a terminal view.

Keys (see the footer and docs/player.md): space play/pause, +/- speed (0.25x-16x),
i skip idle time, left/right -/+5 s, home/end, g go to a time, n/p next/previous
command, / search in the session, ]/[ next/previous hit, c copy the screen, y copy the
current command, escape back to the list.

All seeking and pyte feeding runs in one worker thread at a time; the UI thread only
shows finished frames. When the worker falls behind (very fast playback of heavy
output), frames are skipped, never queued.

Live sessions are followed as they happen (``f`` toggles): every ``LIVE_REFRESH``
seconds the recording is reopened and, while following, the view jumps to its end; the
flush interval of the gateway's recorder (~1 s) bounds how fresh it is.

Known limits: the same as :mod:`player.data` (no alternate screen, burst sampling);
following reopens the recording and rebuilds its keyframes each time (keyframes are only
cached for finished recordings), so following a very long live session costs CPU.
"""

from __future__ import annotations

import bisect
import os
import re
import stat
import tempfile
import time
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import ScrollableContainer, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Input, Label, Static

from player.data import Archive, Cursor, Mark, SessionData, integrity_label
from player.find import fmt_start
from player.terminal_view import Frame, TerminalView, make_frame
from player.timeline import Timeline
from recorder.errors import RecorderError

SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
TICK = 0.1  # seconds between playback frames (10 fps is plenty for a terminal)
LIVE_REFRESH = 1.5  # seconds between reloads of a live session
IDLE_LIMIT = 1.0  # with idle skipping, a pause longer than this is cut short
SEEK_STEP = 5.0
# malformed recordings or keyframe caches: reported on screen, never a crash
_BAD_DATA = (RecorderError, ValueError, KeyError, TypeError, IndexError, OverflowError)
_TIME = re.compile(r"^\s*([+-]?)\s*(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d+)?)\s*$")


def parse_time(text: str, now: float) -> float | None:
    """``90``, ``1:30``, ``1:02:03``; a leading ``+``/``-`` is relative to ``now``."""
    m = _TIME.match(text)
    if not m:
        return None
    sign, a, b, sec = m.groups()
    parts = [int(x) for x in (a, b) if x is not None]
    value = float(sec)
    for i, p in enumerate(reversed(parts)):
        value += p * 60 ** (i + 1)
    if sign == "+":
        return now + value
    if sign == "-":
        return now - value
    return value


def fmt_clock(t: float) -> str:
    s = int(max(t, 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


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
                Text(f"not a time: {event.value!r}", "bold red")
            )
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ReplayScreen(Screen[None]):
    """Plays one session (``standalone``: opened from the command line, back quits)."""

    AUTO_FOCUS = ""  # keys go to the screen's bindings, not to a widget

    BINDINGS = [
        Binding("space", "toggle_play", "Play"),
        Binding("left", "seek(-5)", "-5s", show=False),
        Binding("right", "seek(5)", "+5s", show=False),
        Binding("plus,equals_sign", "speed(1)", "Speed+", show=False),
        Binding("minus", "speed(-1)", "Speed-", show=False),
        Binding("i", "toggle_idle", "Idle"),
        Binding("n", "command(1)", "Cmd+"),
        Binding("p", "command(-1)", "Cmd-"),
        Binding("slash", "search", "Find"),
        Binding("right_square_bracket", "hit(1)", "Hit+"),
        Binding("left_square_bracket", "hit(-1)", "Hit-", show=False),
        Binding("g", "goto", "Go to"),
        Binding("c", "copy_screen", "Copy"),
        Binding("y", "copy_command", "Yank cmd"),
        Binding("home", "jump(0)", "Start", show=False),
        Binding("end", "jump(1)", "End", show=False),
        Binding("f", "follow", "Follow"),
        Binding("k", "kill", "Kill", show=False),
        Binding("escape,q", "back", "Back"),
    ]

    def __init__(
        self, archive: Archive, session_id: str, *, search: str = "", standalone: bool = False
    ) -> None:
        super().__init__()
        self.standalone = standalone
        self.archive = archive
        self.session_id = session_id
        self.data: SessionData | None = None
        self.cursor: Cursor | None = None
        self.position = 0.0
        self.playing = False
        self.speed_index = SPEEDS.index(1.0)
        self.skip_idle = True
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

    @property
    def speed(self) -> float:
        return SPEEDS[self.speed_index]

    def compose(self) -> ComposeResult:
        yield Static("loading...", id="replay-title")
        with ScrollableContainer(id="screen-box", can_focus=False):
            yield TerminalView(id="term")
        yield Timeline(id="timeline")
        yield Static("", id="replay-status")
        box = Input(placeholder="search in this session (enter)", id="replay-search")
        box.display = False
        yield box
        kill = Input(placeholder="reason shown to the user (enter ends the session, escape "
                     "cancels)", id="replay-kill")
        kill.display = False
        yield kill
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
            self.app.call_from_thread(self.notify, str(exc), severity="warning")
            hits = []
        self.app.call_from_thread(self._loaded, data, cursor, frame, hits)
        label = integrity_label(self.archive.verify(data.row)) if data.row else "unknown"
        self.app.call_from_thread(self._set_integrity, label)

    def _failed(self, message: str) -> None:
        self.error = message
        self.query_one("#replay-title", Static).update(Text(message, "bold red"))
        self.notify(message, severity="error")

    def _loaded(self, data: SessionData, cursor: Cursor, frame: Frame, hits: list[Mark]) -> None:
        self.data = data
        self.cursor = cursor
        self.hits = hits
        self._show_frame(frame)
        self._update_title()
        self._update_status()
        if hits:
            self._goto(hits[0].time)
        elif self._is_live(data):
            self.following = True
            self._goto(data.duration)
        approver = getattr(self.app, "approver", None)
        if self._is_live(data) and data.row is not None and approver is not None and \
                approver.on_watch is not None:
            approver.on_watch(data.row.id)  # watching a live session is audited

    @staticmethod
    def _is_live(data: SessionData) -> bool:
        return data.row is not None and data.row.status == "live"

    # ------------------------------------------------------------------ live sessions

    def _refresh_live(self) -> None:
        d = self.data
        if d is None or self._reloading or not self._is_live(d):
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
        ended = not self._is_live(data)
        if data.duration <= old.duration and not ended:
            return
        at_end = self.position >= old.duration - 0.5
        self.data, self.cursor = data, cursor
        self._update_title()
        self._goto(data.duration if self.following and at_end else self.position)
        if ended:
            self.following = False
            self.notify("the session has ended")

    def action_follow(self) -> None:
        d = self.data
        if d is None or not self._is_live(d):
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
        style = (
            "green"
            if self.integrity == "verified"
            else ("yellow" if self.integrity in ("unsigned", "...") else "bold red")
        )
        status = d.rec.status
        if d.row is not None and d.row.status == "live" and status == "truncated":
            status = "live (recorded so far)"
        title = Text(
            f"{h.get('user', '')}@{h.get('target', '')} {h.get('protocol', '')} {start}  {status}  "
        )
        title.append(self.integrity, style)
        for p in d.rec.problems[:1]:
            title.append(f"  {p}", "yellow")
        self.query_one("#replay-title", Static).update(title)

    def _update_status(self) -> None:
        d = self.data
        if d is None:
            return
        state = "following" if self.following else ("playing" if self.playing else "paused")
        idle = "skip-idle" if self.skip_idle else "real-time"
        line = Text(
            f"{fmt_clock(self.position)}/{fmt_clock(d.duration)} {state} {self.speed:g}x {idle}"
        )
        if self.hits:
            line.append(f"  {len(self.hits)} hits", "yellow")
        cmd = d.command_at(self.position)
        if cmd is not None:
            line.append("  $ " + cmd.text, "cyan")
        self.query_one("#replay-status", Static).update(line)
        self.query_one(Timeline).update_state(d.duration, self.position, [*d.marks, *self.hits])

    # ------------------------------------------------------------------ moving

    def _goto(self, t: float) -> None:
        """Show the screen at session time ``t`` (asynchronously; latest request wins)."""
        if self.data is None:
            return
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
        if frame is not None:
            self._show_frame(frame)
        if self._want is not None:
            self._start_render()

    def _show_frame(self, frame: Frame) -> None:
        self.query_one(TerminalView).show(frame)
        box = self.query_one("#screen-box", ScrollableContainer)
        height = box.size.height
        y = frame.cursor[1]
        if height and not box.scroll_y <= y < box.scroll_y + height:
            box.scroll_to(y=max(0, y - height + 1), animate=False)

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
        self._last_tick = time.monotonic()
        self._update_status()

    def action_seek(self, delta: float) -> None:
        self._goto(self.position + float(delta))

    def action_jump(self, where: int) -> None:
        if self.data is not None:
            self._goto(self.data.duration if where else 0.0)

    def action_speed(self, step: int) -> None:
        self.speed_index = min(max(self.speed_index + int(step), 0), len(SPEEDS) - 1)
        self._update_status()

    def action_toggle_idle(self) -> None:
        self.skip_idle = not self.skip_idle
        self._update_status()

    def _step(self, marks: list[Mark], direction: int, what: str) -> None:
        if not marks:
            self.notify(f"no {what} in this session", severity="warning")
            return
        eps = 1e-3
        if direction > 0:
            nxt = [m for m in marks if m.time > self.position + eps]
            target = nxt[0] if nxt else None
        else:
            prev = [m for m in marks if m.time < self.position - eps]
            target = prev[-1] if prev else None
        if target is None:
            self.notify(f"no {'next' if direction > 0 else 'previous'} {what}")
            return
        self.playing = False
        self._goto(target.time)

    def action_command(self, direction: int) -> None:
        if self.data is not None:
            self._step(self.data.commands, int(direction), "command")

    def action_hit(self, direction: int) -> None:
        self._step(self.hits, int(direction), "search hit")

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
            self.notify(f"{text!r} not found in this session", severity="warning")
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
            self.notify(f"copied {what} to the clipboard; file copy failed: {exc}")
            return
        self.last_copy = path
        self.notify(f"copied {what} to the clipboard and {path}")

    def action_copy_screen(self) -> None:
        self._copy(self.query_one(TerminalView).screen_text(), "screen")

    def action_copy_command(self) -> None:
        cmd = self.data.command_at(self.position) if self.data else None
        self._copy(cmd.text + "\n" if cmd else "", "command")

    def action_kill(self) -> None:
        approver = getattr(self.app, "approver", None)
        d = self.data
        if d is None or not self._is_live(d):
            self.notify("only a live session can be terminated", severity="warning")
            return
        if approver is None or not approver.may_decide:
            self.notify("only an auditor (a configured approver) may terminate sessions",
                        severity="warning")
            return
        box = self.query_one("#replay-kill", Input)
        box.value = ""
        box.display = True
        box.focus()

    @on(Input.Submitted, "#replay-kill")
    def _kill_submitted(self, event: Input.Submitted) -> None:
        from state.approvals import ApprovalStore

        box = self.query_one("#replay-kill", Input)
        box.display = False
        self.set_focus(None)
        reason = event.value.strip()
        if not reason:
            self.notify("a reason is required (it is shown to the user)", severity="warning")
            return
        approver = getattr(self.app, "approver", None)
        d = self.data
        if approver is None or d is None or d.row is None:
            return
        store = ApprovalStore(self.archive.settings.data_dir / "approvals.sqlite3")
        try:
            store.request_kill(d.row.id, by=approver.name, reason=reason)
        finally:
            store.close()
        if approver.on_kill is not None:
            approver.on_kill(d.row.id, reason)
        self.notify(f"termination of {d.row.id} requested: the gateway ends it within ~1 s")

    def action_back(self) -> None:
        kill = self.query_one("#replay-kill", Input)
        if kill.display:
            kill.display = False
            self.set_focus(None)
            return
        box = self.query_one("#replay-search", Input)
        if box.display:
            box.display = False
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
