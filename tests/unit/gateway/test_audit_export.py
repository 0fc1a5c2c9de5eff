"""Exporting the audit trail: syslog (RFC 5424 over TLS, TCP, UDP, the local socket) with
a real collector that restarts, OCSF, and webhooks (signed, retried, dead-lettered)
against a real HTTP server."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.audit import AuditEvent, AuditLog, Kind
from gateway.audit.ocsf import to_ocsf
from gateway.audit.syslog import SyslogExporter
from gateway.audit.webhooks import Texts, WebhookExporter, sign
from gateway.config import Secret, SyslogSettings, WebhookSettings
from tests.unit.gateway.syslog_collector import HEADER, Collector, make_tls


def _emit(log: AuditLog, n: int, start: int = 0) -> list[str]:
    ids = []
    for i in range(start, start + n):
        e = AuditEvent(Kind.COMMAND, "ok", user=f"user{i}", target="web1",
                       detail={"command": f"echo {i}"})
        log.emit(e)
        ids.append(e.id)
    return ids


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Path, Path]:
    return make_tls(tmp_path)


def test_tls_syslog_loses_nothing_across_a_collector_restart(tmp_path: Path, tls) -> None:  # type: ignore[no-untyped-def]
    ca, cert, key = tls
    collector = Collector((cert, key))
    collector.start()
    log = AuditLog(tmp_path / "audit.jsonl")
    settings = SyslogSettings(transport="tls", host="127.0.0.1", port=collector.port,
                              tls_ca=ca, facility="auth", hostname="bastion1")
    exporter = SyslogExporter(settings, log.file, tmp_path / "export")
    exporter.start()
    try:
        ids = _emit(log, 40)
        collector.wait_for(40)
        collector.stop()  # the collector restarts: events keep coming meanwhile
        ids += _emit(log, 40, 40)
        time.sleep(1.0)
        restarted = Collector((cert, key), port=collector.port)
        restarted.start()
        ids += _emit(log, 40, 80)

        def received() -> set[object]:
            return {r["id"] for r in restarted.records() + collector.records()}

        deadline = time.monotonic() + 30
        while not set(ids) <= received() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert set(ids) <= received(), f"lost: {sorted(set(ids) - received())[:5]}"
        restarted.stop()
    finally:
        exporter.stop()
        log.close()
    first = collector.messages[0]
    parsed = HEADER.match(first)
    assert parsed is not None and parsed.group(3) == b"bastion1"
    assert parsed.group(4) == b"command" and int(parsed.group(1)) == 4 * 8 + 6  # auth.info


def test_tls_syslog_loses_nothing_when_the_collector_restarts_mid_stream(
        tmp_path: Path, tls) -> None:  # type: ignore[no-untyped-def]
    """Events stream while the collector goes away and comes back."""
    ca, cert, key = tls
    collector = Collector((cert, key))
    collector.start()
    log = AuditLog(tmp_path / "audit.jsonl")
    settings = SyslogSettings(transport="tls", host="127.0.0.1", port=collector.port,
                              tls_ca=ca)
    exporter = SyslogExporter(settings, log.file, tmp_path / "export")
    exporter.start()
    ids: list[str] = []
    writer = threading.Thread(target=lambda: [ids.extend(_emit(log, 1, i)) or
                                              time.sleep(0.003) for i in range(600)])
    writer.start()
    restarted = Collector((cert, key), port=collector.port)
    try:
        time.sleep(0.4)
        collector.stop()
        time.sleep(0.5)
        restarted.start()
        writer.join()

        def received() -> set[object]:
            return {r["id"] for r in restarted.records() + collector.records()}

        deadline = time.monotonic() + 30
        while not set(ids) <= received() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(ids) == 600
        lost = [ids.index(i) for i in set(ids) - received()]
        assert not lost, (sorted(lost), exporter.snapshot(), len(collector.records()),
                          len(restarted.records()))
    finally:
        writer.join()
        restarted.stop()
        exporter.stop()
        log.close()


def test_tcp_syslog_resumes_after_a_gateway_restart(tmp_path: Path) -> None:
    """Events written while no exporter runs (the CLI) are sent at the next start."""
    collector = Collector()
    collector.start()
    log = AuditLog(tmp_path / "audit.jsonl")
    settings = SyslogSettings(transport="tcp", host="127.0.0.1", port=collector.port)
    exporter = SyslogExporter(settings, log.file, tmp_path / "export")
    exporter.start()
    ids = _emit(log, 5)
    collector.wait_for(5)
    exporter.stop()
    ids += _emit(log, 5, 5)  # nobody exports now
    again = SyslogExporter(settings, log.file, tmp_path / "export")
    again.start()
    try:
        got = {r["id"] for r in collector.wait_for(10)}
        assert set(ids) <= got
    finally:
        again.stop()
        collector.stop()
        log.close()


def test_tls_refuses_a_collector_it_cannot_verify(tmp_path: Path, tls) -> None:  # type: ignore[no-untyped-def]
    _, cert, key = tls
    collector = Collector((cert, key))
    collector.start()
    log = AuditLog(tmp_path / "audit.jsonl")
    (tmp_path / "other").mkdir()
    other_ca = make_tls(tmp_path / "other")[0]
    settings = SyslogSettings(transport="tls", host="127.0.0.1", port=collector.port,
                              tls_ca=other_ca)
    exporter = SyslogExporter(settings, log.file, tmp_path / "export")
    exporter.start()
    try:
        _emit(log, 3)
        time.sleep(1.5)
        assert collector.records() == []
        assert exporter.snapshot().failures >= 1 and not exporter.snapshot().connected
        assert exporter.snapshot().lag_bytes > 0  # waiting in the file, not dropped
    finally:
        exporter.stop()
        collector.stop()
        log.close()


def test_udp_and_local_socket_with_ocsf(tmp_path: Path) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(5)
    local_path = tmp_path / "log.sock"
    local = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    local.bind(str(local_path))
    local.settimeout(5)
    log = AuditLog(tmp_path / "audit.jsonl")
    exporters = [
        SyslogExporter(SyslogSettings(transport="udp", host="127.0.0.1",
                                      port=udp.getsockname()[1], format="ocsf"),
                       log.file, tmp_path / "e1"),
        SyslogExporter(SyslogSettings(transport="unix", path=str(local_path)),
                       log.file, tmp_path / "e2"),
    ]
    for e in exporters:
        e.start()
    try:
        log.emit(AuditEvent(Kind.LOGIN, "failed", user="mallory", source="10.1.2.3:4444",
                            detail={"method": "password"}))
        datagram = udp.recv(65536)
        parsed = HEADER.match(datagram)
        assert parsed is not None and parsed.group(4) == b"login"
        assert int(parsed.group(1)) == 4 * 8 + 4  # auth.warning: a failed login
        ocsf = json.loads(parsed.group(5))
        assert (ocsf["class_uid"], ocsf["activity_name"], ocsf["status"]) == \
            (3002, "Logon", "Failure")
        assert ocsf["user"]["name"] == "mallory" and ocsf["src_endpoint"]["ip"] == "10.1.2.3"
        legacy = local.recv(65536)
        assert legacy.startswith(b"<36>bastille: {") and b'"user":"mallory"' in legacy
    finally:
        for e in exporters:
            e.stop()
        udp.close()
        local.close()
        log.close()


def test_ocsf_shapes() -> None:
    record = json.loads(AuditEvent(Kind.POLICY, "deny", user="alice", source="10.0.0.1:5",
                                   target="web1", session="s1",
                                   detail={"command": "rm -rf /", "rule": "no-rm"}).to_json())
    event = to_ocsf(record)
    assert event["class_name"] == "Authorize Session" and event["status"] == "Failure"
    assert event["process"]["cmd_line"] == "rm -rf /" and event["policy"]["name"] == "no-rm"
    assert event["dst_endpoint"]["hostname"] == "web1" and event["session"]["uid"] == "s1"
    assert event["metadata"]["uid"] == record["id"] and event["time"] > 1e12
    start = to_ocsf({"kind": "session.start", "outcome": "ok", "ts": 1.0})
    assert (start["class_uid"], start["activity_id"], start["type_uid"]) == (4007, 1, 400701)


# --------------------------------------------------------------------------- webhooks

class _Hook(http.server.BaseHTTPRequestHandler):
    server: _HookServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        srv = self.server
        srv.calls.append((dict(self.headers), body))
        code = srv.plan.pop(0) if srv.plan else 200
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class _HookServer(http.server.ThreadingHTTPServer):
    calls: list[tuple[dict[str, str], bytes]]
    plan: list[int]


@pytest.fixture
def hook() -> Iterator[_HookServer]:
    srv = _HookServer(("127.0.0.1", 0), _Hook)
    srv.calls, srv.plan = [], []
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _wait(cond, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_webhook_signed_retried_then_delivered(tmp_path: Path, hook: _HookServer) -> None:
    hook.plan = [503, 500]  # two failures, then 200
    log = AuditLog(tmp_path / "audit.jsonl")
    settings = WebhookSettings(name="siem", url=Secret(f"http://127.0.0.1:{hook.server_port}/x"),
                               secret=Secret("s3cret-hmac"), events=("policy", "session.*"),
                               retry_interval=0.1)
    exporter = WebhookExporter(settings, log.file, tmp_path / "export", tmp_path,
                               Texts("-p 2222 bastion"))
    exporter.start()
    try:
        log.emit(AuditEvent(Kind.LOGIN, "ok", user="alice"))  # not selected
        deny = AuditEvent(Kind.POLICY, "deny", user="alice", target="web1",
                          detail={"command": "rm -rf /", "rule": "no-rm"})
        log.emit(deny)
        log.emit(AuditEvent(Kind.SESSION_END, "ok", user="alice", target="web1"))
        _wait(lambda: len(hook.calls) == 4)
    finally:
        exporter.stop()
        log.close()
    headers, body = hook.calls[2]
    assert [json.loads(b)["event"] for _, b in hook.calls] == \
        ["policy.deny", "policy.deny", "policy.deny", "session.end"]
    assert headers["X-Bastille-Delivery"] == deny.id and headers["X-Bastille-Event"] == \
        "policy.deny"
    expected = hmac.new(b"s3cret-hmac", headers["X-Bastille-Timestamp"].encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    assert headers["X-Bastille-Signature"] == f"sha256={expected}"
    assert sign(b"s3cret-hmac", headers["X-Bastille-Timestamp"], body) == \
        headers["X-Bastille-Signature"]
    assert json.loads(body)["audit"]["detail"]["rule"] == "no-rm"


def test_webhook_dead_letter_and_no_url_in_logs(tmp_path: Path, hook: _HookServer,
                                               caplog: pytest.LogCaptureFixture) -> None:
    secret_url = f"http://127.0.0.1:{hook.server_port}/services/T000/B000/XXXXSECRET"
    hook.plan = [404, 500, 500]  # 404: not worth retrying; 500s: retried, then given up
    log = AuditLog(tmp_path / "audit.jsonl")
    settings = WebhookSettings(name="slack", url=Secret(secret_url), format="slack",
                               events=("policy",), retry_interval=0.05, max_attempts=2)
    exporter = WebhookExporter(settings, log.file, tmp_path / "export", tmp_path,
                               Texts("bastion"))
    exporter.start()
    try:
        log.emit(AuditEvent(Kind.POLICY, "deny", user="a", detail={"command": "x"}))
        log.emit(AuditEvent(Kind.POLICY, "deny", user="b", detail={"command": "y"}))
        log.emit(AuditEvent(Kind.POLICY, "deny", user="c", detail={"command": "z"}))
        _wait(lambda: len(hook.calls) == 4)
    finally:
        exporter.stop()
        log.close()
    dead = tmp_path / "webhooks-dead-letter.jsonl"
    rows = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [(r["webhook"], r["attempts"], r["error"]) for r in rows] == \
        [("slack", 1, "HTTP 404"), ("slack", 2, "HTTP 500")]
    assert stat.S_IMODE(dead.stat().st_mode) == 0o600
    assert "XXXXSECRET" not in dead.read_text() + caplog.text
    assert "user a" in json.loads(rows[0]["body"])["text"]
    assert exporter.snapshot().dead_letters == 2


def test_slack_approval_text_names_commands_that_work() -> None:
    texts = Texts("-p 2222 bastion.example.net", link=lambda rid: f"https://b:8443/approvals/{rid}")
    record = json.loads(AuditEvent(Kind.APPROVAL, "requested", user="alice", target="db1",
                                   detail={"request": 7, "command": "systemctl stop <!channel>`x",
                                           "rule": "approve-stop"}).to_json())
    text = texts.describe(record)
    assert "`ssh -p 2222 bastion.example.net approvals approve 7`" in text
    assert '`bastille approvals approve 7 --as "$USER"`' in text
    assert "https://b:8443/approvals/7" in text
    assert "<!channel>" not in text and "&lt;!channel&gt;'x" in text
