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

Interface: :class:`Bindings`; :class:`BindingStore` is its SQLite implementation (WAL,
mode 0600).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from state.files import open_sqlite

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


class Bindings(Protocol):
    """Keys bound to an IdP identity for a while."""

    def bind(self, public_data: bytes, user: str, groups: frozenset[str], subject: str,
             issuer: str, ttl: float) -> Binding: ...

    def lookup(self, public_data: bytes, user: str) -> Binding | None: ...

    def list(self, user: str | None = None) -> list[Binding]: ...

    def revoke(self, user: str) -> int: ...

    def close(self) -> None: ...


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
        self._conn = open_sqlite(
            path, timeout=5, schema=_SCHEMA, what="the single sign-on bindings database",
            lost="keys bound by single sign-on must sign in through the browser again")
        self._lock = threading.Lock()  # one connection, used from the loop and executors

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def bind(self, public_data: bytes, user: str, groups: frozenset[str], subject: str,
             issuer: str, ttl: float) -> Binding:
        """Bind a key to ``user`` for ``ttl`` seconds (replacing an older binding)."""
        now = self.clock()
        b = Binding(key_digest(public_data), user, groups, subject, issuer, now, now + ttl)
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO bindings VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (b.key_sha256, user, json.dumps(sorted(groups)), subject, issuer,
                        b.created, b.expires))
        return b

    def lookup(self, public_data: bytes, user: str) -> Binding | None:
        """The live binding of this key to ``user``, if any."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM bindings WHERE key_sha256 = ? AND user = ? "
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
        with self._lock:
            return [_row(r) for r in self._conn.execute(query + " ORDER BY user, created", args)]

    def revoke(self, user: str) -> int:
        """End every binding of ``user`` now; return how many were live."""
        with self._lock:
            live = self._conn.execute(
                "SELECT COUNT(*) FROM bindings WHERE user = ? AND expires > ?",
                (user, self.clock())).fetchone()[0]
            self._conn.execute("DELETE FROM bindings WHERE user = ?", (user,))
        return int(live)

    def purge_expired(self) -> int:
        """Delete expired rows; return how many."""
        with self._lock:
            return self._conn.execute("DELETE FROM bindings WHERE expires <= ?",
                              (self.clock(),)).rowcount


def _row(row: tuple[str, str, str, str, str, float, float]) -> Binding:
    return Binding(row[0], row[1], frozenset(json.loads(row[2])), row[3], row[4], row[5],
                   row[6])
