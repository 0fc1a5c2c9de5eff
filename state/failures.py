"""Failed-login counts shared by the gateway's processes: :class:`SharedFailureLimiter`.

The same :class:`state.ratelimit.FailureCounter` as the in-memory
:class:`state.ratelimit.FailureLimiter`, kept in a SQLite file of the data directory
(``login_failures.sqlite3``, WAL, 0600), so that SSH worker processes (``[gateway]
workers``) count one client's failures together: the kernel spreads a client's
connections over the workers, and counted per process, N workers would allow N times
``max_auth_failures``.

Each failure is a row (key, wall-clock time); rows older than the window are deleted as
new ones are written, and at most ``max_rows`` are kept (the oldest go first), which
bounds the file under a scan from many addresses the way ``max_keys`` bounds the memory
of the in-process limiter. Wall-clock time, not monotonic: the file outlives processes.

Known limits: one SQLite write per failed login (a few milliseconds on a slow disk, on
the event loop of the worker that refused it); a clock stepped backwards keeps old
failures counted for longer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from state.files import open_sqlite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS failures (key TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS failures_key ON failures (key, at);
CREATE INDEX IF NOT EXISTS failures_at ON failures (at);
"""


class SharedFailureLimiter:
    """A :class:`state.ratelimit.FailureCounter` in a SQLite file (see the module doc).

    Args:
        path: the SQLite file (created 0600).
        limit: failures within ``window`` seconds after which a key is blocked.
        window: seconds a failure counts.
        clock: wall-clock seconds (injected in tests).
        max_rows: failures kept at most (oldest deleted first).
    """

    def __init__(self, path: Path, limit: int, window: float, *,
                 clock: Callable[[], float] = time.time, max_rows: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._max_rows = max_rows
        self._lock = threading.Lock()
        self._db = open_sqlite(path)
        with self._lock:
            self._db.executescript(_SCHEMA)

    def blocked(self, *keys: str) -> bool:
        since = self._clock() - self.window
        with self._lock:
            for key in keys:
                (n,) = self._db.execute(
                    "SELECT COUNT(*) FROM failures WHERE key = ? AND at > ?",
                    (key, since)).fetchone()
                if n >= self.limit:
                    return True
        return False

    def record_failure(self, *keys: str) -> None:
        now = self._clock()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT INTO failures (key, at) VALUES (?, ?)",
                                     [(k, now) for k in keys])
                self._db.execute("DELETE FROM failures WHERE at <= ?", (now - self.window,))
                self._db.execute(
                    "DELETE FROM failures WHERE rowid IN (SELECT rowid FROM failures "
                    "ORDER BY at DESC LIMIT -1 OFFSET ?)", (self._max_rows,))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def reset(self, *keys: str) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM failures WHERE key = ?", [(k,) for k in keys])

    def close(self) -> None:
        with self._lock:
            self._db.close()
