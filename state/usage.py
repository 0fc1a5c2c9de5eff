"""Bytes recorded per user per day, for ``[recording] max_recording_bytes_per_user_day``.

Interface: :class:`RecordingUsage`. :class:`UsageStore` keeps the counts in a SQLite file
of the data directory (``recording_usage.sqlite3``, WAL, 0600), so that every gateway
process on the host (the SSH gateway, RDP workers) and a restart see the same totals; the
shared database of several gateways (``state.pg.usage.PgUsage``) implements the same
interface. Days are UTC dates (``2026-11-24``); rows older than ``KEEP_DAYS`` are dropped
as new days begin.
"""

from __future__ import annotations

import datetime
import threading
from pathlib import Path
from typing import Protocol

from state.files import open_sqlite

KEEP_DAYS = 7  # days of usage kept (only today's is ever read)


def utc_day(epoch: float) -> str:
    """The UTC date of ``epoch`` seconds: ``YYYY-MM-DD``."""
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d")


class RecordingUsage(Protocol):
    """Recorded bytes per (user, day)."""

    def add(self, user: str, day: str, nbytes: int) -> int:
        """Add ``nbytes`` to ``user``'s ``day``; return the day's new total."""

    def used(self, user: str, day: str) -> int:
        """``user``'s total for ``day`` (0 if none)."""

    def close(self) -> None: ...


class UsageStore:
    """:class:`RecordingUsage` in SQLite."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = open_sqlite(path)
        self._lock = threading.Lock()
        self._db.execute("CREATE TABLE IF NOT EXISTS usage (user TEXT NOT NULL, "
                         "day TEXT NOT NULL, bytes INTEGER NOT NULL, "
                         "PRIMARY KEY (user, day))")
        self._pruned = ""

    def add(self, user: str, day: str, nbytes: int) -> int:
        with self._lock:
            if day != self._pruned:
                self._prune(day)
            row = self._db.execute(
                "INSERT INTO usage (user, day, bytes) VALUES (?, ?, ?) "
                "ON CONFLICT (user, day) DO UPDATE SET bytes = bytes + excluded.bytes "
                "RETURNING bytes", (user, day, max(0, int(nbytes)))).fetchone()
        return int(row[0])

    def used(self, user: str, day: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT bytes FROM usage WHERE user = ? AND day = ?",
                                   (user, day)).fetchone()
        return int(row[0]) if row else 0

    def _prune(self, day: str) -> None:
        cutoff = (datetime.date.fromisoformat(day)
                  - datetime.timedelta(days=KEEP_DAYS)).isoformat()
        self._db.execute("DELETE FROM usage WHERE day < ?", (cutoff,))
        self._pruned = day

    def close(self) -> None:
        with self._lock:
            self._db.close()
