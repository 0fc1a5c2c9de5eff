"""The base of the audit exporters: a thread that follows the audit file from its saved
cursor and delivers what it reads (syslog: :mod:`gateway.audit.syslog`, webhooks:
:mod:`gateway.audit.webhooks`).

Delivery is at least once: the cursor is saved only after delivery, so a restart (or a
collector that went away) resends what may not have arrived; each record's ``id`` lets a
receiver drop a duplicate. The file is the buffer: while a destination is down the
exporter stops reading (no unbounded memory), and nothing the file holds is lost.

Known limit: events are exported while a gateway runs; what the CLI writes while none
runs is exported when one starts (from the saved cursor).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.audit.follow import AuditFollower, Cursor, CursorStore

log = logging.getLogger("bastille.audit")

POLL = 0.2  # seconds between looks at the audit file when there is nothing new
SAVE_EVERY = 1.0  # seconds between cursor saves while delivering


@dataclass
class ExportStats:
    """What an exporter reports (metrics, status)."""

    name: str
    destination: str
    connected: bool = False
    delivered: int = 0
    failures: int = 0  # failed connection or delivery attempts
    dead_letters: int = 0
    lag_bytes: int = 0  # audit bytes not yet delivered

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Exporter(threading.Thread):
    """Follows the audit file and calls :meth:`deliver` (subclasses) until stopped.

    Args:
        name: names the exporter in logs, metrics and its cursor file.
        destination: where it delivers, for messages (never a secret).
        audit_file: the audit trail.
        state_dir: where its cursor is kept (``DATA_DIR/export``); None: not kept (it
            starts at the end of the file every time, like the metrics).
    """

    def __init__(self, name: str, destination: str, audit_file: Path,
                 state_dir: Path | None) -> None:
        super().__init__(name=f"audit export {name}", daemon=True)
        self.stats = ExportStats(name=name, destination=destination)
        self.audit_file = audit_file
        self.cursors = CursorStore(state_dir / f"{name}.cursor") if state_dir else None
        saved = self.cursors.load() if self.cursors is not None else None
        self.follower = AuditFollower(audit_file, saved)
        if saved is None and self.cursors is not None:  # first run: from now on
            self.cursors.save(self.follower.cursor)
        self.committed = self.follower.cursor
        self._stop_event = threading.Event()
        self._saved_at = 0.0

    # ------------------------------------------------------------ control
    @property
    def stopping(self) -> bool:
        return self._stop_event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep unless stopped; True if stopped."""
        return self._stop_event.wait(seconds)

    def stop(self, timeout: float = 3.0) -> None:
        """Ask the thread to finish what it can within ``timeout`` and save its cursor."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)
        self.save(force=True)

    # ------------------------------------------------------------ cursor
    def commit(self, cursor: Cursor) -> None:
        self.committed = cursor
        self.save()

    def save(self, force: bool = False) -> None:
        if self.cursors is None:
            return
        now = time.monotonic()
        if not force and now - self._saved_at < SAVE_EVERY:
            return
        self._saved_at = now
        try:
            self.cursors.save(self.committed)
        except OSError as exc:
            log.warning("audit export %s: cannot save its position: %s", self.stats.name,
                        exc.strerror)

    def lag(self) -> int:
        """Bytes of the audit file after the committed cursor (0 if it rotated since)."""
        try:
            st = os.stat(self.audit_file)
        except OSError:
            return 0
        if st.st_ino != self.committed.inode:
            return st.st_size
        return max(0, st.st_size - self.committed.offset)

    def snapshot(self) -> ExportStats:
        self.stats.lag_bytes = self.lag()
        return ExportStats(**self.stats.__dict__)

    # ------------------------------------------------------------ the loop
    def run(self) -> None:
        try:
            self.loop()
        except Exception:  # a bug in an exporter must not go unseen; the trail is intact
            log.exception("audit export %s stopped", self.stats.name)
        finally:
            self.follower.close()
            self.close_destination()

    def loop(self) -> None:  # pragma: no cover - subclasses
        raise NotImplementedError

    def close_destination(self) -> None:
        """Release connections (subclasses)."""
