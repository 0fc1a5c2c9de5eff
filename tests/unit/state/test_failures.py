"""Failed logins counted across processes (SSH workers) in one SQLite file."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from state.failures import SharedFailureLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


CHILD = "import sys; from pathlib import Path; from state.failures import SharedFailureLimiter; " \
    "SharedFailureLimiter(Path(sys.argv[1]), 3, 60.0).record_failure(sys.argv[2])"
ROOT = Path(__file__).resolve().parents[3]


def test_failures_of_several_processes_add_up(tmp_path: Path) -> None:
    path = tmp_path / "login_failures.sqlite3"
    here = SharedFailureLimiter(path, 3, 60.0)
    for _ in range(2):  # two other worker processes refuse the same address
        subprocess.run([sys.executable, "-c", CHILD, str(path), "10.0.0.9"], cwd=ROOT,
                       check=True, timeout=30)
    assert not here.blocked("10.0.0.9")
    here.record_failure("10.0.0.9")
    assert here.blocked("10.0.0.9")
    assert here.blocked("user:alice", "10.0.0.9")  # any key blocked blocks
    assert not here.blocked("10.0.0.8")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_failures_leave_the_window_and_reset_forgets(tmp_path: Path) -> None:
    clock = Clock()
    a = SharedFailureLimiter(tmp_path / "f.sqlite3", 2, 60.0, clock=clock)
    b = SharedFailureLimiter(tmp_path / "f.sqlite3", 2, 60.0, clock=clock)
    a.record_failure("1.2.3.4", "user:bob")
    clock.now += 30
    b.record_failure("1.2.3.4")
    assert a.blocked("1.2.3.4") and not a.blocked("user:bob")
    clock.now += 31  # the first failure is older than the window now
    assert not b.blocked("1.2.3.4")
    b.record_failure("1.2.3.4")
    assert a.blocked("1.2.3.4")
    a.reset("1.2.3.4")
    assert not b.blocked("1.2.3.4")


def test_rows_are_bounded(tmp_path: Path) -> None:
    clock = Clock()
    lim = SharedFailureLimiter(tmp_path / "f.sqlite3", 5, 600.0, clock=clock, max_rows=50)
    for i in range(200):  # a scan from many addresses
        clock.now += 0.01
        lim.record_failure(f"10.0.{i // 250}.{i % 250}")
    (n,) = lim._db.execute("SELECT COUNT(*) FROM failures").fetchone()
    assert n == 50
