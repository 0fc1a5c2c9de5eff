"""Pilot tests of the Find screen against an archive written by the real recorder."""

from __future__ import annotations

from player_testing import NOW, settle, sync
from textual.content import Content
from textual.widgets import DataTable, Static

from player.app import PlayerApp
from player.find import FindScreen
from player.replay import ReplayScreen
from recorder.settings import RecorderSettings


def _rows(app: PlayerApp) -> list[list[str]]:
    table = app.screen.query_one(DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def _status(app: PlayerApp) -> str:
    return str(app.screen.query_one("#find-status", Static).render())


def _col(app: PlayerApp, name: str) -> list[str]:
    table = app.screen.query_one(DataTable)
    idx = list(table.columns).index(name)  # type: ignore[arg-type]
    return [row[idx] for row in _rows(app)]


@sync
async def test_lists_sessions_with_status_and_integrity(settings: RecorderSettings) -> None:
    app = PlayerApp(settings, clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, FindScreen)
        ids = ["play-dave-0004", "play-carol-0003", "play-bob-0002", "play-alice-0001"]
        assert _col(app, "id") == ids
        assert _col(app, "user") == ["dave", "carol", "bob", "alice"]
        assert _col(app, "status") == ["live", "ended", "ended", "ended"]
        # a live session is "live" (its chain intact so far), not "truncated"
        assert _col(app, "integrity") == ["live", "tampered@1", "verified", "verified"]
        assert _col(app, "kind") == ["shell"] * 4
        # a live session's count comes at close; commands/policy decisions
        assert _col(app, "cmds") == ["0/0", "1/0", "1/0", "5/1"]
        assert _col(app, "dur") == ["-", "0m02s", "0m02s", "0m40s"]
        title = str(app.screen.query_one("#find-title", Static).render())
        assert title == "bastille player: 4 sessions"


@sync
async def test_filters_user_target_since(settings: RecorderSettings) -> None:
    app = PlayerApp(settings, clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("u", *"bob", "enter")
        await settle(pilot)
        assert _col(app, "id") == ["play-bob-0002"]
        await pilot.press("u", "ctrl+u", "enter", "t", *"web1", "enter")
        await settle(pilot)
        assert _col(app, "id") == ["play-carol-0003", "play-alice-0001"]
        await pilot.press("t", "ctrl+u", "enter", "s", *"2h", "enter")
        await settle(pilot)
        assert _col(app, "id") == ["play-dave-0004", "play-carol-0003"]
        await pilot.press("s", "ctrl+u", *"2025-11-23T13:00..2025-11-23T15:00")
        await pilot.press("enter")
        await settle(pilot)
        assert _col(app, "id") == ["play-carol-0003", "play-bob-0002"]
        await pilot.press("s", "ctrl+u", *"..13:00", "enter")
        await settle(pilot)
        assert "invalid time '13:00'" in _status(app)
        await pilot.press("s", "ctrl+u", *"yesterday")
        await pilot.pause(0.3)
        await settle(pilot)
        assert "invalid time 'yesterday'" in _status(app)


@sync
async def test_full_text_search_highlights_the_match(settings: RecorderSettings) -> None:
    app = PlayerApp(settings, clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"secret-plan", "enter")
        await settle(pilot)
        assert _col(app, "id") == ["play-alice-0001"]
        status = app.screen.query_one("#find-status", Static).render()
        assert isinstance(status, Content)
        assert "hello secret-plan" in status.plain
        spans = [status.plain[s.start : s.end] for s in status.spans]
        assert spans == ["secret-plan"]  # the match is highlighted, nothing else
        await pilot.press("enter")  # the replay opens at the moment the match appeared
        await settle(pilot)
        assert isinstance(app.screen, ReplayScreen) and app.screen.position == 3.5
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, FindScreen)
        # a command search (FTS over commands) finds bob only
        await pilot.press("slash", "ctrl+u", *"uptime", "enter")
        await settle(pilot)
        assert _col(app, "id") == ["play-bob-0002"]
        await pilot.press("slash", "ctrl+u", *"no-such-text", "enter")
        await settle(pilot)
        assert _col(app, "id") == []
        assert "0 sessions" in _status(app)


@sync
async def test_enter_opens_replay_and_escape_returns(settings: RecorderSettings) -> None:
    app = PlayerApp(settings, clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("down", "down", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ReplayScreen)
        assert app.screen.session_id == "play-bob-0002"
        title = str(app.screen.query_one("#replay-title", Static).render())
        assert "bob@db1" in title and "verified" in title
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, FindScreen)


@sync
async def test_the_integrity_column_fits_its_widest_label_however_it_is_batched(
    settings: RecorderSettings,
) -> None:
    """Labels arrive in batches (every 0.25 s on a slow machine): the column is as wide
    as its widest label whatever the split and order, so no label is cut."""
    app = PlayerApp(settings, clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, FindScreen)
        table = screen.query_one(DataTable)
        ids = _col(app, "id")
        # the widest label first, then one wider than the header but narrower than it
        labels = dict(zip(ids, ["truncated@1234", "unreadable", "verified", "live"],
                          strict=True))
        widths = []
        for split in ([ids], [ids[2:], ids[:2]], [[k] for k in ids], [list(reversed(ids))]):
            for key in ids:  # back to the placeholder shown before verification
                table.update_cell(key, "integrity", "...", update_width=True)
            await pilot.pause()
            for part in split:  # each batch is drawn before the next arrives
                screen._set_integrity({k: labels[k] for k in part})
                await pilot.pause()
            widths.append(table.columns["integrity"].content_width)  # type: ignore[index]
            assert _col(app, "integrity") == list(labels.values())
        assert widths == [len("truncated@1234")] * 4
