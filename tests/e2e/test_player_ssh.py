"""`ssh -t auditor@bastion player`: the player served by the appliance to auditors only."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import audit_events
from tests.e2e.rig import Rig, Tmux

pytestmark = pytest.mark.e2e


def test_player_over_ssh_for_auditors_only(make_gateway) -> None:  # type: ignore[no-untyped-def]
    g: Rig = make_gateway(extra='\n[approvals]\napprovers = ["bob"]\n')
    assert g.ssh("alice", "web1", "--", "echo", "something-to-find").returncode == 0
    r = g.ssh("alice", "player", extra=["-tt"])
    assert r.returncode == 1 and b"alice may not use the player" in r.stdout + r.stderr
    t = Tmux(g.root, [*g.ssh_args("bob", tty=True), "player"], cols=100, rows=30)
    try:
        t.wait_for("bastille player:", timeout=30)
        screen = t.wait_for("alice", timeout=30)  # the list is loaded in a worker
        assert "web1" in screen
        t.send("q")
        assert t.dead_status(timeout=20) == 0
    finally:
        t.close()
    assert audit_events(g, kind="session.start", user="bob", target="player")


def test_approvals_pane_over_ssh(make_gateway) -> None:  # type: ignore[no-untyped-def]
    """bob approves alice's held command from the player he reached with ssh."""
    import subprocess

    extra = """
[policy]
[[policy.rules]]
name = "echo-needs-approval"
match = '^echo approve-me'
action = "approve"

[approvals]
approvers = ["bob"]
timeout = "1m"
"""
    g: Rig = make_gateway(extra=extra)
    proc = subprocess.Popen([*g.ssh_args("alice"), "web1", "--", "echo approve-me-ok"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t = Tmux(g.root, [*g.ssh_args("bob", tty=True), "player"], cols=100, rows=30)
    try:
        t.wait_for("Approvals", timeout=30)  # the footer: the list screen is ready
        t.send("a")
        t.wait_for("echo approve-me-ok", timeout=20)
        time.sleep(0.3)
        t.send("y")
        t.wait_for("reason (enter", timeout=10)
        t.type("fine by me")
        t.send("Enter")
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            raise AssertionError(t.screen()) from None
        assert proc.returncode == 0 and out == b"approve-me-ok\n", err
        assert b"approved by bob" in err
    finally:
        t.close()
        proc.kill()
    assert audit_events(g, kind="approval", outcome="approved", user="bob")
