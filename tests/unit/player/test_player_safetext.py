"""Every user- or target-controlled string the player shows is made visible, never acted
on: control characters (OSC 52, CSI, CR, bidi overrides) appear as escapes and Textual
markup in a name or command is shown as text, in the find list, the timeline panel and
its details, the approvals pane and review notes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from player_testing import settle, sync
from textual.widgets import DataTable, Static

from player.app import PlayerApp
from player.approvals import ApprovalsScreen, Approver
from player.events_panel import EventsPanel
from player.replay import ReplayScreen
from recorder.service import Recorder, SessionHeader
from recorder.settings import RecorderSettings
from recorder.signing import generate, load_signer
from state.approvals import ApprovalStore
from state.reviews import ReviewStore

EVIL = "\x1b]52;c;ZXZpbA==\x07\r\x1b[2Kok \u202eexe.txt [b]bold[/b] [/]"
SID = "evil-0001"


async def _record(data: Path) -> None:
    settings = RecorderSettings(data_dir=data, signing_key=data / "recording.key")
    r = Recorder(settings)
    await r.start()
    s = await r.open_session(SessionHeader(
        session_id=SID, user="u" + EVIL, target="t" + EVIL, protocol="ssh", kind="exec",
        client_addr="c" + EVIL, start_time=1_763_900_000.0, command="cmd" + EVIL))
    s.command("cmd" + EVIL, source="exec")
    s.policy(command="cmd" + EVIL, action="deny", rule="r" + EVIL, reason="why" + EVIL)
    s.file_transfer(path="/p" + EVIL, direction="upload", size=1, sha256="", protocol="scp")
    s.output(b"out\r\n")
    await s.close(exit_status=1)
    await r.close()


def _plain(value: object) -> str:
    return getattr(value, "plain", str(value))


def _clean(texts: list[str], *, whole: bool = True) -> None:
    joined = "".join(texts)
    assert "\x1b" not in joined and "\x07" not in joined and "\r" not in joined
    assert "\u202e" not in joined
    assert "\\x1b]52" in joined
    if whole:  # not cut to a column's width
        assert "\\u202e" in joined and "[b]bold[/b] [/]" in joined  # markup shown as typed


@sync
async def test_hostile_strings_are_shown_visibly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    generate(data / "recording.key")
    await _record(data)
    store = ApprovalStore(data / "approvals.sqlite3")
    store.create(user="u" + EVIL, target="t" + EVIL, session=SID, command="cmd" + EVIL,
                 rule="r" + EVIL, reason="because" + EVIL, timeout=300)
    store.close()
    reviews = ReviewStore(data / "reviews.sqlite3", signer=load_signer(data / "recording.key"))
    reviews.add(SID, "note", "auditor" + EVIL, text="note" + EVIL, at=0.0)
    reviews.close()
    settings = RecorderSettings(data_dir=data, signing_key=data / "recording.key")
    app = PlayerApp(settings, approver=Approver("bob", may_decide=True))
    async with app.run_test(size=(200, 50)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(DataTable)
        cells = [_plain(c) for c in table.get_row_at(0)]
        _clean(cells, whole=False)
        _clean([_plain(app.screen.query_one("#find-status", Static).render())])
        await pilot.press("enter")
        await settle(pilot)
        scr = app.screen
        assert isinstance(scr, ReplayScreen)
        panel = scr.query_one(EventsPanel)
        _clean([r.text for r in panel.rows])
        _clean([_plain(scr.query_one("#replay-title", Static).render())], whole=False)
        details = []
        for i in range(len(panel.rows)):
            panel.query_one(DataTable).move_cursor(row=i)
            await pilot.pause()
            details.append(_plain(scr.query_one("#events-detail", Static).render()))
        _clean(details)
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("a")
        for _ in range(50):
            await pilot.pause()
            await asyncio.sleep(0.05)
            if isinstance(app.screen, ApprovalsScreen) and \
                    app.screen.query_one("#approvals", DataTable).row_count:
                break
        pane = app.screen
        assert isinstance(pane, ApprovalsScreen)
        _clean([_plain(c) for c in pane.query_one("#approvals", DataTable).get_row_at(0)])
        _clean([_plain(pane.query_one("#approvals-detail", Static).render())])
