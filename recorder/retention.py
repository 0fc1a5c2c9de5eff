"""Retention: deleting recordings older than ``[recording] retention``, carefully.

:func:`prune` goes through the indexed sessions that started before the cutoff and
deletes a recording only when every one of these holds:

* the session is not under a legal hold (the caller passes the held ids);
* it ended (a live session is never touched);
* the recording is in its final storage (:meth:`Sink.stored`: a closed file; for S3 an
  object uploaded and confirmed, no longer in the spool);
* it verifies: hash chain, trailer, signature (required when a key is configured, by the
  signing key or one of ``trusted_keys``) and that it is the indexed session's own.

Anything else is kept and reported with the reason (a recording that fails verification
is evidence: it is never deleted by retention). A deleted recording's index row is
marked ``pruned`` (``sessions list`` shows it; ``verify --all`` accepts it), its
keyframe cache removed, and the object store's upload ledger told (``verify --all``
does not report it as lost). The caller audits each deletion (``on_pruned``).

Known limits: recordings the index does not list are not considered (``bastille
reindex`` first if the index was lost); a bucket with Object Lock refuses deletion
before its retention date (reported, kept); with S3 versioning the delete adds a delete
marker and older versions stay until a lifecycle rule removes them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from recorder import keyframes
from recorder.errors import SinkError
from recorder.index import SessionIndex
from recorder.settings import RecorderSettings
from recorder.signing import load_public_key
from recorder.sinks.base import Sink
from recorder.verify import Expected, check_binding, verify_recording


@dataclass(frozen=True)
class PruneDecision:
    """What retention did (or would do) with one session's recording."""

    session_id: str
    name: str
    user: str
    target: str
    start: float
    action: str  # "prune" (deleted, or would be with --dry-run) | "keep"
    reason: str
    size: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def trusted_keys(settings: RecorderSettings) -> list[bytes] | None:
    """The signing key's public half and the configured earlier keys (None: unsigned)."""
    paths: list[Path] = list(settings.trusted_keys)
    if settings.signing_key is not None:
        paths.insert(0, settings.signing_key)
    return [load_public_key(p) for p in paths] or None


def open_for_prune(settings: RecorderSettings) -> Sink:
    """A sink that can delete without disturbing a running gateway: the directory, or
    the object store with its write credentials and a read-only view of the spool."""
    if settings.storage is None:
        from recorder.sinks.file import FileSink

        return FileSink(settings.file_dir)
    from recorder.sinks.ledger import LEDGER_FILE, Ledger
    from recorder.sinks.registry import open_store
    from recorder.sinks.spooled import SpooledSink

    store = open_store(settings.storage, reading=False)
    return SpooledSink(store, settings.spool_dir, ledger=Ledger(settings.data_dir / LEDGER_FILE),
                       readonly=True)


def _keep(row: Any, reason: str) -> PruneDecision:
    return PruneDecision(row.id, row.name, row.user, row.target, row.start, "keep", reason)


def _judge(sink: Sink, row: Any, held: set[str], trusted: list[bytes] | None
           ) -> PruneDecision:
    if row.id in held:
        return _keep(row, "under a legal hold")
    if row.status == "live":
        return _keep(row, "the session is still running")
    if not sink.stored(row.name):
        return _keep(row, "not in its final storage yet (still in the spool, not finished, "
                     "or missing)")
    report = verify_recording(sink, row.name, trusted=trusted,
                              require_signature=trusted is not None)
    report = check_binding(report, Expected(row.id, row.user, row.target, row.start, row.name))
    if not report.ok:
        return _keep(row, f"does not verify ({report.status}: {report.message}); kept as "
                     "evidence")
    size = None
    with contextlib.suppress(SinkError):
        size = sink.size(row.name)
    return PruneDecision(row.id, row.name, row.user, row.target, row.start, "prune",
                         f"older than the retention ({report.status})", size)


def prune(settings: RecorderSettings, sink: Sink, index: SessionIndex, *, older_than: float,
          held: Iterable[str] = (), dry_run: bool = False, now: float | None = None,
          on_pruned: Callable[[PruneDecision], None] | None = None) -> list[PruneDecision]:
    """Delete (or with ``dry_run`` list) the recordings retention may delete; see the
    module docstring. Returns a decision for every session older than ``older_than``."""
    cutoff = (time.time() if now is None else now) - older_than
    trusted = trusted_keys(settings)
    held_ids = set(held)
    decisions = []
    for row in sorted(index.all_sessions(), key=lambda r: r.start):
        if row.start >= cutoff or row.status == "pruned":
            continue
        decision = _judge(sink, row, held_ids, trusted)
        if decision.action == "prune" and not dry_run:
            try:
                sink.delete(row.name)
            except SinkError as exc:
                decision = _keep(row, f"cannot delete: {exc}")
            else:
                index.set_status(row.id, "pruned")
                with contextlib.suppress(OSError):
                    keyframes.cache_path(settings.data_dir, row.id).unlink(missing_ok=True)
                if on_pruned is not None:
                    on_pruned(decision)
        decisions.append(decision)
    return decisions
