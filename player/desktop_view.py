"""The Desktop screen: an RDP session's desktop replayed beside its timeline panel.

Keys (the footer shows the main ones; docs/player.md has them all): space play/pause,
+/- speed (0.25x-16x), i skip idle time, left/right -/+5 s, home/end, g go to a time,
n/p next/previous typed line, >/< next/previous timeline event, ./, next/previous
screen change, / search (typed text, clipboard and the text read off the screen), ]/[
next/previous hit, z/Z zoom in/out (fit-to-window is zoom 1), shift+arrows pan a
zoomed view, t timeline panel, tab focus the panel (enter jumps there), f follow a live
session, m/a/x reviews, k kill a live session, escape back.

Every frame is composed, scaled and turned into half-blocks in a worker thread, one at
a time, the latest request winning (frames are skipped, never queued); the UI thread
only shows finished ones. With Kitty graphics or Sixel (:mod:`player.graphics`), the
scaled picture is handed to ``textual-image``, which encodes it for the terminal when
the widget is drawn; during playback pictures are then limited to ``GRAPHICS_FPS``.

A live session is reloaded every ``LIVE_REFRESH`` s; its frames are drawn again (from
the start: pyrdp cannot resume) when the recording has grown, by the frame builder.
"""

from __future__ import annotations

import bisect
import time
from typing import Any

from rich.segment import Segment
from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Footer, Input, Static

from player import graphics
from player.archive import Archive, Mark, SessionData, integrity_label
from player.desktop import ZOOMS, Desktop, DesktopUnavailable, FrameBuilder, Rendered, render
from player.events_panel import EventsPanel
from player.fmt import cell, fmt_clock, fmt_start, safe
from player.playback import PlaybackScreen
from player.replay import GotoScreen
from player.session_actions import SessionScreen
from player.timeline import Timeline
from recorder import frames as fc
from recorder.errors import RecorderError

TICK = 0.1  # seconds between playback steps
LIVE_REFRESH = 5.0  # seconds between reloads of a live session (frames are redrawn)
IDLE_LIMIT = 1.0  # with idle skipping, a still screen longer than this is cut short
GRAPHICS_FPS = 4.0  # pictures per second during playback with Kitty/Sixel
PANEL_WIDTH = 40
PAN_STEP = 0.1  # of the shown width/height per shift+arrow
_BAD_DATA = (RecorderError, ValueError, KeyError, TypeError, IndexError, OverflowError,
             OSError)


