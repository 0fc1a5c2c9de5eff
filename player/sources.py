"""What the appliance knows about a session outside its recording (blocking; workers only).

* The approval queue (``data_dir/approvals.sqlite3``, opened read-only): each request's
  requester, reason, rule and times, and the kill queue (who ended a session, why).
* The audit log (JSON lines, ``data_dir/audit.jsonl`` by default): port, agent and X11
  forwards (matched by user, client address and time, since forwards belong to the
  connection) and evasion signals (by session id).

Both are optional: a missing or unreadable file gives an empty context, never an error,
because the recording alone is a complete replay. Reading the audit log is bounded
(``MAX_AUDIT_BYTES`` from its end, lines up to ``MAX_LINE``).

Known limits: rotated audit files (``audit.jsonl.1``...) are not read.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol

from recorder.index import SessionRow
from recorder.timeline import ApprovalInfo, AuditInfo, Context, KillInfo
from state.approvals import Request


class ApprovalsReader(Protocol):
    """What the timeline reads of an approval store."""

    def for_session(self, session: str, limit: int = 10_000) -> list[Request]: ...

    def kill_request(self, session: str) -> tuple[str, str, float, float | None] | None: ...

MAX_AUDIT_BYTES = 256 * 1024 * 1024  # read at most this much of the end of the audit log
MAX_LINE = 64 * 1024
MAX_RECORDS = 10_000  # audit records kept per session
_AUDIT_KINDS = {"forward": "forward", "evasion": "evasion"}


def _ro(path: Path) -> sqlite3.Connection | None:
    if not path.is_file():
        return None
    try:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None


def approvals_context(path: Path, session_id: str) -> tuple[dict[str, ApprovalInfo],
                                                            KillInfo | None]:
    """Approval requests and the kill request of one session from the approval queue."""
    db = _ro(path)
    if db is None:
        return {}, None
    requests: dict[str, ApprovalInfo] = {}
    kill: KillInfo | None = None
    try:
        rows = db.execute(
            "SELECT id, user, command, rule, reason, status, created, decided_by, decided_at, "
            "decision_reason FROM requests WHERE session = ? ORDER BY id LIMIT 10000",
            (session_id,)).fetchall()
        for r in rows:
            requests[str(r[0])] = ApprovalInfo(
                request_id=str(r[0]), user=str(r[1] or ""), command=str(r[2] or ""),
                rule=None if r[3] is None else str(r[3]), reason=str(r[4] or ""),
                status=str(r[5] or ""), created=_num(r[6]) or 0.0,
                decided_by=None if r[7] is None else str(r[7]), decided_at=_num(r[8]),
                decision_reason=None if r[9] is None else str(r[9]))
        row = db.execute("SELECT requested_by, reason, created, done FROM kills "
                         "WHERE session = ?", (session_id,)).fetchone()
        if row is not None:
            kill = KillInfo(str(row[0] or ""), str(row[1] or ""), _num(row[2]) or 0.0,
                            _num(row[3]))
    except sqlite3.Error:
        pass  # an older or foreign schema: no context
    finally:
        db.close()
    return requests, kill


def store_context(store: ApprovalsReader, session_id: str
                  ) -> tuple[dict[str, ApprovalInfo], KillInfo | None]:
    """:func:`approvals_context` from an open store (the shared database of several
    gateways); empty when it cannot be read."""
    from state.errors import StateError

    try:
        found = store.for_session(session_id)
        kill_row = store.kill_request(session_id)
    except StateError:
        return {}, None
    requests = {str(r.id): ApprovalInfo(
        request_id=str(r.id), user=r.user, command=r.command, rule=r.rule, reason=r.reason,
        status=r.status, created=r.created, decided_by=r.decided_by, decided_at=r.decided_at,
        decision_reason=r.decision_reason) for r in found}
    kill = KillInfo(*kill_row) if kill_row is not None else None
    return requests, kill


def _num(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


class AuditReader:
    """Reads the audit log for sessions, remembering how far it read for each one.

    A live session's replay is reopened every few seconds: only what the log gained
    since is read again. A log that shrank (rotated) is read from its start.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._seen: dict[str, tuple[int, int, list[AuditInfo]]] = {}  # id: ino, offset, found
        self._lock = threading.Lock()

    def records(self, row: SessionRow) -> list[AuditInfo]:
        if self.path is None:
            return []
        with self._lock:
            return self._records(row)

    def _records(self, row: SessionRow) -> list[AuditInfo]:
        assert self.path is not None
        ino, offset, found = self._seen.get(row.id, (0, 0, []))
        try:
            st = os.stat(self.path)
        except OSError:
            return list(found)
        if st.st_ino != ino or st.st_size < offset:
            offset, found = 0, []
        more, offset = audit_context(self.path, row, start=offset)
        found = (found + more)[:MAX_RECORDS]
        if len(self._seen) > 1000:
            self._seen.clear()
        self._seen[row.id] = (st.st_ino, offset, found)
        return list(found)


def audit_context(path: Path, row: SessionRow, *, start: int = 0,
                  ) -> tuple[list[AuditInfo], int]:
    """Forwards and evasion signals of one session from the audit log, read from byte
    ``start``; also the offset after the last complete line read."""
    try:
        f = open(path, "rb")
    except OSError:
        return [], start
    sid = row.id.encode()
    user = json.dumps(row.user).encode()
    out: list[AuditInfo] = []
    end = row.end if row.end else float("inf")
    offset = start
    try:
        size = os.fstat(f.fileno()).st_size
        if size - start > MAX_AUDIT_BYTES:
            f.seek(size - MAX_AUDIT_BYTES)
            f.readline()  # skip the partial line
        else:
            f.seek(start)
        offset = f.tell()
        for line in f:
            if not line.endswith(b"\n"):
                break  # a line being written: read it next time
            offset += len(line)
            if len(line) > MAX_LINE or (sid not in line and b'"forward"' not in line):
                continue
            rec = _json(line)
            if rec is None:
                continue
            kind = _AUDIT_KINDS.get(str(rec.get("kind", "")))
            if kind is None:
                continue
            ts = _num(rec.get("ts"))
            if ts is None:
                continue
            if rec.get("session") != row.id:
                # forwards belong to the connection: same user, client address and time
                if kind != "forward" or user not in line or rec.get("user") != row.user or \
                        rec.get("source") != row.client or not row.start - 1 <= ts <= end + 1:
                    continue
            detail = rec.get("detail")
            out.append(AuditInfo(ts, kind, str(rec.get("outcome", "")),
                                 dict(detail) if isinstance(detail, dict) else {}))
            if len(out) >= MAX_RECORDS:
                break
    except OSError:
        pass
    finally:
        f.close()
    return out, offset


def _json(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def gather(data_dir: Path, audit: AuditReader, row: SessionRow | None,
           session_id: str, store: ApprovalsReader | None = None) -> Context:
    """The context of one session (empty parts where a source is missing); ``store``:
    the shared approval store instead of the data directory's file."""
    if store is not None:
        requests, kill = store_context(store, session_id)
    else:
        requests, kill = approvals_context(data_dir / "approvals.sqlite3", session_id)
    records = audit.records(row) if row is not None else []
    return Context(approvals=requests, kill=kill, audit=records)
