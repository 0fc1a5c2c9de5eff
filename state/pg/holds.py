""":class:`state.holds.LegalHolds` on the shared PostgreSQL database: a hold set on any
node is seen by ``bastille prune`` on every node (every call reads the database)."""

from __future__ import annotations

import builtins
import time
from typing import Any

from state.holds import Hold
from state.pg.db import Database


def _hold(row: tuple[Any, ...]) -> Hold:
    return Hold(str(row[0]), str(row[1]), str(row[2]), float(row[3]))


class PgHolds:
    """Legal holds in PostgreSQL (the table ``legal_holds``)."""

    def __init__(self, db: Database) -> None:
        self.db = db.acquire()

    def close(self) -> None:
        self.db.release()

    def set(self, session: str, *, by: str, reason: str) -> Hold:
        """Hold ``session`` (a second hold replaces who and why)."""
        hold = Hold(session, by, reason, time.time())
        self.db.execute(
            "INSERT INTO legal_holds (session, by_user, reason, created) VALUES "
            "(%s, %s, %s, %s) ON CONFLICT (session) DO UPDATE SET by_user = "
            "EXCLUDED.by_user, reason = EXCLUDED.reason, created = EXCLUDED.created",
            (hold.session, hold.by, hold.reason, hold.created))
        return hold

    def release(self, session: str) -> Hold | None:
        rows = self.db.query("DELETE FROM legal_holds WHERE session = %s "
                             "RETURNING session, by_user, reason, created", (session,))
        return _hold(rows[0]) if rows else None

    def list(self) -> builtins.list[Hold]:
        rows = self.db.query("SELECT session, by_user, reason, created FROM legal_holds "
                             "ORDER BY created")
        return [_hold(r) for r in rows]

    def held(self) -> builtins.set[str]:
        return {str(r[0]) for r in self.db.query("SELECT session FROM legal_holds")}
