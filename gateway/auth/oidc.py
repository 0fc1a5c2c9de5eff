"""Single sign-on with OpenID Connect: the OAuth 2.0 device authorization grant (RFC 8628)
and ID token validation with authlib.

The flow, driven by keyboard-interactive SSH login (see gateway/ssh/server.py):

1. :meth:`OidcClient.start` asks the IdP's device authorization endpoint for a device
   code, a short user code and a verification URL, which the user opens in any browser.
2. :meth:`OidcClient.wait` polls the token endpoint (honouring ``interval`` and
   ``slow_down``) until the user approved, denied, or the code expired.
3. :meth:`OidcClient.validate_id_token` checks the ID token: signature against the
   IdP's JWKS with the *pinned* algorithms only (``alg=none`` and every HS* are never
   accepted, so a public key can never be used as an HMAC secret), issuer, audience
   (our client id), expiry and issue time with a small leeway.
4. :func:`identity_for` maps the claims to a user name (``username_claim``) and groups
   (``groups_claim``), and refuses if the name differs from the SSH user requested.

Known limits:

* HTTP to the IdP uses the standard library in a worker thread (authlib's HTTP clients
  need requests or httpx, which bastille does not depend on); authlib does the JOSE part.
* No nonce: the device grant has no authorization request from this client that could
  carry one (RFC 8628); the device code is single-use and bound to our client instead.
* Discovery and the JWKS are cached for the process lifetime; a token signed with an
  unknown ``kid`` makes one JWKS refetch (key rotation).
* Only the ID token is used; access and refresh tokens are discarded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import authlib.deprecate  # noqa: F401  # its 'always' filter first; ours wins

from gateway.config import OidcSettings
from gateway.errors import AuthError

with warnings.catch_warnings():  # authlib 1.x marks authlib.jose deprecated (-> joserfc)
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.jose import JsonWebKey, JsonWebToken
    from authlib.jose.errors import JoseError

log = logging.getLogger("bastille.oidc")

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class OidcError(AuthError):
    """A single sign-on login failed; the message is meant for the user."""


class IdpUnavailable(OidcError):
    """The identity provider could not be reached or answered nonsense."""


class CodeExpired(OidcError):
    """The device code expired before the user approved it."""


class AccessDenied(OidcError):
    """The user (or the IdP) denied the login."""


class InvalidToken(OidcError):
    """The ID token failed validation (signature, issuer, audience, expiry...)."""


class IdentityMismatch(OidcError):
    """The IdP identity is not the SSH user name that was requested."""


class NoGroups(OidcError):
    """The IdP identity is in no group that bastille knows."""


@dataclass(frozen=True)
class DeviceGrant:
    """What the user needs to see, and what we need to poll."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_at: float
    interval: float

    def __repr__(self) -> str:  # the device code is a bearer secret until redeemed
        return f"DeviceGrant(user_code={self.user_code!r}, uri={self.verification_uri!r})"


@dataclass(frozen=True)
class Identity:
    """Who the IdP says logged in."""

    user: str
    idp_groups: tuple[str, ...]
    subject: str
    issuer: str


Fetch = Callable[[str, dict[str, str] | None, float], Awaitable[tuple[int, Any]]]


async def _fetch(url: str, form: dict[str, str] | None, wait_s: float) -> tuple[int, Any]:
    """GET (``form`` None) or form-POST ``url``; return (status, parsed JSON)."""

    def call() -> tuple[int, Any]:
        body = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(url, body, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=wait_s) as resp:
                return resp.status, json.loads(resp.read(1 << 20))
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read(1 << 20))
            except ValueError:
                return exc.code, {}

    try:
        return await asyncio.to_thread(call)
    except (OSError, ValueError) as exc:
        log.warning("identity provider request to %s failed: %s", url.split("?")[0], exc)
        raise IdpUnavailable("the identity provider is unreachable; try again later") from None


