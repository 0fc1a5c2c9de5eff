"""Pieces of operations: sd_notify over a real datagram socket, log redaction and
context, the config of [admin], [webhooks], [audit] syslog_*, and ssh-keyscan lines."""

from __future__ import annotations

import contextvars
import io
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import logs, sdnotify
from gateway.config import load_config
from gateway.errors import ConfigError


def test_sd_notify_over_a_unix_datagram_socket(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    assert sdnotify.ready("listening on 127.0.0.1:2222")
    assert sock.recv(4096) == b"READY=1\nSTATUS=listening on 127.0.0.1:2222"
    assert sdnotify.reloading()
    first, second = sock.recv(4096).decode().split("\n")
    assert first == "RELOADING=1" and second.startswith("MONOTONIC_USEC=")
    assert sdnotify.watchdog() and sock.recv(4096) == b"WATCHDOG=1"
    assert sdnotify.stopping("draining") and sock.recv(4096) == b"STOPPING=1\nSTATUS=draining"
    sock.close()


def test_sd_notify_abstract_socket_and_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"bastille-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    assert sdnotify.status("hello") and sock.recv(100) == b"STATUS=hello"
    sock.close()
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not sdnotify.ready()  # not under systemd: nothing to do, no error


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert sdnotify.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert sdnotify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 15.0
    monkeypatch.delenv("WATCHDOG_USEC")
    assert sdnotify.watchdog_interval() is None


def _capture(fmt: str) -> tuple[io.StringIO, logging.Logger]:
    stream = io.StringIO()
    logs.setup(logging.INFO, fmt, stream)
    return stream, logging.getLogger("bastille.test")


def test_json_logs_carry_the_bound_context_and_redact_secrets() -> None:
    contextvars.Context().run(_json_logs)


def _json_logs() -> None:
    stream, log = _capture("json")
    try:
        logs.register_secret("target-Pa55-word")
        logs.bind(session="s1", user="alice", target="web1")
        log.info("connecting with %s", "target-Pa55-word")
        log.warning("config says password=hunter2 and Authorization: Bearer abcdefghijk123")
        try:
            raise ValueError("boom target-Pa55-word")
        except ValueError:
            log.exception("failed")
        log.info("key -----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY---"
                 "--")
    finally:
        logs.setup(logging.WARNING, "text", sys.stderr)
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert lines[0]["message"] == "connecting with [redacted]"
    assert (lines[0]["session"], lines[0]["user"], lines[0]["target"]) == ("s1", "alice", "web1")
    assert lines[0]["level"] == "info" and lines[0]["logger"] == "bastille.test"
    assert "hunter2" not in lines[1]["message"] and "abcdefghijk123" not in lines[1]["message"]
    assert "Traceback" in lines[2]["exception"] and "Pa55" not in lines[2]["exception"]
    assert "AAAA" not in lines[3]["message"]
    assert "target-Pa55-word" not in stream.getvalue()


def test_auto_is_text_on_a_terminal_json_otherwise() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert logs.resolve_format("auto", Tty()) == "text"
    assert logs.resolve_format("auto", io.StringIO()) == "json"
    stream = Tty()
    logs.setup(logging.INFO, "auto", stream)

    def log_in_a_session() -> None:
        logs.bind(session="abc")
        logging.getLogger("bastille.x").info("hello")

    try:
        contextvars.Context().run(log_in_a_session)
    finally:
        logs.setup(logging.WARNING, "text", sys.stderr)
    assert stream.getvalue().rstrip().endswith("bastille.x: hello [session=abc]")


BASE = """
[gateway]
listen = "127.0.0.1:2222"
host_keys = ["hk"]

[users.alice]
keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBzq alice"]
"""


def _config(tmp_path: Path, extra: str) -> Path:
    from gateway.ssh.keys import generate_host_key

    if not (tmp_path / "hk").exists():
        generate_host_key(tmp_path / "hk", "test")
    path = tmp_path / "c.toml"
    path.write_text(BASE + extra)
    return path


def test_ssh_keyscan_output_is_accepted_for_host_keys(tmp_path: Path) -> None:
    key = "AAAAC3NzaC1lZDI1NTE5AAAAIOHZ7L3Oq5vDqk4fO8i8m8Wk6a2m3Xo7x0M7vJm1bWZ"
    pasted = (f"# 10.0.0.5:22 SSH-2.0-OpenSSH_9.2p1 Debian-2\n10.0.0.5 ssh-ed25519 {key}\n"
              f"[10.0.0.5]:2222 ecdsa-sha2-nistp256 {key}")
    (tmp_path / "k").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    config = load_config(_config(tmp_path, f"""
[targets.web1]
host = "10.0.0.5"
user = "deploy"
key_file = "k"
host_keys = ['''{pasted}''', "10.0.0.6 ssh-ed25519 {key} comment"]
users = ["alice"]
"""))
    assert config.targets["web1"].host_keys == (
        f"ssh-ed25519 {key}", f"ecdsa-sha2-nistp256 {key}", f"ssh-ed25519 {key} comment")


def test_admin_webhooks_and_syslog_settings(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", "hmac-key")
    (tmp_path / "ca.pem").write_text("x")
    config = load_config(_config(tmp_path, """
[audit]
syslog = true
syslog_address = "siem.example.net:6514"
syslog_transport = "tls"
syslog_tls_ca = "ca.pem"
syslog_format = "ocsf"

[approvals]
approvers = ["alice"]
webhook_url = "https://hooks.slack.com/services/T/B/X"
webhook_format = "slack"

[webhooks.siem]
url = "https://siem.example.net/bastille"
secret_env = "HOOK_SECRET"
events = ["policy", "session.*", "login:failed"]

[admin]
listen = "127.0.0.1:9322"
"""))
    s = config.audit.syslog
    assert s is not None and (s.transport, s.host, s.port, s.format) == \
        ("tls", "siem.example.net", 6514, "ocsf")
    assert s.tls_ca == tmp_path / "ca.pem" and s.describe() == "tls://siem.example.net:6514"
    hooks = {h.name: h for h in config.webhooks}
    assert hooks["approvals"].format == "slack" and hooks["approvals"].events == \
        ("approval:requested",)
    assert hooks["siem"].secret is not None and hooks["siem"].secret.reveal() == "hmac-key"
    assert "hmac-key" not in repr(hooks["siem"]) and "slack.com" not in repr(hooks["approvals"])
    assert config.admin is not None and config.admin.listen_port == 9322


def test_bad_ops_settings_are_reported_with_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(_config(tmp_path, """
[audit]
syslog_transport = "tcp"

[webhooks.x]
url = "ftp://nope"
events = ["Policy!"]
format = "xml"

[admin]
listen = "10.0.0.1:9322"
"""))
    text = str(exc.value)
    for expected in ("audit.syslog_transport: has no effect without syslog = true",
                     "webhooks.x.url: expected an http:// or https:// URL",
                     "webhooks.x.events: 'Policy!'", "webhooks.x.format: expected one of",
                     "admin.listen: 10.0.0.1 is not a loopback address"):
        assert expected in text


def _bastille(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, timeout=60, **kw)  # type: ignore[call-overload]


def test_cli_suggests_and_exits_2_on_usage_errors() -> None:
    r = _bastille("sesions", "list")
    assert r.returncode == 2 and "invalid choice: 'sesions' (did you mean 'sessions'?)" in \
        r.stderr
    r = _bastille("approvals", "aprove", "3")
    assert r.returncode == 2 and "did you mean 'approve'?" in r.stderr
    r = _bastille("approvals", "approve")
    assert r.returncode == 2 and "required: id" in r.stderr
    r = _bastille("approvals", "approve", "x", "--as", "bob")
    assert r.returncode == 2 and "expected a request number" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_ends_quietly_on_a_closed_pipe(tmp_path: Path) -> None:
    data = tmp_path / "d"
    subprocess.run([sys.executable, "-m", "gateway", "demo", "--write-config", str(data)],
                   check=True, capture_output=True, timeout=60)
    audit = data / "data" / "audit.jsonl"
    line = json.dumps({"time": "2026-11-24T10:00:00.000Z", "ts": 1.0, "kind": "login",
                       "outcome": "ok", "user": "alice"})
    audit.write_text((line + "\n") * 20000)
    r = subprocess.run(f"{sys.executable} -m gateway audit --data {data} | head -1",
                       shell=True, capture_output=True, text=True, timeout=60)
    assert r.stdout.startswith("TIME") and r.stderr == "", r.stderr
    r = subprocess.run(f"set -o pipefail; {sys.executable} -m gateway audit --json --data "
                       f"{data} | head -2", shell=True, executable="/bin/bash",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 2 and r.stderr == ""


def test_metrics_count_recoveries_pauses_budgets_lockouts_and_lost_nodes(
        tmp_path: Path) -> None:
    """What crash recovery, storage pauses, recording budgets, the login rate limits and
    a cluster's lease check write to the audit trail shows in the metrics."""
    import time

    from gateway.admin.metrics import Metrics
    from gateway.audit import AuditEvent, AuditLog, Kind

    file = tmp_path / "audit.jsonl"
    log = AuditLog(file)
    metrics = Metrics(file, lambda: {})
    metrics.counter.start()
    try:
        for event in (
                AuditEvent(Kind.SESSION_START, "ok", user="alice", target="web1",
                           session="s1", detail={"protocol": "ssh", "kind": "shell"}),
                AuditEvent(Kind.SESSION_START, "ok", user="bob", target="win1",
                           session="s2", detail={"protocol": "rdp", "kind": "rdp"}),
                AuditEvent(Kind.SESSION_END, "recovered", user="alice", target="web1",
                           session="s1", detail={"protocol": "ssh", "recording": "recovered"}),
                AuditEvent(Kind.SESSION_END, "unrecovered", user="bob", target="win1",
                           session="s2", detail={"protocol": "rdp"}),
                AuditEvent(Kind.RECORDING, "paused", session="s3", detail={"reason": "full"}),
                AuditEvent(Kind.RECORDING, "dropping", session="s3", detail={"reason": "x"}),
                AuditEvent(Kind.RECORDING, "resumed", session="s3", detail={"reason": "x"}),
                AuditEvent(Kind.RECORDING, "budget_exceeded", session="s4", detail={
                    "scope": "day", "limit": 10, "action": "refused"}),
                AuditEvent(Kind.LOGIN_RATE_LIMITED, "denied", source="10.0.0.1:5",
                           detail={"reason": "too many failed logins; try again later"}),
                AuditEvent(Kind.LOGIN_RATE_LIMITED, "denied", user="bob",
                           detail={"protocol": "rdp"}),
                AuditEvent(Kind.GATEWAY, "ok", detail={"event": "node lost", "node": "b",
                                                       "sessions": 2})):
            log.emit(event)
        get = metrics.registry.get_sample_value
        deadline = time.monotonic() + 10
        while get("bastille_nodes_lost_total") != 1.0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert get("bastille_recordings_recovered_total", {"outcome": "recovered"}) == 1
        assert get("bastille_recordings_recovered_total", {"outcome": "unrecovered"}) == 1
        assert get("bastille_storage_pauses_total", {"event": "paused"}) == 1
        assert get("bastille_storage_pauses_total", {"event": "dropping"}) == 1
        assert get("bastille_recording_budget_exceeded_total",
                   {"scope": "day", "action": "refused"}) == 1
        assert get("bastille_login_lockouts_total", {"protocol": "ssh"}) == 1
        assert get("bastille_login_lockouts_total", {"protocol": "rdp"}) == 1
        assert get("bastille_nodes_lost_total") == 1
        assert metrics.counter.live() == {}  # recovered sessions are no longer running
    finally:
        metrics.counter.stop()
        log.close()


def test_reload_applies_budgets_and_keeps_state_proxy_and_login_limits(
        tmp_path: Path) -> None:
    """What a reload may change now (recording budgets, per-source connection limits) and
    what waits for a restart ([state], proxy_protocol, the failed-login limits, storage)."""
    from gateway.ops import merge_reload

    old = load_config(_config(tmp_path, '[recording]\nstorage = "file"\n'))
    gateway = ('listen = "127.0.0.1:2222"\nproxy_protocol = ["10.0.0.5"]\n'
               "max_auth_failures = 9\nmax_connections_per_source = 3\n")
    path = tmp_path / "c.toml"
    path.write_text(BASE.replace('listen = "127.0.0.1:2222"\n', gateway) + """
[recording]
storage = "file"
max_recording_bytes = "1M"
budget_action = "throttle"

[state]
node = "elsewhere"
""")
    new = load_config(path)
    merged, changed, restart = merge_reload(old, new)
    assert changed == ["gateway", "recording", "state"]
    assert restart == ["gateway.max_auth_failures", "gateway.proxy_protocol", "state"]
    assert (merged.budget.session_bytes, merged.budget.action) == (1024 * 1024, "throttle")
    assert merged.gateway.max_connections_per_source == 3  # applies now
    assert merged.gateway.proxy_protocol == () and merged.gateway.max_auth_failures == 5
    assert merged.state == old.state and merged.recording == old.recording
    path.write_text(path.read_text().replace('storage = "file"', 'storage = "file"\n'
                                             'min_free_mib = 1'))
    _, _, restart = merge_reload(old, load_config(path))
    assert "recording" in restart  # a storage key: the running recorder keeps its own


def test_reload_keeps_the_worker_count_and_event_loop(tmp_path: Path) -> None:
    """The SSH worker processes and their event loop are chosen at start: a change waits
    for a restart, the running values are kept."""
    from gateway.ops import merge_reload

    old = load_config(_config(tmp_path, ""))
    path = tmp_path / "w.toml"
    path.write_text(BASE.replace('listen = "127.0.0.1:2222"\n',
                                 'listen = "127.0.0.1:2222"\nworkers = 7\n'
                                 'event_loop = "auto"\n'))
    merged, changed, restart = merge_reload(old, load_config(path))
    assert changed == ["gateway"]
    assert restart == ["gateway.event_loop", "gateway.workers"]
    assert (merged.gateway.workers, merged.gateway.event_loop) == \
        (old.gateway.workers, old.gateway.event_loop)


def test_the_shared_databases_password_is_a_registered_secret(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.ops import config_secrets

    monkeypatch.setenv("PG_PASSWORD", "pg-Pa55-word")
    config = load_config(_config(tmp_path, '[state]\nurl = "postgresql://b@db.invalid/x"\n'
                                 'password_env = "PG_PASSWORD"\n'))
    assert "pg-Pa55-word" in config_secrets(config)
