"""The policy keys of bastille.toml (``[policy] escapes``, ``programs``; effect rules) and
the engine the gateway builds from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app import build_engine
from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.policy import Action
from gateway.ssh.keys import generate_host_key

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGd1c3Rvbm9tZXRoaW5nZWxzZWhlcmUxMjM0NTY3ODk0 a@b"
BASE = f"""
[gateway]
listen = "127.0.0.1:2200"
host_keys = ["hk"]

[users.alice]
keys = ["{KEY}"]
groups = ["ops"]

[targets.web1]
host = "10.0.0.5"
user = "deploy"
key_file = "tk"
host_keys = ["{KEY}"]
groups = ["ops"]
"""
U = {"user": "alice", "groups": ["ops"], "target": "web1"}


def _engine(tmp_path: Path, policy: str):  # type: ignore[no-untyped-def]
    generate_host_key(tmp_path / "hk", "test")
    (tmp_path / "tk").write_text("x")
    p = tmp_path / "b.toml"
    p.write_text(BASE + policy)
    return build_engine(load_config(p))


def test_effect_rules_escapes_and_declared_programs(tmp_path: Path) -> None:
    eng = _engine(tmp_path, """
[policy]
escapes = "approve"
programs = ["frob", "/opt/app/bin/*"]

[[policy.rules]]
name = "no-etc-writes"
writes = ["/etc/**"]
action = "deny"

[[policy.rules]]
name = "no-log-removal"
deletes = ["/var/log/**"]
action = "approve"
""")
    d = eng.decide("cp x /etc/hosts", **U)
    assert (d.action, d.rule) == (Action.DENY, "no-etc-writes")
    assert eng.decide("echo x | tee -a /etc/motd", **U).action is Action.DENY
    assert eng.decide("cd /var/log && rm syslog.1", **U).action is Action.APPROVE
    assert eng.decide("cp x /tmp/y", **U).action is Action.ALLOW
    assert eng.decide("python3", **U).action is Action.APPROVE  # escapes = approve
    assert eng.decide("frob --all", **U).action is Action.ALLOW
    assert eng.decide("/opt/app/bin/sync now", **U).action is Action.ALLOW
    assert eng.decide("/opt/other/bin/sync now", **U).action is Action.ALLOW  # a target's
    assert eng.decide("unknownprog x", **U).action is Action.APPROVE


def test_escapes_default_to_allow(tmp_path: Path) -> None:
    eng = _engine(tmp_path, '[policy]\n[[policy.rules]]\nname = "x"\nmatch = "^reboot"\n')
    assert eng.decide("python3", **U).action is Action.ALLOW


@pytest.mark.parametrize("bad", [
    '[policy]\nescapes = "maybe"\n',
    '[policy]\n[[policy.rules]]\nname = "x"\naction = "deny"\n',  # neither match nor writes
    '[policy]\n[[policy.rules]]\nname = "x"\nwrites = [1]\naction = "deny"\n',
])
def test_bad_policy_keys_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError):
        _engine(tmp_path, bad)
