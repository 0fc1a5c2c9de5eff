""":class:`state.bindings.Bindings` on the shared PostgreSQL database: a key bound by a
single sign-on on one node logs in on every node; ``bastille oidc revoke`` on any node
ends it everywhere (every lookup reads the database)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from state.bindings import Binding, key_digest
from state.pg.db import Database

_COLUMNS = 'key_sha256, "user", groups, subject, issuer, created, expires'


def _binding(row: tuple[Any, ...]) -> Binding:
    return Binding(str(row[0]), str(row[1]), frozenset(json.loads(row[2])), str(row[3]),
                   str(row[4]), float(row[5]), float(row[6]))


class PgBindings:
    """Key bindings with expiry and revocation in PostgreSQL (``clock`` injectable)."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db.acquire()
        self.clock = clock

    def close(self) -> None:
        self.db.release()

    def bind(self, public_data: bytes, user: str, groups: frozenset[str], subject: str,
             issuer: str, ttl: float) -> Binding:
        now = self.clock()
        b = Binding(key_digest(public_data), user, groups, subject, issuer, now, now + ttl)
        self.db.execute(
            f"INSERT INTO bindings ({_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s) "
            'ON CONFLICT (key_sha256, "user") DO UPDATE SET groups = EXCLUDED.groups, '
            "subject = EXCLUDED.subject, issuer = EXCLUDED.issuer, "
            "created = EXCLUDED.created, expires = EXCLUDED.expires",
            (b.key_sha256, user, json.dumps(sorted(groups)), subject, issuer, b.created,
             b.expires))
        return b

    def lookup(self, public_data: bytes, user: str) -> Binding | None:
        rows = self.db.query(
            f'SELECT {_COLUMNS} FROM bindings WHERE key_sha256 = %s AND "user" = %s '
            "AND expires > %s", (key_digest(public_data), user, self.clock()))
        return _binding(rows[0]) if rows else None

    def list(self, user: str | None = None) -> list[Binding]:
        sql = f"SELECT {_COLUMNS} FROM bindings WHERE expires > %s"
        params: tuple[Any, ...] = (self.clock(),)
        if user is not None:
            sql += ' AND "user" = %s'
            params += (user,)
        return [_binding(r) for r in self.db.query(sql + ' ORDER BY "user", created', params)]

    def revoke(self, user: str) -> int:
        with self.db.connection() as conn:
            row = conn.execute('SELECT COUNT(*) FROM bindings WHERE "user" = %s AND '
                               "expires > %s", (user, self.clock())).fetchone()
            conn.execute('DELETE FROM bindings WHERE "user" = %s', (user,))
        return int(row[0]) if row else 0

    def purge_expired(self) -> int:
        return self.db.execute("DELETE FROM bindings WHERE expires <= %s", (self.clock(),))