class DesktopView(Widget):
    """Shows one rendered desktop frame: half-block lines, or a picture through
    ``textual-image`` (Kitty graphics, Sixel)."""

    DEFAULT_CSS = """
    DesktopView { width: auto; height: auto; background: black; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.frame: Rendered | None = None
        self._lines: list[list[Segment]] = []
        self._picture: Widget | None = None
        self.message = ""

    def compose(self) -> ComposeResult:
        cls = graphics.image_widget()
        if cls is not None:
            self._picture = cls(id="desktop-picture")
            yield self._picture

    def show(self, frame: Rendered) -> None:
        """Show a rendered frame (UI thread)."""
        old = self.frame.cells if self.frame is not None else None
        self.frame = frame
        self.message = ""
        if frame.lines is not None:
            self._lines = frame.lines
        elif self._picture is not None and frame.image is not None:
            self._picture.styles.width = frame.cells[0]
            self._picture.styles.height = frame.cells[1]
            self._picture.image = frame.image  # type: ignore[attr-defined]
        self.refresh(layout=old != frame.cells)

    def say(self, message: str) -> None:
        """Show a message instead of a picture."""
        self.message = message
        self._lines = []
        self.frame = None
        self.refresh(layout=True)

    def get_content_width(self, container: Size, viewport: Size) -> int:
        if self.message:
            return min(container.width, len(self.message))
        return self.frame.cells[0] if self.frame is not None else 1

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        if self.message:
            return 1
        return self.frame.cells[1] if self.frame is not None else 1

    def render_line(self, y: int) -> Strip:
        if self.message:
            return Strip([Segment(self.message[: self.size.width])]) if y == 0 else Strip([])
        if self._picture is not None or y >= len(self._lines):
            return Strip([])
        return Strip(self._lines[y])


class DesktopScreen(PlaybackScreen):
    """Plays one RDP session (``standalone``: opened from the command line)."""

    AUTO_FOCUS = ""

    BINDINGS = [
        Binding("space", "toggle_play", "Play"),
        Binding("left", "seek(-5)", "-5s", show=False),
        Binding("right", "seek(5)", "+5s", show=False),
        Binding("plus,equals_sign", "speed(1)", "Speed+", show=False),
        Binding("minus", "speed(-1)", "Speed-", show=False),
        Binding("i", "toggle_idle", "Idle", show=False),
        Binding("n", "command(1)", "Line+"),
        Binding("p", "command(-1)", "Line-", show=False),
        Binding("greater_than_sign", "event(1)", "Event+", show=False),
        Binding("less_than_sign", "event(-1)", "Event-", show=False),
        Binding("full_stop", "chunk(1)", "Step+", show=False),
        Binding("comma", "chunk(-1)", "Step-", show=False),
        Binding("z", "zoom(1)", "Zoom"),
        Binding("Z", "zoom(-1)", "Unzoom", show=False),
        Binding("shift+left", "pan(-1,0)", "Pan", show=False),
        Binding("shift+right", "pan(1,0)", "Pan", show=False),
        Binding("shift+up", "pan(0,-1)", "Pan", show=False),
        Binding("shift+down", "pan(0,1)", "Pan", show=False),
        Binding("t", "toggle_panel", "Timeline"),
        Binding("slash", "search", "Find"),
        Binding("right_square_bracket", "hit(1)", "Hit+", show=False),
        Binding("left_square_bracket", "hit(-1)", "Hit-", show=False),
        Binding("g", "goto", "Go to", show=False),
        Binding("home", "jump(0)", "Start", show=False),
        Binding("end", "jump(1)", "End", show=False),
        Binding("f", "follow", "Follow", show=False),
        *SessionScreen.REVIEW_BINDINGS,
        Binding("escape,q", "back", "Back"),
    ]

    def __init__(self, archive: Archive, session_id: str, *, search: str = "",
                 standalone: bool = False, builder: FrameBuilder | None = None) -> None:
        super().__init__(archive, session_id)
        self.standalone = standalone
        self.desktop = Desktop(archive.settings.data_dir, session_id, builder)
        self.cache: fc.FrameCache | None = None
        self.following = False
        self.zoom_index = 0
        self.center: tuple[float, float] | None = None
        self.search_text = search
        self.hits: list[Mark] = []
        self.integrity = "..."
        self.error = ""
        self.shown: Rendered | None = None
        self._busy = False
        self._want: float | None = None
        self._last_tick = time.monotonic()
        self._last_picture = 0.0
        self._reloading = False
        self.panel_visible: bool | None = None

    @property
    def zoom(self) -> int:
        return ZOOMS[self.zoom_index]

    def compose(self) -> ComposeResult:
        yield Static("loading...", id="replay-title")
        with Horizontal(id="replay-body"):
            with Container(id="desktop-box"):
                yield DesktopView(id="desktop")
            panel = EventsPanel(id="events-panel")
            panel.display = False
            yield panel
        yield Timeline(id="timeline")
        yield Static("", id="replay-status")
        box = Input(placeholder="search typed text, clipboard and screen text (enter)",
                    id="replay-search")
        box.display = False
        yield box
        yield self.kill_box()
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one(DesktopView).say("drawing the desktop...")
        self.set_interval(TICK, self._tick)
        self.set_interval(LIVE_REFRESH, self._refresh_live)
        self._load()

    def on_unmount(self) -> None:
        self.desktop.close()

    # ------------------------------------------------------------------ loading

    @work(thread=True, exclusive=True, group="desktop-load")
    def _load(self) -> None:
        try:
            data = self.archive.open(self.session_id)
        except _BAD_DATA as exc:
            self.app.call_from_thread(self._failed, f"cannot replay {self.session_id}: {exc}")
            return
        cache, problem = self._frames(data)
        try:
            hits = self._find(data, cache, self.search_text) if self.search_text else []
        except RecorderError as exc:
            self.app.call_from_thread(self.notify, safe(exc), severity="warning", markup=False)
            hits = []
        self.app.call_from_thread(self._loaded, data, cache, problem, hits)
        label = "unknown"
        if data.row is not None:
            label = integrity_label(self.archive.verify(data.row), live=data.live)
        self.app.call_from_thread(self._set_integrity, label)

    def _frames(self, data: SessionData) -> tuple[fc.FrameCache | None, str]:
        try:
            return self.desktop.load(data.rec.src.size(), live=data.live), ""
        except DesktopUnavailable as exc:
            return None, str(exc)

    def _failed(self, message: str) -> None:
        self.error = message
        self.query_one("#replay-title", Static).update(cell(message, style="bold red"))
        self.notify(safe(message), severity="error", markup=False)

    def _loaded(self, data: SessionData, cache: fc.FrameCache | None, problem: str,
                hits: list[Mark]) -> None:
        self.data = data
        self.cache = cache
        self.hits = hits
        panel = self.query_one(EventsPanel)
        if self.panel_visible is None:
            self.panel_visible = self.app.size.width >= 80 + PANEL_WIDTH
        panel.display = self.panel_visible
        panel.set_events(data.entries, data.reviews)
        if problem:
            self.query_one(DesktopView).say(safe(problem))
            self.notify(safe(problem), severity="warning", markup=False)
        self._update_title()
        if hits:
            self._goto(hits[0].time)
        elif data.live:
            self.following = True
            self._goto(data.duration)
        else:  # the first picture (the desktop appears some time after the logon)
            self._goto(cache.times[0] if cache is not None and cache.times else 0.0)
        approver = self._approver()
        if data.live and data.row is not None and approver.on_watch is not None:
            approver.on_watch(data.row.id)
        if self.archive.review_error:
            self.notify(safe(self.archive.review_error), severity="warning", markup=False)

    def _reviews_changed(self) -> None:
        d = self.data
        if d is not None:
            self.query_one(EventsPanel).set_events(d.entries, d.reviews)
        self._update_title()
        self._update_status()

    def _set_integrity(self, label: str) -> None:
        self.integrity = label
        self._update_title()

    # ------------------------------------------------------------------ live sessions

    def _refresh_live(self) -> None:
        d = self.data
        if d is None or self._reloading or not d.live:
            return
        self._reloading = True
        self._reload()

    @work(thread=True, exclusive=True, group="desktop-reload")
    def _reload(self) -> None:
        try:
            data = self.archive.open(self.session_id)
        except _BAD_DATA:
            self.app.call_from_thread(self._reloaded, None, None)
            return
        cache, _problem = self._frames(data)
        self.app.call_from_thread(self._reloaded, data, cache)

    def _reloaded(self, data: SessionData | None, cache: fc.FrameCache | None) -> None:
        self._reloading = False
        old = self.data
        if data is None or old is None:
            return
        at_end = self.position >= old.duration - 0.5
        self.data = data
        if cache is not None:
            self.cache = cache
        self.query_one(EventsPanel).set_events(data.entries, data.reviews)
        self._update_title()
        self._goto(data.duration if self.following and at_end else self.position)
        if not data.live:
            self.following = False
            self.notify("the session has ended")

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

    # ------------------------------------------------------------------ drawing

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
            title.append(d.rec.status, "" if d.rec.status == "ended" else "bold red")
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
        self.query_one("#replay-title", Static).update(title)

    def _update_status(self) -> None:
        d = self.data
        if d is None:
            return
        state = "following" if self.following else ("playing" if self.playing else "paused")
        idle = "skip-idle" if self.skip_idle else "real-time"
        line = Text(f"{fmt_clock(self.position)}/{fmt_clock(d.duration)} {state} "
                    f"{self.speed:g}x {idle}", no_wrap=True, overflow="ellipsis")
        shown = self.shown
        if shown is not None:
            w, h = shown.desktop
            line.append(f"  {w}x{h} {graphics.mode()}")
            if self.zoom > 1:
                x0, y0, x1, y1 = shown.box
                line.append(f" zoom {self.zoom}x ({x0},{y0})-({x1},{y1}) shift+arrows",
                            "bold black on yellow")
            else:
                line.append(" fit")
        cache = self.cache
        if cache is not None and cache.until + 1.0 < d.duration and not d.live:
            line.append(f"  drawn up to {fmt_clock(cache.until)}", "yellow")
        if self.hits:
            line.append(f"  {len(self.hits)} hits", "yellow")
        cmd = d.command_at(self.position)
        if cmd is not None:
            line.append("  > " + safe(cmd.fields.get("command", ""), 200), "cyan")
        self.query_one("#replay-status", Static).update(line)
        self.query_one(Timeline).update_state(d.duration, self.position, [*d.marks, *self.hits])
        self.query_one(EventsPanel).follow(self.position)

    def _room(self) -> tuple[int, int]:
        box = self.query_one("#desktop-box", Container)
        return (max(box.size.width, 1), max(box.size.height, 1))

    def _goto(self, t: float) -> None:
        """Show the desktop at session time ``t`` (asynchronously; latest request wins)."""
        if self.data is None:
            return
        self._want = min(max(t, 0.0), self.data.duration)
        self.position = self._want
        self._update_status()
        if not self._busy:
            self._start_render()

    def _start_render(self) -> None:
        if self._want is None or self.cache is None:
            self._want = None
            return
        t, self._want = self._want, None
        self._busy = True
        self._render_at(self.cache, t, self._room(), self.zoom, self.center,
                        graphics.cell_pixels())

    @work(thread=True, group="desktop-render")
    def _render_at(self, cache: fc.FrameCache, t: float, room: tuple[int, int], zoom: int,
                   center: tuple[float, float] | None,
                   cell_pixels: tuple[int, int] | None) -> None:
        rendered: Rendered | None = None
        try:
            frame = cache.frame_at(t)
            if frame is not None:
                rendered = render(frame, t, room, zoom=zoom, center=center,
                                  cell_pixels=cell_pixels)
        except _BAD_DATA as exc:
            self.app.call_from_thread(self._failed, f"cannot draw {self.session_id}: {exc}")
        self.app.call_from_thread(self._rendered, rendered)

    def _rendered(self, rendered: Rendered | None) -> None:
        self._busy = False
        view = self.query_one(DesktopView)
        if rendered is None:
            cache = self.cache
            if cache is not None and cache.times:
                view.say(f"(nothing drawn yet: the desktop appears at "
                         f"{fmt_clock(cache.times[0])})")
            elif cache is not None:
                view.say("(this session has no picture of its desktop)")
        else:
            self.shown = rendered
            view.show(rendered)
            self._last_picture = time.monotonic()
        self._update_status()
        if self._want is not None:
            self._start_render()

    def on_resize(self, _event: events.Resize) -> None:
        self.call_after_refresh(self._redraw)

    def _redraw(self) -> None:
        """Draw the current moment again (the space for the picture changed)."""
        self._goto(self.position)

    def _tick(self) -> None:
        now = time.monotonic()
        elapsed, self._last_tick = now - self._last_tick, now
        d = self.data
        if not self.playing or d is None or self._busy:
            return
        if graphics.cell_pixels() is not None and now - self._last_picture < 1 / GRAPHICS_FPS:
            return
        t = self.position + elapsed * self.speed
        times = self.cache.times if self.cache is not None else []
        if self.skip_idle and times:
            i = bisect.bisect_right(times, self.position + 1e-6)
            last = times[i - 1] if i > 0 else 0.0
            nxt = times[i] if i < len(times) else None
            if t - last > IDLE_LIMIT and nxt is not None and nxt > t:
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
        self.following = False
        self._last_tick = time.monotonic()
        self._update_status()

    def action_command(self, direction: int) -> None:
        if self.data is not None:
            self._step([m.time for m in self.data.commands], int(direction), "typed line")

    def action_chunk(self, direction: int) -> None:
        self._step(self.cache.times if self.cache is not None else [], int(direction),
                   "screen change")

    def action_hit(self, direction: int) -> None:
        self._step([h.time for h in self.hits], int(direction), "search hit")

    def action_zoom(self, step: int) -> None:
        self.zoom_index = min(max(self.zoom_index + int(step), 0), len(ZOOMS) - 1)
        if self.zoom_index == 0:
            self.center = None
        self._goto(self.position)

    def action_pan(self, dx: int, dy: int) -> None:
        shown = self.shown
        if shown is None or self.zoom == 1:
            self.notify("zoom in first (z)")
            return
        x0, y0, x1, y1 = shown.box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        self.center = (cx + int(dx) * PAN_STEP * (x1 - x0) * 2,
                       cy + int(dy) * PAN_STEP * (y1 - y0) * 2)
        self._goto(self.position)

    def action_toggle_panel(self) -> None:
        panel = self.query_one(EventsPanel)
        self.panel_visible = not panel.display
        panel.display = self.panel_visible
        if not self.panel_visible and panel.list_focused:
            self.set_focus(None)
        self.call_after_refresh(self._redraw)

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

    @on(Timeline.Seek)
    def _timeline_click(self, event: Timeline.Seek) -> None:
        self._goto(event.time)

    def action_goto(self) -> None:
        def done(value: float | None) -> None:
            if value is not None:
                self.playing = False
                self._goto(value)

        self.app.push_screen(GotoScreen(self.position), done)

    # ------------------------------------------------------------------ search

    def _find(self, data: SessionData, cache: fc.FrameCache | None, text: str) -> list[Mark]:
        """Hits in the index (typed lines, clipboard, screen text); the frame cache's
        screen text when the index has none (not indexed yet, or after a reindex)."""
        hits = self.archive.search(data, text)
        if hits or cache is None or not text:
            return hits
        low = text.lower()
        return [Mark(o.time, "hit", o.text) for o in cache.ocr if low in o.text.lower()]

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
            self._search(self.data, self.cache, self.search_text)

    @work(thread=True, exclusive=True, group="desktop-search")
    def _search(self, data: SessionData, cache: fc.FrameCache | None, text: str) -> None:
        try:
            hits = self._find(data, cache, text)
        except RecorderError as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        self.app.call_from_thread(self._searched, text, hits)

    def _searched(self, text: str, hits: list[Mark]) -> None:
        self.hits = hits
        if text and not hits:
            self.notify(f"{safe(text, 100)!r} not found in this session", severity="warning",
                        markup=False)
        if not hits:
            self._update_status()
            return
        after = [h for h in hits if h.time >= self.position - 1e-3]
        self.playing = False
        self._goto((after or hits)[0].time)

    def action_back(self) -> None:
        if self.close_kill_box():
            return
        box = self.query_one("#replay-search", Input)
        if box.display:
            box.display = False
            self.set_focus(None)
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


def is_desktop(row: Any) -> bool:
    """RDP sessions open in the Desktop screen."""
    return str(getattr(row, "protocol", "")) == "rdp"
