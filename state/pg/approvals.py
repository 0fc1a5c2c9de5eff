""":class:`state.approvals.Approvals` on the shared PostgreSQL database.

The rules are the SQLite store's (:mod:`state.approvals`), enforced in SQL for every
node: nobody approves their own request, only approvers decide, a request is decided
once (``UPDATE ... WHERE status = 'pending'``), an undecided request expires. What
changes with several nodes:

* a decision, a cancellation, a kill request or a grant revocation sends
  ``NOTIFY bastille`` (``approval:ID``, ``kill:SESSION``, ``grant:ID``): the node that
  waits is woken at once; it also polls every ``poll_interval`` (0.5 s), the bound when a
  notification is lost;
* each request carries the node that created it: a node that restarts expires only its
  own pending requests (``expire_all_pending``); those of a node that died are expired
  by the node that notices (:mod:`state.pg.registry`);
* :meth:`PgApprovals.wait` keeps waiting while the database is unreachable and tells the
  user once (``notice``), then resumes when it returns.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections.abc import Callable
from typing import Any

from state.approvals import Approvers, Request
from state.errors import ApprovalError, StateUnavailable
from state.pg.db import Database
from state.pg.wake import Wakeups

log = logging.getLogger("bastille.state.pg")

_COLUMNS = ('id, created, expires, "user", target, session, command, rule, reason, status, '
            'decided_by, decided_at, decision_reason, kind, grant_seconds')
UNAVAILABLE_NOTICE = ("the bastion's database is unreachable; still waiting (the "
                      "request resumes when it returns)")


def _request(row: tuple[Any, ...] | None) -> Request | None:
    return Request(*row) if row else None


class PgApprovals:
    """Approval requests, grants and kill requests in PostgreSQL (``clock`` injectable)."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time,
                 poll_interval: float | None = None) -> None:
        self.db = db.acquire()
        self.node = db.node
        self._clock = clock
        self.poll_interval = poll_interval if poll_interval is not None \
            else db.settings.poll_interval
        self._wake: Wakeups | None = None

    @property
    def wakeups(self) -> Wakeups:
        if self._wake is None:
            self._wake = Wakeups(self.db.listener)
        return self._wake

    def close(self) -> None:
        if self._wake is not None:
            self._wake.close()
        self.db.release()

    def _one(self, sql: str, params: tuple[Any, ...], notify: tuple[str, str] | None = None
             ) -> tuple[Any, ...] | None:
        with self.db.connection() as conn:
            row = conn.execute(sql, params).fetchone()
            if notify is not None and row is not None:
                self.db.notify(conn, *notify)
        return row

    # ------------------------------------------------------------ ApprovalQueue
    def create(self, *, user: str, target: str, session: str, command: str, rule: str | None,
               reason: str, timeout: float) -> Request:
        now = self._clock()
        row = self._one(
            f'INSERT INTO requests (created, expires, "user", target, session, command, rule, '
            f"reason, status, node) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,'pending',%s) "
            f"RETURNING {_COLUMNS}",
            (now, now + timeout, user, target, session, command, rule, reason, self.node),
            notify=("request", ""))
        request = _request(row)
        assert request is not None
        return request

    def get(self, rid: int) -> Request | None:
        return _request(self._one(f"SELECT {_COLUMNS} FROM requests WHERE id = %s", (rid,)))

    def list(self, *, status: str | None = "pending", limit: int = 200) -> list[Request]:
        self.expire_overdue()
        sql = f"SELECT {_COLUMNS} FROM requests"
        params: tuple[Any, ...] = ()
        if status:
            sql += " WHERE status = %s"
            params = (status,)
        rows = self.db.query(sql + " ORDER BY id DESC LIMIT %s", (*params, limit))
        return [Request(*r) for r in rows]

    def for_session(self, session: str, limit: int = 10_000) -> builtins.list[Request]:
        rows = self.db.query(f"SELECT {_COLUMNS} FROM requests WHERE session = %s ORDER BY id "
                             "LIMIT %s", (session, limit))
        return [Request(*r) for r in rows]

    def expire_overdue(self) -> None:
        now = self._clock()
        self.db.execute("UPDATE requests SET status = 'expired', decided_at = %s "
                        "WHERE status = 'pending' AND expires <= %s", (now, now))

    def expire_all_pending(self, why: str = "gateway restarted") -> int:
        """Expire the pending requests *this node* created (a restart never approves)."""
        return self.db.execute(
            "UPDATE requests SET status = 'expired', decided_at = %s, decision_reason = %s "
            "WHERE status = 'pending' AND node = %s", (self._clock(), why, self.node))

    def cancel(self, rid: int, why: str) -> None:
        self._one("UPDATE requests SET status = 'cancelled', decided_at = %s, "
                  "decision_reason = %s WHERE id = %s AND status = 'pending' RETURNING id",
                  (self._clock(), why, rid), notify=("approval", str(rid)))

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
        row = self._one(
            "UPDATE requests SET status = %s, decided_by = %s, decided_at = %s, "
            "decision_reason = %s WHERE id = %s AND status = 'pending' AND \"user\" <> %s "
            f"RETURNING {_COLUMNS}",
            (status, approver, self._clock(), reason, rid, approver),
            notify=("approval", str(rid)))
        if row is None:
            raise ApprovalError(f"request #{rid} was decided by someone else meanwhile")
        result = _request(row)
        assert result is not None
        return result

    async def wait(self, rid: int, *, poll_interval: float = 0.2,
                   notice: Callable[[str], None] | None = None) -> Request:
        """Wait until the request is no longer pending (expiry counts as a decision).

        Woken by the decision's notification; polls every ``poll_interval`` (at most
        the store's bound). While the database is unreachable it keeps waiting and calls
        ``notice`` once per outage.
        """
        loop = asyncio.get_running_loop()
        interval = min(poll_interval, self.poll_interval) if poll_interval else \
            self.poll_interval
        told = False
        while True:
            try:
                request = await loop.run_in_executor(None, self._check, rid)
                told = False
            except StateUnavailable:
                if not told and notice is not None:
                    notice(UNAVAILABLE_NOTICE)
                told = True
                await asyncio.sleep(1.0)
                continue
            if request.status != "pending":
                return request
            await self.wakeups.wait(f"approval:{rid}", max(interval, 0.05))

    def _check(self, rid: int) -> Request:
        self.expire_overdue()
        request = self.get(rid)
        if request is None:
            raise ApprovalError(f"no approval request #{rid}")
        return request

    # ------------------------------------------------------------ GrantStore
    def create_access(self, *, user: str, target: str, seconds: float, reason: str,
                      timeout: float) -> Request:
        now = self._clock()
        row = self._one(
            f'INSERT INTO requests (created, expires, "user", target, session, command, rule, '
            f"reason, status, kind, grant_seconds, node) VALUES (%s,%s,%s,%s,'',%s,NULL,%s,"
            f"'pending','access',%s,%s) RETURNING {_COLUMNS}",
            (now, now + timeout, user, target, f"access to {target} for {seconds / 3600:g}h",
             reason, seconds, self.node), notify=("request", ""))
        request = _request(row)
        assert request is not None
        return request

    def active_grant(self, user: str, target: str) -> Request | None:
        return _request(self._one(
            f"SELECT {_COLUMNS} FROM requests WHERE kind = 'access' AND status = 'approved' "
            'AND "user" = %s AND target = %s AND decided_at + grant_seconds > %s '
            "ORDER BY decided_at DESC LIMIT 1", (user, target, self._clock())))

    def latest_grant(self, user: str, target: str) -> Request | None:
        return _request(self._one(
            f"SELECT {_COLUMNS} FROM requests WHERE kind = 'access' AND status IN "
            "('approved', 'revoked') AND \"user\" = %s AND target = %s "
            "ORDER BY decided_at DESC, id DESC LIMIT 1", (user, target)))

    def revoke_grant(self, rid: int, *, by: str, reason: str) -> Request:
        """End an approved access grant now; the nodes re-check their sessions."""
        why = f"revoked by {by}" + (f": {reason}" if reason else "")
        row = self._one(
            f"UPDATE requests SET status = 'revoked', decision_reason = %s WHERE id = %s AND "
            f"kind = 'access' AND status = 'approved' RETURNING {_COLUMNS}",
            (why, rid), notify=("grant", str(rid)))
        if row is None:
            current = self.get(rid)
            if current is None or current.kind != "access":
                raise ApprovalError(f"no access grant #{rid}")
            raise ApprovalError(f"grant #{rid} is {current.status}, not approved")
        result = _request(row)
        assert result is not None
        return result

    # ------------------------------------------------------------ KillQueue
    def request_kill(self, session: str, *, by: str, reason: str) -> None:
        self._one("INSERT INTO kills VALUES (%s,%s,%s,%s,NULL) ON CONFLICT (session) DO "
                  "UPDATE SET requested_by = EXCLUDED.requested_by, reason = EXCLUDED.reason, "
                  "created = EXCLUDED.created, done = NULL RETURNING session",
                  (session, by, reason, self._clock()), notify=("kill", session))

    def pending_kills(self) -> builtins.list[tuple[str, str, str]]:
        rows = self.db.query(
            "SELECT session, requested_by, reason FROM kills WHERE done IS NULL")
        return [(str(a), str(b), str(c)) for a, b, c in rows]

    def kill_done(self, session: str) -> None:
        self.db.execute("UPDATE kills SET done = %s WHERE session = %s",
                        (self._clock(), session))

    def kill_status(self, session: str) -> float | None:
        row = self._one("SELECT done FROM kills WHERE session = %s", (session,))
        return float(row[0]) if row and row[0] is not None else None

    def kill_request(self, session: str) -> tuple[str, str, float, float | None] | None:
        row = self._one("SELECT requested_by, reason, created, done FROM kills "
                        "WHERE session = %s", (session,))
        if row is None:
            return None
        return (str(row[0]), str(row[1]), float(row[2]),
                None if row[3] is None else float(row[3]))

    async def kill_signal(self, timeout: float) -> None:  # noqa: ASYNC109 - a poll bound
        """Return when a kill request may have arrived (notified), or after ``timeout``."""
        await self.wakeups.wait("kill:", min(timeout, self.poll_interval))

    async def grant_signal(self, timeout: float) -> None:  # noqa: ASYNC109 - a poll bound
        """Return when a grant may have been revoked (notified), or after ``timeout``."""
        await self.wakeups.wait("grant:", timeout)
