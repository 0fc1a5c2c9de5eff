"""Counts of open connections and sessions shared by SSH worker processes."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from state.tallies import LocalTallies, SharedTallies

ROOT = Path(__file__).resolve().parents[3]
CHILD = ("import sys; from pathlib import Path; from state.tallies import SharedTallies; "
         "t = SharedTallies(Path(sys.argv[1]), int(sys.argv[2])); "
         "[t.increment(sys.argv[3]) for _ in range(int(sys.argv[4]))]")


def _other_worker(path: Path, slot: int, key: str, times: int) -> None:
    subprocess.run([sys.executable, "-c", CHILD, str(path), str(slot), key, str(times)],
                   cwd=ROOT, check=True, timeout=30)


def test_workers_count_together_and_a_dead_workers_counts_go(tmp_path: Path) -> None:
    path = tmp_path / "ssh_tallies"
    SharedTallies.create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    here = SharedTallies(path, 0)
    _other_worker(path, 1, "src:10.0.0.1", 3)
    assert here.increment("src:10.0.0.1") == 4
    assert not here.increment_below("src:10.0.0.1", 4)  # nothing counted when refused
    assert here.increment_below("src:10.0.0.1", 5)
    assert here.increment("src:10.0.0.2") == 1
    here.decrement("src:10.0.0.1")
    here.decrement("src:10.0.0.1")
    assert here.increment("src:10.0.0.1") == 4  # 3 of the other worker + 1 here
    SharedTallies(path, 0).forget_slot(1)  # the gateway, when worker 1 exited
    assert here.increment("src:10.0.0.1") == 2  # this worker's own 2
    assert b"10.0.0.1" not in path.read_bytes()  # digests only
    here.close()


def test_a_new_table_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "ssh_tallies"
    SharedTallies.create(path)
    SharedTallies(path, 0).increment("user:alice")
    SharedTallies.create(path)  # the gateway started again
    assert SharedTallies(path, 0).increment("user:alice") == 1


def test_many_keys_come_and_go_without_filling_the_table(tmp_path: Path) -> None:
    """Keys open and close far more often than the table has entries (chains are
    compacted); counts stay exact, collisions on one home entry included."""
    path = tmp_path / "t"
    SharedTallies.create(path, size=64)
    a, b = SharedTallies(path, 0), SharedTallies(path, 1)
    for round_ in range(20):
        keys = [f"src:10.{round_}.0.{i}" for i in range(30)]
        for k in keys:
            assert a.increment(k) == 1
            assert b.increment(k) == 2
        for k in keys:
            a.decrement(k)
            assert b.increment_below(k, 2)
            assert not a.increment_below(k, 2)
            b.decrement(k)
            b.decrement(k)
    assert all(a._entry(i)[2] == 0 for i in range(64))


def test_a_full_table_counts_what_it_can(tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "t"
    SharedTallies.create(path, size=8)
    t = SharedTallies(path, 0)
    for i in range(8):
        t.increment(f"k{i}")
    assert t.increment("one too many") == 1  # not counted: a warning instead
    assert "full" in caplog.text
    assert t.increment("k3") == 2


def test_not_a_table(tmp_path: Path) -> None:
    path = tmp_path / "t"
    path.write_bytes(b"x" * 100)
    with pytest.raises(OSError, match="not a table"):
        SharedTallies(path, 0)


def test_local_tallies() -> None:
    t = LocalTallies()
    assert t.increment("a") == 1 and t.increment("a") == 2
    assert not t.increment_below("a", 2) and t.increment_below("b", 1)
    t.decrement("a")
    assert t.increment("a") == 2
