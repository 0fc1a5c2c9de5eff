"""The appliance CLI: secret files checked, no target secret needed to read, the operator
recorded in what it writes, and a read-only ``auditors`` role.

* ``bastille config check`` warns about secret files its group or others may read;
* ``approvals list``, ``audit``, ``sessions list|show``, ``verify`` and the player start
  with the target secrets' variables unset;
* every audit event the CLI writes names the OS user (and ``SUDO_USER``) next to ``--as``;
* ``[approvals] auditors`` find, replay and list (``ssh -t NAME@bastion player``,
  ``ssh NAME@bastion approvals list``), and may neither decide nor end sessions.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import audit_events
from tests.e2e.rig import Rig, Tmux, keygen

pytestmark = pytest.mark.e2e

ME = pwd.getpwuid(os.getuid()).pw_name


def _bastille(config: Path, *args: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args, "-c", str(config)],
                          capture_output=True, text=True, errors="replace", timeout=60,
                          env=env)


def test_config_check_warns_on_readable_secret_files(tmp_path: Path) -> None:
    from recorder.signing import generate

    keygen(tmp_path / "host_key")
    keygen(tmp_path / "target_key")
    generate(tmp_path / "recording.key")
    (tmp_path / "web1.pw").write_text("Target-Pw-1\n")
    (tmp_path / "bastille.toml").write_text("""\
[gateway]
host_keys = ["host_key"]

[recording]
signing_key = "recording.key"

[users.alice]
keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO6oN0Hj8MePL3UldqGyfOGUfxqdC5cJWVvSe3EBsMqT a"]

[targets.web1]
host = "10.0.0.5"
user = "deploy"
password_file = "web1.pw"
host_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO6oN0Hj8MePL3UldqGyfOGUfxqdC5cJWVvSe3EBsMqT"]

[targets.web2]
host = "10.0.0.6"
user = "deploy"
key_file = "target_key"
host_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO6oN0Hj8MePL3UldqGyfOGUfxqdC5cJWVvSe3EBsMqT"]
""")
    secrets = ["host_key", "recording.key", "web1.pw", "target_key"]
    for name in secrets:
        os.chmod(tmp_path / name, 0o644)
    r = _bastille(tmp_path / "bastille.toml", "config", "check")
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if "warning:" in line]
    assert len(warnings) == 4, r.stderr
    assert f"bastille.toml:2: gateway.host_keys[0]: warning: {tmp_path / 'host_key'} is " \
        "readable by group or others (mode 0644)" in r.stderr
    assert "bastille.toml:5: recording.signing_key: warning:" in r.stderr
    assert "bastille.toml:13: targets.web1.password_file: warning:" in r.stderr
    assert f"chmod 600 {tmp_path / 'target_key'}" in r.stderr
    assert "4 warning(s)" in r.stdout
    for name in secrets:
        os.chmod(tmp_path / name, 0o600)
    r = _bastille(tmp_path / "bastille.toml", "config", "check")
    assert r.returncode == 0 and "warning" not in r.stderr + r.stdout, r.stderr


def test_reading_tools_need_no_target_secrets(make_gateway: Any) -> None:
    """The rig's config has a target whose password is in $BASTILLE_T1_PW: the tools
    that only read start without it."""
    g: Rig = make_gateway()
    assert g.ssh("alice", "web1", "--", "echo", "hi").returncode == 0
    session = audit_events(g, kind="session.start")[-1]["session"]
    env = {k: v for k, v in os.environ.items() if k != "BASTILLE_T1_PW"}
    config = g.gateway.config
    for args in (("approvals", "list"), ("audit",), ("sessions", "list"),
                 ("sessions", "show", session), ("verify", session), ("verify", "--all")):
        r = _bastille(config, *args, env=env)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        assert "BASTILLE_T1_PW" not in r.stderr, (args, r.stderr)
    t = Tmux(g.root, [sys.executable, "-m", "gateway", "player", "-c", str(config), "--as",
                      "bob"], env={"BASTILLE_T1_PW": ""}, cols=120, rows=30)
    try:
        t.wait_for("bastille player:", timeout=30)
    finally:
        t.close()


AUDITORS = """
[users.audrey]
keys = ["{key}"]

