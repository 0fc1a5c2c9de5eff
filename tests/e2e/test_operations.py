"""Operating a running gateway: a real Prometheus scrape, health endpoints, reload under
live sessions (SIGHUP and `bastille reload`), JSON logs without secrets, systemd's
notify protocol, and status."""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import audit_events
from tests.e2e.rig import TARGET_PASSWORD, Rig, Tmux, free_port, wait_port, wait_until

pytestmark = pytest.mark.e2e

BASTILLE = [sys.executable, "-m", "gateway"]

POLICY = """
[policy]
default = "allow"

[[policy.rules]]
name = "no-shutdown"
match = '^shutdown'
action = "deny"

[[policy.rules]]
name = "approve-touch"
match = '^touch '
action = "approve"

[approvals]
approvers = ["bob"]
timeout = "2m"
"""


def cli(g: Rig, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BASTILLE, *args, "-c", str(g.gateway.config)], capture_output=True,
                          text=True, timeout=timeout)


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """/metrics parsed by the Prometheus text parser: name -> [(labels, value)]; every
    family is listed, with or without samples."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text.decode()):
        out.setdefault(family.name + ("_total" if family.type == "counter" else ""), [])
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(metrics: dict[str, list[tuple[dict[str, str], float]]], name: str,
          **labels: str) -> float:
    return sum(v for lab, v in metrics.get(name, []) if all(lab.get(k) == x
                                                            for k, x in labels.items()))


def get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_prometheus_scrape_and_health(make_gateway) -> None:  # type: ignore[no-untyped-def]
    admin = free_port()
    g: Rig = make_gateway(extra=f'{POLICY}\n[admin]\nlisten = "127.0.0.1:{admin}"\n')
    assert g.ssh("alice", "web1", "--", "echo", "metrics-out").returncode == 0
    denied = g.ssh("alice", "web1", "--", "shutdown now")
    assert denied.returncode == 1 and b"no-shutdown" in denied.stderr
    assert g.ssh("alice", "web1", "--", "true", key="mallory").returncode == 255  # refused
    held = subprocess.Popen([*g.ssh_args("alice"), "web1", "--", "touch /tmp/bastille-m"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: value(scrape(admin), "bastille_approvals_pending") == 1,
                   what="a pending approval")
        time.sleep(1.1)
        m = scrape(admin)
        assert value(m, "bastille_sessions_total", protocol="ssh", kind="exec",
                     target="web1") >= 3
        assert value(m, "bastille_sessions_active", target="web1") == 1  # the held one
        assert value(m, "bastille_policy_decisions_total", action="deny",
                     rule="no-shutdown") == 1
        assert value(m, "bastille_policy_decisions_total", action="approve",
                     rule="approve-touch") == 1
        assert value(m, "bastille_approvals_oldest_pending_age_seconds") >= 1
        assert value(m, "bastille_auth_failures_total") >= 1
        assert value(m, "bastille_session_bytes_total", target="web1", direction="out") >= 12
        assert value(m, "bastille_storage_state", state="ok") == 1
        assert value(m, "bastille_ready") == 1 and value(m, "bastille_spool_bytes") == 0
        assert "bastille_recording_index_backlog" in m
        dashboard = (Path(__file__).parents[2] / "docs/grafana-dashboard.json").read_text()
        s3_only = {"bastille_spool_cap_bytes"}  # a spool cap exists with S3 storage only
        used = set(re.findall(r"bastille_[a-z_]+", dashboard)) - {"bastille_gateway"} - s3_only
        assert used <= set(m), f"the dashboard uses unknown metrics: {used - set(m)}"
        code, body = get(admin, "/healthz")
        assert code == 200 and body["state"] == "ok" and body["storage"]["state"] == "ok"
        assert body["gateway"]["listening"].startswith("ssh 127.0.0.1:")
        code, body = get(admin, "/readyz")
        assert code == 200 and body["ready"] is True
        status = cli(g, "status")
        assert status.returncode == 0 and f"admin http://127.0.0.1:{admin}" in status.stdout
        # beside the gateway's own lines, its running sessions (gateway.core.storage;
        # status.json is written every 2 s)
        wait_until(lambda: re.search(r"^ssh\s+1 session\(s\): alice@web1 \(",
                                     cli(g, "status").stdout, re.M) is not None,
                   what="the held session in `bastille status`")
        rid = json.loads(cli(g, "approvals", "list", "--json").stdout)[0]["id"]
        assert cli(g, "approvals", "deny", str(rid), "not now", "--as", "bob").returncode == 0
        held.communicate(timeout=30)
        wait_until(lambda: value(scrape(admin), "bastille_approvals_total",
                                 outcome="denied") >= 1, what="the denial counted")
    finally:
        held.kill()
        held.wait()


def test_admin_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    subprocess.run([*BASTILLE, "demo", "--write-config", str(tmp_path)], check=True,
                   capture_output=True, timeout=60)
    text = cfg.with_name("bastille.toml").read_text().replace(
        'listen = "127.0.0.1:0"', 'listen = "0.0.0.0:9322"')
    cfg.write_text(text)
    r = subprocess.run([*BASTILLE, "config", "check", "-c", str(cfg)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "admin.listen" in r.stderr and "token" in r.stderr


def test_reload_under_live_sessions(make_gateway, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    g: Rig = make_gateway(extra=POLICY)
    config = g.gateway.config
    original = config.read_text()
    assert g.ssh("mallory", "web1", "--", "true").returncode == 255  # not a user yet
    t = Tmux(tmp_path, [*g.ssh_args("alice", tty=True), "web1"])
    try:
        t.wait_re(r"[$#] ?$")  # the shell's prompt: a line typed earlier mixes with the motd
        t.type("export PS1='LIVE$ '\n")
        t.wait_re(r"^LIVE\$")
        mallory = (g.root / "mallory_key.pub").read_text().strip()
        with_mallory = original.replace("[targets.web1]\n",
                                        '[targets.web1]\nusers = ["mallory"]\n')
        config.write_text(with_mallory + f"""
