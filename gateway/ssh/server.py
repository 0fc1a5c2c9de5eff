"""The user-facing SSH server: authentication, and the channels a connection may open.

* Public keys from ``users.NAME.keys``: compared in constant time against every key of
  the user (no early exit); asyncssh verifies the signature, so an unsigned key offer
  never authenticates.
* Passwords (``password_hash``) only from loopback clients unless
  ``gateway.allow_passwords`` is true (the demo user lives on loopback).
* Single sign-on (``[oidc]``, see docs/sso.md): keyboard-interactive login runs the
  OAuth 2.0 device flow; the prompt shows the verification URL and user code, and the
  answer is accepted once the IdP confirms and the ID token validates for this SSH user
  name. The keys the client offered earlier in the connection are then bound to that
  identity (:mod:`state.bindings`) and log in without the browser until the binding
  expires or ``bastille oidc revoke USER`` ends it. Without ``[oidc]``,
  keyboard-interactive stays asyncssh's password fallback.
* SAML (``[saml]`` with ``[web]``): keyboard-interactive shows a one-time URL of the
  web endpoint, which signs the user in at the IdP (:mod:`gateway.auth.saml`); keys are
  bound the same way as with OIDC.
* Failed attempts are rate-limited per source address and per (source, user) pair,
  never per user name alone (:mod:`state.ratelimit`): a wrong password counts for both,
  a connection whose offered keys all failed to match counts for its source only, and a
  success forgets its pair's failures. A connection gets at most ``MAX_AUTH_ATTEMPTS``
  password or keyboard-interactive answers and ``MAX_KEY_OFFERS`` key offers, then it
  is cut. Every failure is audited.
* Bounds (:mod:`gateway.limits`): login names, connections per source address (refused
  after the key exchange with a message), session and forwarding channels per
  connection.
* Session channels go to :class:`gateway.ssh.session.SshSession`; forwarding requests to
  :mod:`gateway.ssh.forwarding`; tun/tap and Unix sockets are refused.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
from typing import Any, NoReturn

import asyncssh

from gateway.audit import AuditEvent, Kind
from gateway.auth.oidc import NoGroups, OidcError, identity_for
from gateway.auth.passwords import dummy_hash, verify_password
from gateway.core.access import Principal, principal_for
from gateway.errors import WebLoginError
from gateway.limits import (
    MAX_AUTH_ATTEMPTS,
    MAX_KEY_OFFERS,
    MAX_LOGIN_NAME,
    MAX_SESSIONS_PER_CONNECTION,
    cut,
)
from gateway.ssh import forwarding
from gateway.ssh.context import ConnContext, SshContext
from gateway.ssh.routing import Login, parse_login
from gateway.ssh.session import SshSession
from state.ratelimit import source_key

log = logging.getLogger("bastille.server")

_MAX_OFFERED = 8  # keys remembered per connection for binding after SSO (OpenSSH offers few)


def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%")[0]).is_loopback
    except ValueError:
        return False


class BastionServer(asyncssh.SSHServer):
    """One user connection: who it is, and which channels it may open."""

    def __init__(self, ssh: SshContext) -> None:
        self.ssh = ssh
        self.services = ssh.services
        self.conn_ctx: ConnContext | None = None
        self._host = ""
        self._authenticated = False
        self._attempted = False
        self._offered: list[bytes] = []
        self._grant: Any = None
        self._pending: Any = None  # a SAML login waiting for the browser (gateway/web)
        self._source = ""  # the rate limiter's and the connection counter's key
        self._answers = 0  # password / keyboard-interactive answers on this connection
        self._key_offers = 0
        self._password_failed = False
        self._refusal: str | None = None  # why this connection is refused at its login

    @property
    def ctx(self) -> ConnContext:
        assert self.conn_ctx is not None
        return self.conn_ctx

    # ------------------------------------------------------------ connection
    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        peer = conn.get_extra_info("peername") or ("?", 0)
        # behind a trusted load balancer: the client its PROXY header named
        peer = self.ssh.proxied.get((str(peer[0]), int(peer[1])), peer)
        self._host = str(peer[0])
        self.conn_ctx = ConnContext(self.ssh, conn, f"{peer[0]}:{peer[1]}", Login("", None))
        self.ssh.connections.add(self)
        self._source = source_key(self._host)
        count = self.ssh.source_opened(self._source)
        limit = self.services.config.gateway.max_connections_per_source
        if count > limit:
            self._refusal = f"too many connections from {self._host} (at most {limit})"
            if count > 2 * limit:  # a flood: no key exchange for it at all
                conn.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.ssh.connections:
            self.ssh.connections.discard(self)
            self.ssh.source_closed(self._source)
        ctx = self.conn_ctx
        if ctx is None:
            return
        if not self._authenticated and self._attempted and not self._password_failed:
            # keys that merely failed to match (or too many of them): counted for the
            # source, never the user; wrong passwords were counted as they came
            self.services.failures.record_failure(self._host)
            ctx.audit(Kind.LOGIN, "failed", detail={"reason": "no accepted key"})
        web = self.services.web_logins
        if self._pending is not None and web is not None:
            web.cancel_ssh_login(self._pending)  # its link stops working
        stopping = [s.relay for s in ctx.sessions if s.relay is not None and s.relay.stopping]
        if stopping:  # the target connection carries their signals: close it after them
            self.services.spawn(_close_after(ctx, stopping), "close target connections")
        else:
            ctx.close_upstreams()

    # ------------------------------------------------------------ authentication
    def begin_auth(self, username: str) -> bool:
        ctx = self.ctx
        if len(username) > MAX_LOGIN_NAME:
            ctx.login = Login(cut(username, 32), None)
            self._refuse(Kind.REFUSED, f"login name longer than {MAX_LOGIN_NAME} characters",
                         asyncssh.DISC_ILLEGAL_USER_NAME)
        ctx.login = parse_login(username)
        ctx.principal = principal_for(self.services.config, ctx.login.user) or \
            Principal(ctx.login.user)
        if self._refusal is not None:
            self._refuse(Kind.REFUSED, self._refusal, asyncssh.DISC_TOO_MANY_CONNECTIONS)
        if self.services.failures.blocked(self._host, ctx.login.user):
            self._refuse(Kind.LOGIN_RATE_LIMITED, "too many failed logins; try again later")
        return True

    def _refuse(self, kind: Kind, message: str,
                code: int = asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE) -> NoReturn:
        """Audit and cut this connection before it logs in, telling the client why."""
        self._refusal = message
        self.ctx.audit(kind, "denied", detail={"reason": message})
        raise asyncssh.DisconnectError(code, f"bastille: {message}")

    def _answered(self) -> None:
        """One more password / keyboard-interactive answer: at most MAX_AUTH_ATTEMPTS."""
        self._attempted = True
        self._answers += 1
        if self._answers > MAX_AUTH_ATTEMPTS:
            self._refuse(Kind.LOGIN_RATE_LIMITED,
                         f"too many authentication attempts (at most {MAX_AUTH_ATTEMPTS} "
                         "per connection)")

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        ctx = self.ctx
        self._attempted = True
        self._key_offers += 1
        if self._key_offers > MAX_KEY_OFFERS:
            self._refuse(Kind.LOGIN_RATE_LIMITED,
                         f"too many keys offered (at most {MAX_KEY_OFFERS} per connection)")
        offered = key.public_data
        match = False
        for line in self.ssh.user_keys.get(ctx.principal.name, []):
            match |= hmac.compare_digest(line, offered)
        bindings = self.services.bindings
        if match or bindings is None:
            return match
        binding = bindings.lookup(offered, ctx.login.user)
        if binding is not None:
            self._adopt(binding.groups)
            return True
        if offered not in self._offered and len(self._offered) < _MAX_OFFERED:
            self._offered.append(offered)
        return False

    # ------------------------------------------------------------ single sign-on
    def kbdint_auth_supported(self) -> bool:
        if self.ssh.oidc is None and self.services.web_logins is None:
            return NotImplemented  # type: ignore[no-any-return,unused-ignore]  # -> password
        return True

    async def get_kbdint_challenge(self, username: str, lang: str,
                                   submethods: str) -> Any:
        self._answered()
        if self.services.web_logins is not None:
            return self._saml_challenge()
        assert self.ssh.oidc is not None
        try:
            self._grant = grant = await self.ssh.oidc.start()
        except OidcError as exc:
            self._sso_failed(str(exc))
        prompt = (f"Single sign-on: open {grant.verification_uri} and enter the code "
                  f"{grant.user_code}\r\n(or open {grant.verification_uri_complete})\r\n"
                  "then press Enter here: ")
        return ("bastille single sign-on", "", "", ((prompt, True),))

    def _saml_challenge(self) -> Any:
        web = self.services.web_logins
        assert web is not None
        if self._pending is not None:  # one pending login per connection
            web.cancel_ssh_login(self._pending)
            self._pending = None
        try:
            self._pending = web.begin_ssh_login(self.ctx.login.user, self.ctx.source)
        except WebLoginError as exc:
            self._sso_failed(str(exc), "saml")
        url = web.login_url(self._pending.code)
        prompt = f"Single sign-on: open {url}\r\nthen press Enter here: "
        return ("bastille single sign-on", "", "", ((prompt, True),))

    async def _saml_response(self) -> bool:
        web = self.services.web_logins
        saml = self.services.config.saml
        pending, self._pending = self._pending, None
        if pending is None or saml is None or web is None:
            return False
        try:
            ident = await web.wait_ssh_login(pending)
        except WebLoginError as exc:
            self._sso_failed(str(exc), "saml")
        self._adopt(ident.groups)
        bindings = self.services.bindings
        if bindings is not None:
            for key in self._offered:
                bindings.bind(key, ident.user, ident.groups, ident.subject, ident.issuer,
                              saml.binding_ttl)
        self.services.audit(AuditEvent(Kind.LOGIN, "ok", user=ident.user,
                                       source=self.ctx.source,
                                       detail={"method": "saml", "subject": ident.subject,
                                               "bound_keys": len(self._offered)}))
        return True

    async def validate_kbdint_response(self, username: str, responses: Any) -> Any:
        if self._pending is not None:
            return await self._saml_response()
        ctx = self.ctx
        config = self.services.config
        settings = config.oidc
        grant, self._grant = self._grant, None
        if settings is None or grant is None or self.ssh.oidc is None:
            return False
        try:
            claims = await self.ssh.oidc.wait(grant)
            ident = identity_for(claims, settings, ctx.login.user)
            groups = settings.map_groups(ident.idp_groups)
            if ident.user not in config.users and not groups:
                raise NoGroups(f"{ident.user} is in no group with access to this bastion; "
                               "ask your administrator")
        except OidcError as exc:
            self._sso_failed(str(exc))
        self._adopt(groups)
        bindings = self.services.bindings
        if bindings is not None:
            for key in self._offered:
                bindings.bind(key, ident.user, groups, ident.subject, ident.issuer,
                              settings.binding_ttl)
        self.services.audit(AuditEvent(Kind.LOGIN, "ok", user=ident.user, source=ctx.source,
                                       detail={"method": "oidc", "subject": ident.subject,
                                               "bound_keys": len(self._offered)}))
        return True

    def _sso_failed(self, message: str, method: str = "oidc") -> NoReturn:
        ctx = self.ctx  # the failure itself is counted in connection_lost
        self.services.audit(AuditEvent(Kind.LOGIN, "failed", user=ctx.login.user,
                                       source=ctx.source,
                                       detail={"method": method, "reason": message}))
        raise asyncssh.DisconnectError(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE,
                                       f"bastille: single sign-on failed: {message}")

    def _adopt(self, groups: frozenset[str]) -> None:
        """Make this connection's principal the SSO identity with its IdP groups."""
        ctx = self.ctx
        principal = principal_for(self.services.config, ctx.login.user, idp_groups=groups)
        assert principal is not None
        ctx.principal = principal

    def password_auth_supported(self) -> bool:
        return self.services.config.gateway.allow_passwords or _is_loopback(self._host)

    async def validate_password(self, username: str, password: str) -> bool:
        ctx = self.ctx
        self._answered()
        user = self.services.config.users.get(ctx.principal.name)
        encoded = user.password_hash.reveal() if user is not None and user.password_hash \
            else dummy_hash()
        # scrypt takes ~50 ms: in a thread, so that guesses never stall other sessions
        ok = await asyncio.get_running_loop().run_in_executor(
            None, verify_password, password, encoded)
        if not ok:
            self._password_failed = True
            failures = self.services.failures
            failures.record_failure(self._host, ctx.principal.name)
            ctx.audit(Kind.LOGIN, "failed", detail={"method": "password"})
            if failures.blocked(self._host, ctx.principal.name):
                self._refuse(Kind.LOGIN_RATE_LIMITED, "too many failed logins; try again later")
        return ok

    def auth_completed(self) -> None:
        ctx = self.ctx
        self._authenticated = True
        self.services.failures.reset(self._host, ctx.login.user)
        ctx.audit(Kind.LOGIN, "ok", target=ctx.login.target or "")

    # ------------------------------------------------------------ channels
    def session_requested(self) -> SshSession:
        ctx = self.ctx
        if len(ctx.sessions) >= MAX_SESSIONS_PER_CONNECTION:
            raise forwarding.refuse(ctx, "session", "too many sessions on one connection "
                                    f"(at most {MAX_SESSIONS_PER_CONNECTION})")
        session = SshSession(ctx)
        ctx.sessions.add(session)
        return session

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str,
                             orig_port: int) -> Any:
        return forwarding.local(self.ctx, dest_host, dest_port)

    def server_requested(self, listen_host: str, listen_port: int) -> Any:
        return forwarding.remote(self.ctx, listen_host, listen_port)

    def unix_connection_requested(self, dest_path: str) -> Any:
        raise forwarding.refuse(self.ctx, "direct-streamlocal",
                                "Unix socket forwarding is not allowed")

    def unix_server_requested(self, listen_path: str) -> bool:
        forwarding.refuse(self.ctx, "streamlocal-forward", "Unix socket forwarding is not allowed")
        return False

    def tun_requested(self, unit: int | None) -> Any:
        raise forwarding.refuse(self.ctx, "tun", "tunnel devices are not allowed")

    def tap_requested(self, unit: int | None) -> Any:
        raise forwarding.refuse(self.ctx, "tap", "tap devices are not allowed")


async def _close_after(ctx: ConnContext, relays: list[Any]) -> None:
    """Close a gone user's target connections once its ended commands are stopped."""
    try:
        await asyncio.gather(*(r.target_stopped() for r in relays))
    finally:
        ctx.close_upstreams()
