"""Policy in the data path, through the real gateway to a real bash on sshd."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest

from tests.e2e.rig import Rig, Tmux

# target paths are on this machine's /tmp, which outlives a run: a name no earlier run used
RUN = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

pytestmark = pytest.mark.e2e


def _bastille(g: Rig, *args: str) -> subprocess.CompletedProcess[str]:
    """The appliance CLI of this gateway, run by the test's own interpreter."""
    return subprocess.run([sys.executable, "-m", "gateway", *args, "-c", str(g.gateway.config)],
                          capture_output=True, text=True, errors="replace", timeout=30)

POLICY = """
[policy]
default = "allow"
on_uncertain = "approve"

[[policy.rules]]
name = "no-forbidden-files"
match = '^touch \\S*forbidden'
action = "deny"

[[policy.rules]]
name = "echo-needs-approval"
match = '^echo approve-me'
action = "approve"

[approvals]
approvers = ["alice", "bob"]
timeout = "{timeout}"
"""


@pytest.fixture
def pol(make_gateway) -> Rig:  # type: ignore[no-untyped-def]
    g: Rig = make_gateway(extra=POLICY.format(timeout="30s"))
    return g


def _audit(g: Rig, kind: str) -> list[dict[str, Any]]:
    return [e for e in map(json.loads, (g.data / "audit.jsonl").read_text().splitlines())
            if e["kind"] == kind]


def _exists(g: Rig, path: str) -> bool:
    return g.ssh("alice", "web1", "--", "test", "-e", path).returncode == 0


def test_exec_denied_never_reaches_target(pol: Rig) -> None:
    path = f"/tmp/forbidden-{RUN}-a"
    r = pol.ssh("alice", "web1", "--", "touch", path)
    assert r.returncode == 1
    assert b"denied by policy" in r.stderr and b"no-forbidden-files" in r.stderr
    assert not _exists(pol, path)
    assert any(e["detail"]["rule"] == "no-forbidden-files" for e in _audit(pol, "policy"))


@pytest.mark.parametrize("evasion", [
    "sh -c 'touch {p}'", "t''ouch {p}", "\\touch {p}", "/usr/bin/../bin/touch {p}",
    "true; touch {p}", "env touch {p}", "sudo -n touch {p}", "$'\\x74ouch' {p}",
])
def test_exec_evasions_denied(pol: Rig, evasion: str) -> None:
    path = f"/tmp/forbidden-{RUN}-{abs(hash(evasion)) % 10000}"
    r = pol.ssh("alice", "web1", "--", evasion.format(p=path))
    assert r.returncode == 1 and b"denied by policy" in r.stderr, r.stderr
    assert not _exists(pol, path)


