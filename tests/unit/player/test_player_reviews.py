"""Reviews: the signed store (state.reviews) and the player's review keys (Pilot)."""

from __future__ import annotations

import base64
import json
import sqlite3
import stat
from pathlib import Path

import pytest
from player_testing import NOW, settle, sync
from textual.widgets import DataTable, Input, Static

from player.app import PlayerApp
from player.approvals import Approver
from player.events_panel import EventsPanel
from player.find import FindScreen
from player.replay import ReplayScreen
from recorder.settings import RecorderSettings
from recorder.signing import generate, load_signer
from state.reviews import ReviewError, ReviewStore, verify_record


def _store(tmp_path: Path, *, signer: bool = True, trusted: bool = True) -> ReviewStore:
    key = tmp_path / "k.key"
    if not key.exists():
        generate(key)
    s = load_signer(key)
    return ReviewStore(tmp_path / "reviews.sqlite3", signer=s if signer else None,
                       trusted=[s.public_raw] if trusted else None,
                       signing_required=signer)


def test_records_are_signed_chained_and_private(tmp_path: Path) -> None:
    store = _store(tmp_path)
    a = store.add("s1", "note", "bob", text="odd sudo", at=12.5, recording="ab" * 32)
    b = store.add("s1", "flag", "bob", text="check this", at=14.0, entry="e7")
    c = store.add("s1", "reviewed", "carol")
    store.add("s2", "reviewed", "bob")
    assert [r.status for r in store.records("s1")] == ["signed"] * 3
    assert b.prev == a.digest and c.prev == b.digest and a.prev == ""
    # anyone checks a record with the public key alone
    assert verify_record(a.payload.encode(), base64.b64decode(a.signature or ""),
                         base64.b64decode(a.public_key or ""))
    body = json.loads(a.payload)
    assert body["session"] == "s1" and body["recording"] == "ab" * 32 and body["at"] == 12.5
    summary = store.summaries(["s1", "s2", "s3"])
    assert summary["s1"].reviewed_by == ("carol",) and summary["s1"].flags == 1
    assert summary["s1"].notes == 1 and "s3" not in summary
    store.add("s1", "unflag", "bob", ref=b.digest, at=14.0, entry="e7")
    assert store.summaries(["s1"])["s1"].flags == 0
    mode = stat.S_IMODE((tmp_path / "reviews.sqlite3").stat().st_mode)
    assert mode == 0o600
    store.close()


def test_tampering_is_detected(tmp_path: Path) -> None:
    store = _store(tmp_path)
    for i in range(3):
        store.add("s1", "note", "bob", text=f"note {i}", at=float(i))
    store.close()
    db = sqlite3.connect(tmp_path / "reviews.sqlite3")
    # an edited text (digest recomputed by the forger): the signature fails
    payload = db.execute("SELECT payload FROM reviews WHERE id=1").fetchone()[0]
    forged = payload.replace("note 0", "all fine")
    import hashlib
    db.execute("UPDATE reviews SET payload=?, digest=? WHERE id=1",
               (forged, hashlib.sha256(forged.encode()).hexdigest()))
    db.execute("DELETE FROM reviews WHERE id=2")  # a record removed from the middle
    db.commit()
    db.close()
    store = _store(tmp_path)
    assert [(r.id, r.status) for r in store.records("s1")] == [
        (1, "bad-signature"), (3, "broken-chain")]
    assert store.summaries(["s1"])["s1"].problems == 2
    # signed by another key: untrusted
    other = tmp_path / "other"
    other.mkdir()
    generate(other / "k.key")
    foreign = ReviewStore(tmp_path / "reviews.sqlite3", signer=load_signer(other / "k.key"))
    foreign.add("s9", "reviewed", "mallory")
    foreign.close()
    assert [r.status for r in store.records("s9")] == ["untrusted-key"]
    store.close()


def test_bad_input_and_missing_key_are_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with pytest.raises(ReviewError, match="unknown review kind"):
        store.add("s1", "approve", "bob")
    with pytest.raises(ReviewError, match="needs a time"):
        store.add("s1", "note", "bob", text="x")
    with pytest.raises(ReviewError, match="at most 4000"):
        store.add("s1", "note", "bob", text="x" * 4001, at=1.0)
    with pytest.raises(ReviewError, match="author"):
        store.add("s1", "reviewed", " ")
    store.close()
    # a key is configured but this process cannot read it: nothing is stored
    locked = ReviewStore(tmp_path / "reviews.sqlite3", signing_required=True)
    with pytest.raises(ReviewError, match="cannot read"):
        locked.add("s1", "reviewed", "bob")
    assert locked.records("s1") == []
    locked.close()
    # no key configured at all: stored, and shown as unsigned
    plain = ReviewStore(tmp_path / "plain.sqlite3")
    assert plain.add("s1", "reviewed", "bob").status == "unsigned"
    plain.close()


