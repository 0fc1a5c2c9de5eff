"""Watching a live session held by another node: its recording's bytes, relayed through
the shared database while someone watches.

A live recording is in the holding node's spool until the session ends (then in S3), so
another node cannot read it from the bucket. The watcher (the player on any node) asks
with :meth:`LiveTail.watch` (a lease of ``WATCH_SECONDS``, renewed at every refresh,
and ``NOTIFY bastille 'watch:SESSION'``); the holding node
(:func:`gateway.core.live.publish_watched`) then appends what its recording gained to
``live_tail`` every ``poll_interval``, in order, from offset 0; the watcher reads the
bytes (:meth:`LiveTail.read`) and replays them like a growing file. When the session
ends its rows are deleted: the recording is then read from S3 as usual.

Bounded: at most ``MAX_BYTES`` of one recording are relayed (a watcher of a bigger
session sees its first ``MAX_BYTES`` until it ends); only sessions someone watches are
relayed at all. The bytes are the recording's own (masked, signed chunks): nothing a
recording would not hold reaches the database.
"""

from __future__ import annotations

from state.pg.db import NOW, Database
from state.pg.wake import Wakeups

WATCH_SECONDS = 30.0  # a watch lapses unless renewed (the player renews every 1.5 s)
MAX_BYTES = 64 * 1024 * 1024  # relayed per live session
CHUNK = 4 * 1024 * 1024  # appended per row at most


class LiveTail:
    """Relayed bytes of watched live sessions (see the module doc)."""

    def __init__(self, db: Database) -> None:
        self.db = db.acquire()
        self.poll_interval = db.settings.poll_interval
        self.max_bytes = MAX_BYTES
        self._wake: Wakeups | None = None

    def close(self) -> None:
        if self._wake is not None:
            self._wake.close()
        self.db.release()

    async def watch_signal(self, timeout: float) -> None:  # noqa: ASYNC109 - a poll bound
        """Return when a watch may have started (notified), or after ``timeout``."""
        if self._wake is None:
            self._wake = Wakeups(self.db.listener)
        await self._wake.wait("watch:", timeout)

    # ------------------------------------------------------------------ watcher side
    def watch(self, session: str, seconds: float = WATCH_SECONDS) -> None:
        """Ask the holding node to relay ``session`` (or keep relaying it)."""
        with self.db.connection() as conn:
            conn.execute(f"INSERT INTO watches (session, until) VALUES (%s, {NOW} + %s) "
                         "ON CONFLICT (session) DO UPDATE SET until = EXCLUDED.until",
                         (session, seconds))
            self.db.notify(conn, "watch", session)

    def read(self, session: str) -> bytes:
        """The relayed prefix of the session's recording (empty: nothing yet)."""
        rows = self.db.query('SELECT "offset", data FROM live_tail WHERE session = %s '
                             'ORDER BY "offset"', (session,))
        out = bytearray()
        for offset, data in rows:
            if int(offset) != len(out):
                break  # a gap (should not happen): the prefix is what counts
            out += bytes(data)
        return bytes(out)

    # ------------------------------------------------------------------ holder side
    def watched(self, sessions: list[str]) -> list[str]:
        """Which of ``sessions`` someone watches now."""
        if not sessions:
            return []
        rows = self.db.query(f"SELECT session FROM watches WHERE session = ANY(%s) AND "
                             f"until > {NOW}", (sessions,))
        return [str(r[0]) for r in rows]

    def relayed(self, session: str) -> int:
        """How many bytes of ``session`` are relayed already."""
        rows = self.db.query('SELECT COALESCE(MAX("offset" + length(data)), 0) FROM live_tail '
                             "WHERE session = %s", (session,))
        return int(rows[0][0]) if rows else 0

    def append(self, session: str, offset: int, data: bytes) -> None:
        with self.db.connection() as conn:
            for i in range(0, len(data), CHUNK):
                conn.execute('INSERT INTO live_tail (session, "offset", data) VALUES '
                             "(%s, %s, %s) ON CONFLICT DO NOTHING",
                             (session, offset + i, data[i:i + CHUNK]))

    def forget(self, session: str) -> None:
        """The session ended (its recording is in S3 now): drop what was relayed."""
        with self.db.connection() as conn:
            conn.execute("DELETE FROM live_tail WHERE session = %s", (session,))
            conn.execute("DELETE FROM watches WHERE session = %s", (session,))
