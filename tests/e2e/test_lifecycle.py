"""Gateway lifecycle: SIGTERM drain, rate limiting, idle and maximum session time."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import asyncssh
import pytest

from tests.e2e.rig import Rig

pytestmark = pytest.mark.e2e


def _audit(rig: Rig) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in (rig.data / "audit.jsonl").read_text().splitlines()]


def test_failed_logins_are_rate_limited_and_audited(make_gateway) -> None:  # type: ignore[no-untyped-def]
    g: Rig = make_gateway(gateway_extra='max_auth_failures = 3\nmax_source_failures = 3\n'
                          'auth_failure_window = "1m"')
    for _ in range(3):  # wrong keys count for the source address (never the user name)
        r = g.ssh("alice", "web1", "--", "true", key="mallory")
        assert r.returncode == 255 and b"Permission denied" in r.stderr
    r = g.ssh("alice", "web1", "--", "echo", "hi")  # the right key, but too late
    assert r.returncode == 255
    assert b"too many failed logins" in r.stderr
    kinds = [e["kind"] for e in _audit(g)]
    assert kinds.count("login") >= 3 and "login.rate_limited" in kinds
    failed = [e for e in _audit(g) if e["kind"] == "login" and e["outcome"] == "failed"]
    assert all(e["user"] == "alice" and e["source"].startswith("127.0.0.1:") for e in failed)


def test_sigterm_drains_running_sessions(make_gateway) -> None:  # type: ignore[no-untyped-def]
    g: Rig = make_gateway()
    proc = subprocess.Popen([*g.ssh_args("alice"), "web1", "--", "sleep 1; echo drained"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.6)  # the session is running on the target
    assert g.gateway.proc is not None
    g.gateway.proc.terminate()
    out, err = proc.communicate(timeout=20)
    assert (proc.returncode, out) == (0, b"drained\n"), err
    assert g.gateway.proc.wait(20) == 0
    r = g.ssh("alice", "web1", "--", "true")
    assert r.returncode == 255  # no longer listening
    events = _audit(g)
    assert any(e["kind"] == "session.end" and e["detail"].get("exit_status") == 0 for e in events)
    assert events[-1]["kind"] == "gateway" and events[-1]["detail"]["event"] == "stop"


def test_drain_lets_a_client_leave_before_cutting_its_connection(make_gateway) -> None:  # type: ignore[no-untyped-def]
    """The stop does not cut a connection the moment its last session has ended: its
    client gets a moment to close it. (OpenSSH turns a disconnect that comes in the same
    read as the exit status into "Disconnected by application" and exit 255.) Here the
    client stays 1 s after its exit status and then leaves; the gateway still stops at
    once after it, without the 5 s drain budget."""
    g: Rig = make_gateway()
    assert g.gateway.proc is not None
    proc = g.gateway.proc

    async def client() -> tuple[int | None, str, bool, float]:
        async with asyncssh.connect("127.0.0.1", g.gateway.port, username="alice",
                                    known_hosts=None, client_keys=[str(g.keys["alice"])],
                                    agent_path=None) as conn:
            running = await conn.create_process("web1 -- sleep 1; echo drained")
            await asyncio.sleep(0.5)
            proc.terminate()
            done = await running.wait(check=False, timeout=20)
            ended = time.monotonic()
            try:  # the connection stays open for us
                await asyncio.wait_for(conn.wait_closed(), 1.0)
                cut = True
            except TimeoutError:
                cut = False
        return done.exit_status, str(done.stdout), cut, ended

    status, out, cut, ended = asyncio.run(client())
    assert (status, out, cut) == (0, "drained\n", False)
    assert proc.wait(20) == 0
    assert time.monotonic() - ended < 4.5  # left at once after the client closed


def test_sessions_past_drain_timeout_are_told(make_gateway) -> None:  # type: ignore[no-untyped-def]
    g: Rig = make_gateway(gateway_extra='drain_timeout = "1s"')
    proc = subprocess.Popen([*g.ssh_args("alice"), "web1", "--", "sleep 30"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.6)
    assert g.gateway.proc is not None
    started = time.monotonic()
    g.gateway.proc.terminate()
    _, err = proc.communicate(timeout=20)
    assert b"the bastion is shutting down" in err
    assert time.monotonic() - started < 15
    assert g.gateway.proc.wait(20) == 0


def test_idle_timeout(make_gateway) -> None:  # type: ignore[no-untyped-def]
    g: Rig = make_gateway(gateway_extra='idle_timeout = "2s"')
    started = time.monotonic()
    r = g.ssh("alice", "web1", "--", "sleep 20", timeout=30)
    assert b"idle timeout" in r.stderr
    assert time.monotonic() - started < 10


def test_max_session_length(make_gateway) -> None:  # type: ignore[no-untyped-def]
    g: Rig = make_gateway(gateway_extra='max_session = "2s"')
    r = g.ssh("alice", "web1", "--", "while true; do echo tick; sleep 0.2; done", timeout=30)
    assert b"maximum session length reached" in r.stderr
    assert r.stdout.startswith(b"tick\n")


def test_auditor_kills_a_live_session(make_gateway) -> None:  # type: ignore[no-untyped-def]
    g: Rig = make_gateway(extra='\n[approvals]\napprovers = ["bob"]\n')
    proc = subprocess.Popen([*g.ssh_args("alice"), "web1", "--",
                             "while true; do echo alive; sleep 0.2; done"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)
    ids = [e["session"] for e in _audit(g) if e["kind"] == "session.start"]
    cli = [sys.executable, "-m", "gateway", "sessions", "kill", ids[-1][:10], "--reason",
           "policy breach", "-c", str(g.gateway.config)]
    denied = subprocess.run([*cli, "--as", "alice"], capture_output=True, text=True, timeout=30)
    assert denied.returncode == 2 and "alice may not end sessions" in denied.stderr
    ok = subprocess.run([*cli, "--as", "bob"], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    _, err = proc.communicate(timeout=10)
    assert b"session terminated by bob: policy breach" in err
    kinds = [(e["kind"], e["outcome"]) for e in _audit(g)]
    assert ("session.kill", "requested") in kinds and ("session.kill", "ok") in kinds
