"""Key-to-identity bindings: after one single sign-on, the SSH key the client offered in
that connection logs the same user in without a browser until the binding expires.

Stored in SQLite (``DATA_DIR/oidc_bindings.sqlite3``) so the CLI can list and revoke
bindings while the gateway runs: every lookup reads the database, so a revocation takes
effect on the next authentication attempt. Keys are stored as the SHA-256 of the public
key blob (the public key itself is not a secret, but nothing needs it).

Known limits: the key offered before keyboard-interactive login is bound without a proof
of possession (OpenSSH only signs after the server accepts the key); anyone using it
later must still sign with its private key, and it only ever logs in as the user who
completed the IdP login.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bindings (
    key_sha256 TEXT NOT NULL,
    user       TEXT NOT NULL,
    groups     TEXT NOT NULL,   -- JSON list of bastille groups at login time
    subject    TEXT NOT NULL,
    issuer     TEXT NOT NULL,
    created    REAL NOT NULL,
    expires    REAL NOT NULL,
    PRIMARY KEY (key_sha256, user)
)
"""


@dataclass(frozen=True)
class Binding:
    """One live binding."""

    key_sha256: str
    user: str
    groups: frozenset[str]
    subject: str
    issuer: str
    created: float
    expires: float


def key_digest(public_data: bytes) -> str:
    """The stored form of an SSH public key blob."""
    return hashlib.sha256(public_data).hexdigest()


class BindingStore:
    """SQLite store of key bindings with expiry and revocation.

    Args:
        path: the database file (created with mode 0600).
        clock: seconds since the epoch (injected in tests).
    """

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute(_SCHEMA)
        path.chmod(0o600)

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=5)

    def bind(self, public_data: bytes, user: str, groups: frozenset[str], subject: str,
             issuer: str, ttl: float) -> Binding:
        """Bind a key to ``user`` for ``ttl`` seconds (replacing an older binding)."""
        now = self.clock()
        b = Binding(key_digest(public_data), user, groups, subject, issuer, now, now + ttl)
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO bindings VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (b.key_sha256, user, json.dumps(sorted(groups)), subject, issuer,
                        b.created, b.expires))
        return b

    def lookup(self, public_data: bytes, user: str) -> Binding | None:
        """The live binding of this key to ``user``, if any."""
        with self._db() as db:
            row = db.execute("SELECT * FROM bindings WHERE key_sha256 = ? AND user = ? "
                             "AND expires > ?",
                             (key_digest(public_data), user, self.clock())).fetchone()
        return _row(row) if row else None

    def list(self, user: str | None = None) -> list[Binding]:
        """Live bindings, of one user or all."""
        query = "SELECT * FROM bindings WHERE expires > ?"
        args: tuple[object, ...] = (self.clock(),)
        if user is not None:
            query += " AND user = ?"
            args += (user,)
        with self._db() as db:
            return [_row(r) for r in db.execute(query + " ORDER BY user, created", args)]

    def revoke(self, user: str) -> int:
        """End every binding of ``user`` now; return how many were live."""
        with self._db() as db:
            live = db.execute("SELECT COUNT(*) FROM bindings WHERE user = ? AND expires > ?",
                              (user, self.clock())).fetchone()[0]
            db.execute("DELETE FROM bindings WHERE user = ?", (user,))
        return int(live)

    def purge_expired(self) -> int:
        """Delete expired rows; return how many."""
        with self._db() as db:
            return db.execute("DELETE FROM bindings WHERE expires <= ?",
                              (self.clock(),)).rowcount


def _row(row: tuple[str, str, str, str, str, float, float]) -> Binding:
    return Binding(row[0], row[1], frozenset(json.loads(row[2])), row[3], row[4], row[5],
                   row[6])
