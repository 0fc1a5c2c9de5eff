"""Recording budgets (gateway.core.budget) and the per-day usage store (state.usage)."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.config import BudgetSettings
from gateway.config.reader import parse_size
from gateway.core.budget import Budget, Exceeded, human
from state.usage import UsageStore, utc_day

MIB = 1 << 20


def test_sizes() -> None:
    assert parse_size(1024) == 1024 and parse_size("512K") == 512 * 1024
    assert parse_size("64MiB") == 64 * MIB and parse_size("2g") == 2 << 30
    assert parse_size("1.5M") == int(1.5 * MIB) and parse_size("100 B") == 100
    assert parse_size("ten") is None and parse_size(-1) is None and parse_size(True) is None
    assert human(64 * MIB) == "64 MiB" and human(1536) == "1.5 KiB" and human(7) == "7 bytes"


def test_session_budget() -> None:
    b = Budget(BudgetSettings(session_bytes=10 * MIB), None, "alice")
    assert b.used_up() is None and b.check(10 * MIB) is None
    assert b.check(10 * MIB + 1) == Exceeded("session", 10 * MIB)
    assert b.check(11 * MIB) is None  # reported once


def test_daily_budget_counts_every_session_of_the_user(tmp_path: Path) -> None:
    store = UsageStore(tmp_path / "usage.sqlite3")
    now = [1_800_000_000.0]
    settings = BudgetSettings(user_day_bytes=10 * MIB)
    first = Budget(settings, store, "alice", wall=lambda: now[0])
    assert first.check(6 * MIB) is None  # flushed: 6 MiB >= FLUSH_BYTES
    first.close(7 * MIB)
    second = Budget(settings, store, "alice", wall=lambda: now[0])
    assert second.check(3 * MIB) is None
    assert second.check(3 * MIB + 1) == Exceeded("day", 10 * MIB)
    second.close(5 * MIB)
    third = Budget(settings, store, "alice", wall=lambda: now[0])
    assert third.used_up() == Exceeded("day", 10 * MIB)
    assert Budget(settings, store, "bob", wall=lambda: now[0]).used_up() is None
    now[0] += 86400  # the next UTC day
    assert Budget(settings, store, "alice", wall=lambda: now[0]).used_up() is None
    assert store.used("alice", utc_day(now[0] - 86400)) == 12 * MIB
    assert os.stat(tmp_path / "usage.sqlite3").st_mode & 0o777 == 0o600
    store.close()


def test_throttle_pause_keeps_the_rate() -> None:
    t = [100.0]
    b = Budget(BudgetSettings(session_bytes=MIB, action="throttle", throttle_rate=100_000),
               None, "alice", clock=lambda: t[0])
    assert b.pause(2 * MIB) == 0.0  # not exceeded yet
    assert b.check(MIB + 10) is not None
    assert b.pause(MIB + 10) == 0.0
    assert abs(b.pause(MIB + 10 + 200_000) - 2.0) < 1e-9  # 200 kB ahead at 100 kB/s
    t[0] += 2.0
    assert b.pause(MIB + 10 + 200_000) == 0.0
