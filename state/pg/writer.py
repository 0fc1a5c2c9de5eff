"""An ordered, bounded queue of database writes applied by one thread, retried while the
database is unreachable: what a session does never waits for PostgreSQL.

Used by the session index (:mod:`state.pg.index`) and the live-session registry
(:mod:`state.pg.registry`). ``cap`` bounds memory during a long outage; beyond it a
write is refused (:class:`QueueFull`) and the caller logs it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from state.errors import StateError, StateUnavailable
from state.pg.db import Database

log = logging.getLogger("bastille.state.pg")

Conn = psycopg.Connection[tuple[Any, ...]]
Op = Callable[[Conn], None]


class QueueFull(StateError):
    """Too many writes are waiting for the database."""


class OrderedWriter:
    """Writes applied in order by a thread (see the module doc)."""

    def __init__(self, db: Database, name: str, cap: int) -> None:
        self.db = db
        self._q: queue.Queue[tuple[Op, float] | None] = queue.Queue(cap)
        self._idle = threading.Condition()
        self._pending = 0
        self._closed = False
        self.latencies: list[float] = []  # enqueue-to-commit seconds (benchmarks)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, op: Op) -> None:
        if self._closed:
            raise StateError("closed")
        with self._idle:
            self._pending += 1
        try:
            self._q.put_nowait((op, time.monotonic()))
        except queue.Full:
            self._done()
            raise QueueFull("the database has been unreachable too long; update "
                            "dropped") from None

    def _done(self) -> None:
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            op, enqueued = item
            self._apply(op)
            if len(self.latencies) < 200_000:
                self.latencies.append(time.monotonic() - enqueued)
            self._done()

    def _apply(self, op: Op) -> None:
        while True:
            try:
                with self.db.connection() as conn:
                    op(conn)
                return
            except StateUnavailable:
                if self._closed:
                    log.error("state: a write was lost at shutdown (database unreachable)")
                    return
                time.sleep(0.5)
            except StateError as exc:
                log.warning("state: write failed: %s", exc)
                return

    def flush(self, timeout: float) -> bool:
        """Wait until every write submitted so far is applied; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: float) -> None:
        self.flush(timeout)
        self._closed = True
        self._q.put(None)
        self._thread.join(5.0)
