""":class:`state.tokens.Tokens` on the shared PostgreSQL database.

Same rules as :class:`state.tokens.TokenStore`: only SHA-256 digests are stored; a
token or PIN is consumed by one ``UPDATE ... WHERE used IS NULL ... RETURNING``, so two
nodes racing to consume the same token cannot both succeed.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from collections.abc import Callable, Iterable

from state.pg.db import Database
from state.tokens import PIN_DIGITS, TOKEN_PREFIX, Grant, digest


class PgTokens:
    """One-time RDP routing tokens and PINs in PostgreSQL (``clock`` injectable)."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db.acquire()
        self._clock = clock

    def close(self) -> None:
        self.db.release()

    def _issue(self, value: str, kind: str, user: str, target: str, ttl: float,
               groups: str | None = None) -> None:
        now = self._clock()
        with self.db.connection() as conn:
            conn.execute("DELETE FROM tokens WHERE expires < %s", (now - 86400,))
            conn.execute(
                'INSERT INTO tokens (digest, kind, "user", target, created, expires, used, '
                "groups) VALUES (%s,%s,%s,%s,%s,%s,NULL,%s)",
                (digest(value), kind, user, target, now, now + ttl, groups))

    def issue_token(self, user: str, target: str, ttl: float) -> str:
        token = TOKEN_PREFIX + secrets.token_urlsafe(24)
        self._issue(token, "route", user, target, ttl)
        return token

    def issue_pin(self, user: str, ttl: float) -> str:
        pin = "".join(secrets.choice("0123456789") for _ in range(PIN_DIGITS))
        self._issue(f"{user}\0{pin}", "pin", user, "", ttl)
        return pin

    def issue_sso_pin(self, user: str, groups: Iterable[str], ttl: float) -> str:
        pin = "".join(secrets.choice("0123456789") for _ in range(PIN_DIGITS))
        self._issue(f"{user}\0{pin}", "sso-pin", user, "", ttl,
                    json.dumps(sorted(set(groups))))
        return pin

    def _consume(self, value: str, kind: str) -> Grant | None:
        now = self._clock()
        rows = self.db.query(
            'UPDATE tokens SET used=%s WHERE digest=%s AND kind=%s AND used IS NULL '
            'AND expires>=%s RETURNING "user", target, groups', (now, digest(value), kind, now))
        if not rows:
            return None
        user, target, groups = rows[0]
        return Grant(user=str(user), target=str(target),
                     groups=frozenset(json.loads(groups)) if groups else frozenset())

    def consume_token(self, token: str) -> Grant | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        return self._consume(token, "route")

    def consume_pin(self, user: str, pin: str) -> bool:
        if len(pin) != PIN_DIGITS or not pin.isdigit():
            return False
        grant = self._consume(f"{user}\0{pin}", "pin")
        return grant is not None and hmac.compare_digest(grant.user, user)

    def consume_sso_pin(self, user: str, pin: str) -> frozenset[str] | None:
        if len(pin) != PIN_DIGITS or not pin.isdigit():
            return None
        grant = self._consume(f"{user}\0{pin}", "sso-pin")
        if grant is None or not hmac.compare_digest(grant.user, user):
            return None
        return grant.groups