[users.mallory]
keys = ["{mallory}"]

[[policy.rules]]
name = "no-echo-forbidden"
match = '^echo forbidden-now'
action = "deny"
""")
        r = cli(g, "reload")
        assert r.returncode == 0, r.stderr
        assert "reloaded" in r.stdout and "policy" in r.stdout and "users" in r.stdout
        # a new session takes the new policy and the new user...
        new = g.ssh("alice", "web1", "--", "echo forbidden-now")
        assert new.returncode == 1 and b"no-echo-forbidden" in new.stderr
        assert g.ssh("mallory", "web1", "--", "echo", "hi").stdout == b"hi\n"
        # ...the running one keeps the policy it started with (docs/operations.md)
        t.type("echo forbidden-now\n")
        t.wait_re(r"^forbidden-now$")
        # a broken config is refused, said why, and the running one stays
        good = config.read_text()
        config.write_text(good + '\n[targets.broken]\nhost = "x"\nport = "x"\n')
        bad = cli(g, "reload")
        assert bad.returncode == 1 and "refused" in bad.stderr
        assert "targets.broken.port: expected an integer" in bad.stderr
        refused = audit_events(g, kind="gateway", outcome="failed", event="reload")
        assert refused and any("targets.broken" in p for p in refused[-1]["detail"]["problems"])
        config.write_text(good + "\n[gateway\n")  # not even TOML: said, nothing sent
        broken = cli(g, "reload")
        assert broken.returncode == 1 and "not valid TOML" in broken.stderr
        assert "reload of" in g.gateway.logs() and "refused" in g.gateway.logs()
        again = g.ssh("alice", "web1", "--", "echo forbidden-now")
        assert again.returncode == 1 and b"no-echo-forbidden" in again.stderr
        t.type("echo still-alive\n")
        t.wait_re(r"^still-alive$")
        # SIGHUP itself (what systemctl reload sends) does the same
        config.write_text(original)
        assert g.gateway.proc is not None
        g.gateway.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: len(audit_events(g, kind="gateway", outcome="ok",
                                            event="reload")) == 2, what="the SIGHUP reload")
        assert g.ssh("alice", "web1", "--", "echo forbidden-now").stdout == b"forbidden-now\n"
        t.type("exit\n")
        assert t.dead_status() == 0
    finally:
        t.close()


def test_json_logs_bind_the_session_and_show_no_secret(make_gateway) -> None:  # type: ignore[no-untyped-def]
    token = "admin-token-Zq81x"
    os.environ["BASTILLE_TEST_ADMIN_TOKEN"] = token
    hook_secret = "https://hooks.example.invalid/services/T1/B2/SeCrEtHoOk"
    g: Rig = make_gateway(gateway_extra='log_format = "json"',
                          extra=f'[admin]\nlisten = "127.0.0.1:{free_port()}"\n'
                          'token_env = "BASTILLE_TEST_ADMIN_TOKEN"\n'
                          f'[webhooks.chat]\nurl = "{hook_secret}"\nformat = "slack"\n'
                          'events = ["session.*"]\nmax_attempts = 1\n')
    # the rig asks for text logs on the command line: run this one as configured
    g.gateway.stop()
    assert g.gateway.log is not None
    g.gateway.log.write_text("")
    fh = open(g.gateway.log, "ab")
    g.gateway.proc = subprocess.Popen([*BASTILLE, "-v", "-v", "serve", "-c",
                                       str(g.gateway.config)], stdout=fh,
                                      stderr=subprocess.STDOUT)
    fh.close()
    wait_port(g.gateway.port, proc=g.gateway.proc)
    r = g.ssh("alice", "pwtarget", "--", "echo", "pw-session")
    assert r.stdout == b"pw-session\n", r.stderr
    time.sleep(1.0)
    lines = [json.loads(line) for line in g.gateway.logs().splitlines() if line.strip()]
    started = [x for x in lines if x["message"].startswith("exec session started")]
    assert started and started[0]["user"] == "alice" and started[0]["target"] == "pwtarget"
    assert len(started[0]["session"]) == 28 and started[0]["level"] == "info"
    text = g.gateway.logs()
    for secret in (TARGET_PASSWORD, token, hook_secret, "SeCrEtHoOk"):
        assert secret not in text


def test_systemd_notify_readiness_watchdog_reload_stop(tmp_path: Path) -> None:
    """A real unix datagram socket as NOTIFY_SOCKET, as systemd would give."""
    subprocess.run([*BASTILLE, "demo", "--write-config", str(tmp_path)], check=True,
                   capture_output=True, timeout=60)
    config = tmp_path / "bastille.toml"
    port = free_port()
    config.write_text(config.read_text().replace('listen = "127.0.0.1:2222"',
                                                 f'listen = "127.0.0.1:{port}"'))
    sock_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(sock_path))
    notify.settimeout(0.2)
    got: list[str] = []
    done = threading.Event()

    def receive() -> None:
        while not done.is_set():
            try:
                got.extend(notify.recv(4096).decode().split("\n"))
            except TimeoutError:
                continue

    reader = threading.Thread(target=receive, daemon=True)
    reader.start()
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "600000"}
    proc = subprocess.Popen([*BASTILLE, "serve", "-c", str(config)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: "READY=1" in got, what="READY=1")
        assert any(x.startswith("STATUS=listening on 127.0.0.1:") for x in got)
        wait_until(lambda: got.count("WATCHDOG=1") >= 3, what="watchdog pings")
        before = len(got)
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "READY=1" in got[before:], what="READY=1 after the reload")
        reloading = got.index("RELOADING=1", before)
        assert got[reloading + 1].startswith("MONOTONIC_USEC=")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert "STOPPING=1" in got
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        done.set()
        reader.join(2)
        notify.close()


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        self.received.append((dict(self.headers),
                              self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_webhooks_on_decisions_and_a_slack_command_that_works(make_gateway,  # type: ignore[no-untyped-def]
                                                               tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    (tmp_path / "hook.secret").write_text("hook-hmac-secret\n")
    g: Rig = make_gateway(extra=POLICY + f"""
