"""`ssh -t auditor@bastion player`: the player served by the appliance to auditors only."""

from __future__ import annotations

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
        screen = t.wait_for("bastille player:", timeout=30)
        assert "alice" in screen and "web1" in screen
        t.send("q")
        assert t.dead_status(timeout=20) == 0
    finally:
        t.close()
    assert audit_events(g, kind="session.start", user="bob", target="player")