class OidcClient:
    """Device flow and token validation against one IdP.

    Args:
        settings: the ``[oidc]`` config section.
        clock: seconds since the epoch (injected in tests).
        fetch: HTTP function (injected in tests); default urllib in a thread.
        sleep: awaitable sleep between polls (injected in tests).
    """

    def __init__(self, settings: OidcSettings, *, clock: Callable[[], float] = time.time,
                 fetch: Fetch = _fetch,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.settings = settings
        self.clock = clock
        self._fetch = fetch
        self._sleep = sleep
        self._meta: dict[str, Any] | None = None
        self._jwks: dict[str, Any] | None = None
        self._jwt = JsonWebToken(list(settings.allowed_algs))

    def _client_auth(self) -> dict[str, str]:
        auth = {"client_id": self.settings.client_id}
        if self.settings.client_secret is not None:
            auth["client_secret"] = self.settings.client_secret.reveal()
        return auth

    async def metadata(self) -> dict[str, Any]:
        """The IdP's discovery document (cached)."""
        if self._meta is None:
            url = f"{self.settings.issuer}/.well-known/openid-configuration"
            status, meta = await self._fetch(url, None, self.settings.http_timeout)
            if status != 200 or not isinstance(meta, dict):
                raise IdpUnavailable("the identity provider is unreachable; try again later")
            if meta.get("issuer", "").rstrip("/") != self.settings.issuer:
                log.error("IdP discovery issuer %r differs from configured %r",
                          meta.get("issuer"), self.settings.issuer)
                raise IdpUnavailable("the identity provider is misconfigured (issuer)")
            for key in ("device_authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(meta.get(key), str):
                    raise IdpUnavailable(f"the identity provider has no {key}")
            self._meta = meta
        return self._meta

    async def _keys(self, refresh: bool = False) -> dict[str, Any]:
        if self._jwks is None or refresh:
            meta = await self.metadata()
            status, jwks = await self._fetch(meta["jwks_uri"], None, self.settings.http_timeout)
            if status != 200 or not isinstance(jwks, dict) or "keys" not in jwks:
                raise IdpUnavailable("the identity provider's signing keys are unavailable")
            self._jwks = jwks
        return self._jwks

    async def start(self) -> DeviceGrant:
        """Begin a device authorization; raises :class:`IdpUnavailable`."""
        meta = await self.metadata()
        form = {**self._client_auth(), "scope": " ".join(self.settings.scopes)}
        status, body = await self._fetch(meta["device_authorization_endpoint"], form,
                                         self.settings.http_timeout)
        if status != 200 or not isinstance(body, dict) or "device_code" not in body:
            log.warning("device authorization refused: %s %s", status,
                        body.get("error") if isinstance(body, dict) else "")
            raise IdpUnavailable("the identity provider refused to start a login "
                                 "(check [oidc] client_id/secret)")
        uri = str(body.get("verification_uri") or body.get("verification_url") or "")
        return DeviceGrant(
            device_code=str(body["device_code"]),
            user_code=str(body.get("user_code", "")),
            verification_uri=uri,
            verification_uri_complete=str(body.get("verification_uri_complete") or uri),
            expires_at=self.clock() + float(body.get("expires_in", 600)),
            interval=float(body.get("interval", 5)),
        )

    async def wait(self, grant: DeviceGrant) -> dict[str, Any]:
        """Poll until the user approved; return the validated ID token claims."""
        meta = await self.metadata()
        interval = max(grant.interval, 1.0)
        form = {**self._client_auth(), "grant_type": DEVICE_GRANT,
                "device_code": grant.device_code}
        while True:
            if self.clock() >= grant.expires_at:
                raise CodeExpired("the login code expired before it was approved; "
                                  "connect again for a new one")
            status, body = await self._fetch(meta["token_endpoint"], form,
                                             self.settings.http_timeout)
            if not isinstance(body, dict):
                raise IdpUnavailable("the identity provider answered nonsense")
            if status == 200 and "id_token" in body:
                return await self.validate(str(body["id_token"]))
            error = body.get("error")
            if error == "authorization_pending":
                await self._sleep(interval)
            elif error == "slow_down":
                interval += 5
                await self._sleep(interval)
            elif error == "expired_token":
                raise CodeExpired("the login code expired before it was approved; "
                                  "connect again for a new one")
            elif error == "access_denied":
                raise AccessDenied("the login was denied at the identity provider")
            elif status == 200:
                raise InvalidToken("the identity provider returned no ID token "
                                   "(is 'openid' in [oidc] scopes?)")
            else:
                log.warning("token endpoint error: %s %s", status, error)
                raise IdpUnavailable(f"the identity provider refused the login ({error})")

    async def validate(self, token: str) -> dict[str, Any]:
        """Validate ``token`` against the IdP's JWKS (refetched once on an unknown key)."""
        keys = await self._keys()
        try:
            return self.validate_id_token(token, keys)
        except InvalidToken:
            kid = _header(token).get("kid")
            if kid is None or any(k.get("kid") == kid for k in keys.get("keys", [])):
                raise
        return self.validate_id_token(token, await self._keys(refresh=True))

    def validate_id_token(self, token: str, jwks: dict[str, Any]) -> dict[str, Any]:
        """Check signature (pinned algorithms), issuer, audience, expiry; return claims.

        Raises:
            InvalidToken: with a generic user message; the reason is logged.
        """
        header = _header(token)
        alg = header.get("alg")
        if alg not in self.settings.allowed_algs:
            return _reject(f"algorithm {alg!r} is not allowed")
        try:
            key_set = JsonWebKey.import_key_set(jwks)
            claims = self._jwt.decode(token, key_set, claims_options={
                "iss": {"essential": True, "value": self.settings.issuer},
                "aud": {"essential": True, "value": self.settings.client_id},
                "exp": {"essential": True},
                "iat": {"essential": True},
                "sub": {"essential": True},
            })
            claims.validate(now=int(self.clock()), leeway=int(self.settings.leeway))
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            return _reject(f"{type(exc).__name__}: {exc}")
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != \
                self.settings.client_id:
            return _reject("several audiences and azp is not our client")
        return dict(claims)


def _header(token: str) -> dict[str, Any]:
    import base64

    try:
        part = token.split(".")[0]
        header = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, IndexError):
        return {}
    return header if isinstance(header, dict) else {}


def _reject(reason: str) -> dict[str, Any]:
    log.warning("ID token rejected: %s", reason)
    raise InvalidToken("the identity provider's token was rejected")


def identity_for(claims: dict[str, Any], settings: OidcSettings, ssh_user: str) -> Identity:
    """The identity in ``claims``; refuse if it is not ``ssh_user``.

    Raises:
        IdentityMismatch: the claim is missing or names someone else.
    """
    name = claims.get(settings.username_claim)
    if not isinstance(name, str) or not name:
        raise IdentityMismatch(f"the identity provider sent no {settings.username_claim!r}; "
                               "ask your administrator (oidc.username_claim)")
    if name != ssh_user:
        raise IdentityMismatch(f"you signed in at the identity provider as {name!r}, "
                               f"but asked for SSH user {ssh_user!r}")
    raw = claims.get(settings.groups_claim, [])
    groups = tuple(g for g in raw if isinstance(g, str)) if isinstance(raw, list) else \
        ((raw,) if isinstance(raw, str) else ())
    return Identity(user=name, idp_groups=groups, subject=str(claims.get("sub", "")),
                    issuer=str(claims.get("iss", "")))
