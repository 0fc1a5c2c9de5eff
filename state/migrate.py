"""``bastille state migrate --from sqlite:DIR --to postgresql://...``: move an appliance's
state from its SQLite files into the shared PostgreSQL database.

What moves (each file is optional; a missing one counts zero):

=====================  ===========================================================
``approvals.sqlite3``  approval and access requests (ids kept), kill requests
``rdp_tokens.sqlite3`` RDP routing tokens and PINs (digests only)
``oidc_bindings...``   single sign-on key bindings
``reviews.sqlite3``    review records (payloads, signatures: byte for byte)
``recording_usage...`` bytes recorded per user per day (recording budgets)
``legal_holds...``     legal holds (sessions retention never deletes)
``index.sqlite3``      the session index (sessions, commands, screen and OCR text)
=====================  ===========================================================

Rate-limit counters live in memory and are not migrated. The SQLite files are opened
read-only and never changed.

Idempotent: a row already in the database (same id, digest, session...) is counted as
``present`` and not written again, so a second run writes nothing; a row whose key is
taken by *different* content is counted as a ``conflict`` and left alone (the run
reports it and exits non-zero). ``dry_run`` counts without writing. Sequences are moved
past the migrated ids so new requests never reuse one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from state.paths import DataDir
from state.pg.db import Database

REVIEWS = "reviews.sqlite3"


@dataclass
class Count:
    """What happened to one kind of row."""

    rows: int = 0
    new: int = 0
    present: int = 0
    conflicts: list[str] = field(default_factory=list)


Conn = psycopg.Connection[tuple[Any, ...]]


def _rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if not path.is_file():
        return
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        try:
            yield from db.execute(sql, params)
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return
            raise
    finally:
        db.close()


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    def norm(v: Any) -> Any:
        return round(float(v), 6) if isinstance(v, float) else v
    return tuple(map(norm, a)) == tuple(map(norm, b))


class Migration:
    """One run of the migration (see the module doc)."""

    def __init__(self, source: Path, db: Database, *, dry_run: bool) -> None:
        self.data = DataDir(source)
        self.db = db
        self.dry_run = dry_run
        self.counts: dict[str, Count] = {}

    def run(self) -> dict[str, Count]:
        with self.db.connection() as conn:
            self._requests(conn)
            self._simple(conn, "kill requests", self.data.approvals,
                         "SELECT session, requested_by, reason, created, done FROM kills",
                         "kills", ("session", "requested_by", "reason", "created", "done"),
                         ("session",))
            self._simple(conn, "RDP tokens", self.data.rdp_tokens,
                         "SELECT digest, kind, user, target, created, expires, used, groups "
                         "FROM tokens", "tokens",
                         ("digest", "kind", '"user"', "target", "created", "expires", "used",
                          "groups"), ("digest",))
            self._simple(conn, "SSO bindings", self.data.oidc_bindings,
                         "SELECT key_sha256, user, groups, subject, issuer, created, expires "
                         "FROM bindings", "bindings",
                         ("key_sha256", '"user"', "groups", "subject", "issuer", "created",
                          "expires"), ("key_sha256", '"user"'))
            self._simple(conn, "recording usage", self.data.recording_usage,
                         "SELECT user, day, bytes FROM usage", "recording_usage",
                         ('"user"', "day", "bytes"), ('"user"', "day"))
            self._simple(conn, "legal holds", self.data.legal_holds,
                         "SELECT session, by, reason, created FROM holds", "legal_holds",
                         ("session", "by_user", "reason", "created"), ("session",))
            self._reviews(conn)
            self._index(conn)
        return self.counts

    def _count(self, name: str) -> Count:
        return self.counts.setdefault(name, Count())

    def _put(self, conn: Conn, name: str, table: str, columns: tuple[str, ...],
             keys: tuple[str, ...], row: tuple[Any, ...], label: Callable[[], str]) -> bool:
        """Insert ``row`` unless its key exists; True if it is new."""
        count = self._count(name)
        count.rows += 1
        where = " AND ".join(f"{k} = %s" for k in keys)
        key_values = tuple(row[columns.index(k)] for k in keys)
        found = conn.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE {where}",
                             key_values).fetchone()
        if found is not None:
            if _same(tuple(found), row):
                count.present += 1
            else:
                count.conflicts.append(label())
            return False
        count.new += 1
        if not self.dry_run:
            marks = ", ".join(["%s"] * len(columns))
            conn.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", row)
        return True

    def _simple(self, conn: Conn, name: str, path: Path, sql: str, table: str,
                columns: tuple[str, ...], keys: tuple[str, ...]) -> None:
        self._count(name)
        for row in _rows(path, sql):
            self._put(conn, name, table, columns, keys, tuple(row),
                      lambda row=row: f"{table} {row[0]}")  # type: ignore[misc]

    def _requests(self, conn: Conn) -> None:
        columns = ("id", "created", "expires", '"user"', "target", "session", "command",
                   "rule", "reason", "status", "decided_by", "decided_at", "decision_reason",
                   "kind", "grant_seconds")
        self._count("approval requests")
        top = 0
        for row in _rows(self.data.approvals,
                         "SELECT id, created, expires, user, target, session, command, rule, "
                         "reason, status, decided_by, decided_at, decision_reason, kind, "
                         "grant_seconds FROM requests ORDER BY id"):
            top = max(top, int(row[0]))
            self._put(conn, "approval requests", "requests", columns, ("id",), tuple(row),
                      lambda row=row: f"request #{row[0]}")  # type: ignore[misc]
        if top and not self.dry_run:
            conn.execute("SELECT setval(pg_get_serial_sequence('requests', 'id'), "
                         "GREATEST(%s, (SELECT COALESCE(MAX(id), 1) FROM requests)))", (top,))

    def _reviews(self, conn: Conn) -> None:
        name = "review records"
        count = self._count(name)
        for session, payload, digest, sig, pub in _rows(
                self.data.root / REVIEWS, "SELECT session, payload, digest, signature, "
                "public_key FROM reviews ORDER BY id"):
            count.rows += 1
            found = conn.execute("SELECT 1 FROM reviews WHERE session = %s AND digest = %s",
                                 (session, digest)).fetchone()
            if found is not None:
                count.present += 1
                continue
            count.new += 1
            if not self.dry_run:
                conn.execute("INSERT INTO reviews (session, payload, digest, signature, "
                             "public_key) VALUES (%s,%s,%s,%s,%s)",
                             (session, payload, digest, sig, pub))

    def _index(self, conn: Conn) -> None:
        columns = ("id", '"user"', "target", "protocol", "kind", "client", "start", '"end"',
                   "exit_status", "exit_signal", "status", "commands", "policy_events", "name",
                   "signature", "command", "output_bytes", "screen_indexed")
        path = self.data.index
        self._count("indexed sessions")
        lines = self._count("index commands and screen lines")
        for row in _rows(path, "SELECT id, user, target, protocol, kind, client, start, end, "
                         "exit_status, exit_signal, status, commands, policy_events, name, "
                         "signature, command, output_bytes, screen_indexed FROM sessions "
                         "ORDER BY start, id"):
            values = (*row[:17], bool(row[17]))
            if not self._put(conn, "indexed sessions", "sessions", columns, ("id",), values,
                             lambda row=row: f"session {row[0]}"):  # type: ignore[misc]
                continue
            sid = row[0]
            for offset, text, source in _rows(path, "SELECT offset, text, source FROM "
                                              "commands WHERE session = ? "
                                              "ORDER BY offset, rowid", (sid,)):
                lines.rows += 1
                lines.new += 1
                if not self.dry_run:
                    conn.execute('INSERT INTO commands (session, "offset", text, source) '
                                 "VALUES (%s,%s,%s,%s)", (sid, offset, text, source))
            for text, offset, kind in _rows(path, "SELECT text, offset, kind FROM content "
                                            "WHERE session = ? ORDER BY rowid", (sid,)):
                lines.rows += 1
                lines.new += 1
                if not self.dry_run:
                    conn.execute('INSERT INTO content (session, "offset", kind, text) '
                                 "VALUES (%s,%s,%s,%s)", (sid, offset, kind, text))


def migrate(source: Path, db: Database, *, dry_run: bool = False) -> dict[str, Count]:
    """Copy the SQLite state under ``source`` into ``db``; counts per kind of row. The
    whole copy is one transaction: it lands entirely or not at all."""
    return Migration(source, db, dry_run=dry_run).run()
