"""Smoke runs of the benchmarks in bench/: each one, at tiny sizes, still starts its real
sshd and gateway, drives the real OpenSSH clients, and prints its result table.

These check that the benchmarks work, not how fast anything is (no timing assertions):
the figures themselves are in docs/performance.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.rig import have_tools

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def run_bench(name: str, *args: str, timeout: float = 120) -> str:
    reason = have_tools()
    if reason:
        pytest.skip(reason)
    p = subprocess.run(
        [sys.executable, str(ROOT / "bench" / f"{name}.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert p.returncode == 0, f"{name} failed:\n{p.stdout}\n{p.stderr}"
    return p.stdout


def rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines() if line and not line.startswith("#")]


@pytest.mark.slow  # ~14 s on an idle 2-core machine, ~40 s on a busy one
def test_throughput_smoke_prints_every_workload_with_ratios() -> None:
    out = run_bench("throughput", "--smoke")
    table = rows(out)
    assert table[0][:2] == ["workload", "direct"]
    names = [r[0] for r in table[1:]]
    assert names == [
        "exec-zero",
        "exec-cat",
        "scp-up",
        "scp-down",
        "sftp-up",
        "sftp-down",
        "pty-cat",
    ]
    assert table[0][1:] == ["direct", "ossh-relay", "relay-ms/MiB", "bastille", "/direct",
                            "/relay", "gw-ms/MiB", "gw-live"]
    for r in table[1:]:
        # direct, the OpenSSH relay (MiB/s, CPU ms/MiB), bastille (MiB/s, its ratio to
        # direct and to the relay, CPU ms/MiB until idle, and while the transfer ran)
        assert len(r) == 9, r
        assert all(float(x) >= 0 for x in r[1:]), r
        assert float(r[1]) > 0 and float(r[2]) > 0 and float(r[4]) > 0, r
        assert float(r[8]) <= float(r[7]), r  # a part of the whole


@pytest.mark.slow  # three gateways (direct reference, 1 and 2 workers), ~20 s
def test_workers_smoke_prints_every_worker_count() -> None:
    out = run_bench("workers", "--smoke", "--workers", "1,2")
    table = {r[0]: r for r in rows(out)}
    for path in ("direct", "workers=1", "workers=2"):
        assert float(table[path][1]) > 0, table


def test_latency_smoke_prints_direct_and_bastion_percentiles() -> None:
    out = run_bench("latency", "--smoke")
    table = rows(out)
    assert table[0][0] == "condition"
    idle = table[1]
    assert idle[0] == "idle" and len(idle) == 9
    direct_p50, bastion_p50 = float(idle[1]), float(idle[3])
    assert direct_p50 > 0 and bastion_p50 > 0


def test_policy_overhead_smoke_prints_three_paths() -> None:
    out = run_bench("policy_overhead", "--smoke")
    table = {r[0]: r for r in rows(out)}
    for path in ("direct", "bastion", "bastion-policy"):
        assert float(table[path][1]) > 0, table
    assert "# policy adds:" in out


def test_concurrency_smoke_opens_every_session_and_drops_none() -> None:
    out = run_bench("concurrency", "--smoke")
    table = {r[0]: r for r in rows(out)}
    for path in ("direct", "bastion"):
        opened, failed, dropped = (int(x) for x in table[path][1:4])
        assert (opened, failed, dropped) == (5, 0, 0), table[path]
    assert "ratio" in table


def test_recording_size_smoke_compares_with_gzipped_asciicast() -> None:
    out = run_bench("recording_size", "--smoke")
    table = {r[0]: r for r in rows(out)}
    for name in ("corpus", "commands"):
        out_mib, stored_mib, gz_mib = (float(x) for x in table[name][1:4])
        assert out_mib > 0 and stored_mib > 0 and gz_mib > 0, table[name]


@pytest.mark.slow  # three gateways and a PostgreSQL server: ~15 s
def test_scale_out_smoke_prints_every_figure() -> None:
    out = run_bench("scale_out", "--smoke")
    for label in ("setup rate", "index write, enqueue -> commit", "approval round-trip",
                  "in the shared index, ended"):
        assert label in out, out
    assert "12 / 0" in out and "a=4 b=4 c=4" in out, out
