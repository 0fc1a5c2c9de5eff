"""One-time routing tokens and one-time PINs for RDP logins.

``bastille rdp-file alice web1`` issues a routing token: a random string written into the
``.rdp`` file's ``loadbalanceinfo``; the client sends it in its first packet (X.224
Connection Request), the RDP worker consumes it there and routes the connection to the
target it was issued for. ``bastille rdp-pin alice`` issues a one-time PIN that alice may
type instead of her bastion password.

Only SHA-256 digests of tokens and PINs are stored (``DATA_DIR/rdp_tokens.sqlite3``,
mode 0600), each with its user, target, expiry and a used flag: a token works once, until
it expires, and only for the user it was issued to. The file is shared by the CLI and the
RDP worker processes; SQLite serialises concurrent consumers, so a token replayed in
parallel still succeeds at most once.

Interface: :class:`Tokens`; :class:`TokenStore` is its SQLite implementation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from state.files import open_sqlite

TOKEN_PREFIX = "bst1."
PIN_DIGITS = 8
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    digest TEXT PRIMARY KEY, kind TEXT NOT NULL, user TEXT NOT NULL, target TEXT NOT NULL,
    created REAL NOT NULL, expires REAL NOT NULL, used REAL, groups TEXT
);
"""


@dataclass(frozen=True)
class Grant:
    """What a consumed token or PIN allows."""

    user: str
    target: str  # "" for a PIN (any target the user may use)
    groups: frozenset[str] = frozenset()  # SSO PINs: the groups the IdP gave


class Tokens(Protocol):
    """Issue and consume one-time routing tokens and PINs (each works once)."""

    def issue_token(self, user: str, target: str, ttl: float) -> str: ...

    def issue_pin(self, user: str, ttl: float) -> str: ...

    def issue_sso_pin(self, user: str, groups: Iterable[str], ttl: float) -> str: ...

    def consume_token(self, token: str) -> Grant | None: ...

    def consume_pin(self, user: str, pin: str) -> bool: ...

    def consume_sso_pin(self, user: str, pin: str) -> frozenset[str] | None: ...

    def close(self) -> None: ...


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class TokenStore:
    """Issue and consume one-time tokens; ``clock`` is injectable for tests."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._db = open_sqlite(
            self.path, schema=_SCHEMA, what="the RDP token database",
            lost="the RDP routing tokens and one-time PINs issued before no longer work "
                 "(issue new ones)")
        self._lock = threading.Lock()  # one connection, used from the loop and executors
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(tokens)")}
        if "groups" not in columns:  # a store from before SSO PINs
            self._db.execute("ALTER TABLE tokens ADD COLUMN groups TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _issue(self, value: str, kind: str, user: str, target: str, ttl: float,
               groups: str | None = None) -> None:
        now = self._clock()
        with self._lock:
            self._db.execute("DELETE FROM tokens WHERE expires < ?", (now - 86400,))
            self._db.execute(
                "INSERT INTO tokens (digest, kind, user, target, created, expires, used, groups)"
                " VALUES (?,?,?,?,?,?,NULL,?)",
                (digest(value), kind, user, target, now, now + ttl, groups))

    def issue_token(self, user: str, target: str, ttl: float) -> str:
        """A new routing token for ``user`` to reach ``target`` once within ``ttl`` s."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(24)
        self._issue(token, "route", user, target, ttl)
        return token

    def issue_pin(self, user: str, ttl: float) -> str:
        """A new one-time PIN that ``user`` may type instead of the bastion password."""
        pin = "".join(secrets.choice("0123456789") for _ in range(PIN_DIGITS))
        self._issue(f"{user}\0{pin}", "pin", user, "", ttl)
        return pin

    def issue_sso_pin(self, user: str, groups: Iterable[str], ttl: float) -> str:
        """A one-time PIN for a user who logged in by single sign-on (not in ``[users]``):
        it carries the groups the IdP gave them, which decide the targets they may use."""
        pin = "".join(secrets.choice("0123456789") for _ in range(PIN_DIGITS))
        self._issue(f"{user}\0{pin}", "sso-pin", user, "", ttl,
                    json.dumps(sorted(set(groups))))
        return pin

    def _consume(self, value: str, kind: str) -> Grant | None:
        now = self._clock()
        hashed = digest(value)
        with self._lock:
            cur = self._db.execute(
                "UPDATE tokens SET used=? WHERE digest=? AND kind=? AND used IS NULL "
                "AND expires>=? RETURNING user, target, groups", (now, hashed, kind, now))
            row = cur.fetchone()
            cur.close()
        if not row:
            return None
        groups = frozenset(json.loads(row[2])) if row[2] else frozenset()
        return Grant(user=row[0], target=row[1], groups=groups)

    def consume_token(self, token: str) -> Grant | None:
        """The grant of an unused, unexpired routing token (marked used), else None."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        return self._consume(token, "route")

    def consume_pin(self, user: str, pin: str) -> bool:
        """True (and the PIN is used up) if ``pin`` is a valid one-time PIN of ``user``."""
        if len(pin) != PIN_DIGITS or not pin.isdigit():
            return False
        grant = self._consume(f"{user}\0{pin}", "pin")
        return grant is not None and hmac.compare_digest(grant.user, user)

    def consume_sso_pin(self, user: str, pin: str) -> frozenset[str] | None:
        """The IdP groups of a valid single-sign-on PIN of ``user`` (used up), else None."""
        if len(pin) != PIN_DIGITS or not pin.isdigit():
            return None
        grant = self._consume(f"{user}\0{pin}", "sso-pin")
        if grant is None or not hmac.compare_digest(grant.user, user):
            return None
        return grant.groups
