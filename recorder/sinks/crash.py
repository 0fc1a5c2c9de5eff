"""Crash recovery of spooled recordings: finishing an entry its process never closed.

The spooled sink adopts the entries of processes that died (:meth:`Spool.adopt
<recorder.sinks.spool.Spool.adopt>`, at start and every few seconds); each one not
closed by its process is given a signed recovery trailer through the sink's
:class:`~recorder.sinks.base.CrashRecovery` (cut after its last intact chunk, the
trailer appended: :meth:`Spool.rewrite_tail <recorder.sinks.spool.Spool.rewrite_tail>`),
marked finished (so it is uploaded) and reported.

Known limit: an entry whose start was released from the spool under disk pressure
(``punched``) cannot be read from its first chunk, and its parts cannot be read back
from the store before the upload is complete; it is finished as it was left (``verify``
says truncated) and reported as ``unrecovered`` with that reason.
"""

from __future__ import annotations

import logging

from recorder.errors import SinkError
from recorder.sinks.base import CrashRecovery
from recorder.sinks.spool import Spool, SpoolEntry

log = logging.getLogger(__name__)


class EntrySource:
    """The spooled bytes of an entry this process owns, for the format reader."""

    def __init__(self, entry: SpoolEntry) -> None:
        self._entry = entry

    def size(self) -> int:
        return self._entry.size

    def read(self, offset: int, length: int) -> bytes:
        return self._entry.read(offset, length)


def finish_spool_entry(spool: Spool, entry: SpoolEntry, recovery: CrashRecovery | None) -> None:
    """Recovery trailer (when possible), then finished and reported (see module doc).

    Raises:
        SinkError: the entry cannot be marked finished (it stays for the next attempt).
    """
    outcome, detail = "unrecovered", ""
    if recovery is None:
        detail = "no crash recovery configured"
    elif entry.punched:
        detail = (
            f"its first {entry.punched} bytes had been uploaded and released from the spool "
            "(disk pressure), so its recovery trailer cannot be computed; it is uploaded as "
            "it was left"
        )
    else:
        try:
            tail = recovery.tail(entry.name, EntrySource(entry))
        except Exception as exc:  # a bad recording must not stop the others
            log.exception("recording %s: computing its recovery trailer failed", entry.name)
            tail, detail = None, f"its recovery trailer could not be computed: {exc}"
        if tail is not None:
            try:
                spool.rewrite_tail(entry, *tail)
                outcome = "recovered"
            except SinkError as exc:
                log.error("recording %s: %s", entry.name, exc)
                detail = str(exc)
    if outcome != "recovered" and detail:
        log.warning("recording %s was left unfinished by a process that died: %s",
                    entry.name, detail)
    spool.finish(entry)
    if recovery is not None:
        recovery.finished(entry.name, outcome, detail)
