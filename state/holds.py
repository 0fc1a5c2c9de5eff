"""Legal holds: sessions whose recordings retention must never delete.

``bastille hold set ID --reason R`` puts a session under a hold, ``hold release ID``
lifts it, ``hold list`` shows them; ``bastille prune`` skips every held session. Both
are audited by the CLI. :class:`LegalHolds` is the protocol, :class:`HoldStore` its
SQLite file (``DATA_DIR/legal_holds.sqlite3``, WAL, 0600).
"""

from __future__ import annotations

import builtins
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from state.files import open_sqlite


@dataclass(frozen=True)
class Hold:
    session: str
    by: str
    reason: str
    created: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class LegalHolds(Protocol):
    def set(self, session: str, *, by: str, reason: str) -> Hold: ...

    def release(self, session: str) -> Hold | None: ...

    def list(self) -> builtins.list[Hold]: ...

    def held(self) -> builtins.set[str]: ...

    def close(self) -> None: ...


class HoldStore:
    """Legal holds in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self._db = open_sqlite(path)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS holds (session TEXT PRIMARY KEY, "
                             "by TEXT NOT NULL, reason TEXT NOT NULL, created REAL NOT NULL)")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def set(self, session: str, *, by: str, reason: str) -> Hold:
        """Hold ``session`` (a second hold replaces the reason)."""
        hold = Hold(session, by, reason, time.time())
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO holds VALUES (?, ?, ?, ?)",
                             (hold.session, hold.by, hold.reason, hold.created))
        return hold

    def release(self, session: str) -> Hold | None:
        with self._lock:
            row = self._db.execute("SELECT session, by, reason, created FROM holds WHERE "
                                   "session = ?", (session,)).fetchone()
            if row is None:
                return None
            self._db.execute("DELETE FROM holds WHERE session = ?", (session,))
        return Hold(*row)

    def list(self) -> builtins.list[Hold]:
        with self._lock:
            rows = self._db.execute("SELECT session, by, reason, created FROM holds "
                                    "ORDER BY created").fetchall()
        return [Hold(*r) for r in rows]

    def held(self) -> builtins.set[str]:
        return {h.session for h in self.list()}
