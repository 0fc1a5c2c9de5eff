""":class:`state.ratelimit.FailureCounter` shared by every node and process (the SSH
gateway and each RDP worker of each node count together).

Failures are rows ``(key, at)`` on the database's clock; ``blocked`` counts those within
the window. While the database is unreachable, counting goes on in this process's memory
(:class:`state.ratelimit.FailureLimiter`) so a brute force is still slowed down;
the local counts are always kept too, so that the local rule holds whatever happens.
Old rows are purged on the way (at most every ``window`` seconds).
"""

from __future__ import annotations

import logging
import time

from state.errors import StateError
from state.pg.db import NOW, Database
from state.ratelimit import FailureLimiter

log = logging.getLogger("bastille.state.pg")


class PgFailureLimiter:
    """Failed logins per key within a sliding window, across nodes."""

    def __init__(self, db: Database, limit: int, window: float) -> None:
        self.db = db.acquire()
        self.limit = limit
        self.window = window
        self.local = FailureLimiter(limit, window)
        self._purged = 0.0

    def close(self) -> None:
        self.db.release()

    def blocked(self, *keys: str) -> bool:
        if self.local.blocked(*keys):
            return True
        if not keys:
            return False
        try:
            rows = self.db.query(
                f"SELECT key, count(*) FROM login_failures WHERE key = ANY(%s) AND "
                f"at > {NOW} - %s GROUP BY key", (list(keys), self.window))
        except StateError as exc:
            log.warning("state: shared login-failure counts unavailable (%s): counting "
                        "locally", exc)
            return False
        return any(int(n) >= self.limit for _key, n in rows)

    def record_failure(self, *keys: str) -> None:
        self.local.record_failure(*keys)
        try:
            with self.db.connection() as conn:
                for key in keys:
                    conn.execute(f"INSERT INTO login_failures (key, at) VALUES (%s, {NOW})",
                                 (key,))
                if time.monotonic() - self._purged > self.window:
                    conn.execute(f"DELETE FROM login_failures WHERE at < {NOW} - %s",
                                 (self.window,))
                    self._purged = time.monotonic()
        except StateError as exc:
            log.warning("state: cannot share a login failure (%s): counted locally", exc)

    def reset(self, *keys: str) -> None:
        self.local.reset(*keys)
        try:
            self.db.execute("DELETE FROM login_failures WHERE key = ANY(%s)", (list(keys),))
        except StateError as exc:
            log.warning("state: cannot reset shared login failures (%s)", exc)
