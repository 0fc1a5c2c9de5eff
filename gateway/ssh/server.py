"""The user-facing SSH server: authentication, and authorization of every channel type.

* Public keys from ``users.NAME.keys``: compared in constant time against every key of
  the user (no early exit); asyncssh verifies the signature, so an unsigned key offer
  never authenticates.
* Passwords (``password_hash``) only from loopback clients unless
  ``gateway.allow_passwords`` is true (the demo user lives on loopback).
* Single sign-on (``[oidc]``, see docs/sso.md): keyboard-interactive login runs the
  OAuth 2.0 device flow; the prompt shows the verification URL and user code, and the
  answer is accepted once the IdP confirms and the ID token validates for this SSH user
  name. The keys the client offered earlier in the connection are then bound to that
  identity (gateway/auth/bindings.py) and log in without the browser until the binding
  expires or ``bastille oidc revoke USER`` ends it. Without ``[oidc]``, keyboard-interactive
  stays asyncssh's password fallback.
* Failed attempts are rate-limited per source address and per user name, and audited.
* Session channels go to :class:`gateway.ssh.session.GatewaySession`. direct-tcpip
  (``ssh -L``/``-W``) is relayed *through the target*, and ``ssh -R`` makes the target
  listen, when the target allows it for the user and the policy allows the address;
  X11 likewise per target (see session.py); tun/tap and Unix sockets are refused.
  Forwarded TCP bytes are not recorded (the forwarding itself is audited).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

import asyncssh

from gateway.audit import AuditEvent, Kind
from gateway.auth.oidc import NoGroups, OidcClient, OidcError, identity_for
from gateway.auth.passwords import verify_password
from gateway.config import UserConfig
from gateway.errors import BastilleError
from gateway.routing import Login, parse_login
from gateway.ssh.session import GatewaySession
from state.bindings import BindingStore

if TYPE_CHECKING:
    from gateway.app import GatewayApp

log = logging.getLogger("bastille.server")

_NOBODY = UserConfig(name="")
_MAX_OFFERED = 8  # keys remembered per connection for binding after SSO (OpenSSH offers few)
_SSO: weakref.WeakKeyDictionary[Any, tuple[OidcClient, BindingStore]] = \
    weakref.WeakKeyDictionary()


def sso_for(app: GatewayApp) -> tuple[OidcClient, BindingStore]:
    """The app's OIDC client and binding store (created on first use; needs ``[oidc]``)."""
    found = _SSO.get(app)
    if found is None:
        assert app.config.oidc is not None
        found = (OidcClient(app.config.oidc),
                 BindingStore(app.config.data_dir / "oidc_bindings.sqlite3"))
        _SSO[app] = found
    return found


@dataclass
class ConnContext:
    """What one authenticated user connection knows about itself."""

    app: GatewayApp
    conn: asyncssh.SSHServerConnection
    source: str
    login: Login
    user: UserConfig = _NOBODY
    sso: bool = False  # user (and groups) came from an IdP login or its key binding
    upstreams: dict[str, Any] = field(default_factory=dict)
    sessions: set[GatewaySession] = field(default_factory=set)


def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%")[0]).is_loopback
    except ValueError:
        return False


