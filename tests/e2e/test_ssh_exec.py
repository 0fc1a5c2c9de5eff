"""Exec sessions and refusals through the gateway, with the real OpenSSH client and sshd."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess

import asyncssh
import pytest

from tests.e2e.conftest import audit_events
from tests.e2e.rig import TARGET_USER, Rig

pytestmark = pytest.mark.e2e


def test_exec_runs_on_target_as_target_user(rig: Rig) -> None:
    r = rig.ssh("alice", "web1", "--", "id", "-un")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{TARGET_USER}\n".encode()


def test_exec_without_double_dash(rig: Rig) -> None:
    r = rig.ssh("alice", "web1", "echo", "hello")
    assert (r.returncode, r.stdout) == (0, b"hello\n")


def test_exec_exit_code_and_stderr_exact(rig: Rig) -> None:
    r = rig.ssh("alice", "web1", "--", "echo out; echo err >&2; exit 7")
    assert r.returncode == 7
    assert r.stdout == b"out\n"
    assert r.stderr == b"err\n"


def test_pty_exec_output_arrives_before_its_end(rig: Rig) -> None:
    """A PTY exec whose output and end arrive together (``echo``): the output reaches the
    user before the target's EOF and exit status, every time (the interactive pipe hands
    target output over once per loop turn; it must not be left behind the end)."""

    async def main() -> list[str]:
        out = []
        async with asyncssh.connect("127.0.0.1", rig.gateway.port, username="alice",
                                    known_hosts=None, client_keys=[str(rig.keys["alice"])],
                                    agent_path=None) as conn:
            for i in range(12):
                try:
                    r = await conn.run(f"web1 -- echo pty-{i}", term_type="xterm",
                                       term_size=(80, 24), check=False, timeout=10)
                    out.append(f"{r.exit_status} {r.stdout!r}")
                except asyncssh.TimeoutError as exc:
                    out.append(f"timeout {exc.stdout!r}")
        return out

    assert asyncio.run(main()) == [f"0 'pty-{i}\\r\\n'" for i in range(12)]


def test_exec_stdin_binary_roundtrip(rig: Rig) -> None:
    data = os.urandom(3 * 1024 * 1024) + bytes(range(256))
    r = rig.ssh("alice", "web1", "--", "cat", input=data)
    assert r.returncode == 0
    assert hashlib.sha256(r.stdout).hexdigest() == hashlib.sha256(data).hexdigest()


def test_echo_data_pipe_cat(rig: Rig) -> None:
    r = rig.ssh("alice", "web1", "--", "cat", input=b"data\n")
    assert (r.returncode, r.stdout) == (0, b"data\n")


def test_plus_form_exec(rig: Rig) -> None:
    r = rig.ssh("alice+web1", "uname", "-s")
    assert (r.returncode, r.stdout) == (0, b"Linux\n")


def test_exit_signal_passed_through(rig: Rig) -> None:
    r = rig.ssh("alice", "web1", "--", "kill -TERM $$")
    # OpenSSH reports a remote signal as exit status 255 with a message
    assert r.returncode == 255
    assert b"signal" in r.stderr.lower() or r.returncode != 0


def test_exec_is_audited(rig: Rig) -> None:
    r = rig.ssh("alice", "web1", "--", "echo", "audited-marker-1")
    assert r.returncode == 0
    events = audit_events(rig, kind="exec", user="alice", target="web1")
    assert any(e["detail"]["command"] == "echo audited-marker-1" for e in events)
    assert audit_events(rig, kind="login", outcome="ok", user="alice")


def test_credentials_never_reach_the_user(rig: Rig) -> None:
    r = rig.ssh("alice", "pwtarget", "--", "echo", "ok")
    assert (r.returncode, r.stdout) == (0, b"ok\n")
    secret = os.environ["BASTILLE_T1_PW"].encode()
    assert secret not in r.stdout + r.stderr
    assert secret not in (rig.data / "audit.jsonl").read_bytes()
    assert secret not in rig.gateway.logs().encode()


# ------------------------------------------------------------------ refusals


def _refused(r: subprocess.CompletedProcess[bytes], text: str) -> None:
    assert r.returncode != 0
    assert text in r.stderr.decode(), r.stderr


def test_unknown_target(rig: Rig) -> None:
    _refused(rig.ssh("alice", "nosuch", "--", "true"), "unknown target 'nosuch'")


def test_target_not_allowed(rig: Rig) -> None:
    _refused(rig.ssh("alice", "secret", "--", "true"), "alice is not allowed to use target")
    _refused(rig.ssh("bob", "web1", "--", "true"), "bob is not allowed to use target 'web1'")
    assert audit_events(rig, kind="refused", user="bob", target="web1")


def test_target_down(rig: Rig) -> None:
    _refused(rig.ssh("alice", "down", "--", "true"), "target down refused the connection")


def test_wrong_host_key_refused_and_audited(rig: Rig) -> None:
    r = rig.ssh("alice", "wrongkey", "--", "echo", "should-not-run")
    _refused(r, "target wrongkey presented an unexpected host key (SHA256:")
    assert b"should-not-run" not in r.stdout
    assert audit_events(rig, kind="target.host_key_mismatch", target="wrongkey")


def test_bad_target_credentials(rig: Rig) -> None:
    _refused(rig.ssh("alice", "badcreds", "--", "true"),
             "target badcreds refused the bastion's credentials")


def test_unknown_user_and_wrong_key_do_not_authenticate(rig: Rig) -> None:
    r = rig.ssh("nobody", "web1", "--", "true", key="alice")
    assert r.returncode == 255 and b"Permission denied" in r.stderr
    r = rig.ssh("alice", "web1", "--", "true", key="mallory")
    assert r.returncode == 255 and b"Permission denied" in r.stderr


def test_no_target_without_tty_explains(rig: Rig) -> None:
    r = rig.ssh("alice")
    _refused(r, "name a target")


def test_help_lists_allowed_targets(rig: Rig) -> None:
    r = rig.ssh("alice", "help")
    out = r.stderr.decode() + r.stdout.decode()
    assert "web1" in out and "web frontend" in out
    assert "secret" not in out


def test_local_forwarding_refused_by_default(rig: Rig) -> None:
    r = rig.ssh("alice+web1", extra=["-W", f"127.0.0.1:{rig.sshd.port}", "-o", "LogLevel=INFO"],
                input=b"")
    assert r.returncode != 0
    assert b"port forwarding to 127.0.0.1" in r.stderr and b"not allowed" in r.stderr
    assert audit_events(rig, kind="refused", channel="direct-tcpip")


def test_local_forwarding_allowed_goes_through_target(rig: Rig) -> None:
    # -W through the target to the target's own sshd: we read its SSH banner
    r = rig.ssh("alice+web1fwd", extra=["-W", f"127.0.0.1:{rig.sshd.port}"],
                input=b"", timeout=20)
    assert r.stdout.startswith(b"SSH-2.0-OpenSSH"), (r.stdout[:80], r.stderr)
    assert audit_events(rig, kind="forward", target="web1fwd")


def test_remote_forwarding_allowed_listens_on_target(rig: Rig) -> None:
    """ssh -R through the bastion: the target listens, connections come back to the client."""
    import socket
    import threading

    from tests.e2e.rig import free_port

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    local_port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        conn.sendall(b"hello-from-client-side\n")
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    remote_port = free_port()
    r = rig.ssh("alice+web1rfwd",
                f"sleep 0.5; exec 3<>/dev/tcp/127.0.0.1/{remote_port}; head -1 <&3",
                extra=["-R", f"127.0.0.1:{remote_port}:127.0.0.1:{local_port}",
                       "-o", "ExitOnForwardFailure=yes"], timeout=30)
    server.close()
    assert r.stdout == b"hello-from-client-side\n", r.stderr
    assert audit_events(rig, kind="forward", target="web1rfwd")


def test_remote_forwarding_refused(rig: Rig) -> None:
    r = rig.ssh("alice+web1", "echo", "still-runs",
                extra=["-R", "127.0.0.1:0:127.0.0.1:22", "-o", "ExitOnForwardFailure=yes"])
    assert r.returncode != 0
    assert b"remote port forwarding failed" in r.stderr.lower() or \
        b"forwarding" in r.stderr.lower()


@pytest.fixture
def agent(rig: Rig):  # type: ignore[no-untyped-def]
    out = subprocess.run(["ssh-agent", "-s"], capture_output=True, check=True).stdout.decode()
    env = dict(os.environ)
    for part in out.replace("\n", ";").split(";"):
        if "=" in part and part.strip().startswith("SSH_"):
            k, v = part.strip().split("=", 1)
            env[k] = v
    subprocess.run(["ssh-add", str(rig.keys["bob"])], env=env, check=True, capture_output=True)
    yield env
    subprocess.run(["ssh-agent", "-k"], env=env, capture_output=True)


def test_agent_forwarding_allowed_by_config(rig: Rig, agent: dict[str, str]) -> None:
    args = rig.ssh_args("alice", extra=["-A"])
    r = subprocess.run([*args, "web1agent", "--", "ssh-add", "-l"], env=agent,
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert b"bob" in r.stdout  # the key in alice's local agent, seen from the target


def test_agent_forwarding_refused_by_default(rig: Rig, agent: dict[str, str]) -> None:
    args = rig.ssh_args("alice", extra=["-A"])
    r = subprocess.run([*args, "web1", "--", "ssh-add -l; echo rc=$?"], env=agent,
                       capture_output=True, timeout=30)
    assert b"agent forwarding is not allowed on web1" in r.stderr
    assert b"bob" not in r.stdout and b"rc=2" in r.stdout  # no agent on the target


def test_unsigned_key_offer_does_not_authenticate(rig: Rig, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Offering alice's public key without being able to sign (no private key, no agent)."""
    import shutil

    pub_only = tmp_path / "alice_only.pub"
    shutil.copy(str(rig.keys["alice"]) + ".pub", pub_only)
    args = rig.ssh_args("alice", key="nobody-has-this", extra=["-i", str(pub_only),
                                                               "-o", "LogLevel=DEBUG1"])
    r = subprocess.run([*args, "web1", "--", "echo", "nope"], capture_output=True, timeout=30,
                       env={k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"})
    assert r.returncode == 255 and b"nope" not in r.stdout
    assert b"Server accepts key" in r.stderr  # the offer alone was answered with PK_OK...
    assert b"Permission denied" in r.stderr  # ...but without a signature there is no login


def test_client_that_vanishes_ends_the_session(rig: Rig) -> None:
    import signal as sig
    import time

    marker = f"vanish-{os.getpid()}"
    proc = subprocess.Popen([*rig.ssh_args("alice"), "web1", "--", f"sleep 60; echo {marker}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)
    proc.send_signal(sig.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline:
            starts = [e for e in audit_events(rig, kind="session.start")
                      if marker in e.get("detail", {}).get("command", "")]
            if starts and audit_events(rig, kind="session.end", session=starts[-1]["session"]):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the session did not end when its client vanished")
    finally:
        # without a PTY, sshd leaves the command running until it writes (as with a
        # direct OpenSSH session): not this test's subject, so it is ended here
        found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
        for pid in found.stdout.split():
            subprocess.run(["pkill", "-KILL", "-P", pid], check=False)
            subprocess.run(["kill", "-KILL", pid], check=False)


def test_target_that_vanishes_ends_the_session(rig: Rig) -> None:
    # the target-side shell kills its own sshd session process: the target "vanishes"
    r = rig.ssh("alice", "web1", "--", "echo before; sleep 0.5; kill -9 $PPID; sleep 5; echo after",
                timeout=30)
    assert b"before" in r.stdout and b"after" not in r.stdout
    assert r.returncode == 255
    assert b"target web1 closed the session without an exit status" in r.stderr


def test_trust_on_first_use_pins_the_first_key(rig: Rig, make_gateway) -> None:  # type: ignore[no-untyped-def]
    extra = f"""
[targets.tofu]
host = "127.0.0.1"
port = {rig.sshd.port}
user = "bastille-t1"
key_file = "target_key"
trust_on_first_use = true
groups = ["ops"]
"""
    g: Rig = make_gateway(extra=extra)
    assert g.ssh("alice", "tofu", "--", "echo", "first").stdout == b"first\n"
    known = (g.data / "known_targets").read_text()
    assert known.startswith("tofu ssh-ed25519 ") and rig.sshd.host_key_pub.split()[1] in known
    assert g.ssh("alice", "tofu", "--", "echo", "second").stdout == b"second\n"
