"""Failed logins counted across processes (SSH workers) in one SQLite file: the rules of
state.ratelimit (per source, per (source, user), never per user name alone)."""

from __future__ import annotations

import logging
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from state.failures import SharedFailureLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


CHILD = ("import sys; from pathlib import Path; from state.failures import "
         "SharedFailureLimiter; SharedFailureLimiter(Path(sys.argv[1]), 3, 60.0, "
         "source_limit=5).record_failure(sys.argv[2], sys.argv[3] or None)")
ROOT = Path(__file__).resolve().parents[3]


def _in_other_process(path: Path, source: str, user: str | None) -> None:
    subprocess.run([sys.executable, "-c", CHILD, str(path), source, user or ""], cwd=ROOT,
                   check=True, timeout=30)


def test_failures_of_several_processes_add_up(tmp_path: Path) -> None:
    path = tmp_path / "login_failures.sqlite3"
    here = SharedFailureLimiter(path, 3, 60.0, source_limit=5)
    for _ in range(2):  # two other worker processes refuse alice's password from .9
        _in_other_process(path, "10.0.0.9", "alice")
    assert not here.blocked("10.0.0.9", "alice")
    here.record_failure("10.0.0.9", "alice")
    assert here.blocked("10.0.0.9", "alice")
    assert not here.blocked("10.0.0.9", "bob")  # never per user name alone...
    assert not here.blocked("10.0.0.8", "alice")  # ...nor per user name elsewhere
    _in_other_process(path, "10.0.0.9", None)  # key offers that matched nothing
    assert not here.blocked("10.0.0.9")
    _in_other_process(path, "10.0.0.9:4242", None)  # the source's fifth failure
    assert here.blocked("10.0.0.9") and here.blocked("10.0.0.9", "bob")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    here.close()


def test_no_user_name_is_written_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "f.sqlite3"
    lim = SharedFailureLimiter(path, 2, 60.0)
    lim.record_failure("192.0.2.1", "secret-looking-name")
    lim.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"192.0.2.1" in stored and b"secret-looking-name" not in stored


def test_failures_leave_the_window_and_a_login_resets_its_pair(tmp_path: Path) -> None:
    clock = Clock()
    a = SharedFailureLimiter(tmp_path / "f.sqlite3", 2, 60.0, source_limit=3, clock=clock)
    b = SharedFailureLimiter(tmp_path / "f.sqlite3", 2, 60.0, source_limit=3, clock=clock)
    a.local.window = b.local.window = 0  # only the file counts here
    a.record_failure("1.2.3.4", "bob")
    clock.now += 30
    b.record_failure("1.2.3.4", "bob")
    assert a.blocked("1.2.3.4", "bob") and not a.blocked("1.2.3.4")
    clock.now += 31  # the first failure is older than the window now
    assert not b.blocked("1.2.3.4", "bob")
    a.record_failure("1.2.3.4", "bob")
    assert b.blocked("1.2.3.4", "bob")
    b.reset("1.2.3.4", "bob")  # bob logged in through the other worker
    assert not a.blocked("1.2.3.4", "bob")
    a.record_failure("1.2.3.4")
    assert a.blocked("1.2.3.4")  # the source's failures survive the reset: 3 in window


def test_rows_are_bounded(tmp_path: Path) -> None:
    clock = Clock()
    lim = SharedFailureLimiter(tmp_path / "f.sqlite3", 5, 600.0, clock=clock, max_rows=50)
    for i in range(200):  # a scan from many addresses
        clock.now += 0.01
        lim.record_failure(f"10.0.{i // 250}.{i % 250}")
    (n,) = lim._db.execute("SELECT COUNT(*) FROM failures").fetchone()
    assert n == 50


def test_a_file_that_cannot_be_written_still_counts_here(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lim = SharedFailureLimiter(tmp_path / "f.sqlite3", 2, 60.0)
    lim._db.close()  # every statement fails from now on
    with caplog.at_level(logging.WARNING, "bastille.state"):
        lim.record_failure("10.1.1.1", "eve")
        lim.record_failure("10.1.1.1", "eve")
        assert lim.blocked("10.1.1.1", "eve")
        lim.reset("10.1.1.1", "eve")
    assert "counted locally" in caplog.text and "cannot reset" in caplog.text
    assert not lim.blocked("10.1.1.1", "eve")
    with pytest.raises(sqlite3.ProgrammingError):
        lim._db.execute("SELECT 1")
