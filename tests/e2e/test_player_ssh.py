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


AUDIT_POLICY = """
[policy]
default = "allow"

[[policy.rules]]
name = "no-forbidden-files"
match = '^touch \\S*forbidden'
action = "deny"

[[policy.rules]]
name = "echo-needs-approval"
match = '^echo approve-me'
action = "approve"

[approvals]
approvers = ["bob"]
timeout = "1m"
"""


def _players(user: str) -> list[int]:
    """Pids of player processes serving ``user`` (started by the gateway)."""
    import os

    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if b"player" in cmd and b"--as" in cmd and user.encode() in cmd and b"gateway" in \
                b" ".join(cmd):
            out.append(int(pid))
    return out


def test_auditor_finds_denied_and_approved_commands_on_the_timeline(  # type: ignore[no-untyped-def]
        make_gateway, tmp_path) -> None:
    """alice runs a denied and an approved command; bob finds the session over
    ``ssh -t bob@bastion player`` and the timeline shows the rule and who approved; the
    evidence bundle of the session checks with sha256sum and cryptography; the player
    ends when bob's ssh client goes away."""
    import re
    import subprocess
    import sys
    import tarfile

    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    g: Rig = make_gateway(extra=AUDIT_POLICY)
    t = Tmux(g.root, [*g.ssh_args("alice", tty=True), "web1"], cols=80, rows=24)
    try:
        t.wait_re(r"[$#] ?$")
        t.type("export PS1='PROMPT$ '\n")
        t.wait_for("\nPROMPT$")
        t.type("touch /tmp/forbidden\n")
        t.wait_for("denied by policy")
        t.type("echo approve-me-$((6*7))\n")
        t.wait_for("waiting for approval #")
        deadline = time.monotonic() + 15
        rid = None
        while rid is None and time.monotonic() < deadline:
            ids = re.findall(rb"^\s*(\d+)\s", g.ssh("bob", "approvals", "list").stdout, re.M)
            rid = int(ids[0]) if ids else None
            time.sleep(0.2)
        assert rid is not None
        assert b"approved" in g.ssh("bob", "approvals", "approve", str(rid), "looks fine").stdout
        t.wait_for("approve-me-42")
        t.type("exit\n")
        t.dead_status(timeout=20)
    finally:
        t.close()
    p = Tmux(g.root, [*g.ssh_args("bob", tty=True), "player"], cols=160, rows=45)
    try:
        screen = p.wait_re(r"alice +web1 +shell", timeout=30)  # the list is loaded
        rows = [line for line in screen.splitlines() if re.search(r"\d\d:\d\d  ", line)]
        down = next(i for i, line in enumerate(rows) if re.search(r"alice +web1 +shell", line))
        for _ in range(down):  # arrow keys: the list has the focus from the start
            p.send("Down")
            time.sleep(0.2)
        p.send("Enter")
        screen = p.wait_for("approved by bob", timeout=30)
        assert "approved by bob: looks fine" in screen
        assert "$ touch /tmp/forbidden  denied by rule no-forbidden-files" in screen, screen
        assert "$ echo approve-me-$((6*7))  held for approval" in screen
        p.wait_for("k Kill")  # in the footer (drawn once the screen is laid out)
        for keys in (["Tab"], ["Down"]):  # the list, then the denied command's details
            time.sleep(0.4)
            p.send(*keys)
        screen = p.wait_for("rule: no-forbidden-files")
        assert "what: denied" in screen
        time.sleep(0.4)
        p.send("Down")  # the held command: its rule, request, who decided
        screen = p.wait_for("rule: echo-needs-approval")
        assert "outcome: approved" in screen
        time.sleep(0.4)
        p.send("Down")
        screen = p.wait_for("decided by: bob")
        assert "their reason: looks fine" in screen and "requested by: alice" in screen
        time.sleep(0.4)
        p.send("Enter")  # the replay jumps there: what alice saw then
        p.wait_re(r"^0:00:0\d/0:00:0\d paused .*\$ echo approve-me", timeout=15)
        assert "PROMPT$ touch /tmp/forbidden" in p.screen()
        time.sleep(0.4)
        p.send("m")  # bob marks it reviewed, with a note
        p.wait_for("Mark reviewed", timeout=10)
        p.type("denial and approval as expected")
        p.send("Enter")
        p.wait_for("reviewed by bob", timeout=15)
        assert _players("bob")
    finally:
        p.close()  # bob's ssh client goes away
    deadline = time.monotonic() + 15
    while _players("bob") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _players("bob"), "the player outlived its ssh session"
    review = audit_events(g, kind="session.review", user="bob")
    assert review and review[0]["outcome"] == "reviewed"
    assert review[0]["detail"]["text"] == "denial and approval as expected"
    assert review[0]["detail"]["signature"] == "signed"
    # the evidence bundle, with the appliance CLI, checked with standard tools only
    sid = next(e["session"] for e in audit_events(g, kind="session.start", user="alice"))
    bundle = tmp_path / "evidence.tar.gz"
    r = subprocess.run([sys.executable, "-m", "gateway", "export", "-c", str(g.gateway.config),
                        sid, "--format", "bundle", "-o", str(bundle)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    with tarfile.open(bundle) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    root = tmp_path / "x" / f"bastille-evidence-{sid}"
    sums = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=root, capture_output=True,
                          timeout=30)
    assert sums.returncode == 0, sums.stdout
    key = load_pem_public_key((root / "public-key.pem").read_bytes())
    key.verify((root / "SHA256SUMS.sig").read_bytes(),  # type: ignore[call-arg, union-attr]
               (root / "SHA256SUMS").read_bytes())
    assert b"approved by bob: looks fine" in (root / "timeline.json").read_bytes()
    assert b"denial and approval as expected" in (root / "reviews.json").read_bytes()
    r = subprocess.run([sys.executable, "-m", "gateway", "verify", "--bundle", str(bundle),
                        "--public-key", str(g.root / "recording.key.pub")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
