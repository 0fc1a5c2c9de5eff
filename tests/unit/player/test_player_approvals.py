"""Pilot tests of the Approvals pane against the real approval queue (SQLite)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from player_testing import sync
from textual.widgets import DataTable

from player.app import PlayerApp
from player.approvals import ApprovalsScreen, Approver
from recorder.settings import RecorderSettings
from state.approvals import ApprovalStore, Request


async def _wait_rows(app: PlayerApp, pilot, n: int) -> DataTable:  # type: ignore[no-untyped-def, type-arg]
    for _ in range(100):
        await pilot.pause()
        await asyncio.sleep(0.05)
        scr = app.screen
        if isinstance(scr, ApprovalsScreen):
            table = scr.query_one("#approvals", DataTable)
            if table.row_count == n:
                return table
    raise AssertionError("the approvals table did not show the requests")


@sync
async def test_approve_with_reason_and_self_approval_refused(settings: RecorderSettings) -> None:
    store = ApprovalStore(settings.data_dir / "approvals.sqlite3")
    alice = store.create(user="alice", target="db1", session="s1", command="systemctl stop pg",
                         rule="approve-service-stop", reason="r", timeout=300)
    decided: list[tuple[Request, str]] = []
    bob = Approver("bob", frozenset({"sec"}), True, lambda r, why: decided.append((r, why)))
    app = PlayerApp(settings, approver=bob)
    async with app.run_test(size=(100, 24)) as pilot:
        await pilot.pause()
        await pilot.press("a")
        table = await _wait_rows(app, pilot, 1)
        row = [getattr(c, "plain", c) for c in table.get_row_at(0)]
        assert row[2:] == ["alice", "db1", "approve-service-stop", "systemctl stop pg", "r"]
        await pilot.press("y")
        await pilot.press(*"looks fine")
        await pilot.press("enter")
        await _wait_rows(app, pilot, 0)
    result = store.get(alice.id)
    assert result is not None and (result.status, result.decided_by) == ("approved", "bob")
    assert result.decision_reason == "looks fine"
    assert decided and decided[0][1] == "looks fine"
    own = store.create(user="bob", target="db1", session="s2", command="reboot", rule=None,
                       reason="r", timeout=300)
    app = PlayerApp(settings, approver=bob)
    async with app.run_test(size=(100, 24)) as pilot:
        await pilot.pause()
        await pilot.press("a")
        await _wait_rows(app, pilot, 1)
        await pilot.press("n", "enter")
        await pilot.pause()
        await _wait_rows(app, pilot, 1)  # still pending: refused
    got = store.get(own.id)
    assert got is not None and got.status == "pending"
    store.close()


@sync
async def test_read_only_user_cannot_decide(settings: RecorderSettings, tmp_path: Path) -> None:
    store = ApprovalStore(settings.data_dir / "approvals.sqlite3")
    req = store.create(user="alice", target="db1", session="s1", command="userdel bob",
                       rule="approve-account-change", reason="r", timeout=300)
    app = PlayerApp(settings, approver=Approver("carol"))
    async with app.run_test(size=(100, 24)) as pilot:
        await pilot.pause()
        await pilot.press("a")
        await _wait_rows(app, pilot, 1)
        await pilot.press("y")
        await pilot.pause()
        assert not app.screen.query_one("#approvals-reason").display
    got = store.get(req.id)
    assert got is not None and got.status == "pending"
    store.close()


@sync
async def test_auditor_terminates_a_live_session_from_the_replay(tmp_path: Path) -> None:
    from recorder.service import Recorder, SessionHeader

    settings = RecorderSettings(data_dir=tmp_path / "data", flush_interval=0.1)
    recorder = Recorder(settings)
    await recorder.start()
    live = await recorder.open_session(SessionHeader(
        session_id=Recorder.new_session_id(), user="alice", target="db1", protocol="ssh",
        kind="shell", client_addr="127.0.0.1:1", start_time=0.0))
    live.output(b"$ tail -f /var/log/syslog\r\n")
    await asyncio.sleep(0.5)
    kills: list[tuple[str, str]] = []
    watched: list[str] = []
    bob = Approver("bob", frozenset(), True, None, lambda s, why: kills.append((s, why)),
                   watched.append)
    try:
        for approver, allowed in ((Approver("carol"), False), (bob, True)):
            app = PlayerApp(settings, session_id=live.session_id, approver=approver)
            async with app.run_test(size=(100, 30)) as pilot:
                for _ in range(50):
                    await pilot.pause()
                    await asyncio.sleep(0.05)
                    if getattr(app.screen, "data", None) is not None:
                        break
                await pilot.press("k")
                await pilot.pause()
                box = app.screen.query_one("#kill-reason")
                assert bool(box.display) is allowed
                if allowed:
                    await pilot.press(*"data exfiltration", "enter")
                    await pilot.pause()
        store = ApprovalStore(settings.data_dir / "approvals.sqlite3")
        assert store.pending_kills() == [(live.session_id, "bob", "data exfiltration")]
        assert kills == [(live.session_id, "data exfiltration")]
        assert watched == [live.session_id]  # opening a live session is reported (audit)
        store.close()
    finally:
        await live.close(exit_status=0)
        await recorder.close()
