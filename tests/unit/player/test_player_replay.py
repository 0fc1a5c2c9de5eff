"""Pilot tests of the Replay screen against a session recorded by the real recorder.

The session (see ``player_recordings.py``): commands at 1.0 (``ls --color``), 3.0
(``vim notes.txt``), 8.5 (scp, with a file transfer), 9.5 (``rm -rf /``, denied) and
39.5 (``echo needle-in-haystack``, after a 30 s idle gap); vim's alternate screen from
3.5 to 6.5; a resize to 100x30 at 7.5; the session ends at 40.5.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from player_testing import NOW, settle, sync
from textual.widgets import Input, Static

from player.app import PlayerApp
from player.playback import SPEEDS
from player.replay import ReplayScreen
from player.terminal_view import TerminalView
from player.timeline import Timeline
from recorder.settings import RecorderSettings

ALICE = "play-alice-0001"


def _screen(app: PlayerApp) -> ReplayScreen:
    scr = app.screen
    assert isinstance(scr, ReplayScreen)
    return scr


def _text(app: PlayerApp) -> str:
    return app.screen.query_one(TerminalView).screen_text()


def _status(app: PlayerApp) -> str:
    return str(app.screen.query_one("#replay-status", Static).render())


@sync
async def test_opens_with_title_integrity_and_timeline_marks(settings: RecorderSettings) -> None:
    app = PlayerApp(settings, session_id=ALICE, clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        scr = _screen(app)
        title = str(scr.query_one("#replay-title", Static).render())
        assert "alice@web1 ssh/shell 2025-11-23 12:13:20  ended  verified" in title
        assert "0:00:00/0:00:40 paused 1x skip-idle" in _status(app)
        kinds = [(m.kind, m.time) for m in scr.query_one(Timeline).marks]
        assert ("transfer", 8.5) in kinds and ("denied", 9.5) in kinds
        assert [t for k, t in kinds if k == "command"] == [1.0, 3.0, 8.5, 39.5]
        assert _text(app) == "Welcome to web1\nalice@web1:~$\n"
        line = str(scr.query_one(Timeline).render())
        assert len(line) == 80 and "x" in line and "f" in line and "|" in line


@sync
async def test_step_commands_seek_and_jump(settings: RecorderSettings) -> None:
    app = PlayerApp(settings, session_id=ALICE, clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        scr = _screen(app)
        seen = []
        for _ in range(5):
            await pilot.press("n")
            await settle(pilot)
            seen.append(scr.position)
        assert seen == [1.0, 3.0, 8.5, 9.5, 39.5]
        assert "$ echo needle-in-haystack" in _status(app)
        assert "needle-in-haystack\nalice@web1:~$" in _text(app)
        await pilot.press("p", "p")
        await settle(pilot)
        assert scr.position == 8.5
        assert "report.pdf  100%" in _text(app)
        await pilot.press("right")
        await settle(pilot)
        assert scr.position == 13.5
        await pilot.press("left", "left", "left")
        await settle(pilot)
        assert scr.position == 0.0  # clamped at the start
        await pilot.press("end")
        await settle(pilot)
        assert scr.position == 40.5
        await pilot.press("home")
        await settle(pilot)
        assert scr.position == 0.0 and _text(app) == "Welcome to web1\nalice@web1:~$\n"


@sync
async def test_full_screen_program_colours_and_resize(settings: RecorderSettings) -> None:
    app = PlayerApp(settings, session_id=ALICE, clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        scr = _screen(app)
        await pilot.press("g", *"1.5", "enter")
        await settle(pilot)
        view = scr.query_one(TerminalView)
        text = view._text
        styles = {text.plain[s.start : s.end]: str(s.style) for s in text.spans}
        assert "bold blue" in styles["docs"] and "bold green" in styles["run.sh"]
        assert "on red" in styles["ALERT"]
        assert "bold green" in styles["alice@web1"]
        # vim (alternate screen, with ESC[>4;2m): its screen while it runs
        await pilot.press("g", *"5", "enter")
        await settle(pilot)
        lines = _text(app).splitlines()
        assert lines[0] == "hello secret-plan" and lines[1] == "~" and lines[20] == "~"
        assert lines[21] == '"notes.txt" 1L, 18B'
        # after vim: cleared, prompt back; then the resize to 100x30
        await pilot.press("g", *"7", "enter")
        await settle(pilot)
        assert _text(app) == "alice@web1:~$\n" and view._term_size == (80, 24)
        await pilot.press("g", *"8", "enter")
        await settle(pilot)
        assert view._term_size == (100, 30) and view.size.width == 100
        assert len(view.lines) == 30


@sync
async def test_goto_parses_times_and_rejects_garbage(settings: RecorderSettings) -> None:
    app = PlayerApp(settings, session_id=ALICE, clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        scr = _screen(app)
        await pilot.press("g", *"0:20", "enter")
        await settle(pilot)
        assert scr.position == 20.0
        await pilot.press("g", *"+5", "enter")
        await settle(pilot)
        assert scr.position == 25.0
        await pilot.press("g", *"soon", "enter")
        await pilot.pause()
        err = str(app.screen.query_one("#goto-error", Static).render())
        assert "not a time: 'soon'" in err
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is scr and scr.position == 25.0


@sync
async def test_speed_limits_and_idle_skip_playback(settings: RecorderSettings) -> None:
    app = PlayerApp(settings, session_id=ALICE, clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        scr = _screen(app)
        await pilot.press(*["minus"] * 8)
        assert scr.speed == 0.25 and "0.25x" in _status(app)
        await pilot.press(*["plus"] * 10)
        assert scr.speed == 16.0 and scr.speed == SPEEDS[-1]
        await pilot.press(*["minus"] * 4)
        assert scr.speed == 1.0
        await pilot.press("i")
        assert not scr.skip_idle and "real-time" in _status(app)
        await pilot.press("i")
        assert scr.skip_idle
        # at 1x, the 30 s idle gap after 9.5 is skipped: the end comes within seconds
        await pilot.press("g", *"10", "enter")
        await settle(pilot)
        await pilot.press("space")
        assert scr.playing
        deadline = time.monotonic() + 15
        while scr.playing and time.monotonic() < deadline:  # noqa: ASYNC110 - polling the UI
            await asyncio.sleep(0.05)
        await settle(pilot)
        assert not scr.playing and scr.position == 40.5
        assert "needle-in-haystack" in _text(app)
        await pilot.press("space")  # at the end: play again from the start
        assert scr.playing
        await pilot.press("space")
        assert not scr.playing and scr.position < 5


@sync
async def test_search_in_session_jumps_to_when_text_appeared(settings: RecorderSettings) -> None:
    app = PlayerApp(settings, session_id=ALICE, clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        scr = _screen(app)
        await pilot.press("slash", *"secret-plan", "enter")
        await settle(pilot)
        assert [h.time for h in scr.hits] == [3.5]
        assert scr.position == 3.5 and "hello secret-plan" in _text(app)
        spans = scr.query_one(TerminalView)._text.spans
        plain = scr.query_one(TerminalView)._text.plain
        assert "secret-plan" in [plain[s.start : s.end] for s in spans if "yellow" in str(s.style)]
        assert any(m.kind == "hit" and m.time == 3.5 for m in scr.query_one(Timeline).marks)
        await pilot.press("g", *"3.4", "enter")
        await settle(pilot)
        assert "secret-plan" not in _text(app)  # not on screen yet just before
        await pilot.press("right_square_bracket")
        await settle(pilot)
        assert scr.position == 3.5
        await pilot.press("slash", "ctrl+u", *"needle", "enter")
        await settle(pilot)
        assert scr.position == 39.5 and [h.time for h in scr.hits] == [39.5]
        await pilot.press("slash", "ctrl+u", *"nowhere-text", "enter")
        await settle(pilot)
        assert scr.hits == [] and scr.position == 39.5
        assert not scr.query_one("#replay-search", Input).display


@sync
async def test_copy_screen_and_command(settings: RecorderSettings) -> None:
    app = PlayerApp(settings, session_id=ALICE, clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        scr = _screen(app)
        await pilot.press("n")
        await settle(pilot)
        await pilot.press("c")
        expected = (
            "Welcome to web1\nalice@web1:~$ ls --color\ndocs  run.sh  notes.txt  ALERT\n"
            "alice@web1:~$\n"
        )
        assert app.clipboard == expected
        assert scr.last_copy is not None
        assert scr.last_copy.read_text() == expected
        assert scr.last_copy.stat().st_mode & 0o077 == 0  # private file
        await pilot.press("y")
        assert app.clipboard == "ls --color\n"
        assert scr.last_copy.read_text() == "ls --color\n"


@sync
async def test_tampered_recording_is_flagged(settings: RecorderSettings) -> None:
    app = PlayerApp(settings, session_id="play-carol-0003", clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        title = str(app.screen.query_one("#replay-title", Static).render())
        assert "damaged" in title and "tampered@1" in title and "digest mismatch" in title


@sync
async def test_live_session_shows_what_was_recorded_so_far(settings: RecorderSettings) -> None:
    app = PlayerApp(settings, session_id="play-dave-0004", clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        title = str(app.screen.query_one("#replay-title", Static).render())
        assert "dave@db1 ssh/shell 2025-11-23 15:13:20  live  chain intact so far" in title
        assert "truncated" not in title and "no trailer" not in title
        await pilot.press("end")
        await settle(pilot)
        assert "cron[1]: ok" in _text(app)


@sync
async def test_unknown_session_shows_an_error(settings: RecorderSettings) -> None:
    app = PlayerApp(settings, session_id="nope", clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        title = str(app.screen.query_one("#replay-title", Static).render())
        assert "no session 'nope'" in title
        await pilot.press("escape")
        await pilot.pause()
        assert app.return_code == 0 or not app.is_running


@sync
async def test_timeline_click_seeks(settings: RecorderSettings) -> None:
    app = PlayerApp(settings, session_id=ALICE, clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        scr = _screen(app)
        await pilot.click(Timeline, offset=(40, 0))
        await settle(pilot)
        assert scr.position == 40.5 * 40 / 80


@sync
async def test_copy_refuses_a_shared_copy_directory(
    settings: RecorderSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    (shared / f"bastille-player-{os.getuid()}").mkdir(parents=True)
    (shared / f"bastille-player-{os.getuid()}").chmod(0o777)
    monkeypatch.setenv("BASTILLE_PLAYER_COPY_DIR", str(shared))
    app = PlayerApp(settings, session_id=ALICE, clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        scr = _screen(app)
        assert app.clipboard == "Welcome to web1\nalice@web1:~$\n"  # the clipboard still works
        assert scr.last_copy is None
        assert list((shared / f"bastille-player-{os.getuid()}").iterdir()) == []


@sync
async def test_corrupt_keyframe_cache_is_reported_not_a_crash(settings: RecorderSettings) -> None:
    from player.archive import Archive
    from recorder import keyframes

    archive = Archive(settings)
    kfi = archive.open(ALICE).kfi  # builds and caches the keyframes
    archive.close()
    kfi.keyframes[1].snapshot = {"cols": 80}  # damaged cache: no lines, no cursor
    keyframes.save(settings.data_dir, kfi)
    app = PlayerApp(settings, session_id=ALICE, clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("g", *"6", "enter")
        await settle(pilot)
        title = str(app.screen.query_one("#replay-title", Static).render())
        assert "cannot replay play-alice-0001" in title
        assert app.is_running


@sync
async def test_follows_a_live_session_as_it_happens(tmp_path: Path) -> None:
    """A session still being recorded is followed: new output appears without reopening."""
    from recorder.service import Recorder, SessionHeader

    settings = RecorderSettings(data_dir=tmp_path / "data", flush_interval=0.1)
    recorder = Recorder(settings)
    await recorder.start()
    live = await recorder.open_session(SessionHeader(
        session_id=Recorder.new_session_id(), user="eve", target="web9", protocol="ssh",
        kind="shell", client_addr="127.0.0.1:1", start_time=time.time()))
    live.output(b"first-line\r\n")
    await asyncio.sleep(0.6)
    app = PlayerApp(settings, session_id=live.session_id)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            assert "first-line" in _text(app) and "following" in _status(app)
            live.output(b"second-line\r\n")
            for _ in range(100):
                await asyncio.sleep(0.1)
                await pilot.pause()
                if "second-line" in _text(app):
                    break
            assert "second-line" in _text(app)
            await live.close(exit_status=0)
            for _ in range(100):
                await asyncio.sleep(0.1)
                await pilot.pause()
                if not _screen(app).following:
                    break
            assert not _screen(app).following
    finally:
        await recorder.close()
