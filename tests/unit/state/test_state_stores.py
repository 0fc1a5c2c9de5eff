"""The state package: private modes whatever the umask, WAL, the one time parser, and
the approval/grant/kill store behind its protocols."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from state.approvals import ApprovalError, Approvals, ApprovalStore
from state.bindings import BindingStore
from state.files import open_sqlite, private_dir, private_file
from state.paths import DataDir
from state.timeparse import parse_duration, parse_when
from state.tokens import TokenStore


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_every_store_is_private_whatever_the_umask(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "a" / "b" / "data")
    stores = [ApprovalStore(data.approvals), TokenStore(data.rdp_tokens),
              BindingStore(data.oidc_bindings)]
    stores[0].create(user="u", target="t", session="s", command="c", rule=None, reason="r",
                     timeout=60)
    for d in (tmp_path / "a", tmp_path / "a" / "b", data.root):
        assert _mode(d) == 0o700, d
    for f in data.root.iterdir():  # the databases and their -wal/-shm files
        assert _mode(f) == 0o600, f
    for s in stores:
        s.close()


@pytest.mark.usefixtures("open_umask")
def test_existing_world_readable_state_file_is_narrowed(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite3"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    db = open_sqlite(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    assert _mode(path) == 0o600
    assert private_file(tmp_path / "d" / "f") == tmp_path / "d" / "f"
    assert _mode(tmp_path / "d") == 0o700 and _mode(tmp_path / "d" / "f") == 0o600
    existing = tmp_path / "kept"
    existing.mkdir(mode=0o755)
    os.chmod(existing, 0o755)
    private_dir(existing)  # an operator's directory keeps its mode
    assert _mode(existing) == 0o755


@pytest.mark.parametrize(("value", "seconds"), [
    (90, 90.0), (1.5, 1.5), ("30s", 30.0), ("5m", 300.0), ("8h", 28800.0), ("1d", 86400.0),
    ("2w", 1209600.0), ("250ms", 0.25), (" 7 ", 7.0), ("x", None), ("-1s", None), (-1, None),
    (True, None), (None, None), ("5 years", None)])
def test_durations(value: object, seconds: float | None) -> None:
    assert parse_duration(value) == seconds


def test_points_in_time() -> None:
    assert parse_when("2h", now=10_000.0) == 10_000.0 - 7200
    assert parse_when("1.5m", now=1000.0) == 910.0
    assert parse_when("1w", now=1e6) == 1e6 - 604800
    assert parse_when("2026-11-24T10:00:00Z") == 1795514400.0
    assert parse_when("2026-11-24T11:00:00+01:00") == 1795514400.0
    for bad in ("yesterdayish", "2026", "", "-2h"):
        with pytest.raises(ValueError, match="relative age such as 30m"):
            parse_when(bad)


def _approvers(*names: str):  # type: ignore[no-untyped-def]
    class _A:
        def allows(self, user: str, groups: frozenset[str]) -> bool:
            return user in names
    return _A()


def test_approval_store_implements_the_protocol_and_its_rules(tmp_path: Path) -> None:
    now = [1000.0]
    store: Approvals = ApprovalStore(tmp_path / "a.sqlite3", clock=lambda: now[0])
    req = store.create(user="alice", target="web1", session="s1", command="rm -r x",
                       rule="r", reason="why", timeout=60)
    who = _approvers("bob")
    with pytest.raises(ApprovalError, match="own request"):
        store.decide(req.id, approver="alice", approver_groups=frozenset(), approvers=_approvers(
            "alice"), approve=True)
    with pytest.raises(ApprovalError, match="not an approver"):
        store.decide(req.id, approver="carol", approver_groups=frozenset(), approvers=who,
                     approve=True)
    done = store.decide(req.id, approver="bob", approver_groups=frozenset(), approvers=who,
                        approve=True, reason="ok")
    assert (done.status, done.decided_by) == ("approved", "bob")
    assert asyncio.run(store.wait(req.id)).status == "approved"
    with pytest.raises(ApprovalError, match="already approved"):
        store.decide(req.id, approver="bob", approver_groups=frozenset(), approvers=who,
                     approve=False)
    late = store.create(user="alice", target="web1", session="s1", command="x", rule=None,
                        reason="", timeout=60)
    now[0] += 61
    assert asyncio.run(store.wait(late.id)).status == "expired"
    with pytest.raises(ApprovalError, match="no approval request #999"):
        asyncio.run(store.wait(999))
    # grants: approved access for a while, then gone
    access = store.create_access(user="bob", target="db1", seconds=3600, reason="incident",
                                 timeout=60)
    assert store.active_grant("bob", "db1") is None
    store.decide(access.id, approver="carol", approver_groups=frozenset(),
                 approvers=_approvers("carol"), approve=True)
    assert store.active_grant("bob", "db1") is not None
    assert store.active_grant("bob", "web1") is None
    now[0] += 3601
    assert store.active_grant("bob", "db1") is None
    # kill requests
    store.request_kill("s9", by="carol", reason="stop")
    assert store.pending_kills() == [("s9", "carol", "stop")]
    store.kill_done("s9")
    assert store.pending_kills() == [] and store.kill_status("s9") == now[0]
    assert store.kill_status("nope") is None
    store.close()