def _find_col(app: PlayerApp, name: str) -> list[str]:
    table = app.screen.query_one(DataTable)
    idx = list(table.columns).index(name)  # type: ignore[arg-type]
    return [str(table.get_row_at(i)[idx]) for i in range(table.row_count)]


@sync
async def test_mark_reviewed_note_and_flag_from_the_replay(settings: RecorderSettings) -> None:
    audited: list[tuple[str, str, float | None]] = []
    bob = Approver("bob", on_review=lambda r: audited.append((r.kind, r.text, r.at)))
    app = PlayerApp(settings, clock=lambda: NOW, approver=bob)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        assert _find_col(app, "review") == ["", "", "", ""]
        await pilot.press("down", "down", "down", "enter")  # alice
        await settle(pilot)
        scr = app.screen
        assert isinstance(scr, ReplayScreen) and scr.session_id == "play-alice-0001"
        await pilot.press("g", *"9.5", "enter")
        await settle(pilot)
        await pilot.press("a", *"why rm -rf /?", "enter")  # a note at 9.5 s
        await settle(pilot)
        panel = scr.query_one(EventsPanel)
        notes = [r for r in panel.rows if r.kind == "note"]
        assert [(r.time, r.text) for r in notes] == [(9.5, "note by bob: why rm -rf /?")]
        assert any(m.kind == "note" and m.time == 9.5 for m in scr.data.marks)  # type: ignore[union-attr]
        # flag the transfer: focus the panel, pick the row, x
        await pilot.press("tab")
        table = panel.query_one(DataTable)
        row = next(i for i, r in enumerate(panel.rows) if r.kind == "transfer")
        table.move_cursor(row=row)
        await pilot.press("x", *"unexpected upload", "enter")
        await settle(pilot)
        assert [r.flagged for r in panel.rows if r.kind == "transfer"] == [True]
        await pilot.press("x")  # on a flagged event: the flag is withdrawn
        await settle(pilot)
        assert [r.flagged for r in panel.rows if r.kind == "transfer"] == [False]
        await pilot.press("x", *"unexpected upload", "enter")  # and raised again
        await settle(pilot)
        await pilot.press("escape", "m", "enter")  # mark reviewed (empty note)
        await settle(pilot)
        title = str(scr.query_one("#replay-title", Static).render())
        assert "reviewed by bob" in title and "1 flag" in title
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, FindScreen)
        await pilot.press("r")
        await settle(pilot)
        assert _find_col(app, "review")[3] == "F1 ok:bob"
        # filters: unreviewed, flagged, all
        await pilot.press("v")
        await settle(pilot)
        assert _find_col(app, "id") == ["play-dave-0004", "play-carol-0003", "play-bob-0002"]
        await pilot.press("v")
        await settle(pilot)
        assert _find_col(app, "id") == ["play-alice-0001"]
        await pilot.press("v")
        await settle(pilot)
        assert len(_find_col(app, "id")) == 4
    assert audited == [("note", "why rm -rf /?", 9.5), ("flag", "unexpected upload", 8.5),
                       ("unflag", "", 8.5), ("flag", "unexpected upload", 8.5),
                       ("reviewed", "", None)]
    store = ReviewStore(settings.data_dir / "reviews.sqlite3",
                        trusted=[load_signer(settings.data_dir / "recording.key").public_raw])
    records = store.records("play-alice-0001")
    assert [(r.kind, r.author, r.status) for r in records] == [
        ("note", "bob", "signed"), ("flag", "bob", "signed"), ("unflag", "bob", "signed"),
        ("flag", "bob", "signed"), ("reviewed", "bob", "signed")]
    assert records[2].ref == records[1].digest  # the withdrawal names the flag
    assert records[1].entry is not None and records[0].recording  # bound to the recording
    store.close()


@sync
async def test_reviews_refused_when_the_signing_key_cannot_be_read(
        settings: RecorderSettings) -> None:
    (settings.data_dir / "recording.key").chmod(0)  # root reads it anyway: move it away
    (settings.data_dir / "recording.key").rename(settings.data_dir / "elsewhere.key")
    app = PlayerApp(settings, session_id="play-bob-0002", clock=lambda: NOW,
                    approver=Approver("bob"))
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await pilot.press("a", *"a note", "enter")
        await settle(pilot)
        assert not any(r.kind == "note" for r in app.screen.query_one(EventsPanel).rows)
        assert not app.screen.query("#ask-input") or \
            not app.screen.query_one("#ask-input", Input).value
    store = ReviewStore(settings.data_dir / "reviews.sqlite3")
    assert store.records("play-bob-0002") == []
    store.close()