class BastionServer(asyncssh.SSHServer):
    def __init__(self, app: GatewayApp) -> None:
        self.app = app
        self.ctx: ConnContext | None = None
        self._host = ""
        self._authenticated = False
        self._attempted = False
        self._offered: list[bytes] = []
        self._grant: Any = None

    # ------------------------------------------------------------ connection
    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        peer = conn.get_extra_info("peername") or ("?", 0)
        self._host = str(peer[0])
        self.ctx = ConnContext(self.app, conn, f"{peer[0]}:{peer[1]}", Login("", None))
        self.app.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.app.connections.discard(self)
        ctx = self.ctx
        if ctx is None:
            return
        if not self._authenticated and self._attempted:
            self.app.limiter.record_failure(self._host, f"user:{ctx.login.user}")
            self.app.audit(AuditEvent(Kind.LOGIN, "failed", user=ctx.login.user,
                                      source=ctx.source, detail={"reason": "no accepted key"}))
        for conn in ctx.upstreams.values():
            if not isinstance(conn, BaseException):
                conn.close()
        ctx.upstreams.clear()

    # ------------------------------------------------------------ authentication
    def begin_auth(self, username: str) -> bool:
        assert self.ctx is not None
        self.ctx.login = parse_login(username)
        user = self.app.config.users.get(self.ctx.login.user)
        self.ctx.user = user if user is not None else UserConfig(name=self.ctx.login.user)
        if self.app.limiter.blocked(self._host, f"user:{self.ctx.login.user}"):
            self.app.audit(AuditEvent(Kind.LOGIN_RATE_LIMITED, "denied",
                                      user=self.ctx.login.user, source=self.ctx.source))
            raise asyncssh.DisconnectError(
                asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE,
                "too many failed logins; try again later")
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        assert self.ctx is not None
        self._attempted = True
        offered = key.public_data
        match = False
        for line in self.app.user_keys(self.ctx.user.name):
            match |= hmac.compare_digest(line, offered)
        if match or self.app.config.oidc is None:
            return match
        binding = sso_for(self.app)[1].lookup(offered, self.ctx.login.user)
        if binding is not None:
            self._adopt(binding.groups)
            return True
        if offered not in self._offered and len(self._offered) < _MAX_OFFERED:
            self._offered.append(offered)
        return False

    # ------------------------------------------------------------ single sign-on
    def kbdint_auth_supported(self) -> bool:
        if self.app.config.oidc is None:
            return NotImplemented  # type: ignore[no-any-return,unused-ignore]  # -> password
        return True

    async def get_kbdint_challenge(self, username: str, lang: str,
                                   submethods: str) -> Any:
        assert self.ctx is not None
        self._attempted = True
        client = sso_for(self.app)[0]
        try:
            self._grant = grant = await client.start()
        except OidcError as exc:
            self._sso_failed(str(exc))
        prompt = (f"Single sign-on: open {grant.verification_uri} and enter the code "
                  f"{grant.user_code}\r\n(or open {grant.verification_uri_complete})\r\n"
                  "then press Enter here: ")
        return ("bastille single sign-on", "", "", ((prompt, True),))

    async def validate_kbdint_response(self, username: str, responses: Any) -> Any:
        assert self.ctx is not None
        settings = self.app.config.oidc
        grant, self._grant = self._grant, None
        if settings is None or grant is None:
            return False
        client, store = sso_for(self.app)
        try:
            claims = await client.wait(grant)
            ident = identity_for(claims, settings, self.ctx.login.user)
            groups = settings.map_groups(ident.idp_groups)
            known = self.app.config.users.get(ident.user)
            if known is None and not groups:
                raise NoGroups(f"{ident.user} is in no group with access to this bastion; "
                               "ask your administrator")
        except OidcError as exc:
            self._sso_failed(str(exc))
        self._adopt(groups)
        for key in self._offered:
            store.bind(key, ident.user, groups, ident.subject, ident.issuer,
                       settings.binding_ttl)
        self.app.audit(AuditEvent(Kind.LOGIN, "ok", user=ident.user, source=self.ctx.source,
                                  detail={"method": "oidc", "subject": ident.subject,
                                          "bound_keys": len(self._offered)}))
        return True

    def _sso_failed(self, message: str) -> NoReturn:
        assert self.ctx is not None  # the failure itself is counted in connection_lost
        self.app.audit(AuditEvent(Kind.LOGIN, "failed", user=self.ctx.login.user,
                                  source=self.ctx.source,
                                  detail={"method": "oidc", "reason": message}))
        raise asyncssh.DisconnectError(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE,
                                       f"bastille: single sign-on failed: {message}")

    def _adopt(self, groups: frozenset[str]) -> None:
        """Make this connection's user the SSO identity with its IdP-mapped groups."""
        assert self.ctx is not None
        self.ctx.sso = True
        name = self.ctx.login.user
        known = self.app.config.users.get(name)
        if known is not None:
            self.ctx.user = UserConfig(name=name, keys=known.keys,
                                       groups=known.groups | groups,
                                       password_hash=known.password_hash)
            return
        self.ctx.user = UserConfig(name=name, groups=groups)

    def password_auth_supported(self) -> bool:
        return self.app.config.gateway.allow_passwords or _is_loopback(self._host)

    def validate_password(self, username: str, password: str) -> bool:
        assert self.ctx is not None
        user = self.ctx.user
        ok = verify_password(password, user.password_hash.reveal()) \
            if user.password_hash is not None else verify_password(password, self.app.dummy_hash)
        if not ok:
            self.app.limiter.record_failure(self._host, f"user:{user.name}")
            self.app.audit(AuditEvent(Kind.LOGIN, "failed", user=user.name,
                                      source=self.ctx.source, detail={"method": "password"}))
        return ok

    def auth_completed(self) -> None:
        assert self.ctx is not None
        self._authenticated = True
        self.app.audit(AuditEvent(Kind.LOGIN, "ok", user=self.ctx.user.name,
                                  source=self.ctx.source,
                                  target=self.ctx.login.target or ""))

    # ------------------------------------------------------------ channels
    def session_requested(self) -> GatewaySession:
        assert self.ctx is not None
        session = GatewaySession(self.ctx)
        self.ctx.sessions.add(session)
        return session

    def _refuse(self, channel: str, message: str) -> asyncssh.ChannelOpenError:
        assert self.ctx is not None
        self.app.audit(AuditEvent(Kind.REFUSED, "denied", user=self.ctx.user.name,
                                  source=self.ctx.source, target=self.ctx.login.target or "",
                                  detail={"channel": channel, "reason": message}))
        return asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                                         f"bastille: {message}")

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str,
                             orig_port: int) -> Any:
        assert self.ctx is not None
        ctx = self.ctx
        where = f"{dest_host}:{dest_port}"
        if ctx.login.target is None:
            raise self._refuse("direct-tcpip", "port forwarding needs the USER+TARGET@BASTION "
                               "login form")
        try:
            target = self.app.authorize(ctx, ctx.login.target)
        except BastilleError as exc:
            raise self._refuse("direct-tcpip", str(exc)) from None
        if not target.allow_local_forwarding.allows(ctx.user.name, ctx.user.groups):
            raise self._refuse("direct-tcpip",
                               f"port forwarding to {where} is not allowed on {target.name}")
        engine = self.app.policy_engine
        if engine is not None:
            decision = engine.decide_forward("local", dest_host, dest_port, user=ctx.user.name,
                                             groups=sorted(ctx.user.groups), target=target.name)
            if decision.action != "allow":
                raise self._refuse("direct-tcpip", f"port forwarding to {where}: "
                                   f"{decision.reason}")
        self.app.audit(AuditEvent(Kind.FORWARD, "ok", user=ctx.user.name, source=ctx.source,
                                  target=target.name, detail={"to": where}))

        async def tunnel() -> Any:
            try:
                upstream = await self.app.upstream(ctx, target)
            except BastilleError as exc:
                raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, str(exc)) from None
            return await ctx.conn.forward_tunneled_connection(upstream, dest_host, dest_port)

        return tunnel()

    def server_requested(self, listen_host: str, listen_port: int) -> Any:
        """``ssh -R``: the *target* listens; its connections come back to the user."""
        assert self.ctx is not None
        ctx = self.ctx
        where = f"{listen_host}:{listen_port}"
        if ctx.login.target is None:
            self._refuse("tcpip-forward", "remote forwarding needs the USER+TARGET@BASTION "
                         "login form")
            return False
        try:
            target = self.app.authorize(ctx, ctx.login.target)
        except BastilleError as exc:
            self._refuse("tcpip-forward", str(exc))
            return False
        if not target.allow_remote_forwarding.allows(ctx.user.name, ctx.user.groups):
            self._refuse("tcpip-forward",
                         f"remote forwarding of {where} is not allowed on {target.name}")
            return False
        engine = self.app.policy_engine
        if engine is not None:
            decision = engine.decide_forward("remote", listen_host, listen_port,
                                             user=ctx.user.name,
                                             groups=sorted(ctx.user.groups), target=target.name)
            if decision.action != "allow":
                self._refuse("tcpip-forward", f"remote forwarding of {where}: {decision.reason}")
                return False
        self.app.audit(AuditEvent(Kind.FORWARD, "ok", user=ctx.user.name, source=ctx.source,
                                  target=target.name, detail={"remote": where}))
        return self._remote_listener(target, listen_host, listen_port)

    async def _remote_listener(self, target: Any, listen_host: str, listen_port: int) -> Any:
        assert self.ctx is not None
        ctx = self.ctx
        try:
            upstream = await self.app.upstream(ctx, target)
        except BastilleError:
            return None
        bound: list[int] = [listen_port]

        def handler_factory(orig_host: str, orig_port: int) -> Any:
            async def handle(t_reader: Any, t_writer: Any) -> None:
                try:
                    u_reader, u_writer = await ctx.conn.open_connection(
                        listen_host, bound[0], orig_host, orig_port, encoding=None)
                except (asyncssh.Error, OSError):
                    t_writer.close()
                    return
                await _pipe_both(t_reader, t_writer, u_reader, u_writer)
            return handle

        try:
            listener = await upstream.start_server(handler_factory, listen_host, listen_port,
                                                   encoding=None)
        except (asyncssh.Error, OSError) as exc:
            log.info("remote forwarding on %s failed: %s", target.name, exc)
            return None
        bound[0] = listener.get_port()
        return listener

    def unix_connection_requested(self, dest_path: str) -> Any:
        raise self._refuse("direct-streamlocal", "Unix socket forwarding is not allowed")

    def unix_server_requested(self, listen_path: str) -> bool:
        self._refuse("streamlocal-forward", "Unix socket forwarding is not allowed")
        return False

    def tun_requested(self, unit: int | None) -> Any:
        raise self._refuse("tun", "tunnel devices are not allowed")

    def tap_requested(self, unit: int | None) -> Any:
        raise self._refuse("tap", "tap devices are not allowed")



async def _pipe_both(ar: Any, aw: Any, br: Any, bw: Any) -> None:
    """Copy bytes both ways between two stream pairs until both directions end."""

    async def copy(reader: Any, writer: Any) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.write_eof()
        except (asyncssh.Error, OSError):
            writer.close()

    await asyncio.gather(copy(ar, bw), copy(br, aw), return_exceptions=True)
    aw.close()
    bw.close()
