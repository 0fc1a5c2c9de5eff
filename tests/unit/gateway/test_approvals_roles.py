"""Approvers and auditors on the approvals commands (the SSH built-in and the CLI share
run_approvals): an auditor lists, but neither decides nor revokes a grant."""

from __future__ import annotations

from pathlib import Path

from gateway.audit import AuditEvent
from gateway.config import load_config
from gateway.core.commands import run_approvals
from gateway.ssh.keys import generate_host_key
from state.approvals import ApprovalStore

CONFIG = """
[gateway]
listen = "127.0.0.1:2222"
host_keys = ["hk"]

[users.alice]
keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBzq alice"]
[users.bob]
keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBzq bob"]
[users.audrey]
keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBzq audrey"]

[approvals]
approvers = ["bob"]
auditors = ["audrey"]
"""


def test_an_auditor_may_not_revoke_a_grant(tmp_path: Path) -> None:
    generate_host_key(tmp_path / "hk", "test")
    (tmp_path / "c.toml").write_text(CONFIG)
    config = load_config(tmp_path / "c.toml")
    store = ApprovalStore(tmp_path / "approvals.sqlite3")
    events: list[AuditEvent] = []
    try:
        grant = store.create_access(user="alice", target="db1", seconds=3600, reason="incident",
                                    timeout=600)
        out = run_approvals(config, store, events.append, "bob", frozenset(),
                            f"approve {grant.id}")
        assert "approved" in out
        out = run_approvals(config, store, events.append, "audrey", frozenset(),
                            f"revoke {grant.id} nope")
        assert out == "bastille: audrey is an auditor; auditors may not revoke grants"
        assert store.active_grant("alice", "db1") is not None  # still running
        assert (events[-1].outcome, events[-1].user) == ("refused", "audrey")
        out = run_approvals(config, store, events.append, "bob", frozenset(),
                            f"revoke {grant.id} over")
        assert out.startswith(f"grant #{grant.id} revoked")
        assert store.active_grant("alice", "db1") is None
        listed = run_approvals(config, store, events.append, "audrey", frozenset(), "list")
        assert not listed.startswith("bastille:")  # auditors still list
    finally:
        store.close()
