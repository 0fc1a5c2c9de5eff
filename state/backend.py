"""Open the stores of an appliance: SQLite files in the data directory (the default) or
one shared PostgreSQL database (``[state] url``, several gateways).

Every consumer (the gateway, its RDP workers, the CLI, the player) opens its stores
here, so the choice is made once::

    backend = StateBackend(config.state, config.data_dir)
    approvals = backend.approvals()

The SQLite classes and the PostgreSQL ones implement the same protocols
(:class:`state.approvals.Approvals`, :class:`state.tokens.Tokens`,
:class:`state.bindings.Bindings`, :class:`state.ratelimit.FailureCounter`,
:class:`state.usage.RecordingUsage`, :class:`state.reviews.ReviewStore`,
:class:`state.holds.LegalHolds`,
:class:`recorder.index.SessionIndex`, :class:`state.registry.SessionRegistry`). psycopg is
imported only when a database is configured.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from state.approvals import Approvals, ApprovalStore
from state.bindings import Bindings, BindingStore
from state.holds import HoldStore, LegalHolds
from state.paths import DataDir
from state.ratelimit import FailureCounter, FailureLimiter
from state.registry import LocalRegistry, SessionRegistry
from state.reviews import ReviewStore
from state.settings import StateSettings
from state.tokens import Tokens, TokenStore
from state.usage import RecordingUsage, UsageStore

if TYPE_CHECKING:
    from recorder.index import SessionIndex
    from state.pg.db import Database
    from state.pg.livetail import LiveTail

REVIEWS = "reviews.sqlite3"


class StateBackend:
    """Opens each store on the configured backend (see the module doc).

    Args:
        settings: ``[state]``.
        data_dir: the data directory (SQLite files).
        workers: SSH worker processes of this gateway (``[gateway] workers``); with
            SQLite and more than one, they count failed logins in one file.
    """

    def __init__(self, settings: StateSettings, data_dir: Path, *, workers: int = 1) -> None:
        self.settings = settings
        self.data = DataDir(Path(data_dir))
        self.workers = workers

    @property
    def shared(self) -> bool:
        return self.settings.shared

    def _db(self) -> Database:
        from state.pg.db import connect

        return connect(self.settings)

    def _pg(self, make: Callable[[Database], Any]) -> Any:
        db = self._db()
        try:
            return make(db)
        finally:
            db.release()  # the store holds its own reference

    def check(self) -> str | None:
        """Why the configured backend cannot be used (the database unreachable, the
        pg_trgm extension missing), or None. Creates nothing."""
        if not self.shared:
            return None
        from state.pg.db import probe

        return probe(self.settings)

    def approvals(self, *, clock: Callable[[], float] = time.time) -> Approvals:
        if not self.shared:
            return ApprovalStore(self.data.approvals, clock=clock)
        from state.pg.approvals import PgApprovals

        store: Approvals = self._pg(lambda db: PgApprovals(db, clock=clock))
        return store

    def tokens(self) -> Tokens:
        if not self.shared:
            return TokenStore(self.data.rdp_tokens)
        from state.pg.tokens import PgTokens

        store: Tokens = self._pg(PgTokens)
        return store

    def bindings(self) -> Bindings:
        if not self.shared:
            return BindingStore(self.data.oidc_bindings)
        from state.pg.bindings import PgBindings

        store: Bindings = self._pg(PgBindings)
        return store

    def failures(self, limit: int, window: float, *,
                 source_limit: int | None = None) -> FailureCounter:
        """Failed-login counters: ``limit`` per (source, user), ``source_limit`` per
        source (see :mod:`state.ratelimit`). With SQLite: in this process's memory, or,
        with several SSH workers, in a file they share (:mod:`state.failures`)."""
        if not self.shared and self.workers > 1:
            from state.failures import SharedFailureLimiter

            return SharedFailureLimiter(self.data.login_failures, limit, window,
                                        source_limit=source_limit)
        if not self.shared:
            return FailureLimiter(limit, window, source_limit=source_limit)
        from state.pg.ratelimit import PgFailureLimiter

        store: FailureCounter = self._pg(
            lambda db: PgFailureLimiter(db, limit, window, source_limit=source_limit))
        return store

    def usage(self) -> RecordingUsage:
        """Bytes recorded per user per day (recording budgets)."""
        if not self.shared:
            return UsageStore(self.data.recording_usage)
        from state.pg.usage import PgUsage

        store: RecordingUsage = self._pg(PgUsage)
        return store

    def holds(self) -> LegalHolds:
        """Legal holds (sessions ``bastille prune`` never deletes)."""
        if not self.shared:
            return HoldStore(self.data.legal_holds)
        from state.pg.holds import PgHolds

        store: LegalHolds = self._pg(PgHolds)
        return store

    def reviews(self, **kwargs: Any) -> ReviewStore:
        """The review store (``signer``, ``trusted``, ``signing_required``, ``clock``)."""
        if not self.shared:
            return ReviewStore(self.data.root / REVIEWS, **kwargs)
        from state.pg.reviews import PgReviewStore

        store: ReviewStore = self._pg(lambda db: PgReviewStore(db, **kwargs))
        return store

    def index_opener(self) -> Callable[[], SessionIndex] | None:
        """What ``RecorderSettings.index_opener`` gets: None for the SQLite file."""
        if not self.shared:
            return None
        return self._open_index

    def _open_index(self) -> SessionIndex:
        from state.pg.index import PgIndex

        index: SessionIndex = self._pg(PgIndex)
        return index

    def live_tail(self) -> LiveTail | None:
        """The relay of watched live sessions between nodes; None with SQLite (one node
        reads its own live recordings)."""
        if not self.shared:
            return None
        from state.pg.livetail import LiveTail

        tail: LiveTail = self._pg(LiveTail)
        return tail

    def registry(self) -> SessionRegistry:
        if not self.shared:
            return LocalRegistry(self.settings.node)
        from state.pg.registry import PgRegistry

        registry: SessionRegistry = self._pg(PgRegistry)
        return registry
