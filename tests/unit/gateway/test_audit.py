"""Audit events: JSON lines, file mode, syslog delivery, reading with filters."""

from __future__ import annotations

import json
import socket
import stat
import time
from pathlib import Path

from gateway.audit import AuditEvent, AuditLog, Kind, read_events


def test_json_lines_file_and_syslog(tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    port = sock.getsockname()[1]
    log = AuditLog(tmp_path / "a" / "audit.jsonl", syslog=True,
                   syslog_address=f"127.0.0.1:{port}")
    log.emit(AuditEvent(Kind.LOGIN, "ok", user="alice", source="10.0.0.1:5",
                        detail={"method": "publickey"}))
    log.emit(AuditEvent(Kind.EXEC, "ok", user="bob", target="web1",
                        detail={"command": "uptime"}, time=time.time() - 7200))
    log.close()
    datagram = sock.recv(4096).decode()
    assert "bastille: " in datagram and '"kind":"login"' in datagram
    path = tmp_path / "a" / "audit.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records[0]["user"] == "alice" and records[0]["detail"]["method"] == "publickey"
    assert records[0]["time"].endswith("Z")
    assert [r["user"] for r in read_events(path, user="bob")] == ["bob"]
    assert [r["kind"] for r in read_events(path, since=time.time() - 60)] == ["login"]
    assert [r["kind"] for r in read_events(path, kind="exec")] == ["exec"]


def test_malformed_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"kind":"login","user":"a","ts":1}\nnot json\n\n')
    assert [r["user"] for r in read_events(path)] == ["a"]
