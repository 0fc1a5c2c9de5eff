"""The embedded default (`bastille demo`) and the CLI, as a user runs them."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.rig import Tmux, free_port, have_tools, wait_port

pytestmark = pytest.mark.e2e

BASTILLE = [sys.executable, "-m", "gateway"]
#: the console script, as a user runs it from a checkout (not on PATH)
SCRIPT = Path(sys.executable).parent / "bastille"


@pytest.fixture
def demo(tmp_path: Path):  # type: ignore[no-untyped-def]
    reason = have_tools()
    if reason:
        pytest.skip(reason)
    port = free_port()
    data = tmp_path / "demo"
    log = open(tmp_path / "demo.log", "wb")
    env = {**os.environ, "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}  # bastille not on PATH
    proc = subprocess.Popen([str(SCRIPT), "demo", "--port", str(port), "--data", str(data)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    wait_port(port, proc=proc)
    # the port answers (connections wait) while SSH workers start; the banner follows
    deadline = time.monotonic() + 30
    while b"Ctrl-C stops the gateway" not in (tmp_path / "demo.log").read_bytes():
        assert time.monotonic() < deadline and proc.poll() is None, "no demo banner"
        time.sleep(0.05)
    yield port, data, tmp_path / "demo.log"
    proc.terminate()
    proc.wait(20)
    log.close()


def _ssh(port: int, tmp: Path, *args: str, user: str = "demo") -> list[str]:
    return ["sshpass", "-p", "demo", "ssh", "-F", "/dev/null", "-p", str(port),
            "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={tmp}/kh",
            "-o", "PubkeyAuthentication=no", "-o", "LogLevel=ERROR", *args, f"{user}@127.0.0.1"]


def test_demo_prints_how_to_connect_and_serves_a_shell(demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port, data, log = demo
    banner = _banner(log)
    assert f"ssh -p {port} -t demo@127.0.0.1 demo" in banner
    assert str(data) in banner
    r = subprocess.run([*_ssh(port, tmp_path, "-T"), "demo", "--", "echo", "hi-from-demo"],
                       capture_output=True, timeout=30)
    assert (r.returncode, r.stdout) == (0, b"hi-from-demo\n"), r.stderr
    t = Tmux(tmp_path, [*_ssh(port, tmp_path, "-tt"), "demo"])
    try:
        t.type("export PS1='DEMO$ '\n")
        t.wait_for("DEMO$ ")
        t.type("echo demo-$((40+2))\n")
        t.wait_for("demo-42")
        t.type("exit\n")
        assert t.dead_status() == 0
    finally:
        t.close()
    assert (data / "bastille.toml").exists()
    assert any((data / "data" / "recordings").rglob("*.bstl"))
    audit = subprocess.run([*BASTILLE, "audit", "--data", str(data), "--kind", "session"],
                           capture_output=True, timeout=30, text=True)
    assert audit.returncode == 0 and "session.start" in audit.stdout and " demo " in audit.stdout


def test_demo_ships_a_starter_policy(demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port, _, _ = demo
    r = subprocess.run([*_ssh(port, tmp_path, "-T"), "demo", "--",
                        "mkfs.ext4 /dev/bastille-does-not-exist"], capture_output=True,
                       timeout=30)
    assert r.returncode == 1 and b"no-filesystem-format" in r.stderr


def test_demo_wrong_password_refused(demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port, data, _ = demo
    args = _ssh(port, tmp_path, "-T", "-o", "NumberOfPasswordPrompts=1")
    args[2] = "wrong"
    r = subprocess.run([*args, "demo", "--", "true"], capture_output=True, timeout=30)
    assert r.returncode == 5  # sshpass: the password was refused
    audit = (data / "data" / "audit.jsonl").read_text()
    assert '"kind":"login","outcome":"failed","user":"demo"' in audit
    assert "wrong" not in audit


def test_write_config_then_check_then_serve(tmp_path: Path) -> None:
    out = tmp_path / "cfg"
    port = free_port()
    r = subprocess.run([*BASTILLE, "demo", "--write-config", str(out), "--port", str(port)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and f"gateway serve -c {out / 'bastille.toml'}" in r.stdout
    assert oct((out / "bastille.toml").stat().st_mode & 0o777) == "0o600"
    check = subprocess.run([*BASTILLE, "config", "check", "-c", str(out / "bastille.toml")],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0 and "OK" in check.stdout
    again = subprocess.run([*BASTILLE, "demo", "--write-config", str(out)], capture_output=True,
                           text=True, timeout=30)
    assert again.returncode == 1 and "exists" in again.stderr
    proc = subprocess.Popen([*BASTILLE, "serve", "-c", str(out / "bastille.toml")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc=proc)
        r2 = subprocess.run([*_ssh(port, tmp_path, "-T"), "demo", "--", "echo", "served"],
                            capture_output=True, timeout=30)
        assert r2.stdout == b"served\n", r2.stderr
    finally:
        proc.terminate()
        assert proc.wait(20) == 0


@pytest.mark.parametrize("first", ["SIGTERM", "SIGHUP"])
def test_a_signal_while_starting_does_not_kill_the_gateway(tmp_path: Path, first: str) -> None:
    """The SSH workers listen before the gateway process has finished starting (admin
    endpoint, audit): a signal that arrives as soon as the port answers used to find no
    handler yet and kill the process (SIGTERM: no drain, no finalized recordings; SIGHUP:
    the default action, termination). It is now a graceful stop, or a reload once
    started."""
    out = tmp_path / "cfg"
    port = free_port()
    subprocess.run([*BASTILLE, "demo", "--write-config", str(out), "--port", str(port)],
                   capture_output=True, check=True, timeout=30)
    for _ in range(4):  # the window is short: try it a few times
        proc = subprocess.Popen([*BASTILLE, "serve", "-c", str(out / "bastille.toml")],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and proc.poll() is None:
                try:  # as soon as anything answers, without waiting for a banner
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.005)
            proc.send_signal(getattr(signal, first))
            if first == "SIGHUP":
                time.sleep(1.0)
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else b""
                proc.send_signal(signal.SIGTERM)
            rc = proc.wait(30)
            output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert rc == 0, output[-2000:]


def test_config_check_reports_file_key_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[gateway]\nlisten = "nowhere"\nhost_keys = ["missing_key"]\n'
                   '[targets.web1]\nhost = "x"\nport = "22"\n')
    r = subprocess.run([*BASTILLE, "config", "check", "-c", str(cfg)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1
    assert f"{cfg}:2: gateway.listen: expected 'host:port', got 'nowhere'" in r.stderr
    assert f"{cfg}:6: targets.web1.port: expected an integer, got a string" in r.stderr
    assert "problem(s) found" in r.stderr


def test_serve_with_broken_config_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[gateway\n")
    r = subprocess.run([*BASTILLE, "serve", "-c", str(cfg)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "not valid TOML" in r.stderr


def test_help_is_helpful() -> None:
    r = subprocess.run([*BASTILLE, "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    for word in ("demo", "serve", "config", "audit", "examples:"):
        assert word in r.stdout
    env = {**os.environ, "HOME": "/nonexistent-home"}
    r = subprocess.run([*BASTILLE, "audit"], capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode != 0 and "no config" in r.stderr


def test_broken_keys_and_busy_port_are_reported(tmp_path: Path) -> None:
    out = tmp_path / "cfg"
    port = free_port()
    subprocess.run([*BASTILLE, "demo", "--write-config", str(out), "--port", str(port)],
                   check=True, capture_output=True, timeout=30)
    cfg = str(out / "bastille.toml")
    (out / "ssh_host_ed25519_key").write_text("garbage\n")
    (out / "recording.key").write_text("garbage\n")
    r = subprocess.run([*BASTILLE, "config", "check", "-c", cfg], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1
    assert "gateway.host_keys: host key file [0]:" in r.stderr
    assert "recording.signing_key: signing key" in r.stderr
    r = subprocess.run([*BASTILLE, "serve", "-c", cfg], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "invalid configuration" in r.stderr
    assert "Traceback" not in r.stderr
    # a busy port: a clear one-line error, exit 1
    other = tmp_path / "other"
    subprocess.run([*BASTILLE, "demo", "--write-config", str(other), "--port", str(port)],
                   check=True, capture_output=True, timeout=30)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen(1)
        r = subprocess.run([*BASTILLE, "serve", "-c", str(other / "bastille.toml")],
                           capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr


def _banner(log: Path) -> str:
    deadline = time.monotonic() + 15
    while "Ctrl-C stops" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    return log.read_text()


def test_scp_sftp_rsync_through_the_demo_exit_0(demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Against a real sshd these exit 0; through the demo target too."""
    port, _, _ = demo
    src = tmp_path / "payload.txt"
    src.write_text("payload through the demo\n")
    dest = tmp_path / "copies"
    dest.mkdir()
    opts = _ssh(port, tmp_path)[4:-1]  # ssh's options without "ssh" and the destination
    where = "demo+demo@127.0.0.1"
    runs = {
        "scp": ["sshpass", "-p", "demo", "scp", *[o.replace("-p", "-P") if o == "-p" else o
                                                  for o in opts], str(src),
                f"{where}:{dest}/scp.txt"],
        "scp -O": ["sshpass", "-p", "demo", "scp", "-O", *[o.replace("-p", "-P") if o == "-p"
                                                           else o for o in opts], str(src),
                   f"{where}:{dest}/scp-legacy.txt"],
        "rsync": ["sshpass", "-p", "demo", "rsync", "-e", "ssh " + " ".join(opts), str(src),
                  f"{where}:{dest}/rsync.txt"],
    }
    for what, argv in runs.items():
        r = subprocess.run(argv, capture_output=True, timeout=60)
        assert r.returncode == 0, (what, r.stderr)
        assert b"without an exit status" not in r.stderr, what
    sftp = subprocess.run(["sshpass", "-p", "demo", "sftp", *[o.replace("-p", "-P")
                                                              if o == "-p" else o
                                                              for o in opts], where],
                          input=f"put {src} {dest}/sftp.txt\nbye\n".encode(),
                          capture_output=True, timeout=60)
    assert sftp.returncode == 0 and b"without an exit status" not in sftp.stderr, sftp.stderr
    for name in ("scp.txt", "scp-legacy.txt", "rsync.txt", "sftp.txt"):
        assert (dest / name).read_text() == "payload through the demo\n", name


