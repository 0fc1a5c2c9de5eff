"""RDP sessions in the player: the half-block renderer, seeking, the timeline panel,
search, zoom, and the frame builder (Pilot tests on a session recorded by the real
recorder, rdp_archive.py; SVG snapshot with ``--snapshot-update`` to refresh)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from rdp_archive import BLUE, GREEN, GREY, RED, SCREEN_TEXT, SESSION, WHITE, make_rdp_archive
from rich.segment import Segment
from textual.pilot import Pilot
from textual.widgets import Static

from player import graphics
from player.app import PlayerApp
from player.desktop import UPPER_HALF, fit, halfblocks, render, view_box
from player.desktop_view import DesktopScreen, DesktopView
from player.events_panel import EventsPanel
from recorder import frames as fc
from recorder.settings import RecorderSettings

SnapCompare = Callable[..., bool]


@pytest.fixture(scope="session")
def rdp_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_rdp_archive(tmp_path_factory.mktemp("player-rdp") / "data")


@pytest.fixture
def rdp_settings(rdp_template: Path, tmp_path: Path) -> RecorderSettings:
    data = tmp_path / "data"
    shutil.copytree(rdp_template, data)
    graphics.reset()
    return RecorderSettings(data_dir=data, signing_key=data / "recording.key")


# ---------------------------------------------------------------- the renderer


def cells(lines: list[list[Segment]]) -> list[list[tuple[tuple[int, ...], tuple[int, ...]]]]:
    """(upper, lower) RGB of every cell."""
    out = []
    for line in lines:
        row = []
        for seg in line:
            assert seg.style is not None and seg.style.color and seg.style.bgcolor
            top = tuple(seg.style.color.get_truecolor())
            bottom = tuple(seg.style.bgcolor.get_truecolor())
            assert set(seg.text) == {UPPER_HALF}
            row += [(top, bottom)] * len(seg.text)
        out.append(row)
    return out


def test_halfblocks_two_pixels_per_cell() -> None:
    """Snapshot: a 4x3 image is two rows of four cells, upper pixel in the foreground,
    lower in the background, black below an odd last row; equal cells are one run."""
    img = Image.new("RGB", (4, 3), (0, 0, 0))
    px = img.load()
    assert px is not None
    for x in range(4):
        px[x, 0] = (255, 0, 0)
        px[x, 1] = (0, 0, 255) if x < 2 else (0, 255, 0)
        px[x, 2] = (255, 255, 255)
    lines = halfblocks(img)
    assert [[(s.text, str(s.style)) for s in line] for line in lines] == [
        [("▀▀", "#ff0000 on #0000ff"), ("▀▀", "#ff0000 on #00ff00")],
        [("▀▀▀▀", "#ffffff on #000000")],
    ]


def test_fit_keeps_the_aspect_ratio() -> None:
    assert fit((1024, 768), (100, 80)) == (100, 75)
    assert fit((1024, 768), (200, 60)) == (80, 60)
    assert fit((1, 1), (0, 5)) == (1, 1)
    assert view_box((1000, 500), 1, (0, 0)) == (0, 0, 1000, 500)
    assert view_box((1000, 500), 2, (900, 400)) == (500, 250, 1000, 500)  # kept inside
    assert view_box((1000, 500), 4, (500, 250)) == (375, 188, 625, 313)


def test_render_fits_the_room_in_halfblocks() -> None:
    frame = fc.Frame(320, 200, bytes(RED) * (320 * 200), 1.0, 0)
    r = render(frame, 1.5, (80, 20))
    assert r.cells == (64, 20) and r.lines is not None and len(r.lines) == 20
    assert cells(r.lines)[0][0] == (RED, RED)
    zoomed = render(frame, 1.5, (80, 20), zoom=2, center=(0, 0))
    assert zoomed.box == (0, 0, 160, 100)
    pic = render(frame, 1.5, (80, 20), cell_pixels=(10, 20))
    assert pic.lines is None and pic.image is not None
    assert pic.cells == (64, 20) and pic.image.size == (640, 400)


# ---------------------------------------------------------------- the screen


async def settle(pilot: Pilot[Any]) -> DesktopScreen:
    for _ in range(400):
        await pilot.pause()
        scr = pilot.app.screen
        if isinstance(scr, DesktopScreen) and scr.data is not None and not scr._busy and \
                scr._want is None and all(w.is_finished for w in pilot.app.workers):
            return scr
        await asyncio.sleep(0.01)
    raise AssertionError("the desktop screen did not settle")


def colours(scr: DesktopScreen) -> set[tuple[int, ...]]:
    view = scr.query_one(DesktopView)
    assert view.frame is not None and view.frame.lines is not None
    return {c for row in cells(view.frame.lines) for pair in row for c in pair}


def status(scr: DesktopScreen) -> str:
    return str(scr.query_one("#replay-status", Static).render())


def run(coro: Any) -> None:
    asyncio.run(coro)


def test_opens_at_the_first_picture(rdp_settings: RecorderSettings) -> None:
    async def go() -> None:
        app = PlayerApp(rdp_settings, session_id=SESSION)
        async with app.run_test(size=(120, 36)) as pilot:
            scr = await settle(pilot)
            assert scr.position == 1.0
            assert colours(scr) == {BLUE}
            line = status(scr)
            assert "0:00:01/0:00:40 paused" in line and "320x200 halfblock fit" in line
            title = str(scr.query_one("#replay-title", Static).render())
            assert title.startswith("grace@win1 rdp/desktop") and "verified" in title

    run(go())


def test_seeking_shows_the_desktop_of_that_moment(rdp_settings: RecorderSettings) -> None:
    async def go() -> None:
        app = PlayerApp(rdp_settings, session_id=SESSION)
        async with app.run_test(size=(120, 36)) as pilot:
            scr = await settle(pilot)
            await pilot.press("right")  # 6 s: the window, no red box yet
            scr = await settle(pilot)
            assert scr.position == 6.0 and {BLUE, WHITE} <= colours(scr)
            assert RED not in colours(scr)
            await pilot.press("g", *"9.5", "enter")
            scr = await settle(pilot)
            assert scr.query_one(DesktopView).frame.drawn == 9.0  # type: ignore[union-attr]
            assert RED in colours(scr) and GREEN not in colours(scr)
            await pilot.press("full_stop")  # next screen change: 15 s
            scr = await settle(pilot)
            assert scr.position == 15.0 and GREEN in colours(scr)
            await pilot.press("end")
            scr = await settle(pilot)
            assert scr.position == 40.0 and colours(scr) == {GREY}  # a key: all grey
            await pilot.press("comma", "comma", "comma")  # back three changes: 9 s
            scr = await settle(pilot)
            assert scr.position == 9.0 and RED in colours(scr) and GREY not in colours(scr)
            await pilot.press("home")
            scr = await settle(pilot)
            view = scr.query_one(DesktopView)
            assert view.frame is None and "the desktop appears at 0:00:01" in view.message

    run(go())


def test_playing_moves_forward_and_skips_idle_time(rdp_settings: RecorderSettings) -> None:
    async def go() -> None:
        app = PlayerApp(rdp_settings, session_id=SESSION)
        async with app.run_test(size=(120, 36)) as pilot:
            scr = await settle(pilot)
            await pilot.press("g", *"2", "enter")
            await settle(pilot)
            await pilot.press("plus", "plus", "plus", "plus", "space")  # 16x
            for _ in range(100):
                await asyncio.sleep(0.05)
                if scr.position >= 15.0:
                    break
            assert scr.position >= 15.0  # 13 s of session in well under 5 s
            await pilot.press("space")
            scr = await settle(pilot)
            assert not scr.playing and "paused 16x" in status(scr)

    run(go())


def test_timeline_panel_of_an_rdp_session(rdp_settings: RecorderSettings) -> None:
    async def go() -> None:
        app = PlayerApp(rdp_settings, session_id=SESSION)
        async with app.run_test(size=(130, 36)) as pilot:
            scr = await settle(pilot)
            panel = scr.query_one(EventsPanel)
            assert panel.display
            texts = [row.text for row in panel.rows]
            assert texts[0] == "logon grace (password, cookie) as Administrator"
            assert "$ rdp-channel rdpdr  denied by rule target policy: rdpdr is not allowed" \
                in texts
            assert "$ notepad secrets.txt" in texts
            assert "clipboard download: hunter2-copied" in texts
            assert "$ shutdown /s" in texts
            await pilot.press("tab", "down", "down", "down", "enter")  # the clipboard row
            scr = await settle(pilot)
            assert scr.position == 8.0
            assert {BLUE, WHITE} <= colours(scr) and RED not in colours(scr)
            await pilot.press("escape", "n")  # the next typed line
            scr = await settle(pilot)
            assert scr.position == 20.0 and "> shutdown /s" in status(scr)

    run(go())


def test_search_lands_where_the_screen_text_appeared(rdp_settings: RecorderSettings) -> None:
    async def go() -> None:
        app = PlayerApp(rdp_settings, session_id=SESSION)
        async with app.run_test(size=(120, 36)) as pilot:
            await settle(pilot)
            await pilot.press("slash", *"topsecretword", "enter")
            scr = await settle(pilot)
            assert scr.position == 9.0 and RED in colours(scr)
            assert "1 hits" in status(scr)
            await pilot.press("slash", *"notepad", "enter")  # typed text is searched too
            scr = await settle(pilot)
            assert scr.position == 4.0

    run(go())


def test_find_screen_opens_an_rdp_session_at_its_screen_text(
        rdp_settings: RecorderSettings) -> None:
    async def go() -> None:
        app = PlayerApp(rdp_settings)
        async with app.run_test(size=(120, 36)) as pilot:
            for _ in range(100):
                await pilot.pause()
                await asyncio.sleep(0.01)
            await pilot.press("slash", *"TOPSECRET", "enter")
            for _ in range(100):
                await pilot.pause()
                await asyncio.sleep(0.01)
            await pilot.press("enter")
            scr = await settle(pilot)
            assert scr.position == 9.0 and scr.hits and scr.hits[0].text == SCREEN_TEXT

    run(go())


def test_zoom_and_pan(rdp_settings: RecorderSettings) -> None:
    async def go() -> None:
        app = PlayerApp(rdp_settings, session_id=SESSION)
        async with app.run_test(size=(120, 36)) as pilot:
            await settle(pilot)
            await pilot.press("g", *"9", "enter", "z", "z")
            scr = await settle(pilot)
            shown = scr.shown
            assert shown is not None and shown.box == (120, 75, 200, 125)
            assert "zoom 4x (120,75)-(200,125)" in status(scr)
            await pilot.press(*["shift+left"] * 7, *["shift+up"] * 6)  # 16 and 10 px each
            scr = await settle(pilot)
            assert scr.shown is not None and scr.shown.box == (8, 15, 88, 65)
            assert RED in colours(scr)  # the red box, bigger
            await pilot.press("Z", "Z")
            scr = await settle(pilot)
            assert scr.shown is not None and scr.shown.box == (0, 0, 320, 200)

    run(go())


def test_no_frames_and_no_builder_says_how_to_draw_them(
        rdp_settings: RecorderSettings) -> None:
    fc.cache_path(rdp_settings.data_dir, SESSION).unlink()

    async def go() -> None:
        app = PlayerApp(rdp_settings, session_id=SESSION)
        async with app.run_test(size=(120, 36)) as pilot:
            scr = await settle(pilot)
            view = scr.query_one(DesktopView)
            assert view.frame is None
            assert f"bastille rdp-screens {SESSION}" in view.message
            assert scr.query_one(EventsPanel).rows  # the timeline is there all the same

    run(go())


def test_the_frame_builder_draws_missing_frames(rdp_settings: RecorderSettings) -> None:
    """The builder given by the entry point is asked once, then its frames are shown;
    a stale cache (drawn from a shorter recording) counts as missing."""
    from rdp_archive import write_frames

    path = fc.cache_path(rdp_settings.data_dir, SESSION)
    size = 0
    cache = fc.FrameCache.open(path)
    size = cache.source_size
    cache.close()
    write_frames(rdp_settings.data_dir, size - 1)  # stale
    asked: list[str] = []

    def builder(session_id: str) -> None:
        asked.append(session_id)
        write_frames(rdp_settings.data_dir, size)

    async def go() -> None:
        app = PlayerApp(rdp_settings, session_id=SESSION, frame_builder=builder)
        async with app.run_test(size=(120, 36)) as pilot:
            scr = await settle(pilot)
            assert colours(scr) == {BLUE}

    run(go())
    assert asked == [SESSION]


def test_a_failing_builder_is_reported(rdp_settings: RecorderSettings) -> None:
    fc.cache_path(rdp_settings.data_dir, SESSION).unlink()

    def builder(session_id: str) -> None:
        raise RuntimeError("bastille: drawing RDP screens needs the bastille[rdp-video] extra")

    async def go() -> None:
        app = PlayerApp(rdp_settings, session_id=SESSION, frame_builder=builder)
        async with app.run_test(size=(120, 36)) as pilot:
            scr = await settle(pilot)
            assert "needs the bastille[rdp-video] extra" in scr.query_one(DesktopView).message

    run(go())


def test_desktop_snapshot(snap_compare: SnapCompare, rdp_settings: RecorderSettings) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("g", *"16", "enter")
        await settle(pilot)

    app = PlayerApp(rdp_settings, session_id=SESSION)
    assert snap_compare(app, terminal_size=(120, 30), run_before=run_before)