[webhooks.chat]
url = "{url}/chat"
format = "slack"
events = ["approval:requested"]

[webhooks.siem]
url = "{url}/siem"
secret_file = "{tmp_path / 'hook.secret'}"
events = ["policy", "session.*"]
""", gateway_extra='public_address = "bastion.example.net:2222"')
    try:
        assert g.ssh("alice", "web1", "--", "shutdown now").returncode == 1
        held = subprocess.Popen([*g.ssh_args("alice"), "web1", "--", "touch /tmp/bastille-w"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_until(lambda: any(b'"text"' in body for _, body in _Hook.received),
                   what="the slack message")
        text = next(json.loads(b)["text"] for h, b in _Hook.received
                    if h.get("X-Bastille-Event") == "approval.requested")
        assert "`ssh -p 2222 bastion.example.net approvals approve " in text
        command = re.search(r"on the bastion: `([^`]+)`", text)
        assert command, text
        # the command as written, by approver bob on the appliance
        env = {**os.environ, "USER": "bob", "BASTILLE_CONFIG": str(g.gateway.config),
               "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
        ran = subprocess.run(["bash", "-c", command.group(1)], capture_output=True, text=True,
                             env=env, timeout=60)
        assert ran.returncode == 0 and "approved" in ran.stdout, ran.stderr
        _, err = held.communicate(timeout=30)
        assert held.returncode == 0 and b"approved by bob" in err
        wait_until(lambda: sum(h.get("X-Bastille-Event") == "session.end"
                               for h, _ in _Hook.received) >= 2, what="session ends")
        siem = [(h, b) for h, b in _Hook.received if h.get("X-Bastille-Signature")]
        events = [h["X-Bastille-Event"] for h, _ in siem]
        assert "policy.deny" in events and "policy.approve" in events
        assert "session.start" in events and "session.end" in events
        import hashlib
        import hmac

        h, body = siem[0]
        mac = hmac.new(b"hook-hmac-secret", h["X-Bastille-Timestamp"].encode() + b"." + body,
                       hashlib.sha256).hexdigest()
        assert h["X-Bastille-Signature"] == f"sha256={mac}"
    finally:
        server.shutdown()
        server.server_close()
