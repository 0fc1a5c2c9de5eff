""":class:`state.ratelimit.FailureCounter` shared by every node and process (the SSH
gateway and each RDP worker of each node count together), with the rules of
:mod:`state.ratelimit`: failures are counted per **source** (limit ``source_limit``) and
per **(source, user)** (limit ``limit``), never per user name alone; a failure without a
user counts for the source only; a success resets only its (source, user) bucket.

Failures are rows ``(key, at)`` on the database's clock; ``blocked`` counts those of the
two buckets within the window. A source bucket's key is ``src:`` and the client address
as :func:`state.ratelimit.source_key` writes it (an IPv6 client by its /64); a (source,
user) bucket's key is ``pair:`` and a SHA-256 of the source and the user name (a login
name is whatever a client sent: hashed, it cannot hold a byte PostgreSQL refuses, and
no user name is kept). While the database is unreachable, counting goes on in this
process's memory (:class:`state.ratelimit.FailureLimiter`, same limits) so a brute force
is still slowed down; the local counts are always kept too, so that the local rule holds
whatever happens. Old rows are purged on the way (at most every ``window`` seconds).

Known limit: on the first failure of an outage, a check can wait up to the database's
``connect_timeout`` (then the database breaker answers at once, see :mod:`state.pg.db`).
"""

from __future__ import annotations

import hashlib
import logging
import time

from state.errors import StateError
from state.pg.db import NOW, Database
from state.ratelimit import FailureLimiter, source_key

log = logging.getLogger("bastille.state.pg")

MAX_KEY = 200  # a longer source (not an address) is stored as its digest


def bucket_keys(source: str, user: str | None) -> tuple[str, str | None]:
    """The database keys of the source bucket and of the (source, user) bucket (None
    when there is no user)."""
    src = source_key(source)
    if "\x00" in src or len(src) > MAX_KEY:
        src = "h:" + hashlib.sha256(src.encode("utf-8", "surrogatepass")).hexdigest()
    pair = None
    if user is not None:
        raw = f"{src}\x00{user}".encode("utf-8", "surrogatepass")
        pair = "pair:" + hashlib.sha256(raw).hexdigest()
    return "src:" + src, pair


class PgFailureLimiter:
    """Failed logins per source and per (source, user) within a sliding window, across
    nodes (see the module doc).

    Args:
        db: the shared database.
        limit: failures per (source, user) within the window.
        window: seconds.
        source_limit: failures per source within the window (default: the local rule's,
            :data:`state.ratelimit.SOURCE_LIMIT_FACTOR` times ``limit``).
    """

    def __init__(self, db: Database, limit: int, window: float, *,
                 source_limit: int | None = None) -> None:
        self.db = db.acquire()
        self.local = FailureLimiter(limit, window, source_limit=source_limit)
        self.limit = limit
        self.source_limit = self.local.source_limit
        self.window = window
        self._purged = 0.0

    def close(self) -> None:
        self.db.release()

    def blocked(self, source: str, user: str | None = None) -> bool:
        if self.local.blocked(source, user):
            return True
        src, pair = bucket_keys(source, user)
        keys = [src] if pair is None else [src, pair]
        try:
            rows = self.db.query(
                f"SELECT key, count(*) FROM login_failures WHERE key = ANY(%s) AND "
                f"at > {NOW} - %s GROUP BY key", (keys, self.window))
        except StateError as exc:
            log.warning("state: shared login-failure counts unavailable (%s): counting "
                        "locally", exc)
            return False
        counts = {str(key): int(n) for key, n in rows}
        if counts.get(src, 0) >= self.source_limit:
            return True
        return pair is not None and counts.get(pair, 0) >= self.limit

    def record_failure(self, source: str, user: str | None = None) -> None:
        self.local.record_failure(source, user)
        src, pair = bucket_keys(source, user)
        try:
            with self.db.connection() as conn:
                for key in (src, pair):
                    if key is not None:
                        conn.execute(
                            f"INSERT INTO login_failures (key, at) VALUES (%s, {NOW})", (key,))
                if time.monotonic() - self._purged > self.window:
                    conn.execute(f"DELETE FROM login_failures WHERE at < {NOW} - %s",
                                 (self.window,))
                    self._purged = time.monotonic()
        except StateError as exc:
            log.warning("state: cannot share a login failure (%s): counted locally", exc)

    def reset(self, source: str, user: str) -> None:
        """``user`` logged in from ``source``: its (source, user) failures are forgotten
        on every node; the source's are kept (see :mod:`state.ratelimit`)."""
        self.local.reset(source, user)
        _src, pair = bucket_keys(source, user)
        try:
            self.db.execute("DELETE FROM login_failures WHERE key = %s", (pair,))
        except StateError as exc:
            log.warning("state: cannot reset shared login failures (%s)", exc)
