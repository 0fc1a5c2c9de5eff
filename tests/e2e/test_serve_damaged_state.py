"""Damaged local state through a real `bastille serve` (issue 16, item 6): a garbage or
half-cut approvals database (and a garbage index beside it) is moved aside with one
error line at start, the gateway serves, pending requests of the old file are gone
(expired), approvals work again; a state file that is not a file at all stops the start
with a one-line error, never a traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from state.approvals import ApprovalStore
from tests.e2e.conftest import write_config
from tests.e2e.rig import Gateway, Rig, free_port

pytestmark = pytest.mark.e2e

POLICY = """
[policy]
default = "allow"

[[policy.rules]]
name = "echo-needs-approval"
match = '^echo approve-me'
action = "approve"

[approvals]
approvers = ["bob"]
timeout = "1m"
"""


def bastille(g: Rig, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args, "-c", str(g.gateway.config)],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def prepared(rig: Rig) -> Iterator[Any]:
    """A gateway config whose data directory the test fills before it starts."""
    started: list[Gateway] = []

    def make() -> Rig:
        port = free_port()
        tag = f"{os.getpid()}-{time.monotonic_ns()}"
        config = write_config(rig.root, rig.sshd, port, name=f"damaged-{tag}.toml",
                              data=f"data-{tag}", extra=POLICY)
        gw = Gateway(config, port)
        started.append(gw)
        known = rig.root / f"known_hosts-{tag}"
        host_pub = " ".join((rig.root / "gw_host_key.pub").read_text().split()[:2])
        known.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
        data = rig.root / f"data-{tag}"
        data.mkdir(mode=0o700)
        return Rig(root=rig.root, sshd=rig.sshd, gateway=gw, known_hosts=known, keys=rig.keys,
                   data_dir=data)

    yield make
    for gw in started:
        gw.stop(signal.SIGKILL)


def damage(path: Path, how: str) -> bytes:
    if how == "garbage":
        blob = os.urandom(20_000)
    else:  # a real database with 300 pending requests, cut in half
        store = ApprovalStore(path)
        for i in range(300):
            store.create(user="alice", target="web1", session=f"old{i}", command="echo x" * 40,
                         rule="echo-needs-approval", reason="old", timeout=3600)
        store.close()
        blob = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(blob)
    return blob


@pytest.mark.parametrize("how", ["garbage", "half-cut"])
def test_damaged_approvals_database_is_moved_aside_at_start(prepared: Any, how: str) -> None:
    g: Rig = prepared()
    blob = damage(g.data / "approvals.sqlite3", how)
    (g.data / "index.sqlite3").write_bytes(os.urandom(8192))
    g.gateway.start()
    logs = g.gateway.logs()  # (the log file is shared by the rig's gateways)
    lines = [x for x in logs.splitlines() if "approvals database" in x and "is damaged" in x
             and str(g.data) in x]
    assert len(lines) == 1, logs
    assert "ERROR" in lines[0] and "pending in it are treated as expired" in lines[0]
    assert "Traceback" not in logs
    [aside] = g.data.glob("approvals.sqlite3.corrupt-*[0-9Z]")
    assert aside.read_bytes() == blob and aside.name in lines[0]
    assert g.ssh("alice", "web1", "--", "echo", "serving").stdout == b"serving\n"
    listed = bastille(g, "approvals", "list", "--all", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stderr
    # the approval flow works on the new database
    proc = subprocess.Popen([*g.ssh_args("alice"), "web1", "--", "echo approve-me-now"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    pending: list[dict[str, Any]] = []
    while not pending and time.monotonic() < deadline:
        pending = json.loads(bastille(g, "approvals", "list", "--json").stdout or "[]")
        time.sleep(0.2)
    assert [p["command"] for p in pending] == ["echo approve-me-now"]
    ok = bastille(g, "approvals", "approve", str(pending[0]["id"]), "--as", "bob")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    out, err = proc.communicate(timeout=30)
    assert out == b"approve-me-now\n", err
    assert "Traceback" not in g.gateway.logs()


def test_a_state_file_that_cannot_be_opened_stops_the_start_cleanly(prepared: Any) -> None:
    g: Rig = prepared()
    (g.data / "approvals.sqlite3").mkdir()  # not a file: nothing to move aside
    r = subprocess.run([sys.executable, "-m", "gateway", "serve", "-c", str(g.gateway.config)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr, r.stderr
    [line] = [x for x in r.stderr.splitlines() if x.strip()]
    assert line.startswith("bastille: cannot start:") and "approvals.sqlite3" in line