def test_auditor_approves_a_demo_request_end_to_end(demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port, data, log = demo
    banner = _banner(log)
    m = re.search(r"^  auditor\s+password (\S+)", banner, re.M)
    assert m, banner
    held = subprocess.Popen([*_ssh(port, tmp_path, "-T"), "demo", "--", "history -c"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        auditor = _ssh(port, tmp_path, "-T", user="auditor")
        auditor[2] = m.group(1)
        deadline = time.monotonic() + 20
        listed = b""
        while b"approve-history-wipe" not in listed and time.monotonic() < deadline:
            listed = subprocess.run([*auditor, "approvals", "list"], capture_output=True,
                                    timeout=30).stdout
            time.sleep(0.2)
        rid = re.search(rb"^\s*(\d+)\s", listed.split(b"\n", 1)[1], re.M)
        assert rid, listed
        ok = subprocess.run([*auditor, "approvals", "approve", rid.group(1).decode(), "fine"],
                            capture_output=True, timeout=30)
        assert ok.returncode == 0 and b"approved" in ok.stdout, ok.stderr
        _, err = held.communicate(timeout=30)
        assert held.returncode == 0 and b"approved by auditor" in err, err
    finally:
        if held.poll() is None:
            held.kill()
            held.wait()
    r = subprocess.run([*BASTILLE, "approvals", "list", "--all", "--data", str(data)],
                       capture_output=True, text=True, timeout=30)
    header, row = r.stdout.splitlines()[:2]
    assert header.split() == ["ID", "STATUS", "AGE", "USER", "TARGET", "RULE", "DECIDED", "BY",
                              "REQUEST"]
    assert row.split()[1] == "approved" and "auditor" in row.split()


def test_banner_commands_work_as_printed(demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port, _, log = demo
    banner = _banner(log)
    assert subprocess.run([*_ssh(port, tmp_path, "-T"), "demo", "--", "true"],
                          timeout=30).returncode == 0
    commands = [line.strip() for line in banner.splitlines()
                if "sessions list" in line or "audit --data" in line]
    assert len(commands) == 2 and not commands[0].startswith("bastille "), banner
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    for command in commands:
        r = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                           timeout=60, env=env, cwd=tmp_path)
        assert r.returncode == 0, (command, r.stderr)
        assert "demo" in r.stdout
    m = re.search(r"metrics:\s+(http://127.0.0.1:\d+)/metrics", banner)
    assert m, banner
    health = json.loads(urllib.request.urlopen(m.group(1) + "/healthz", timeout=10).read())
    assert health["state"] == "ok"


def test_demo_never_overwrites_an_existing_config(tmp_path: Path) -> None:
    reason = have_tools()
    if reason:
        pytest.skip(reason)
    data = tmp_path / "demo"
    first, second = free_port(), free_port()
    proc = subprocess.Popen([*BASTILLE, "demo", "--port", str(first), "--data", str(data)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(first, proc=proc)
    proc.terminate()
    proc.wait(20)
    config = data / "bastille.toml"
    edited = config.read_text().replace('description = "a local shell',
                                        'description = "EDITED a local shell')
    config.write_text(edited)
    log = tmp_path / "second.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([*BASTILLE, "demo", "--port", str(second), "--data", str(data)],
                                stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_port(second, proc=proc)  # the new port, for this run only
        banner = _banner(log)
        assert f"port {second} for this run; {config} says {first}" in banner
        assert config.read_text() == edited
        r = subprocess.run([*_ssh(second, tmp_path, "-T"), "help"], capture_output=True,
                           timeout=30)
        assert b"EDITED a local shell" in r.stdout
    finally:
        proc.terminate()
        proc.wait(20)
    assert config.read_text() == edited
