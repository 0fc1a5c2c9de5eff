"""Paths the protocol-free core changed, through the real gateway: the one access check
(a just-in-time grant shows in the menu and `help`), the bastion's messages in
recordings, and the processes of built-in targets (minimal environment, no leftovers)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from recorder import events as ev
from recorder.reader import Recording
from tests.e2e.conftest import audit_events
from tests.e2e.rig import TARGET_PASSWORD, Rig, Tmux

pytestmark = pytest.mark.e2e

APPROVALS = """
[approvals]
approvers = ["alice"]
timeout = "1m"
"""


def _grant(g: Rig, user: str, target: str) -> None:
    r = g.ssh(user, "request", target, "30m", "incident", "7")
    rid = re.search(rb"#(\d+)", r.stdout)
    assert rid is not None, r
    ok = g.ssh("alice", "approvals", "approve", rid.group(1).decode())
    assert b"approved" in ok.stdout, ok


def test_granted_target_shows_in_help_and_the_menu(make_gateway) -> None:  # type: ignore[no-untyped-def]
    g: Rig = make_gateway(extra=APPROVALS)
    before = g.ssh("bob", "help").stdout.decode()
    assert "web1 " not in before and "(none)" in before
    _grant(g, "bob", "web1")
    after = g.ssh("bob", "help").stdout.decode()
    assert re.search(r"^  web1 +web frontend$", after, re.M), after
    t = Tmux(g.root, g.ssh_args("bob", tty=True), cols=100, rows=30)
    try:
        screen = t.wait_for("Select a target")
        assert re.search(r"1\) web1 +web frontend", screen), screen
        t.type("1\r")
        t.wait_re(r"[$#]$")
        t.type("echo granted-$((40+2))\r")
        t.wait_for("granted-42")
        t.type("exit\r")
        assert t.dead_status() == 0
    finally:
        t.close()


def _session_recording(g: Rig, command: str) -> Recording:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        starts = [e for e in audit_events(g, kind="session.start")
                  if e.get("detail", {}).get("command") == command]
        if starts and audit_events(g, kind="session.end", session=starts[-1]["session"]):
            sid = starts[-1]["session"]
            (path,) = [p for p in (g.data / "recordings").rglob("*.bstl") if sid in p.name]
            return Recording.from_bytes(path.read_bytes())
        time.sleep(0.2)
    raise AssertionError(f"no finished session for {command!r}")


def test_replay_shows_what_the_bastion_told_the_user(make_gateway) -> None:  # type: ignore[no-untyped-def]
    g: Rig = make_gateway(extra="""
[policy]
[[policy.rules]]
name = "no-forbidden-files"
match = '^touch \\S*forbidden'
action = "deny"
""")
    r = g.ssh("alice", "web1", "--", "touch /tmp/forbidden-core")
    assert r.returncode == 1
    said = b"bastille: denied by policy: denied by rule 'no-forbidden-files'\n"
    assert r.stderr == said
    rec = _session_recording(g, "touch /tmp/forbidden-core")
    assert b"".join(e.data for e in rec.events([ev.STDERR])) == said


def test_demo_target_processes_get_a_minimal_environment(rig: Rig) -> None:
    assert os.environ.get("BASTILLE_T1_PW") == TARGET_PASSWORD  # the gateway has it
    r = rig.ssh("alice", "demo", "--", "env")
    assert r.returncode == 0, r
    env = dict(line.split("=", 1) for line in r.stdout.decode().splitlines() if "=" in line)
    assert TARGET_PASSWORD not in r.stdout.decode() and "BASTILLE_T1_PW" not in env
    assert set(env) <= {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TZ", "TERM",
                        "PWD", "SHLVL", "_"} | {k for k in env if k.startswith("LC_")}
    assert env["TERM"] == "dumb" and env["HOME"] and env["PATH"]


def _players(config: Path) -> list[int]:
    r = subprocess.run(["pgrep", "-f", f"gateway player -c {config}"], capture_output=True,
                       text=True)
    return [int(p) for p in r.stdout.split()]


def _wait_gone(config: Path, seconds: float = 10) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := _players(config)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _environ(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def test_player_ends_with_its_client_and_never_outlives_the_gateway(make_gateway) -> None:  # type: ignore[no-untyped-def]
    g: Rig = make_gateway(extra='\n[approvals]\napprovers = ["bob"]\n')
    config = g.gateway.config
    t = Tmux(g.root, [*g.ssh_args("bob", tty=True), "player"], cols=100, rows=30)
    try:
        t.wait_for("bastille player:", timeout=30)
        (pid,) = _players(config)
        assert TARGET_PASSWORD.encode() not in _environ(pid)  # no vaulted secret
        assert b"BASTILLE_T1_PW" not in _environ(pid)
    finally:
        t.close()  # the client goes away without quitting the player
    assert _wait_gone(config) == []
    assert g.gateway.proc is not None and g.gateway.proc.poll() is None
    t = Tmux(g.root, [*g.ssh_args("bob", tty=True), "player"], cols=100, rows=30)
    try:
        t.wait_for("bastille player:", timeout=30)
        assert len(_players(config)) == 1
        g.gateway.stop(signal.SIGKILL)  # the gateway dies with a player running
        assert _wait_gone(config) == []
    finally:
        t.close()


def test_demo_target_closed_mid_stream_logs_no_traceback(make_gateway) -> None:  # type: ignore[no-untyped-def]
    g: Rig = make_gateway()
    proc = subprocess.Popen([*g.ssh_args("alice"), "demo", "--", "yes bulk-output-line"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    proc.stdout.read(256 * 1024)
    proc.kill()
    proc.wait()
    t = Tmux(g.root, [*g.ssh_args("alice", tty=True), "demo"], cols=80, rows=24)
    try:
        t.wait_re(r"[$#]$")
        t.type("yes tty-line\r")
        t.wait_for("tty-line")
    finally:
        t.close()
    time.sleep(2.0)
    assert g.ssh("alice", "demo", "--", "echo", "still-fine").stdout == b"still-fine\n"
    log = g.gateway.logs()
    assert "Traceback" not in log and "BrokenPipeError" not in log, log[-3000:]
