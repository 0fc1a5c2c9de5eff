"""In-memory state of the web endpoint: one-time SSH login links, browser sign-in flows
and approver sessions. All bounded, all expiring, all keyed by unguessable tokens.

Nothing here survives a restart, on purpose: a restart ends every browser session and
every login in progress (the SSH side of such a login is gone too).
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

# Short SSH login codes: 10 characters of an alphabet without look-alikes (~50 bits),
# shown as XXXXX-XXXXX; guessing one is not practical within its lifetime, and each
# wrong guess is a 404 on a rate of what one address can send.
_ALPHABET = "23456789BCDFGHJKLMNPQRSTVWXZ"

MAX_PENDING_LOGINS = 2000  # SSH logins waiting for a browser (one per connection at login)
MAX_FLOWS = 4000  # browser sign-ins in progress (a flow lives at most FLOW_TTL)
MAX_SESSIONS = 4000  # approver browser sessions
FLOW_TTL = 600.0  # seconds a browser may take at the identity provider


def login_code() -> str:
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def token() -> str:
    return secrets.token_urlsafe(32)


def same(a: str, b: str) -> bool:
    """Constant-time comparison of two tokens."""
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class WebIdentity:
    """Who signed in at an identity provider, with bastille groups already mapped."""

    user: str
    groups: frozenset[str]
    method: str  # "saml" | "oidc"
    subject: str  # SAML NameID or OIDC sub
    issuer: str  # IdP entity id or OIDC issuer
    idp_groups: tuple[str, ...] = ()


@dataclass
class PendingLogin:
    """An SSH connection waiting for its user to sign in through the browser."""

    code: str
    ssh_user: str
    source: str
    created: float
    expires: float
    result: asyncio.Future[WebIdentity]
    started: bool = False  # the one-time link was used to go to the IdP


@dataclass
class Flow:
    """One browser's trip to the identity provider and back."""

    id: str
    kind: str  # "ssh" (completes a PendingLogin) | "web" (an approver session)
    method: str  # "saml" | "oidc"
    expires: float
    login_code: str = ""  # kind "ssh"
    next_path: str = "/approvals"  # kind "web": where to go after signing in
    saml_request: str = ""  # the AuthnRequest ID this flow waits for
    oidc_verifier: str = ""  # PKCE code_verifier
    oidc_nonce: str = ""


@dataclass
class WebSession:
    """A signed-in approver's browser."""

    id: str
    identity: WebIdentity
    csrf: str
    expires: float
    source: str = ""


T = TypeVar("T")


@dataclass
class Expiring(Generic[T]):
    """A dict of items with an ``expires`` attribute, bounded, pruned on access."""

    cap: int
    clock: Callable[[], float] = time.time
    items: dict[str, T] = field(default_factory=dict)

    def prune(self) -> None:
        now = self.clock()
        for key in [k for k, v in self.items.items() if v.expires <= now]:  # type: ignore[attr-defined]
            del self.items[key]

    def full(self) -> bool:
        self.prune()
        return len(self.items) >= self.cap

    def put(self, key: str, item: T) -> None:
        self.items[key] = item

    def get(self, key: str) -> T | None:
        self.prune()
        return self.items.get(key)

    def pop(self, key: str) -> T | None:
        self.prune()
        return self.items.pop(key, None)
