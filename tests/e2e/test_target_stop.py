"""A session the bastion ends ends on the target too.

OpenSSH does not stop a non-PTY command when its channel closes, so before closing the
gateway signals it (TERM, then KILL after a grace period). Each test runs a command with
a unique marker on the real OpenSSH target, has the bastion end the session for one of
its reasons (kill, idle timeout, maximum length, shutdown), and looks for the command's
processes on the target machine afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import audit_events, wait_audit_events
from tests.e2e.rig import TARGET_USER, Rig

pytestmark = pytest.mark.e2e


def _target_pids(marker: str) -> list[int]:
    """Processes of the target account whose command line contains ``marker``."""
    r = subprocess.run(["pgrep", "-u", TARGET_USER, "-f", marker], capture_output=True,
                       text=True)
    return [int(p) for p in r.stdout.split()]


@pytest.fixture
def marker() -> Iterator[str]:
    """A unique ``sleep`` argument; whatever still runs with it is ended afterwards (by
    process id, so that a failing test leaves nothing behind)."""
    value = f"3{time.monotonic_ns() % 10**6}.{os.getpid() % 1000}"
    yield value
    for pid in _target_pids(f"sleep {value}"):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _gone(marker: str, timeout: float = 6.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _target_pids(f"sleep {marker}"):
            return True
        time.sleep(0.2)
    return False


def _start(g: Rig, command: str, marker: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([*g.ssh_args("alice"), "web1", "--", command],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 15
    while not _target_pids(f"sleep {marker}"):
        assert time.monotonic() < deadline, "the command never started on the target"
        time.sleep(0.1)
    return proc


@pytest.mark.parametrize("limit,said", [('idle_timeout = "2s"', b"idle timeout"),
                                        ('max_session = "2s"', b"maximum session length")])
def test_limits_end_the_command_on_the_target(make_gateway: Any, marker: str, limit: str,
                                              said: bytes) -> None:
    g: Rig = make_gateway(gateway_extra=limit)
    proc = _start(g, f"sleep {marker}", marker)
    _, err = proc.communicate(timeout=30)
    assert said in err and proc.returncode == 255
    assert _gone(marker), f"sleep {marker} still runs on the target"


def test_kill_ends_a_command_that_ignores_term(make_gateway: Any, marker: str) -> None:
    """The command ignores TERM (and so does its child): KILL follows after the grace."""
    g: Rig = make_gateway(extra='\n[approvals]\napprovers = ["bob"]\n')
    proc = _start(g, f"trap '' TERM; sleep {marker}; echo survived", marker)
    session = audit_events(g, kind="session.start")[-1]["session"]
    started = time.monotonic()
    ok = subprocess.run([sys.executable, "-m", "gateway", "sessions", "kill", session,
                         "--reason", "stop it", "--as", "bob", "-c", str(g.gateway.config)],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    out, err = proc.communicate(timeout=30)
    assert b"session terminated by bob: stop it" in err and b"survived" not in out
    assert _gone(marker), f"sleep {marker} still runs on the target"
    assert time.monotonic() - started < 10
    end = wait_audit_events(g, kind="session.end", session=session)
    assert end and end[0]["detail"]["reason"] == "session terminated by bob: stop it"


def test_shutdown_ends_the_command_on_the_target(make_gateway: Any, marker: str) -> None:
    g: Rig = make_gateway(gateway_extra='drain_timeout = "1s"')
    proc = _start(g, f"sleep {marker} | cat", marker)
    assert g.gateway.proc is not None
    g.gateway.proc.terminate()
    _, err = proc.communicate(timeout=30)
    assert b"the bastion is shutting down" in err
    assert g.gateway.proc.wait(30) == 0
    assert _gone(marker), f"sleep {marker} still runs on the target"
