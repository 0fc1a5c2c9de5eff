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
(issue #20) implements :class:`Approvals` the same way: :class:`state.pg.approvals.
PgApprovals`, which notifies waiters across nodes.

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
    status: str  # pending | approved | denied | expired | cancelled | revoked (grants)
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

    def for_session(self, session: str, limit: int = 10_000) -> builtins.list[Request]:
        """The requests made in ``session``, oldest first (the player's timeline)."""
        ...

    def decide(self, rid: int, *, approver: str, approver_groups: frozenset[str],
               approvers: Approvers, approve: bool, reason: str = "") -> Request: ...

    def cancel(self, rid: int, why: str) -> None: ...

    def expire_overdue(self) -> None:
        """Mark pending requests past their expiry ``expired``."""
        ...

    async def wait(self, rid: int, *, poll_interval: float = 0.2,
                   notice: Callable[[str], None] | None = None) -> Request:
        """Until the request is decided, expired or cancelled; ``notice`` tells the user
        when the store is unreachable meanwhile (the wait goes on)."""
        ...

    def expire_all_pending(self, why: str = "gateway restarted") -> int: ...


class GrantStore(Protocol):
    """Just-in-time access: a request to use a target for a while, and once approved,
    the grant that lets the user use it."""

    def create_access(self, *, user: str, target: str, seconds: float, reason: str,
                      timeout: float) -> Request: ...

    def active_grant(self, user: str, target: str) -> Request | None: ...

    def latest_grant(self, user: str, target: str) -> Request | None:
        """The most recently decided approved or revoked access request of ``user`` for
        ``target`` (expired grants count: it says how the last grant ended)."""
        ...

    def revoke_grant(self, rid: int, *, by: str, reason: str) -> Request:
        """End an approved grant now (status ``revoked``); sessions that ran on it are
        ended by the node that holds them (:mod:`gateway.core.live`)."""
        ...

    async def grant_signal(self, timeout: float) -> None:  # noqa: ASYNC109 - a poll bound
        """Return when a grant may have been revoked, or after ``timeout`` seconds."""
        ...


class KillQueue(Protocol):
    """``bastille sessions kill``: requests to end a live session, carried out by the
    process that runs it."""

    def request_kill(self, session: str, *, by: str, reason: str) -> None: ...

    def pending_kills(self) -> builtins.list[tuple[str, str, str]]: ...

    def kill_done(self, session: str) -> None: ...

    def kill_status(self, session: str) -> float | None: ...

    def kill_request(self, session: str) -> tuple[str, str, float, float | None] | None:
        """(requested_by, reason, created, done) of the session's kill request."""
        ...

    async def kill_signal(self, timeout: float) -> None:  # noqa: ASYNC109 - a poll bound
        """Return when a kill request may have arrived, or after ``timeout`` seconds."""
        ...


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

    def for_session(self, session: str, limit: int = 10_000) -> builtins.list[Request]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM requests WHERE session = ? ORDER BY id "
                                    "LIMIT ?", (session, limit)).fetchall()
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

    async def wait(self, rid: int, *, poll_interval: float = 0.2,
                   notice: Callable[[str], None] | None = None) -> Request:
        """Wait until the request is no longer pending (expiry counts as a decision).
        ``notice`` is unused: a local file is always reachable."""
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

    def latest_grant(self, user: str, target: str) -> Request | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM requests WHERE kind = 'access' AND status IN ('approved', "
                "'revoked') AND user = ? AND target = ? ORDER BY decided_at DESC, id DESC "
                "LIMIT 1", (user, target)).fetchone()
        return self._row(row)

    def revoke_grant(self, rid: int, *, by: str, reason: str) -> Request:
        """End an approved access grant now (status ``revoked``)."""
        why = f"revoked by {by}" + (f": {reason}" if reason else "")
        with self._lock:
            cur = self._db.execute(
                "UPDATE requests SET status = 'revoked', decision_reason = ? WHERE id = ? "
                "AND kind = 'access' AND status = 'approved'", (why, rid))
        current = self.get(rid)
        if current is None or current.kind != "access":
            raise ApprovalError(f"no access grant #{rid}")
        if cur.rowcount != 1:
            raise ApprovalError(f"grant #{rid} is {current.status}, not approved")
        return current

    async def grant_signal(self, timeout: float) -> None:  # noqa: ASYNC109 - a poll bound
        await asyncio.sleep(timeout)

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

    def kill_request(self, session: str) -> tuple[str, str, float, float | None] | None:
        with self._lock:
            row = self._db.execute("SELECT requested_by, reason, created, done FROM kills "
                                   "WHERE session = ?", (session,)).fetchone()
        if row is None:
            return None
        return (str(row[0]), str(row[1]), float(row[2]),
                None if row[3] is None else float(row[3]))

    async def kill_signal(self, timeout: float) -> None:  # noqa: ASYNC109 - a poll bound
        await asyncio.sleep(timeout)
