"""Crash recovery through a real `bastille serve` (issue 16, item 7): kill -9 of the
gateway mid-session, restart; the recording is finished with a signed recovery trailer.

What a user and an auditor see: ``bastille verify ID`` says "recovered" and exits 0,
``bastille audit`` shows ``session.end`` with ``outcome=recovered``, ``bastille sessions
list`` says ``recovered``, and ``bastille export`` holds every line the client received
until about one second (the flush interval) before the kill. With file storage and with
S3 (moto_server).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from tests.e2e.rig import Rig
from tests.e2e.test_chaos import s3_recording
from tests.integration.conftest import (  # noqa: F401 - fixtures used by name
    bucket,
    moto_server,
    s3_client,
)

pytestmark = pytest.mark.e2e

BASTILLE = [sys.executable, "-m", "gateway"]
FLUSH_SLACK = 1.5  # seconds before the kill whose output must be in the recording


def cli(g: Rig, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BASTILLE, *args, "-c", str(g.gateway.config)],
                          capture_output=True, text=True, timeout=120)


class Lines:
    """An OpenSSH client printing numbered lines (10 a second); when each arrived."""

    def __init__(self, g: Rig, tag: str) -> None:
        self.tag = tag
        self.arrived: list[tuple[int, float]] = []
        self.proc = subprocess.Popen(
            [*g.ssh_args("alice"), "web1", "--",
             f"for i in $(seq 1 600); do echo {tag}-$i; sleep 0.1; done"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            text = raw.decode().strip()
            if text.startswith(f"{self.tag}-"):
                self.arrived.append((int(text.rsplit("-", 1)[1]), time.monotonic()))

    def wait(self) -> None:
        self.proc.wait(30)
        self._reader.join(10)


def kill_9_and_restart(g: Rig, lines: Lines, run_for: float = 3.0) -> float:
    time.sleep(run_for)
    assert g.gateway.proc is not None
    killed_at = time.monotonic()
    os.kill(g.gateway.proc.pid, signal.SIGKILL)
    g.gateway.proc.wait(10)
    lines.wait()
    g.gateway.start()
    return killed_at


def wait_status(g: Rig, tag: str, want: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        r = cli(g, "sessions", "list", "--json")
        rows = [s for s in json.loads(r.stdout or "[]") if tag in (s.get("command") or "")]
        if rows and rows[0]["status"] == want:
            return rows[0]
        time.sleep(0.3)
    raise AssertionError(f"session {tag} not {want}: {rows}")


def exported_lines(g: Rig, session_id: str, tag: str) -> list[int]:
    r = cli(g, "export", session_id, "-o", "-")
    assert r.returncode == 0, r.stderr
    text = "".join(ev[2] for ev in map(json.loads, r.stdout.splitlines()[1:]) if ev[1] == "o")
    return [int(x.rsplit("-", 1)[1]) for x in text.split() if x.startswith(f"{tag}-")]


def check_recovered(g: Rig, lines: Lines, killed_at: float) -> dict[str, Any]:
    """What an auditor sees after the restart (the assertions of this file)."""
    row = wait_status(g, lines.tag, "recovered")
    v = cli(g, "verify", row["id"], "--require-signature")
    assert v.returncode == 0, v.stdout + v.stderr
    assert f"OK   {row['id']}: recovered" in v.stdout, v.stdout
    audit = cli(g, "audit", "--json", "--kind", "session.end")
    ends = [json.loads(x) for x in audit.stdout.splitlines()]
    mine = [e for e in ends if e["session"] == row["id"]]
    assert [e["outcome"] for e in mine] == ["recovered"], audit.stdout
    assert mine[0]["user"] == "alice" and mine[0]["target"] == "web1"
    assert mine[0]["detail"]["recording"] == "recovered" and mine[0]["detail"]["signed"]
    recorded = exported_lines(g, row["id"], lines.tag)
    seen = [n for n, _ in lines.arrived]
    assert recorded == seen[:len(recorded)], "the recording is not a prefix of what was seen"
    must = [n for n, t in lines.arrived if t < killed_at - FLUSH_SLACK]
    assert must and set(must) <= set(recorded), (must[-5:], recorded[-5:])
    last = dict(lines.arrived).get(recorded[-1], killed_at) if recorded else 0.0
    print(f"RECOVERY {lines.tag}: {len(recorded)} of {len(seen)} lines recorded; the "
          f"last one arrived {killed_at - last:.2f} s before the kill", flush=True)
    return row


def test_kill_9_file_storage_recovered(make_gateway: Any) -> None:
    g: Rig = make_gateway()
    lines = Lines(g, f"rf{os.getpid()}")
    killed_at = kill_9_and_restart(g, lines)
    check_recovered(g, lines, killed_at)
    assert list((g.data / "recordings").rglob("*.part")) == []
    assert "Traceback" not in g.gateway.logs()


@pytest.mark.s3
def test_kill_9_s3_storage_recovered(make_gateway: Any, moto_server: str,  # noqa: F811
                                     bucket: str, s3_client: Any) -> None:  # noqa: F811
    kw = s3_recording(moto_server, bucket, data=f"data-rs-{os.getpid()}-{time.monotonic_ns()}")
    g: Rig = make_gateway(**{k: v for k, v in kw.items() if k != "data"})
    lines = Lines(g, f"rs{os.getpid()}")
    killed_at = kill_9_and_restart(g, lines)
    row = check_recovered(g, lines, killed_at)
    deadline = time.monotonic() + 30  # uploaded with its trailer, then read from S3
    while time.monotonic() < deadline and any((g.data / "spool").iterdir()):
        time.sleep(0.2)
    assert not any((g.data / "spool").iterdir())
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert any(row["id"] in k for k in keys), keys
    v = cli(g, "verify", row["id"], "--require-signature")
    assert v.returncode == 0 and ": recovered" in v.stdout, v.stdout + v.stderr
