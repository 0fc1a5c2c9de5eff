""":class:`state.reviews.ReviewStore` on the shared PostgreSQL database.

Records, signatures and checks are the SQLite store's (the same class, only the storage
differs): a review written on one node is read, checked and exported by every node. A
record's ``prev`` digest is read and the record inserted under a per-session advisory
lock in one transaction, so two auditors reviewing the same session on two nodes still
make one chain.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from state.errors import StateError
from state.pg.db import Database
from state.reviews import ReviewError, ReviewStore, Signer


class PgReviewStore(ReviewStore):
    """Review records in PostgreSQL (see :class:`state.reviews.ReviewStore`)."""

    def __init__(self, db: Database, *, signer: Signer | None = None,
                 trusted: list[bytes] | None = None, signing_required: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        # the storage is the database: nothing of ReviewStore.__init__'s file applies
        self.db = db.acquire()
        self.signer = signer
        self.trusted = trusted
        self.signing_required = signing_required
        self._clock = clock

    def close(self) -> None:
        self.db.release()

    def _append(self, session: str,
                build: Callable[[str], tuple[str, str, str | None, str | None]]) -> int:
        try:
            with self.db.connection() as conn:
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('review:' || %s))",
                             (session,))
                row = conn.execute("SELECT digest FROM reviews WHERE session = %s "
                                   "ORDER BY id DESC LIMIT 1", (session,)).fetchone()
                payload, digest, sig, pub = build(str(row[0]) if row else "")
                new = conn.execute(
                    "INSERT INTO reviews (session, payload, digest, signature, public_key) "
                    "VALUES (%s,%s,%s,%s,%s) RETURNING id",
                    (session, payload, digest, sig, pub)).fetchone()
        except StateError as exc:
            raise ReviewError(f"cannot store the review: {exc}") from exc
        assert new is not None
        return int(new[0])

    def _rows(self, sessions: list[str]) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        try:
            for i in range(0, len(sessions), 500):
                out += self.db.query(
                    "SELECT id, session, payload, digest, signature, public_key FROM reviews "
                    "WHERE session = ANY(%s) ORDER BY session, id", (sessions[i:i + 500],))
        except StateError as exc:
            raise ReviewError(f"cannot read the review store: {exc}") from exc
        return out
