"""Failed-login counts shared by the processes of one gateway: :class:`SharedFailureLimiter`.

The :class:`state.ratelimit.FailureCounter` of a SQLite appliance whose SSH logins are
served by several worker processes (``[gateway] workers``): the kernel spreads a
client's connections over the workers, and counted per process, N workers would allow
N times ``max_auth_failures``. Same rules as :class:`state.ratelimit.FailureLimiter`
(per source, per (source, user), never per user name alone; a failure without a user
counts for the source only; a success resets only its (source, user) bucket), kept in
``login_failures.sqlite3`` of the data directory (WAL, 0600). With PostgreSQL
(``[state] url``) :class:`state.pg.ratelimit.PgFailureLimiter` is used instead: it
counts across every process of every node.

Each failure is a row (bucket key, wall-clock time); keys are those of
:func:`state.ratelimit.bucket_keys` (a (source, user) bucket is a SHA-256: no user name
is written to disk). Rows older than the window are deleted as new ones are written and
at most ``max_rows`` are kept (the oldest go first), which bounds the file under a scan
from many addresses the way ``max_keys`` bounds the in-process limiter. Wall-clock
time, not monotonic: the file outlives processes.

The counts of this process are kept in memory too (a :class:`FailureLimiter`, same
limits): when the file cannot be used (a full disk, a lock held too long) the failure is
still counted here, one warning says so, and a brute force is still slowed down.

Known limits: one SQLite write per failed login (a few milliseconds on a slow disk, on
the event loop of the worker that refused it); a clock stepped backwards keeps old
failures counted for longer.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from state.files import open_sqlite
from state.ratelimit import FailureLimiter, bucket_keys

log = logging.getLogger("bastille.state")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS failures (key TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS failures_key ON failures (key, at);
CREATE INDEX IF NOT EXISTS failures_at ON failures (at);
"""


class SharedFailureLimiter:
    """A :class:`state.ratelimit.FailureCounter` in a SQLite file (see the module doc).

    Args:
        path: the SQLite file (created 0600).
        limit: failures per (source, user) within the window.
        window: seconds a failure counts.
        source_limit: failures per source within the window (default: the local rule's,
            :data:`state.ratelimit.SOURCE_LIMIT_FACTOR` times ``limit``).
        clock: wall-clock seconds (injected in tests).
        max_rows: failures kept at most (oldest deleted first).

    Raises:
        StateError: the file cannot be opened (a damaged one is moved aside instead).
    """

    def __init__(self, path: Path, limit: int, window: float, *,
                 source_limit: int | None = None, clock: Callable[[], float] = time.time,
                 max_rows: int = 100_000) -> None:
        self.local = FailureLimiter(limit, window, source_limit=source_limit)
        self.limit = limit
        self.source_limit = self.local.source_limit
        self.window = window
        self._clock = clock
        self._max_rows = max_rows
        self._lock = threading.Lock()
        self._db = open_sqlite(path, schema=_SCHEMA, what="login failure counts",
                               lost="failed logins counted so far are forgotten")

    def blocked(self, source: str, user: str | None = None) -> bool:
        if self.local.blocked(source, user):
            return True
        src, pair = bucket_keys(source, user)
        since = self._clock() - self.window
        try:
            with self._lock:
                counts = {str(key): int(n) for key, n in self._db.execute(
                    "SELECT key, COUNT(*) FROM failures WHERE key IN (?, ?) AND at > ? "
                    "GROUP BY key", (src, pair or src, since))}
        except sqlite3.Error as exc:
            log.warning("state: shared login-failure counts unavailable (%s): counting "
                        "locally", exc)
            return False
        if counts.get(src, 0) >= self.source_limit:
            return True
        return pair is not None and counts.get(pair, 0) >= self.limit

    def record_failure(self, source: str, user: str | None = None) -> None:
        self.local.record_failure(source, user)
        now = self._clock()
        keys = [k for k in bucket_keys(source, user) if k is not None]
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany("INSERT INTO failures (key, at) VALUES (?, ?)",
                                         [(k, now) for k in keys])
                    self._db.execute("DELETE FROM failures WHERE at <= ?",
                                     (now - self.window,))
                    self._db.execute(
                        "DELETE FROM failures WHERE rowid IN (SELECT rowid FROM failures "
                        "ORDER BY at DESC LIMIT -1 OFFSET ?)", (self._max_rows,))
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            log.warning("state: cannot share a login failure (%s): counted locally", exc)

    def reset(self, source: str, user: str) -> None:
        """``user`` logged in from ``source``: its (source, user) failures are forgotten
        by every process; the source's are kept (see :mod:`state.ratelimit`)."""
        self.local.reset(source, user)
        _src, pair = bucket_keys(source, user)
        try:
            with self._lock:
                self._db.execute("DELETE FROM failures WHERE key = ?", (pair,))
        except sqlite3.Error as exc:
            log.warning("state: cannot reset shared login failures (%s)", exc)

    def close(self) -> None:
        with self._lock:
            self._db.close()