def test_exec_dynamic_command_needs_approval_and_is_denied(pol: Rig) -> None:
    path = f"/tmp/dyn-{RUN}"
    proc = subprocess.Popen([*pol.ssh_args("alice"), "web1", "--", f"$(echo touch) {path}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rid = _wait_request(pol)
    r = pol.ssh("bob", "approvals", "deny", str(rid), "not today")
    assert b"denied" in r.stdout, r
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1 and b"denied" in err
    assert not _exists(pol, path)


def _wait_request(g: Rig, timeout: float = 15) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = g.ssh("bob", "approvals", "list")
        ids = re.findall(rb"^\s*(\d+)\s", r.stdout, re.M)
        if ids:
            return int(ids[0])
        time.sleep(0.3)
    raise AssertionError("no pending approval request")


def _term(g: Rig) -> Tmux:
    t = Tmux(g.root, [*g.ssh_args("alice", tty=True), "web1"])
    t.wait_re(r"[$#]$")  # the shell's first prompt: no type-ahead in these tests
    t.type("export PS1='PROMPT$ '\n")
    t.wait_for("\nPROMPT$")
    return t


def test_type_ahead_goes_through_policy(pol: Rig) -> None:
    """Keys typed before the target session is ready are decided like any other."""
    path = f"/tmp/forbidden-{RUN}-ahead"
    t = Tmux(pol.root, [*pol.ssh_args("alice", tty=True), "web1"])
    try:
        t.type(f"touch {path}\n")
        t.wait_for("denied by policy")
    finally:
        t.close()
    assert not _exists(pol, path)


def test_interactive_deny_and_shell_still_usable(pol: Rig) -> None:
    path = f"/tmp/forbidden-{RUN}-i"
    t = _term(pol)
    try:
        t.type(f"touch {path}\n")
        t.wait_for("denied by policy")
        assert "no-forbidden-files" in t.screen()
        t.type("echo still-$((20+1))\n")
        t.wait_for("still-21")
    finally:
        t.close()
    assert not _exists(pol, path)


def test_interactive_edit_keys_cannot_sneak_a_command(pol: Rig) -> None:
    path = f"/tmp/forbidden-{RUN}-e"
    t = _term(pol)
    try:
        t.type(f"tXuch {path}")
        t.send("Home")
        t.send("Right")
        t.send("Delete")
        t.type("o")
        t.send("Enter")
        t.wait_for("denied by policy")
    finally:
        t.close()
    assert not _exists(pol, path)


def test_interactive_approval_flow(pol: Rig) -> None:
    t = _term(pol)
    try:
        t.type("echo approve-me-$((7*6))\n")
        t.wait_for("waiting for approval #")
        rid = _wait_request(pol)
        own = pol.ssh("alice", "approvals", "approve", str(rid))
        assert b"nobody may approve or deny their own request" in own.stdout
        t.type("ignored-keys")  # discarded while waiting
        ok = pol.ssh("bob", "approvals", "approve", str(rid), "looks fine")
        assert b"approved" in ok.stdout
        screen = t.wait_for("approve-me-42\n") if False else t.wait_for("approved by bob")
        t.wait_for("approve-me-42")
        assert "ignored-keys" not in t.screen().split("approved by bob")[-1]
        del screen
    finally:
        t.close()
    kinds = [e["outcome"] for e in _audit(pol, "approval")]
    assert "requested" in kinds and "approved" in kinds and "refused" in kinds


def test_approval_timeout_means_deny(make_gateway) -> None:  # type: ignore[no-untyped-def]
    g: Rig = make_gateway(extra=POLICY.format(timeout="2s"))
    r = g.ssh("alice", "web1", "--", "echo approve-me-late", timeout=30)
    assert r.returncode == 1 and b"expired" in r.stderr
    assert b"approve-me-late" not in r.stdout


def test_restart_never_approves(make_gateway) -> None:  # type: ignore[no-untyped-def]
    g: Rig = make_gateway(extra=POLICY.format(timeout="5m"))
    proc = subprocess.Popen([*g.ssh_args("alice"), "web1", "--", "echo approve-me-restart"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rid = _wait_request(g)
    g.gateway.stop()
    proc.communicate(timeout=20)
    g.gateway.start()
    r = _bastille(g, "approvals", "list", "--all", "--json")
    status = {x["id"]: x["status"] for x in json.loads(r.stdout)}
    assert status[rid] in ("expired", "cancelled")


def test_secrets_masked_live_and_in_recording(pol: Rig) -> None:
    key = "AKIA" + "IOSFODNN7EXAMPLE"
    t = _term(pol)
    try:
        t.type("printf '%s%s\\n' AKIA IOSFODNN7EXAMPLE; echo done-$((1+1))\n")
        screen = t.wait_for("done-2")
    finally:
        t.close()
    assert key not in screen
    assert "****************" in screen or "AKIA" not in screen.split("done-2")[0].splitlines()[-2]
    blobs = b"".join(p.read_bytes() for p in (pol.data / "recordings").rglob("*.bstl*"))
    import zstandard

    del zstandard
    out = _bastille(pol, "sessions", "list", "--json")
    for s in json.loads(out.stdout):
        play = _bastille(pol, "play", s["id"], "--speed", "0")
        assert key not in play.stdout
    del blobs


def test_sftp_paths_are_policy_inputs(make_gateway, tmp_path) -> None:  # type: ignore[no-untyped-def]
    extra = POLICY.format(timeout="30s") + """
[[policy.rules]]
name = "no-hostname-download"
match = '^sftp-get /etc/hostname$'
action = "deny"
"""
    # rules are evaluated in order: append the sftp rule after the others
    extra = extra.replace("[approvals]", "").replace('approvers = ["alice", "bob"]', "").replace(
        'timeout = "30s"', "")
    extra += '\n[approvals]\napprovers = ["bob"]\n'
    g: Rig = make_gateway(extra=extra)
    batch = tmp_path / "batch"
    batch.write_text(f"get /etc/hostname {tmp_path}/h\n")
    r = subprocess.run(["sftp", *g.scp_args(), "-b", str(batch), "alice+web1@127.0.0.1"],
                       capture_output=True, timeout=30)
    assert r.returncode != 0
    assert b"Permission denied" in r.stderr  # the client shows the status code only
    assert not (tmp_path / "h").exists()
    ok = tmp_path / "b2"
    ok.write_text(f"get /etc/os-release {tmp_path}/h\n")
    r = subprocess.run(["sftp", *g.scp_args(), "-b", str(ok), "alice+web1@127.0.0.1"],
                       capture_output=True, timeout=30)
    assert r.returncode == 0 and (tmp_path / "h").exists()
    assert any(e["detail"].get("rule") == "no-hostname-download" for e in _audit(g, "policy"))


SFTP_APPROVAL = """
[policy]
default = "allow"

[[policy.rules]]
name = "uploads-to-opt-need-approval"
match = '^sftp-put /tmp/held-'
action = "approve"

[approvals]
approvers = ["bob"]
timeout = "30s"
"""


@pytest.mark.parametrize("verdict", ["approve", "deny"])
def test_sftp_request_waits_for_approval(make_gateway, tmp_path, verdict: str) -> None:  # type: ignore[no-untyped-def]
    g: Rig = make_gateway(extra=SFTP_APPROVAL)
    local = tmp_path / "payload"
    local.write_bytes(b"held upload " * 1000)
    remote = f"/tmp/held-{RUN}-{verdict}"
    batch = tmp_path / "batch"
    # the get after the put must wait too: requests keep their order
    batch.write_text(f"put {local} {remote}\nget /etc/os-release {tmp_path}/after\n")
    proc = subprocess.Popen(["sftp", *g.scp_args(), "-b", str(batch), "alice+web1@127.0.0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        rid = _wait_request(g)
        time.sleep(0.5)
        assert proc.poll() is None, "sftp finished before the approver decided"
        assert not (tmp_path / "after").exists()
        assert not _exists(g, remote)
        own = g.ssh("alice", "approvals", "approve", str(rid))
        assert b"approved" not in own.stdout, own.stdout  # alice is not an approver
        decided = g.ssh("bob", "approvals", verdict, str(rid), "checked")
        assert decided.returncode == 0, decided.stdout + decided.stderr
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert b"waiting for approval #%d" % rid in err
    if verdict == "approve":
        assert proc.returncode == 0, err
        assert b"approved by bob" in err
        cat = g.ssh("alice", "web1", "--", "cat", remote)
        assert cat.stdout == local.read_bytes()
        g.ssh("alice", "web1", "--", "rm", "-f", remote)
        assert (tmp_path / "after").exists()
    else:
        assert proc.returncode != 0
        assert b"request #%d denied" % rid in err
        assert not _exists(g, remote)
    outcomes = [e["outcome"] for e in _audit(g, "approval")]
    assert "requested" in outcomes and ("approved" if verdict == "approve" else "denied") \
        in outcomes


def test_forwarding_is_a_policy_input(make_gateway) -> None:  # type: ignore[no-untyped-def]
    extra = """
[policy]
[[policy.rules]]
name = "no-forward-to-ssh"
match = '^forward-local \\S+:22$'
action = "deny"
"""
    g: Rig = make_gateway(extra=extra.replace("[targets.", "[targets."))
    r = g.ssh("alice+web1fwd", extra=["-W", "127.0.0.1:22", "-o", "LogLevel=INFO"], input=b"")
    assert r.returncode != 0 and b"no-forward-to-ssh" in r.stderr


def test_webhook_notified_and_ctrl_c_cancels(make_gateway) -> None:  # type: ignore[no-untyped-def]
    import http.server
    import threading

    received: list[dict[str, Any]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    extra = POLICY.format(timeout="30s") + f'webhook_url = "{url}"\nwebhook_format = "slack"\n'
    g: Rig = make_gateway(extra=extra)
    t = _term(g)
    try:
        t.type("echo approve-me-$((3+4))\n")
        t.wait_for("waiting for approval #")
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.1)
        assert received and "approve-me" in received[0]["text"]
        assert "bastille approvals approve" in received[0]["text"]
        t.send("C-c")
        t.wait_for("cancelled; the command was not run")
        t.type("echo after-$((5+5))\n")
        t.wait_for("after-10")
        assert "approve-me-7\n" not in t.screen().replace("echo approve-me-", "")
    finally:
        t.close()
        server.shutdown()
    r = _bastille(g, "approvals", "list", "--all", "--json")
    assert [x["status"] for x in json.loads(r.stdout)] == ["cancelled"]


def test_just_in_time_access_request(pol: Rig) -> None:
    assert pol.ssh("bob", "web1", "--", "true").returncode == 1  # not allowed by config
    r = pol.ssh("bob", "request", "web1", "30m", "debugging", "incident", "42")
    assert b"access request #" in r.stdout, r
    rid = int(re.search(rb"#(\d+)", r.stdout).group(1))  # type: ignore[union-attr]
    own = pol.ssh("bob", "approvals", "approve", str(rid))
    assert b"nobody may approve or deny their own request" in own.stdout
    assert pol.ssh("bob", "web1", "--", "true").returncode == 1  # still pending
    ok = pol.ssh("alice", "approvals", "approve", str(rid))
    assert b"approved" in ok.stdout
    r = pol.ssh("bob", "web1", "--", "echo", "jit-ok")
    assert (r.returncode, r.stdout) == (0, b"jit-ok\n")
    assert pol.ssh("bob", "secret", "--", "true").returncode == 1  # only the granted target


INPUT_GATE = """
[policy]
default = "allow"

[[policy.rules]]
name = "no-forbidden-files"
match = '^touch /tmp/forbidden'
action = "deny"

[approvals]
approvers = ["bob"]
timeout = "30s"
"""


def test_a_shell_without_a_terminal_runs_but_its_input_waits_for_approval(  # type: ignore[no-untyped-def]
        make_gateway) -> None:
    """``ssh host -- bash`` (no terminal): bash would run whatever the user sends, and the
    bastion does not check that input. Without input it runs and ends as it would; the
    first byte of input waits for an approver, and nothing reaches the target before."""
    g: Rig = make_gateway(extra=INPUT_GATE)
    r = g.ssh("alice", "web1", "--", "bash", input=b"")
    assert r.returncode == 0 and b"approval" not in r.stderr, r.stderr
    for verdict in ("approve", "deny"):
        path = f"/tmp/gated-{RUN}-{verdict}"
        proc = subprocess.Popen([*g.ssh_args("alice"), "web1", "--", "bash"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            assert proc.stdin is not None
            proc.stdin.write(f"touch {path}\necho ran-$((40+2))\n".encode())
            proc.stdin.close()  # the end of input must wait too
            rid = _wait_request(g)
            time.sleep(0.5)
            assert proc.poll() is None, "bash ended before the approver decided"
            assert not _exists(g, path)
            listed = g.ssh("bob", "approvals", "list").stdout
            assert b"input to `bash`: touch " + path.encode() in listed, listed
            decided = g.ssh("bob", "approvals", verdict, str(rid), "checked")
            assert decided.returncode == 0, decided.stdout + decided.stderr
            proc.wait(timeout=30)
            assert proc.stdout is not None and proc.stderr is not None
            out, err = proc.stdout.read(), proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
        assert b"bash reads commands from the user's input" in err, err
        assert b"waiting for approval #%d" % rid in err
        if verdict == "approve":
            assert proc.returncode == 0, err
            assert out == b"ran-42\n"
            assert _exists(g, path)
            g.ssh("alice", "web1", "--", "rm", "-f", path)
        else:
            assert proc.returncode != 0
            assert out == b""
            assert b"request #%d denied" % rid in err, err
            assert not _exists(g, path)
            # the refused input is in the recording, as what the user sent
            listed = json.loads(_bastille(g, "sessions", "list", "--json").stdout)
            texts = []
            for x in listed:
                if x.get("command") == "bash":
                    cast = g.root / f"gated-{x['id']}.cast"
                    made = _bastille(g, "export", x["id"], "--input", "-o", str(cast))
                    assert made.returncode == 0, made.stderr
                    texts.append(cast.read_text())
            assert len(texts) == 3 and any(f"touch {path}" in t for t in texts), texts