[approvals]
approvers = ["bob"]
auditors = ["audrey"]
timeout = "60s"

[policy]
default = "allow"

[[policy.rules]]
name = "approve-echo"
match = '^echo approve-me'
action = "approve"
"""


def test_cli_events_name_the_os_user_and_auditors_are_read_only(make_gateway: Any,
                                                                rig: Rig) -> None:
    pub = (rig.root / "mallory_key.pub").read_text().strip()  # audrey's key
    g: Rig = make_gateway(extra=AUDITORS.format(key=pub))
    proc = subprocess.Popen([*g.ssh_args("alice"), "web1", "--", "echo approve-me"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not audit_events(g, kind="approval", outcome="requested"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        rid = str(audit_events(g, kind="approval", outcome="requested")[0]["detail"]["request"])
        listed = g.ssh("audrey", "approvals", "list", key="mallory")
        assert listed.returncode == 0 and b"echo approve-me" in listed.stdout, listed
        refused = g.ssh("audrey", "approvals", "approve", rid, key="mallory")
        assert refused.returncode == 1
        assert b"auditors may not decide" in refused.stdout + refused.stderr
        cli = _bastille(g.gateway.config, "approvals", "approve", rid, "ok", "--as", "audrey")
        assert cli.returncode == 1 and "auditors may not decide" in cli.stderr
        env = {**os.environ, "SUDO_USER": "admin7"}
        ok = _bastille(g.gateway.config, "approvals", "deny", rid, "not now", "--as", "bob",
                       env=env)
        assert ok.returncode == 0, ok.stderr
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    denied = audit_events(g, kind="approval", outcome="denied", source="cli")
    assert denied and denied[0]["user"] == "bob"
    assert denied[0]["detail"]["os_user"] == ME and denied[0]["detail"]["sudo_user"] == "admin7"
    refusal = audit_events(g, kind="approval", outcome="refused", source="cli")
    assert refusal and refusal[0]["detail"]["os_user"] == ME
    _auditor_cannot_kill(g)


def _auditor_cannot_kill(g: Rig) -> None:
    runner = subprocess.Popen([*g.ssh_args("alice"), "web1", "--", "sleep 20"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.5)
        session = audit_events(g, kind="session.start")[-1]["session"]
        r = _bastille(g.gateway.config, "sessions", "kill", session, "--reason", "x", "--as",
                      "audrey")
        assert r.returncode == 2 and "auditors are read-only" in r.stderr, r.stderr
        r = _bastille(g.gateway.config, "sessions", "kill", session, "--reason", "enough",
                      "--as", "bob", env={**os.environ, "SUDO_USER": "admin7"})
        assert r.returncode == 0, r.stderr
        runner.communicate(timeout=30)
    finally:
        runner.kill()
    kill = audit_events(g, kind="session.kill", outcome="requested")
    assert kill and kill[0]["detail"]["os_user"] == ME and kill[0]["detail"]["sudo_user"] == \
        "admin7"
    # the player over ssh: audrey may use it, read-only
    r = g.ssh("alice", "player", extra=["-tt"])
    assert r.returncode == 1 and b"may not use the player" in r.stdout + r.stderr
    t = Tmux(g.root, [*g.ssh_args("audrey", key="mallory", tty=True), "player"],
             cols=120, rows=30)
    try:
        t.wait_for("bastille player:", timeout=30)
        t.send("a")
        t.wait_for("you are audrey", timeout=15)
        t.send("y")
        t.wait_for("audrey may not decide approvals", timeout=15)
    finally:
        t.close()
