""":class:`state.usage.RecordingUsage` on the shared database: bytes recorded per user per
UTC day, counted together by every gateway and RDP worker of every node (``[recording]
max_recording_bytes_per_user_day`` is one budget across the cluster).

``add`` never waits for PostgreSQL (it is called from the session's data path): the
addition goes through an ordered writer thread (:class:`state.pg.writer.OrderedWriter`,
retried while the database is unreachable) and ``add`` returns at once the day's total
as this process knows it: the last total the database gave, plus what this process has
added since and the database has not taken yet. ``used`` (once, when a session starts)
asks the database, and falls back to that local knowledge while it is unreachable. So
during an outage each node enforces the budget with what it knows (its own additions on
top of the last shared total) and the shared count catches up when the database
returns; other nodes' additions are seen at most one flush of a session late
(``gateway.core.budget.FLUSH_SECONDS``).

Rows older than :data:`state.usage.KEEP_DAYS` are dropped as new days begin, like the
SQLite store.
"""

from __future__ import annotations

import datetime
import itertools
import logging
import threading

from state.errors import StateError
from state.pg.db import Database
from state.pg.writer import Conn, OrderedWriter
from state.usage import KEEP_DAYS

log = logging.getLogger("bastille.state.pg")

QUEUE_CAP = 10_000  # additions waiting for the database (one per session per flush)

Key = tuple[str, str]  # (user, day)


class PgUsage:
    """Recorded bytes per (user, day) in PostgreSQL (see the module doc)."""

    def __init__(self, db: Database) -> None:
        self.db = db.acquire()
        self.writer = OrderedWriter(db, "bastille-usage-writer", QUEUE_CAP)
        self._lock = threading.Lock()
        self._known: dict[Key, int] = {}  # the last total the database gave
        self._pending: dict[int, tuple[Key, int]] = {}  # additions not in the database yet
        self._ids = itertools.count(1)
        self._pruned = ""

    def _local(self, key: Key) -> int:
        """What this process knows of ``key``'s total (caller holds the lock)."""
        return self._known.get(key, 0) + sum(n for k, n in self._pending.values() if k == key)

    def add(self, user: str, day: str, nbytes: int) -> int:
        key = (user, day)
        n = max(0, int(nbytes))
        with self._lock:
            op_id = next(self._ids)
            self._pending[op_id] = (key, n)
            total = self._local(key)
            prune = day != self._pruned
            cutoff = (datetime.date.fromisoformat(day)
                      - datetime.timedelta(days=KEEP_DAYS)).isoformat()
            if prune:
                self._pruned = day
                self._known = {k: v for k, v in self._known.items() if k[1] >= cutoff}

        def op(conn: Conn) -> None:
            if prune:
                conn.execute("DELETE FROM recording_usage WHERE day < %s", (cutoff,))
            row = conn.execute(
                'INSERT INTO recording_usage ("user", day, bytes) VALUES (%s, %s, %s) '
                'ON CONFLICT ("user", day) DO UPDATE SET bytes = recording_usage.bytes + '
                "excluded.bytes RETURNING bytes", (user, day, n)).fetchone()
            with self._lock:  # retried after a lost commit: the same result, again
                self._pending.pop(op_id, None)
                if row is not None:
                    self._known[key] = int(row[0])

        try:
            self.writer.submit(op)
        except StateError as exc:  # the queue is full: this process still counts it
            log.warning("state: recording usage not shared (%s): counted on this node", exc)
        return total

    def used(self, user: str, day: str) -> int:
        key = (user, day)
        with self._lock:
            before = [i for i, (k, _n) in self._pending.items() if k == key]
        try:
            rows = self.db.query('SELECT bytes FROM recording_usage WHERE "user" = %s AND '
                                 "day = %s", (user, day))
        except StateError as exc:
            log.warning("state: shared recording usage unavailable (%s): using this "
                        "node's count", exc)
            with self._lock:
                return self._local(key)
        shared = int(rows[0][0]) if rows else 0
        with self._lock:
            # this process's additions still on their way are not in the database yet
            waiting = sum(n for k, n in self._pending.values() if k == key)
            if any(i not in self._pending for i in before):
                # one landed during the query (it may or may not be in ``shared``): its
                # total, _known, counts it and everything committed before it
                return max(shared, self._known.get(key, 0)) + waiting
            self._known[key] = shared
            return shared + waiting

    def flush(self, timeout: float) -> bool:
        """Wait until this process's additions are in the database; False on timeout."""
        return self.writer.flush(timeout)

    def close(self) -> None:
        self.writer.close(max(5.0, self.db.settings.connect_timeout * 3))
        self.db.release()
