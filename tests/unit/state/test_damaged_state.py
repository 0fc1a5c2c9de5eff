"""Damaged state databases (issue 16 item 6): a garbage or half-cut approvals, RDP token,
single sign-on binding or review database is moved aside with one error line, and an
empty one is started; pending approval requests are gone (treated as expired)."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from state.approvals import ApprovalStore
from state.bindings import BindingStore
from state.errors import StateError
from state.files import open_sqlite
from state.reviews import ReviewStore
from state.tokens import TokenStore


def garbage(path: Path) -> bytes:
    blob = os.urandom(16 * 1024)
    path.write_bytes(blob)
    return blob


def half_cut_approvals(path: Path) -> bytes:
    """A real approvals database with many pending requests, cut in half."""
    store = ApprovalStore(path)
    for i in range(400):
        store.create(user="alice", target="web1", session=f"s{i}", command="x" * 200,
                     rule="r", reason="needs approval", timeout=3600)
    store.close()  # the last connection checkpoints the WAL into the file
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    return blob[: len(blob) // 2]


def _use_approvals(path: Path) -> None:
    s = ApprovalStore(path)
    assert {r.session for r in s.list(status=None)} <= {"new"}  # the old ones are gone
    s.create(user="a", target="t", session="new", command="c", rule=None, reason="r",
             timeout=60)
    assert s.list()[0].session == "new"
    s.close()


def _use_tokens(path: Path) -> None:
    s = TokenStore(path)
    token = s.issue_token("alice", "win1", 60)
    assert s.consume_token(token) is not None
    s.close()


def _use_bindings(path: Path) -> None:
    s = BindingStore(path)
    s.bind(b"key", "alice", frozenset({"ops"}), "sub", "iss", 60)
    s.close()


def _use_reviews(path: Path) -> None:
    s = ReviewStore(path)
    s.add("sess1", "note", "bob", text="looked at it", at=1.0)
    s.close()


STORES: dict[str, tuple[Callable[[Path], None], str]] = {
    "approvals": (_use_approvals, "pending in it are treated as expired"),
    "tokens": (_use_tokens, "no longer work"),
    "bindings": (_use_bindings, "sign in through the browser again"),
    "reviews": (_use_reviews, "kept in the moved file"),
}


@pytest.mark.parametrize("store", sorted(STORES))
@pytest.mark.parametrize("damage", ["garbage", "half-cut"])
def test_a_damaged_store_is_moved_aside_and_started_empty(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, store: str, damage: str) -> None:
    use, consequence = STORES[store]
    path = tmp_path / "data" / f"{store}.sqlite3"
    path.parent.mkdir(mode=0o700)
    if damage == "garbage":
        blob = garbage(path)
    elif store == "approvals":
        blob = half_cut_approvals(path)
    else:
        use(path)  # a real database of this store, with a few rows...
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE filler (x)")
        db.executemany("INSERT INTO filler VALUES (?)", [("y" * 500,)] * 300)
        db.commit()
        db.close()
        blob = path.read_bytes()[: path.stat().st_size // 2]  # ...cut in half
        path.write_bytes(blob)
    with caplog.at_level(logging.ERROR, logger="bastille.state"):
        use(path)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    assert "is damaged" in errors[0] and consequence in errors[0], errors[0]
    [aside] = list(path.parent.glob(f"{store}.sqlite3.corrupt-*[0-9Z]"))
    assert aside.read_bytes() == blob  # kept for an administrator, untouched
    assert aside.name in errors[0]
    caplog.clear()
    use(path)  # healthy now: no second move
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(list(path.parent.glob(f"{store}.sqlite3.corrupt-*[0-9Z]"))) == 1


def test_an_unreadable_file_is_a_clear_error_not_damage(tmp_path: Path) -> None:
    path = tmp_path / "approvals.sqlite3"
    path.mkdir()  # not a file at all
    with pytest.raises((StateError, OSError)):
        ApprovalStore(path)
    assert path.is_dir() and not list(tmp_path.glob("*.corrupt-*"))


def test_a_healthy_database_is_not_touched(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite3"
    db = open_sqlite(path, schema="CREATE TABLE IF NOT EXISTS t (x);")
    db.execute("INSERT INTO t VALUES (1)")
    db.close()
    again: Any = open_sqlite(path, schema="CREATE TABLE IF NOT EXISTS t (x);")
    assert again.execute("SELECT count(*) FROM t").fetchone() == (1,)
    assert again.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    again.close()
    assert not list(tmp_path.glob("*.corrupt-*"))
