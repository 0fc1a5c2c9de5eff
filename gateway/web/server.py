"""The bastion's HTTPS endpoint (aiohttp): SAML sign-in for ``ssh user@bastion``,
approvers' sign-in (OIDC code flow with PKCE, or SAML) and approving from a browser.

Interface for the protocol adapters and the composition root (nothing else is needed):

* :meth:`WebService.start` / :meth:`WebService.stop`: the listener;
* :meth:`WebService.begin_ssh_login` -> a :class:`PendingLogin` whose ``code`` makes the
  one-time URL :meth:`WebService.login_url`; :meth:`WebService.wait_ssh_login` waits for
  the browser and returns a :class:`WebIdentity` or raises :class:`WebLoginError` with a
  message for the user;
* :meth:`WebService.approval_url` for the webhook's link.

Routes::

    GET  /l/CODE          confirm an SSH login (names the SSH user and source address)
    POST /l/CODE          (CSRF) go to the IdP for it; the link is then used up
    GET  /saml/metadata   this Service Provider's metadata, for the IdP administrator
    POST /saml/acs        the IdP's answer (HTTP-POST binding)
    GET  /login           approver sign-in: /login/saml or /login/oidc (?next=/approvals/7)
    GET  /oidc/callback   the OIDC IdP's answer (authorization code)
    GET  /approvals[/ID]  pending requests, one request (signed-in approvers)
    POST /approvals/ID    (CSRF) approve or deny with a reason
    POST /logout          (CSRF) end the browser session

Hardening: TLS only (TLS 1.2+), cookies ``__Host-`` prefixed, Secure, HttpOnly and
SameSite (Lax for the session, Strict for the login-confirmation CSRF cookie, None for the
short flow cookie that must come back with the IdP's cross-site POST); every page sent
with a CSP that allows no script, no framing and forms only to this origin and the IdP,
``Referrer-Policy: no-referrer`` (login links never leak), ``Cache-Control: no-store``
and HSTS. Request bodies are capped. No access log: URLs carry one-time codes.

Known limits: no X-Forwarded-For handling (expose the listener directly, not behind a
proxy that hides client addresses); state is in memory, so a restart ends browser
sessions and logins in progress, and several gateways need sticky routing.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from gateway.audit import AuditEvent, Kind
from gateway.auth.oidc import OidcClient, OidcError
from gateway.auth.saml import SamlError, SamlServiceProvider
from gateway.config import Config
from gateway.errors import WebLoginError
from gateway.web import approvals as approval_views
from gateway.web.oidc_login import OidcCodeLogin, pkce_pair
from gateway.web.pages import esc, hidden, message, page
from gateway.web.state import (
    FLOW_TTL,
    MAX_FLOWS,
    MAX_PENDING_LOGINS,
    MAX_SESSIONS,
    Expiring,
    Flow,
    PendingLogin,
    WebIdentity,
    WebSession,
    login_code,
    same,
    token,
)
from gateway.web.tls import ensure_self_signed, server_context
from state.approvals import Approvals

log = logging.getLogger("bastille.web")

SESSION_COOKIE = "__Host-bastille-session"
FLOW_COOKIE = "__Host-bastille-flow"
PRE_COOKIE = "__Host-bastille-pre"
# IdP user names accepted (they end up in audit records, approvals and terminals)
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
MAX_BODY = 512 * 1024  # bytes of a request body (a SAML response is ~10 KiB)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def principal_problem(config: Config, ident: WebIdentity) -> str | None:
    """Why this IdP identity may not use the bastion at all, or None."""
    if ident.user not in config.users and not ident.groups:
        return f"{ident.user} is in no group with access to this bastion; ask your administrator"
    return None


class WebService:
    """The web endpoint of one gateway process.

    Args:
        config: the whole config (``[web]`` must be set).
        audit: where audit events go.
        approvals: the approval queue (shared with the SSH side and the CLI).
        clock: seconds since the epoch (injected in tests).
    """

    def __init__(self, config: Config, *, audit: Callable[[AuditEvent], None],
                 approvals: Approvals, clock: Callable[[], float] = time.time) -> None:
        assert config.web is not None
        self.config = config
        self.settings = config.web
        self.base_url = self.settings.base_url
        parts = urllib.parse.urlsplit(self.base_url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.prefix = parts.path.rstrip("/")  # public_url may carry a path
        self.audit = audit
        self.approvals = approvals
        self.clock = clock
        self.logins: Expiring[PendingLogin] = Expiring(MAX_PENDING_LOGINS, clock)
        self.flows: Expiring[Flow] = Expiring(MAX_FLOWS, clock)
        self.sessions: Expiring[WebSession] = Expiring(MAX_SESSIONS, clock)
        self._csrf_key = secrets.token_bytes(32)
        self.saml: SamlServiceProvider | None = None
        self.oidc: OidcCodeLogin | None = None
        self._form_targets = "'self'"
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle
    @property
    def web_dir(self) -> Path:
        return self.config.data_dir / "web"

    async def start(self) -> None:
        """Create certificates if needed, load the SAML SP, listen."""
        s = self.settings
        host = urllib.parse.urlsplit(self.base_url).hostname or s.listen_host
        if s.tls_cert is not None and s.tls_key is not None:
            cert, key = s.tls_cert, s.tls_key
        else:
            names = [n for n in (host, s.listen_host, "localhost")
                     if n not in ("0.0.0.0", "::", "")]  # wildcards are no names
            cert, key = await asyncio.to_thread(
                ensure_self_signed, self.web_dir / "tls.crt", self.web_dir / "tls.key", names)
        targets = ["'self'"]
        if self.config.saml is not None:
            saml = self.config.saml
            sp_cert, sp_key = (saml.sp_cert, saml.sp_key) if saml.sp_key and saml.sp_cert \
                else await asyncio.to_thread(ensure_self_signed, self.web_dir / "saml-sp.crt",
                                             self.web_dir / "saml-sp.key",
                                             ["bastille-saml-sp"], server=False)
            self.saml = await asyncio.to_thread(SamlServiceProvider, saml, self.base_url,
                                                sp_key, sp_cert)
        if self.config.oidc is not None:
            self.oidc = OidcCodeLogin(OidcClient(self.config.oidc),
                                      f"{self.base_url}/oidc/callback")
            targets.append(_origin(self.config.oidc.issuer))
        if self.saml is not None:
            targets.append(_origin(self.saml.sso_url))
        self._form_targets = " ".join(dict.fromkeys(targets))
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._headers])
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, s.listen_host, s.listen_port,
                           ssl_context=server_context(cert, key), reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise OSError(exc.errno, f"web.listen {s.listen_host}:{s.listen_port}: "
                          f"{exc.strerror or exc}") from None
        addresses = self._runner.addresses
        self.port = int(addresses[0][1]) if addresses else s.listen_port
        log.info("web endpoint on https://%s:%d (links: %s)", s.listen_host, self.port,
                 self.base_url)

    async def stop(self) -> None:
        for pending in list(self.logins.items.values()):
            if not pending.result.done():
                pending.result.set_exception(WebLoginError("the bastion is shutting down"))
                pending.result.exception()
        self.logins.items.clear()
        self.sessions.items.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ SSH logins
    def login_url(self, code: str) -> str:
        return f"{self.base_url}/l/{code}"

    def approval_url(self, request_id: int) -> str:
        return f"{self.base_url}/approvals/{request_id}"

    def begin_ssh_login(self, ssh_user: str, source: str) -> PendingLogin:
        """A one-time browser login for an SSH connection (SAML must be configured)."""
        if self.saml is None:
            raise WebLoginError("single sign-on through the browser is not configured")
        if self.logins.full():
            raise WebLoginError("too many logins in progress; try again in a minute")
        now = self.clock()
        code = login_code()
        pending = PendingLogin(code=code, ssh_user=ssh_user, source=source, created=now,
                               expires=now + self.settings.login_ttl,
                               result=asyncio.get_running_loop().create_future())
        self.logins.put(code, pending)
        return pending

    async def wait_ssh_login(self, pending: PendingLogin) -> WebIdentity:
        """Wait for the browser; raises :class:`WebLoginError` (message for the user)."""
        remaining = max(0.0, pending.expires - self.clock())
        try:
            return await asyncio.wait_for(asyncio.shield(pending.result), remaining)
        except TimeoutError:
            raise WebLoginError("the login link expired before you signed in; connect again "
                                "for a new one") from None
        finally:
            self.logins.pop(pending.code)

    def cancel_ssh_login(self, pending: PendingLogin) -> None:
        """Forget a login whose SSH connection went away or asked again."""
        self.logins.pop(pending.code)
        if not pending.result.done():
            pending.result.set_exception(WebLoginError("this login was abandoned"))
            pending.result.exception()  # retrieved: nobody may be waiting

    def _fail_login(self, code: str, why: str) -> None:
        pending = self.logins.get(code)
        if pending is not None and not pending.result.done():
            pending.result.set_exception(WebLoginError(why))

    # ------------------------------------------------------------------ HTTP plumbing
    def _routes(self, app: web.Application) -> None:
        p = self.prefix
        app.router.add_get(f"{p}/", self.index)
        app.router.add_get(f"{p}/l/{{code}}", self.login_confirm)
        app.router.add_post(f"{p}/l/{{code}}", self.login_go)
        app.router.add_get(f"{p}/saml/metadata", self.saml_metadata)
        app.router.add_post(f"{p}/saml/acs", self.saml_acs)
        app.router.add_get(f"{p}/login", self.login_choose)
        app.router.add_get(f"{p}/login/{{method}}", self.login_start)
        app.router.add_get(f"{p}/oidc/callback", self.oidc_callback)
        app.router.add_post(f"{p}/logout", self.logout)
        approval_views.add_routes(app, self)

    @web.middleware
    async def _headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'none'; style-src 'unsafe-inline'; "
                                    f"form-action {self._form_targets}; "
                                    "frame-ancestors 'none'; base-uri 'none'")
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
        return response

    @staticmethod
    def html(body: str, status: int = 200) -> web.Response:
        return web.Response(text=body, status=status, content_type="text/html",
                            charset="utf-8")

    def redirect(self, location: str) -> web.Response:
        return web.Response(status=303, headers={"Location": location})

    def set_cookie(self, resp: web.StreamResponse, name: str, value: str, *, max_age: float,
                   samesite: str) -> None:
        resp.set_cookie(name, value, max_age=int(max_age), path="/", secure=True,
                        httponly=True, samesite=samesite)

    def csrf_for(self, purpose: str, binding: str) -> str:
        return hmac.new(self._csrf_key, f"{purpose}\0{binding}".encode(),
                        hashlib.sha256).hexdigest()

    def same_origin(self, request: web.Request) -> bool:
        """False for a browser POST that says it comes from another site."""
        origin = request.headers.get("Origin")
        return origin is None or origin == self.origin

    def session(self, request: web.Request) -> WebSession | None:
        sid = request.cookies.get(SESSION_COOKIE)
        return self.sessions.get(sid) if sid else None

    @staticmethod
    def source(request: web.Request) -> str:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        return f"{peer[0]}:{peer[1]}" if peer else (request.remote or "")

    # ------------------------------------------------------------------ pages
    async def index(self, request: web.Request) -> web.StreamResponse:
        return self.redirect(f"{self.prefix}/approvals")

    async def login_confirm(self, request: web.Request) -> web.StreamResponse:
        """The one-time link's page: says which SSH login it completes; changes nothing."""
        pending = self.logins.get(request.match_info["code"])
        if pending is None or pending.started:
            return self.html(message("Login link not valid", "This login link is unknown, "
                                     "used or expired. Connect with ssh again for a new one."),
                             404)
        pre = request.cookies.get(PRE_COOKIE) or token()
        body = (f"<p>This signs the SSH user <b>{esc(pending.ssh_user)}</b> in at the bastion, "
                f"for the connection from <code>{esc(pending.source)}</code>.</p>"
                "<p class='warn'>Continue only if you started this login yourself, in your "
                "terminal, just now. Someone who sends you a login link is asking you to let "
                "them in as you.</p>"
                f"<form method='post' action='{self.prefix}/l/{esc(pending.code)}'>"
                f"{hidden('csrf', self.csrf_for('login:' + pending.code, pre))}"
                "<button type='submit'>Continue to single sign-on</button></form>")
        resp = self.html(page("SSH login", body))
        self.set_cookie(resp, PRE_COOKIE, pre, max_age=self.settings.login_ttl,
                        samesite="Strict")
        return resp

    async def login_go(self, request: web.Request) -> web.StreamResponse:
        code = request.match_info["code"]
        form = await request.post()
        pre = request.cookies.get(PRE_COOKIE, "")
        pending = self.logins.get(code)
        if pending is None or pending.started:
            return self.html(message("Login link not valid", "This login link is unknown, "
                                     "used or expired. Connect with ssh again."), 404)
        if not pre or not self.same_origin(request) or \
                not same(str(form.get("csrf", "")), self.csrf_for("login:" + code, pre)):
            return self.html(message("Refused", "The form did not come from this page "
                                     "(CSRF check failed). Open the login link again."), 403)
        if self.flows.full():
            return self.html(message("Busy", "Too many sign-ins in progress; try again."), 503)
        pending.started = True  # the link is used up, whatever happens at the IdP
        flow = Flow(id=token(), kind="ssh", method="saml", expires=self.clock() + FLOW_TTL,
                    login_code=code)
        return await self._to_saml(flow)

    async def _to_saml(self, flow: Flow) -> web.StreamResponse:
        assert self.saml is not None
        try:
            flow.saml_request, location = await asyncio.to_thread(self.saml.begin, flow.id)
        except SamlError as exc:
            return self.html(message("Single sign-on unavailable", str(exc)), 503)
        self.flows.put(flow.id, flow)
        resp = self.redirect(location)
        self.set_cookie(resp, FLOW_COOKIE, flow.id, max_age=FLOW_TTL, samesite="None")
        return resp

    async def saml_metadata(self, request: web.Request) -> web.StreamResponse:
        if self.saml is None:
            raise web.HTTPNotFound()
        xml = await asyncio.to_thread(self.saml.metadata)
        return web.Response(body=xml, content_type="application/samlmetadata+xml")

    def _take_flow(self, request: web.Request, flow_id: str, method: str) -> Flow | None:
        """The flow this browser started (its cookie must match), removed: one answer."""
        flow = self.flows.pop(flow_id) if flow_id else None
        cookie = request.cookies.get(FLOW_COOKIE, "")
        if flow is None:
            return None
        if flow.method != method or not cookie or not same(cookie, flow.id):
            log.warning("sign-in answer for flow of another browser refused")
            if flow.kind == "ssh":
                self._fail_login(flow.login_code, "the sign-in was not completed in the "
                                 "browser that started it")
            if flow.saml_request and self.saml is not None:
                self.saml.forget(flow.saml_request)
            return None
        return flow

    async def saml_acs(self, request: web.Request) -> web.StreamResponse:
        if self.saml is None:
            raise web.HTTPNotFound()
        form = await request.post()
        flow = self._take_flow(request, str(form.get("RelayState", "")), "saml")
        if flow is None:
            return self.html(message("Sign-in not in progress", "This sign-in is not (or no "
                                     "longer) in progress in this browser. Start again."), 400)
        saml = self.config.saml
        assert saml is not None
        try:
            ident = await asyncio.to_thread(self.saml.finish, str(form.get("SAMLResponse", "")),
                                            flow.saml_request)
        except SamlError as exc:
            return self._sign_in_failed(request, flow, str(exc))
        web_ident = WebIdentity(user=ident.user, groups=saml.map_groups(ident.idp_groups),
                                method="saml", subject=ident.name_id, issuer=ident.issuer,
                                idp_groups=ident.idp_groups)
        return self._signed_in(request, flow, web_ident)

    def _sign_in_failed(self, request: web.Request, flow: Flow, why: str) -> web.Response:
        if flow.kind == "ssh":
            self._fail_login(flow.login_code, why)
        else:
            self.audit(AuditEvent(Kind.LOGIN, "failed", source=self.source(request),
                                  detail={"method": flow.method, "via": "web", "reason": why}))
        return self.html(message("Sign-in refused", why), 403)

    def _signed_in(self, request: web.Request, flow: Flow, ident: WebIdentity) -> web.Response:
        if not _USER_NAME.fullmatch(ident.user):
            return self._sign_in_failed(request, flow, "the identity provider sent a user "
                                        "name bastille cannot use (letters, digits, . _ @ - "
                                        "only); ask your administrator")
        if flow.kind == "ssh":
            pending = self.logins.get(flow.login_code)
            if pending is None or pending.result.done():
                return self.html(message("Login expired", "The SSH login this sign-in was "
                                         "for is over. Connect with ssh again."), 410)
            if ident.user != pending.ssh_user:
                return self._sign_in_failed(
                    request, flow, f"you signed in at the identity provider as "
                    f"{ident.user!r}, but asked for SSH user {pending.ssh_user!r}")
            problem = principal_problem(self.config, ident)
            if problem:
                return self._sign_in_failed(request, flow, problem)
            pending.result.set_result(ident)
            return self.html(message("Signed in", f"Signed in as {ident.user}. Go back to "
                                     "your terminal and press Enter.", "ok"))
        sess = WebSession(id=token(), identity=self._with_config_groups(ident), csrf=token(),
                          expires=self.clock() + self.settings.session_ttl,
                          source=self.source(request))
        if self.sessions.full():
            return self.html(message("Busy", "Too many browser sessions; try later."), 503)
        self.sessions.put(sess.id, sess)
        self.audit(AuditEvent(Kind.LOGIN, "ok", user=ident.user, source=sess.source,
                              detail={"method": ident.method, "via": "web",
                                      "subject": ident.subject}))
        resp = self.redirect(flow.next_path)
        self.set_cookie(resp, SESSION_COOKIE, sess.id, max_age=self.settings.session_ttl,
                        samesite="Lax")
        resp.del_cookie(FLOW_COOKIE, path="/")
        return resp

    def _with_config_groups(self, ident: WebIdentity) -> WebIdentity:
        """A user also in ``[users]`` keeps their configured groups plus the IdP's."""
        known = self.config.users.get(ident.user)
        if known is None:
            return ident
        return WebIdentity(user=ident.user, groups=ident.groups | known.groups,
                           method=ident.method, subject=ident.subject, issuer=ident.issuer,
                           idp_groups=ident.idp_groups)

    # ------------------------------------------------------------------ approver sign-in
    def _next(self, request: web.Request) -> str:
        nxt = request.query.get("next", "")
        ok = nxt.startswith(f"{self.prefix}/") and not nxt.startswith("//") and \
            "\\" not in nxt and all(c.isprintable() for c in nxt)
        return nxt if ok else f"{self.prefix}/approvals"

    async def login_choose(self, request: web.Request) -> web.StreamResponse:
        nxt = urllib.parse.quote(self._next(request), safe="")
        methods = [m for m, on in (("oidc", self.oidc), ("saml", self.saml)) if on]
        if len(methods) == 1:
            return self.redirect(f"{self.prefix}/login/{methods[0]}?next={nxt}")
        links = "".join(f"<p><a href='{self.prefix}/login/{m}?next={nxt}'>Sign in with "
                        f"{'OpenID Connect' if m == 'oidc' else 'SAML'}</a></p>"
                        for m in methods)
        return self.html(page("Sign in", links))

    async def login_start(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        if self.flows.full():
            return self.html(message("Busy", "Too many sign-ins in progress; try again."), 503)
        flow = Flow(id=token(), kind="web", method=method, expires=self.clock() + FLOW_TTL,
                    next_path=self._next(request))
        if method == "saml" and self.saml is not None:
            return await self._to_saml(flow)
        if method == "oidc" and self.oidc is not None:
            verifier, challenge = pkce_pair()
            flow.oidc_verifier, flow.oidc_nonce = verifier, token()
            try:
                url = await self.oidc.authorize_url(flow.id, flow.oidc_nonce, challenge)
            except OidcError as exc:
                return self.html(message("Single sign-on unavailable", str(exc)), 503)
            self.flows.put(flow.id, flow)
            resp = self.redirect(url)
            self.set_cookie(resp, FLOW_COOKIE, flow.id, max_age=FLOW_TTL, samesite="Lax")
            return resp
        raise web.HTTPNotFound()

    async def oidc_callback(self, request: web.Request) -> web.StreamResponse:
        if self.oidc is None:
            raise web.HTTPNotFound()
        flow = self._take_flow(request, request.query.get("state", ""), "oidc")
        if flow is None:
            return self.html(message("Sign-in not in progress", "This sign-in is not (or no "
                                     "longer) in progress in this browser. Start again."), 400)
        if "error" in request.query or "code" not in request.query:
            return self._sign_in_failed(request, flow, "the identity provider did not sign "
                                        f"you in ({request.query.get('error', 'no code')})")
        try:
            ident = await self.oidc.finish(request.query["code"], flow.oidc_verifier,
                                           flow.oidc_nonce)
        except OidcError as exc:
            return self._sign_in_failed(request, flow, str(exc))
        return self._signed_in(request, flow, ident)

    async def logout(self, request: web.Request) -> web.StreamResponse:
        sess = self.session(request)
        form = await request.post()
        if sess is not None and self.same_origin(request) and \
                same(str(form.get("csrf", "")), sess.csrf):
            self.sessions.pop(sess.id)
        resp = self.html(message("Signed out", "You are signed out.", "ok"))
        resp.del_cookie(SESSION_COOKIE, path="/")
        return resp


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else "'self'"


def require_session(service: WebService, request: web.Request) -> WebSession | web.Response:
    """The signed-in session, or a redirect to sign in (back to this page after)."""
    sess = service.session(request)
    if sess is not None:
        return sess
    here = urllib.parse.quote(request.path, safe="")
    return service.redirect(f"{service.prefix}/login?next={here}")


__all__ = ["PendingLogin", "WebIdentity", "WebLoginError", "WebService", "require_session"]
