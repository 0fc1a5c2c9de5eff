""":class:`state.registry.SessionRegistry` on the shared PostgreSQL database.

Tables: ``nodes`` (node, pid, started, heartbeat on the database's clock) and
``live_sessions`` (session, node, user, target, started). Registrations go through an
ordered writer (a session never waits for the database); the lease is renewed every
``heartbeat`` seconds by :meth:`PgRegistry.keep_alive`, which also looks for nodes whose
heartbeat is older than ``lease``. Taking over a lost node is one transaction that locks
the node's row (``FOR UPDATE SKIP LOCKED``: one survivor does it, the others skip it):

* its live sessions are marked ``ended`` in the index, ``end`` = its last heartbeat,
  ``reaped_by`` = the node that noticed (the lost node re-reads those recordings when it
  starts again, see ``PgIndex.own_live``);
* its pending approval requests expire (``gateway lost``), never approved;
* its registrations, the bytes it relayed for watchers and its lease row are deleted,
  and ``NOTIFY bastille 'node:NAME'``.

A node judges the others only after it has itself renewed its lease for a whole
``lease`` without failing: after a database outage every node could not renew, and
none declares another lost before all had a lease's time to come back. A node that was
only partitioned (its lease lapsed but it kept running) registers its live sessions
again at its next heartbeat. Known limit: the index rows of those sessions
stay ``ended`` until they close (then they are rewritten with the real end).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any

from state.errors import StateError
from state.pg.db import NOW, Database
from state.pg.writer import Conn, OrderedWriter
from state.registry import LiveEntry, NodeInfo, OnLost

log = logging.getLogger("bastille.state.pg")

QUEUE_CAP = 10_000


class PgRegistry:
    """Live sessions and node leases in PostgreSQL (see the module doc)."""

    def __init__(self, db: Database) -> None:
        self.db = db.acquire()
        self.node = db.node
        self.lease = db.settings.lease
        self.heartbeat = db.settings.heartbeat
        self._mine: dict[str, tuple[str, str, float]] = {}
        self._lock = threading.Lock()
        self.writer = OrderedWriter(db, "bastille-registry-writer", QUEUE_CAP)
        self._first = True
        self._alive_since: float | None = None  # first beat after the last failed one

    def close(self) -> None:
        self.writer.close(3.0)
        self.db.release()

    # ------------------------------------------------------------------ this node
    def started(self, session: str, user: str, target: str) -> None:
        now = time.time()
        with self._lock:
            self._mine[session] = (user, target, now)

        def op(conn: Conn) -> None:
            conn.execute(
                'INSERT INTO live_sessions (session, node, "user", target, started) '
                "VALUES (%s,%s,%s,%s,%s) ON CONFLICT (session) DO UPDATE SET node = "
                "EXCLUDED.node", (session, self.node, user, target, now))

        self._submit(op)

    def ended(self, session: str) -> None:
        with self._lock:
            self._mine.pop(session, None)
        self._submit(lambda conn: _delete(conn, session))

    def _submit(self, op: Any) -> None:
        try:
            self.writer.submit(op)
        except StateError as exc:
            log.warning("state: live-session registry update dropped: %s", exc)

    # ------------------------------------------------------------------ reading
    def where(self, session: str) -> str | None:
        rows = self.db.query("SELECT node FROM live_sessions WHERE session = %s", (session,))
        return str(rows[0][0]) if rows else None

    def entries(self) -> list[LiveEntry]:
        rows = self.db.query('SELECT session, node, "user", target, started FROM live_sessions '
                             "ORDER BY started")
        return [LiveEntry(str(a), str(b), str(c), str(d), float(e)) for a, b, c, d, e in rows]

    def nodes(self) -> list[NodeInfo]:
        rows = self.db.query(f"SELECT node, pid, started, {NOW} - heartbeat FROM nodes "
                             "ORDER BY node")
        return [NodeInfo(str(a), int(b), float(c), float(d)) for a, b, c, d in rows]

    # ------------------------------------------------------------------ leases
    async def keep_alive(self, on_lost: OnLost) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                lost = await loop.run_in_executor(None, self.beat)
            except StateError as exc:
                log.warning("state: cannot renew this node's lease: %s", exc)
                self._alive_since = None  # the others could not renew theirs either
                lost = []
            for node, sessions in lost:
                on_lost(node, sessions)
            await asyncio.sleep(self.heartbeat)

    def beat(self) -> list[tuple[str, list[tuple[str, str, str]]]]:
        """Renew the lease once and take over lost nodes; what was taken over."""
        with self.db.connection() as conn:
            row = conn.execute(
                f"INSERT INTO nodes (node, pid, started, heartbeat) VALUES (%s,%s,{NOW},{NOW}) "
                f"ON CONFLICT (node) DO UPDATE SET heartbeat = {NOW}, pid = EXCLUDED.pid "
                "RETURNING (xmax = 0)", (self.node, os.getpid())).fetchone()
            inserted = bool(row and row[0])
            if self._first:  # a previous run of this node left registrations: not live
                conn.execute("DELETE FROM live_sessions WHERE node = %s", (self.node,))
            elif inserted:  # this node was declared lost while it ran: register again
                with self._lock:
                    mine = dict(self._mine)
                for session, (user, target, started) in mine.items():
                    conn.execute(
                        'INSERT INTO live_sessions (session, node, "user", target, started) '
                        "VALUES (%s,%s,%s,%s,%s) ON CONFLICT (session) DO NOTHING",
                        (session, self.node, user, target, started))
                log.warning("state: this node's lease had lapsed; its sessions are "
                            "registered again")
        self._first = False
        now = time.monotonic()
        if self._alive_since is None:
            self._alive_since = now
        if now - self._alive_since < self.lease:
            # this node has not been in touch for a whole lease yet (it started, or the
            # database was away): the others get that long to renew before it judges them
            return []
        lost = []
        for node in self._expired():
            taken = self._take_over(node)
            if taken is not None:
                lost.append((node, taken))
        return lost

    def _expired(self) -> list[str]:
        rows = self.db.query(f"SELECT node FROM nodes WHERE node <> %s AND heartbeat < "
                             f"{NOW} - %s", (self.node, self.lease))
        return [str(r[0]) for r in rows]

    def _take_over(self, node: str) -> list[tuple[str, str, str]] | None:
        with self.db.connection() as conn:
            row = conn.execute(
                f"SELECT heartbeat FROM nodes WHERE node = %s AND heartbeat < {NOW} - %s "
                "FOR UPDATE SKIP LOCKED", (node, self.lease)).fetchone()
            if row is None:
                return None  # renewed meanwhile, or another node is taking it over
            last = float(row[0])
            ended = conn.execute(
                "UPDATE sessions SET status = 'ended', \"end\" = %s, reaped_by = %s "
                "WHERE node = %s AND status = 'live' RETURNING id, \"user\", target",
                (last, self.node, node)).fetchall()
            conn.execute("DELETE FROM live_tail WHERE session IN (SELECT session FROM "
                         "live_sessions WHERE node = %s)", (node,))
            conn.execute("DELETE FROM live_sessions WHERE node = %s", (node,))
            conn.execute(
                "UPDATE requests SET status = 'expired', decided_at = %s, decision_reason = "
                "%s WHERE status = 'pending' AND node = %s",
                (time.time(), f"gateway {node} lost", node))
            conn.execute("DELETE FROM nodes WHERE node = %s", (node,))
            self.db.notify(conn, "node", node)
        log.warning("state: node %s missed its lease; %d live session(s) marked ended",
                    node, len(ended))
        return [(str(a), str(b or ""), str(c or "")) for a, b, c in ended]

    def leave(self) -> None:
        """At a clean shutdown: give the lease back (nothing left to take over)."""
        with self.db.connection() as conn:
            conn.execute("DELETE FROM live_sessions WHERE node = %s", (self.node,))
            conn.execute("DELETE FROM nodes WHERE node = %s", (self.node,))


def _delete(conn: Conn, session: str) -> None:
    conn.execute("DELETE FROM live_sessions WHERE session = %s", (session,))
