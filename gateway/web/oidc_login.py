"""Approvers sign in with OpenID Connect: authorization code flow with PKCE (S256),
``state`` bound to the browser's flow cookie and a ``nonce`` checked in the ID token.

The ID token is validated exactly like the SSH device flow's (gateway/auth/oidc.py:
signature against the IdP's JWKS with the pinned algorithms, issuer, audience, expiry),
plus the nonce. The IdP must allow the redirect URI ``PUBLIC_URL/oidc/callback`` and the
``authorization_code`` grant for the ``[oidc]`` client.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import secrets
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from gateway.auth.oidc import IdpUnavailable, InvalidToken, OidcClient, identity_for
from gateway.web.state import WebIdentity, same

log = logging.getLogger("bastille.web.oidc")


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def _post(url: str, form: dict[str, str], wait_s: float) -> tuple[int, Any]:
    def call() -> tuple[int, Any]:
        req = urllib.request.Request(url, urllib.parse.urlencode(form).encode(),
                                     headers={"Accept": "application/json"})
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
        log.warning("token request to %s failed: %s", url.split("?")[0], exc)
        raise IdpUnavailable("the identity provider is unreachable; try again later") from None


class OidcCodeLogin:
    """Authorization code + PKCE against the configured ``[oidc]`` IdP."""

    def __init__(self, client: OidcClient, redirect_uri: str) -> None:
        self.client = client
        self.settings = client.settings
        self.redirect_uri = redirect_uri

    async def authorize_url(self, state: str, nonce: str, challenge: str) -> str:
        meta = await self.client.metadata()
        endpoint = meta.get("authorization_endpoint")
        if not isinstance(endpoint, str):
            raise IdpUnavailable("the identity provider has no authorization_endpoint")
        query = urllib.parse.urlencode({
            "response_type": "code", "client_id": self.settings.client_id,
            "redirect_uri": self.redirect_uri, "scope": " ".join(self.settings.scopes),
            "state": state, "nonce": nonce, "code_challenge": challenge,
            "code_challenge_method": "S256",
        })
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    async def finish(self, code: str, verifier: str, nonce: str) -> WebIdentity:
        """Redeem ``code``; return the validated identity.

        Raises:
            OidcError: the IdP refused, or the ID token failed validation.
        """
        meta = await self.client.metadata()
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": self.redirect_uri, "code_verifier": verifier,
                "client_id": self.settings.client_id}
        if self.settings.client_secret is not None:
            form["client_secret"] = self.settings.client_secret.reveal()
        status, body = await _post(meta["token_endpoint"], form, self.settings.http_timeout)
        if status != 200 or not isinstance(body, dict) or "id_token" not in body:
            log.warning("code redemption refused: %s %s", status,
                        body.get("error") if isinstance(body, dict) else "")
            raise InvalidToken("the identity provider refused the sign-in")
        claims = await self.client.validate(str(body["id_token"]))
        got = claims.get("nonce")
        if not isinstance(got, str) or not same(got, nonce):
            log.warning("ID token nonce mismatch")
            raise InvalidToken("the identity provider's token was rejected")
        name = claims.get(self.settings.username_claim)
        ident = identity_for(claims, self.settings, name if isinstance(name, str) else "")
        return WebIdentity(user=ident.user, groups=self.settings.map_groups(ident.idp_groups),
                           method="oidc", subject=ident.subject, issuer=ident.issuer,
                           idp_groups=ident.idp_groups)
