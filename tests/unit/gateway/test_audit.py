"""Audit events: the JSON-lines file, rotation, following it, reading with filters."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

from gateway.audit import AuditEvent, AuditLog, Kind, read_events
from gateway.audit.follow import AuditFollower, Cursor, CursorStore


def test_json_lines_file(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a" / "audit.jsonl")
    log.emit(AuditEvent(Kind.LOGIN, "ok", user="alice", source="10.0.0.1:5",
                        detail={"method": "publickey"}))
    log.emit(AuditEvent(Kind.EXEC, "ok", user="bob", target="web1",
                        detail={"command": "uptime"}, time=time.time() - 7200))
    log.close()
    path = tmp_path / "a" / "audit.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records[0]["user"] == "alice" and records[0]["detail"]["method"] == "publickey"
    assert records[0]["time"].endswith("Z")
    assert len({r["id"] for r in records}) == 2  # a receiver tells duplicates by the id
    assert [r["user"] for r in read_events(path, user="bob")] == ["bob"]
    assert [r["kind"] for r in read_events(path, since=time.time() - 60)] == ["login"]
    assert [r["kind"] for r in read_events(path, kind="exec")] == ["exec"]


def test_malformed_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"kind":"login","user":"a","ts":1}\nnot json\n\n')
    assert [r["user"] for r in read_events(path)] == ["a"]


def test_writer_reopens_a_rotated_file(tmp_path: Path) -> None:
    """logrotate renames the file: the next event goes to a new file at the same path."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.emit(AuditEvent(Kind.LOGIN, "ok", user="before"))
    os.rename(path, tmp_path / "audit.jsonl.1")
    log.emit(AuditEvent(Kind.LOGIN, "ok", user="after"))
    log.close()
    assert [r["user"] for r in read_events(path)] == ["after"]
    assert [r["user"] for r in read_events(tmp_path / "audit.jsonl.1")] == ["before"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _users(lines: list) -> list[str]:  # type: ignore[type-arg]
    return [json.loads(ln.text)["user"] for ln in lines]


def test_follower_reads_new_lines_across_rotation_and_partial_writes(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.emit(AuditEvent(Kind.LOGIN, "ok", user="old"))
    follower = AuditFollower(path, None)  # from the end: only what comes next
    assert follower.read(10) == []
    log.emit(AuditEvent(Kind.LOGIN, "ok", user="a"))
    with open(path, "a") as fh:  # a line being written: not returned until complete
        fh.write('{"kind":"login","user":"b"')
    assert _users(follower.read(10)) == ["a"]
    with open(path, "a") as fh:
        fh.write(',"outcome":"ok"}\n')
    assert _users(follower.read(10)) == ["b"]
    log.emit(AuditEvent(Kind.LOGIN, "ok", user="c"))
    os.rename(path, tmp_path / "audit.jsonl.1")
    log.emit(AuditEvent(Kind.LOGIN, "ok", user="d"))  # the writer reopens a new file
    assert _users(follower.read(10)) == ["c", "d"]
    assert follower.gaps == 0
    log.close()


def test_follower_resumes_from_a_saved_cursor_in_a_rotated_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.emit(AuditEvent(Kind.LOGIN, "ok", user="a"))
    follower = AuditFollower(path, Cursor(os.stat(path).st_ino, 0))
    first = follower.read(1)
    store = CursorStore(tmp_path / "export" / "x.cursor")
    store.save(first[-1].cursor)
    assert stat.S_IMODE((tmp_path / "export" / "x.cursor").stat().st_mode) == 0o600
    follower.close()
    log.emit(AuditEvent(Kind.LOGIN, "ok", user="b"))  # written while nobody follows
    os.rename(path, tmp_path / "audit.jsonl.1")
    log.emit(AuditEvent(Kind.LOGIN, "ok", user="c"))
    again = AuditFollower(path, store.load())
    assert _users(again.read(10)) == ["b", "c"]
    log.close()


def test_follower_says_so_when_the_file_was_truncated(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    for user in ("a", "b"):
        log.emit(AuditEvent(Kind.LOGIN, "ok", user=user))
    follower = AuditFollower(path, Cursor(os.stat(path).st_ino, 0))
    assert _users(follower.read(10)) == ["a", "b"]
    os.truncate(path, 0)  # logrotate copytruncate
    log.emit(AuditEvent(Kind.LOGIN, "ok", user="c"))
    assert _users(follower.read(10)) == ["c"]
    assert follower.gaps == 1
    log.close()
