"""Recording budgets: one user cannot fill the recording disk.

``cat /dev/urandom | base64`` through the real gateway to the real target: past
``max_recording_bytes`` the session ends (``terminate``) or its output slows to
``throttle_rate`` (``throttle``); past ``max_recording_bytes_per_user_day`` a user's next
session does not start. Each is audited; what was recorded stays near the budget.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from typing import Any

import pytest

from tests.e2e.conftest import audit_events
from tests.e2e.rig import Rig

pytestmark = pytest.mark.e2e

FLOOD = "cat /dev/urandom | base64"
MIB = 1 << 20


def _recorded_bytes(g: Rig, session: str) -> int:
    """Output bytes in the session's recording (decoded, before compression)."""
    from recorder import events as ev
    from recorder.reader import Recording
    from recorder.service import open_sink
    from recorder.settings import RecorderSettings

    sink = open_sink(RecorderSettings(data_dir=g.data))
    try:
        name = next(n for n in sink.names() if session in n)
        rec = Recording.from_sink(sink, name)
        return sum(len(e.data) for e in rec.events() if e.type in (ev.OUTPUT, ev.STDERR))
    finally:
        sink.close()


def test_session_budget_terminates(make_gateway: Any) -> None:
    g: Rig = make_gateway(recording_extra='max_recording_bytes = "2M"')
    started = time.monotonic()
    r = g.ssh("alice", "web1", "--", FLOOD, timeout=60)
    assert r.returncode == 255, r.stderr[-500:]
    assert b"this session's recording budget (2 MiB) is used up, so the session was " \
        b"terminated" in r.stderr
    assert 1.5 * MIB <= len(r.stdout) < 6 * MIB, len(r.stdout)  # the budget, and bytes
    # still on their way when the bastion ended the session
    assert time.monotonic() - started < 20
    over = audit_events(g, kind="recording", outcome="budget_exceeded")
    assert len(over) == 1 and over[0]["detail"] == {"scope": "session", "limit": 2 * MIB,
                                                    "action": "terminate"}
    session = over[0]["session"]
    deadline = time.monotonic() + 15  # ended once its command is gone on the target
    while not (end := audit_events(g, kind="session.end", session=session)):
        assert time.monotonic() < deadline, "no session.end"
        time.sleep(0.2)
    assert "recording budget" in end[0]["detail"]["reason"]
    assert _recorded_bytes(g, session) < 6 * MIB


def test_daily_budget_per_user(make_gateway: Any) -> None:
    g: Rig = make_gateway(recording_extra='max_recording_bytes_per_user_day = "3M"')
    chunk = "head -c 1000000 /dev/urandom | base64"  # 1.35 MB of output
    for _ in range(2):
        r = g.ssh("alice", "web1", "--", chunk, timeout=60)
        assert r.returncode == 0, r.stderr
    r = g.ssh("alice", "web1", "--", FLOOD, timeout=60)  # passes 3 MiB on the way
    assert r.returncode == 255 and b"your daily recording budget (3 MiB) is used up" in \
        r.stderr, r.stderr[-300:]
    r = g.ssh("alice", "web1", "--", "echo", "hello")
    assert r.returncode == 1 and b"your daily recording budget (3 MiB) is used up; try " \
        b"again tomorrow" in r.stderr, r.stderr
    assert g.ssh("bob", "help").returncode == 0  # bob's own budget is untouched
    refused = audit_events(g, kind="recording", outcome="budget_exceeded")
    assert [e["detail"]["action"] for e in refused] == ["terminate", "refused"]
    store = g.data / "recording_usage.sqlite3"
    assert os.stat(store).st_mode & 0o777 == 0o600


def test_throttle_slows_the_output(make_gateway: Any) -> None:
    """Past 1 MiB the session is read at 256 KiB/s: in 5 s the user gets about
    1 MiB + 5 x 256 KiB of the 10.8 MB the command prints (unthrottled: all of it in
    well under a second)."""
    g: Rig = make_gateway(recording_extra='max_recording_bytes = "1M"\n'
                          'budget_action = "throttle"\nthrottle_rate = "256K"')
    proc = subprocess.Popen([*g.ssh_args("alice"), "web1", "--",
                             "head -c 8000000 /dev/urandom | base64"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    received = bytearray()

    def read() -> None:
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(65536):
            received.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    started = time.monotonic()
    reader.start()
    time.sleep(5)
    got, elapsed = len(received), time.monotonic() - started
    proc.kill()
    _, err = proc.communicate(timeout=30)
    assert b"output is slowed to 256 KiB/s from now on" in err, err[-300:]
    assert MIB < got < MIB + (elapsed + 1) * 256 * 1024, (got, elapsed)
    over = audit_events(g, kind="recording", outcome="budget_exceeded")
    assert len(over) == 1 and over[0]["detail"]["action"] == "throttle"
