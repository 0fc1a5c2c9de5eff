"""Approval requests, just-in-time access grants and kill requests: the queue shared by
the gateway, the RDP workers, the CLI and the player.

The gateway creates a request and waits; approvers decide with
``bastille approvals approve|deny ID`` on the appliance, ``ssh approver@bastion
approvals ...`` or the player. The waiting session polls the store, so decisions made by
another process arrive within ``poll_interval``. Rules, enforced here for every path:

* nobody approves their own request;
* only configured approvers decide;
* a request that is not decided before it expires is denied (status ``expired``);
* on gateway start every request still pending is marked expired: a restart never
  turns into an approval;
* what runs after approval is the exact command text stored with the request.

Interfaces: :class:`ApprovalQueue` (command approvals), :class:`GrantStore` (access
requests and the grants they become), :class:`KillQueue` (``sessions kill``), and
:class:`Approvals`, all three. :class:`ApprovalStore` implements them on one SQLite file
(``DATA_DIR/approvals.sqlite3``, WAL, mode 0600). A shared-database implementation
(issue #20) implements :class:`Approvals` the same way.

Known limit: :meth:`ApprovalStore.wait` polls (0.2 s by default), it is not notified.
"""

from __future__ import annotations

import asyncio
import builtins
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from state.errors import ApprovalError
from state.files import open_sqlite

__all__ = ["ApprovalError", "ApprovalQueue", "ApprovalStore", "Approvals", "Approvers",
           "GrantStore", "KillQueue", "Request"]


class Approvers(Protocol):
    """Who may decide (the gateway's ``Principals``, or the player's view of it)."""

    def allows(self, user: str, groups: frozenset[str]) -> bool: ...


@dataclass(frozen=True)
class Request:
    """One approval request (``kind`` command) or access request (``kind`` access)."""

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


class ApprovalQueue(Protocol):
    """Requests to run one command (or file operation) that a rule sent to approval."""

    def create(self, *, user: str, target: str, session: str, command: str,
               rule: str | None, reason: str, timeout: float) -> Request: ...

    def get(self, rid: int) -> Request | None: ...

    def list(self, *, status: str | None = "pending", limit: int = 200) -> list[Request]: ...

    def decide(self, rid: int, *, approver: str, approver_groups: frozenset[str],
               approvers: Approvers, approve: bool, reason: str = "") -> Request: ...

    def cancel(self, rid: int, why: str) -> None: ...

    async def wait(self, rid: int, *, poll_interval: float = 0.2) -> Request: ...

    def expire_all_pending(self, why: str = "gateway restarted") -> int: ...


class GrantStore(Protocol):
    """Just-in-time access: a request to use a target for a while, and once approved,
    the grant that lets the user use it."""

    def create_access(self, *, user: str, target: str, seconds: float, reason: str,
                      timeout: float) -> Request: ...

    def active_grant(self, user: str, target: str) -> Request | None: ...


class KillQueue(Protocol):
    """``bastille sessions kill``: requests to end a live session, carried out by the
    process that runs it."""

    def request_kill(self, session: str, *, by: str, reason: str) -> None: ...

    def pending_kills(self) -> builtins.list[tuple[str, str, str]]: ...

    def kill_done(self, session: str) -> None: ...

    def kill_status(self, session: str) -> float | None: ...


class Approvals(ApprovalQueue, GrantStore, KillQueue, Protocol):
    """The whole store (what the gateway and the RDP workers open)."""

    def close(self) -> None: ...


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


class ApprovalStore:
    """:class:`Approvals` on one SQLite file; ``clock`` is injectable for tests."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._db = open_sqlite(
            path, schema=_SCHEMA, what="the approvals database",
            lost="the approval requests still pending in it are treated as expired; its "
                 "just-in-time grants and kill requests are lost (ask again)")
        self._lock = threading.Lock()  # one connection, used from the loop and executors

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def _row(row: tuple[object, ...] | None) -> Request | None:
        return Request(*row) if row else None  # type: ignore[arg-type]

    def _insert(self, sql: str, params: tuple[object, ...]) -> Request:
        with self._lock:
            rid = self._db.execute(sql, params).lastrowid
        request = self.get(int(rid or 0))
        assert request is not None
        return request

    # ------------------------------------------------------------ ApprovalQueue
    def create(self, *, user: str, target: str, session: str, command: str, rule: str | None,
               reason: str, timeout: float) -> Request:
        now = self._clock()
        return self._insert(
            "INSERT INTO requests (created, expires, user, target, session, command, rule,"
            " reason, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
            (now, now + timeout, user, target, session, command, rule, reason))

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
        now = self._clock()
        with self._lock:
            self._db.execute("UPDATE requests SET status = 'expired', decided_at = ? "
                             "WHERE status = 'pending' AND expires <= ?", (now, now))

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
            if request is None:
                raise ApprovalError(f"no approval request #{rid}")
            if request.status != "pending":
                return request
            await asyncio.sleep(poll_interval)

    # ------------------------------------------------------------ GrantStore
    def create_access(self, *, user: str, target: str, seconds: float, reason: str,
                      timeout: float) -> Request:
        """A just-in-time access request: ``user`` asks to use ``target`` for ``seconds``."""
        now = self._clock()
        return self._insert(
            "INSERT INTO requests (created, expires, user, target, session, command, rule,"
            " reason, status, kind, grant_seconds) VALUES (?, ?, ?, ?, '', ?, NULL, ?,"
            " 'pending', 'access', ?)",
            (now, now + timeout, user, target, f"access to {target} for {seconds / 3600:g}h",
             reason, seconds))

    def active_grant(self, user: str, target: str) -> Request | None:
        """The approved access request that currently lets ``user`` use ``target``."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM requests WHERE kind = 'access' AND status = 'approved' AND "
                "user = ? AND target = ? AND decided_at + grant_seconds > ? "
                "ORDER BY decided_at DESC LIMIT 1", (user, target, self._clock())).fetchone()
        return self._row(row)

    # ------------------------------------------------------------ KillQueue
    def request_kill(self, session: str, *, by: str, reason: str) -> None:
        """Ask the process that runs ``session`` to end it (picked up within ~1 s)."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO kills VALUES (?, ?, ?, ?, NULL)",
                             (session, by, reason, self._clock()))

    def pending_kills(self) -> builtins.list[tuple[str, str, str]]:
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
        return float(row[0]) if row and row[0] is not None else None
