"""Approval requests for risky commands: a SQLite queue shared by the gateway, the CLI
and the player (which is why it lives in this library, not in the gateway).

The gateway creates a request and waits; approvers decide with
``bastille approvals approve|deny ID`` on the appliance or ``ssh approver@bastion
approvals ...``. The waiting session polls the database, so decisions made by another
process arrive within ``poll_interval``. Rules:

* nobody approves their own request (checked here, for every path);
* only configured approvers decide;
* a request that is not decided before it expires is denied;
* on gateway start every request still pending is marked expired: a restart never
  turns into an approval;
* what runs after approval is the exact command text stored with the request.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from recorder.errors import RecorderError


class Approvers(Protocol):
    """Who may decide (the gateway's ``Principals``, or the player's view of it)."""

    def allows(self, user: str, groups: frozenset[str]) -> bool: ...

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    user TEXT NOT NULL,
    target TEXT NOT NULL,
    session TEXT NOT NULL,
    command TEXT NOT NULL,
    rule TEXT,
    reason TEXT NOT NULL,
    status TEXT NOT NULL,
    decided_by TEXT,
    decided_at REAL,
    decision_reason TEXT,
    kind TEXT NOT NULL DEFAULT 'command',
    grant_seconds REAL
);
CREATE TABLE IF NOT EXISTS kills (
    session TEXT PRIMARY KEY,
    requested_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    created REAL NOT NULL,
    done REAL
);
"""


class ApprovalError(RecorderError):
    """An approval action was refused (self-approval, not an approver, not pending...)."""


@dataclass(frozen=True)
class Request:
    id: int
    created: float
    expires: float
    user: str
    target: str
    session: str
    command: str
    rule: str | None
    reason: str
    status: str  # pending | approved | denied | expired | cancelled
    decided_by: str | None
    decided_at: float | None
    decision_reason: str | None
    kind: str = "command"  # command | access
    grant_seconds: float | None = None  # access: how long the approved access lasts

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


class ApprovalStore:
    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self._clock = clock
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=10,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _row(self, row: tuple[object, ...] | None) -> Request | None:
        return Request(*row) if row else None  # type: ignore[arg-type]

    def create(self, *, user: str, target: str, session: str, command: str, rule: str | None,
               reason: str, timeout: float) -> Request:
        now = self._clock()
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO requests (created, expires, user, target, session, command, rule,"
                " reason, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
                (now, now + timeout, user, target, session, command, rule, reason))
            rid = cur.lastrowid
        request = self.get(int(rid or 0))
        assert request is not None
        return request

    def create_access(self, *, user: str, target: str, seconds: float, reason: str,
                      timeout: float) -> Request:
        """A just-in-time access request: ``user`` asks to use ``target`` for ``seconds``."""
        now = self._clock()
        hours = seconds / 3600
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO requests (created, expires, user, target, session, command, rule,"
                " reason, status, kind, grant_seconds) VALUES (?, ?, ?, ?, '', ?, NULL, ?,"
                " 'pending', 'access', ?)",
                (now, now + timeout, user, target, f"access to {target} for {hours:g}h",
                 reason, seconds))
            rid = cur.lastrowid
        request = self.get(int(rid or 0))
        assert request is not None
        return request

    def active_grant(self, user: str, target: str) -> Request | None:
        """The approved access request that currently lets ``user`` use ``target``."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM requests WHERE kind = 'access' AND status = 'approved' AND "
                "user = ? AND target = ? AND decided_at + grant_seconds > ? "
                "ORDER BY decided_at DESC LIMIT 1", (user, target, self._clock())).fetchone()
        return self._row(row)

    def request_kill(self, session: str, *, by: str, reason: str) -> None:
        """Ask the gateway that runs ``session`` to end it (picked up within ~1 s)."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO kills VALUES (?, ?, ?, ?, NULL)",
                             (session, by, reason, self._clock()))

    def pending_kills(self) -> list[tuple[str, str, str]]:
        """(session, requested_by, reason) of kill requests not carried out yet."""
        with self._lock:
            rows = self._db.execute(
                "SELECT session, requested_by, reason FROM kills WHERE done IS NULL").fetchall()
        return [(str(a), str(b), str(c)) for a, b, c in rows]

    def kill_done(self, session: str) -> None:
        with self._lock:
            self._db.execute("UPDATE kills SET done = ? WHERE session = ?",
                             (self._clock(), session))

    def kill_status(self, session: str) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT done FROM kills WHERE session = ?",
                                   (session,)).fetchone()
        return row[0] if row else None

    def get(self, rid: int) -> Request | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM requests WHERE id = ?", (rid,)).fetchone()
        return self._row(row)

    def list(self, *, status: str | None = "pending", limit: int = 200) -> list[Request]:
        self.expire_overdue()
        sql = "SELECT * FROM requests"
        params: tuple[object, ...] = ()
        if status:
            sql += " WHERE status = ?"
            params = (status,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()
        return [Request(*r) for r in rows]

    def expire_overdue(self) -> None:
        with self._lock:
            self._db.execute("UPDATE requests SET status = 'expired', decided_at = ? "
                             "WHERE status = 'pending' AND expires <= ?",
                             (self._clock(), self._clock()))

    def expire_all_pending(self, why: str = "gateway restarted") -> int:
        with self._lock:
            cur = self._db.execute("UPDATE requests SET status = 'expired', decided_at = ?, "
                                   "decision_reason = ? WHERE status = 'pending'",
                                   (self._clock(), why))
        return cur.rowcount

    def cancel(self, rid: int, why: str) -> None:
        with self._lock:
            self._db.execute("UPDATE requests SET status = 'cancelled', decided_at = ?, "
                             "decision_reason = ? WHERE id = ? AND status = 'pending'",
                             (self._clock(), why, rid))

    def decide(self, rid: int, *, approver: str, approver_groups: frozenset[str],
               approvers: Approvers, approve: bool, reason: str = "") -> Request:
        """Approve or deny; raises ApprovalError with a message for the approver."""
        self.expire_overdue()
        request = self.get(rid)
        if request is None:
            raise ApprovalError(f"no approval request #{rid}")
        if not approvers.allows(approver, approver_groups):
            raise ApprovalError(f"{approver} is not an approver")
        if request.user == approver:
            raise ApprovalError("nobody may approve or deny their own request")
        if request.status != "pending":
            raise ApprovalError(f"request #{rid} is already {request.status}")
        status = "approved" if approve else "denied"
        with self._lock:
            cur = self._db.execute(
                "UPDATE requests SET status = ?, decided_by = ?, decided_at = ?, "
                "decision_reason = ? WHERE id = ? AND status = 'pending'",
                (status, approver, self._clock(), reason, rid))
        if cur.rowcount != 1:
            raise ApprovalError(f"request #{rid} was decided by someone else meanwhile")
        result = self.get(rid)
        assert result is not None
        return result

    async def wait(self, rid: int, *, poll_interval: float = 0.2) -> Request:
        """Wait until the request is no longer pending (expiry counts as a decision)."""
        while True:
            self.expire_overdue()
            request = self.get(rid)
            if request is None or request.status != "pending":
                assert request is not None
                return request
            await asyncio.sleep(poll_interval)
