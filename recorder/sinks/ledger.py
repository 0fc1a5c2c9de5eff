"""The upload ledger: every recording a spooled sink confirmed in its store.

Before a spool copy is deleted, the object is confirmed (HEAD: same size, and the tag
the store must report for those bytes) and one JSON line is appended here, fsynced::

    {"name": "2026/11/24/<id>.bstl", "size": 123, "etag": "...", "sha256": "...",
     "location": "s3://bucket/prefix", "confirmed_at": 1764000000.0}

So the loss of an object that left the spool (a bucket emptied or recreated, an object
deleted) is detectable: :func:`lost` compares the ledger with what the store lists, and
``bastille verify --all`` reports each one. The file is append-only (0600, under the
data directory); several processes may append (one ``write`` per line, ``O_APPEND``).

Objects deleted on purpose by ``bastille prune`` get a line ``{"name": ..., "location":
..., "deleted_at": ...}`` (:meth:`Ledger.forget`), after which they are no longer
expected. Known limits: objects removed another way (a bucket lifecycle rule) are
reported; delete their lines (or the file) after such a clean-up. A malformed line is
skipped (and counted in :attr:`Ledger.bad_lines`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from recorder.errors import SinkError
from recorder.sinks.base import LostRecording, describe_os_error

log = logging.getLogger(__name__)

LEDGER_FILE = "storage-ledger.jsonl"


@dataclass(frozen=True)
class LedgerEntry:
    name: str
    size: int
    etag: str
    sha256: str
    location: str
    confirmed_at: float


class Ledger:
    """Append-only record of confirmed uploads.

    Args:
        path: the ledger file (created 0600 on the first append).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.bad_lines = 0
        self._lock = threading.Lock()

    def forget(self, name: str, location: str) -> None:
        """Note that ``name`` was deleted on purpose (retention): no longer expected."""
        self._append(json.dumps({"name": name, "location": location,
                                 "deleted_at": time.time()}, sort_keys=True))

    def record(self, entry: LedgerEntry) -> None:
        """Append one confirmed upload, durably (raises SinkError on I/O errors)."""
        self._append(json.dumps(
            {
                "name": entry.name,
                "size": entry.size,
                "etag": entry.etag,
                "sha256": entry.sha256,
                "location": entry.location,
                "confirmed_at": entry.confirmed_at,
            },
            sort_keys=True,
        ))

    def _append(self, line: str) -> None:
        data = (line + "\n").encode()
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise SinkError(
                    f"cannot append to the upload ledger {self.path}: {describe_os_error(exc)}"
                ) from exc

    def entries(self, location: str | None = None) -> dict[str, LedgerEntry]:
        """The latest line of every name (only those of ``location`` when given)."""
        out: dict[str, LedgerEntry] = {}
        bad = 0
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return out
        except OSError as exc:
            raise SinkError(
                f"cannot read the upload ledger {self.path}: {describe_os_error(exc)}"
            ) from exc
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                if raw.get("deleted_at") is not None:
                    if location is None or raw.get("location") == location:
                        out.pop(str(raw["name"]), None)
                    continue
                e = LedgerEntry(
                    name=str(raw["name"]),
                    size=int(raw["size"]),
                    etag=str(raw.get("etag", "")),
                    sha256=str(raw.get("sha256", "")),
                    location=str(raw.get("location", "")),
                    confirmed_at=float(raw.get("confirmed_at", 0.0)),
                )
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            if location is None or e.location == location:
                out[e.name] = e
        self.bad_lines = bad
        return out


def lost(
    ledger: dict[str, LedgerEntry], stored: Iterable[tuple[str, int]]
) -> list[LostRecording]:
    """Ledger entries the store does not hold (or holds with another size).

    Args:
        ledger: :meth:`Ledger.entries` of one location.
        stored: (name, size) of every object the store lists.
    """
    sizes = dict(stored)
    out = []
    for name, e in sorted(ledger.items()):
        found = sizes.get(name)
        if found is None or found != e.size:
            out.append(LostRecording(name, e.size, e.sha256, e.confirmed_at, found))
    return out


def now() -> float:
    return time.time()
