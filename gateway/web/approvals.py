"""Approving from a browser: the pending list, one request, approve or deny with a reason.

Same rules as ``approvals approve|deny`` over SSH (they are enforced in the approval
store, for every path): only configured approvers decide, nobody decides their own
request, a request is decided once. Every decision and every refusal is audited with
the approver's identity (user, sign-in method, IdP subject) and address.

What the requester controls (command, reason, user, target, rule) is masked with the
gateway's masking patterns (cloud keys, tokens, card numbers, ``policy.mask_patterns``)
and shown with ``common.safetext.visible`` before HTML escaping, so neither a secret nor
a control character nor markup reaches the approver's page.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from gateway.audit import AuditEvent, Kind
from gateway.config import Config
from gateway.core.masking import maskers_for
from gateway.web.pages import esc, hidden, message, page, when
from gateway.web.state import WebSession, same
from state.approvals import ApprovalError, Request

if TYPE_CHECKING:
    from state.approvals import Approvals


class Host(Protocol):
    """What the approval pages use of the web endpoint (:class:`gateway.web.server.
    WebService`); a protocol so that this module does not import the server."""

    config: Config
    prefix: str
    approvals: Approvals
    audit: Callable[[AuditEvent], None]
    clock: Callable[[], float]

    def html(self, body: str, status: int = 200) -> web.Response: ...

    def redirect(self, location: str) -> web.Response: ...

    def session(self, request: web.Request) -> WebSession | None: ...

    def source(self, request: web.Request) -> str: ...

    def same_origin(self, request: web.Request) -> bool: ...

MAX_REASON = 500  # characters of an approver's reason


def masker_for(config: Config) -> Callable[[str], str]:
    """Mask a stored command/reason as the recordings are masked (the gateway's one
    text masker, :mod:`gateway.core.masking`; patterns only here)."""
    return maskers_for(config.policy).text_for(None)


def add_routes(app: web.Application, service: Host) -> None:
    views = ApprovalViews(service)
    p = service.prefix
    app.router.add_get(f"{p}/approvals", views.list)
    app.router.add_get(f"{p}/approvals/{{rid:\\d+}}", views.show)
    app.router.add_post(f"{p}/approvals/{{rid:\\d+}}", views.decide)


class ApprovalViews:
    def __init__(self, service: Host) -> None:
        self.s = service
        self.mask = masker_for(service.config)

    def _who(self, sess: WebSession) -> str:
        groups = ", ".join(sorted(sess.identity.groups)) or "no groups"
        return f"signed in as {sess.identity.user} ({groups}) via {sess.identity.method}"

    def _is_approver(self, sess: WebSession) -> bool:
        return self.s.config.approvals.approvers.allows(sess.identity.user,
                                                        sess.identity.groups)

    def _session(self, request: web.Request) -> WebSession | web.Response:
        sess = self.s.session(request)
        if sess is not None:
            return sess
        here = urllib.parse.quote(request.path, safe="")
        return self.s.redirect(f"{self.s.prefix}/login?next={here}")

    async def list(self, request: web.Request) -> web.StreamResponse:
        sess = self._session(request)
        if isinstance(sess, web.Response):
            return sess
        if not self._is_approver(sess):
            return self.s.html(message("Not an approver", f"{sess.identity.user} is not an "
                                       "approver", who=self._who(sess)), 403)
        rows = []
        now = self.s.clock()
        for r in self.s.approvals.list():
            rows.append(f"<tr><td><a href='{self.s.prefix}/approvals/{r.id}'>#{r.id}</a></td>"
                        f"<td>{int(now - r.created)}s</td><td>{esc(r.user)}</td>"
                        f"<td>{esc(r.target)}</td><td>{esc(r.rule or '-')}</td>"
                        f"<td><code>{esc(self.mask(r.command))}</code></td></tr>")
        body = ("<table><tr><th>ID</th><th>Age</th><th>User</th><th>Target</th><th>Rule</th>"
                "<th>Request</th></tr>" + "".join(rows) + "</table>") if rows else \
            "<p>No pending approval requests.</p>"
        return self.s.html(page("Approval requests", body + self._logout(sess),
                                who=self._who(sess)))

    def _logout(self, sess: WebSession) -> str:
        return (f"<form method='post' action='{self.s.prefix}/logout'>"
                f"{hidden('csrf', sess.csrf)}<button type='submit'>Sign out</button></form>")

    def _detail(self, r: Request) -> str:
        rows = [("Request", f"#{r.id} ({'access' if r.kind == 'access' else 'command'})"),
                ("User", r.user), ("Target", r.target),
                ("Command" if r.kind != "access" else "Access", self.mask(r.command)),
                ("Rule", r.rule or "-"), ("Reason", self.mask(r.reason) or "-"),
                ("Session", r.session or "-"), ("Asked", when(r.created)),
                ("Expires", when(r.expires)), ("Status", r.status)]
        if r.kind == "access" and r.grant_seconds:
            rows.insert(4, ("Duration", f"{r.grant_seconds / 3600:g}h"))
        if r.decided_by:
            rows += [("Decided by", r.decided_by),
                     ("Decision reason", self.mask(r.decision_reason or "") or "-")]
        cells = "".join(f"<tr><th>{esc(k)}</th><td><code>{esc(v)}</code></td></tr>"
                        for k, v in rows)
        return f"<table>{cells}</table>"

    async def show(self, request: web.Request) -> web.StreamResponse:
        sess = self._session(request)
        if isinstance(sess, web.Response):
            return sess
        rid = int(request.match_info["rid"])
        self.s.approvals.expire_overdue()
        r = self.s.approvals.get(rid)
        if r is None:
            return self.s.html(message("No such request", f"There is no approval request "
                                       f"#{rid}.", who=self._who(sess)), 404)
        if not self._is_approver(sess):
            return self.s.html(message("Not an approver", f"{sess.identity.user} is not an "
                                       "approver", who=self._who(sess)), 403)
        body = self._detail(r)
        if r.status == "pending":
            if r.user == sess.identity.user:
                body += ("<p class='warn'>This is your own request: someone else must "
                         "decide it.</p>")
            body += (f"<form method='post' action='{self.s.prefix}/approvals/{r.id}'>"
                     f"{hidden('csrf', sess.csrf)}"
                     "<p><label>Reason (optional)<br><textarea name='reason' rows='2' "
                     f"maxlength='{MAX_REASON}'></textarea></label></p>"
                     "<button type='submit' name='decision' value='approve'>Approve</button>"
                     "<button type='submit' name='decision' value='deny'>Deny</button>"
                     "</form>")
        body += f"<p><a href='{self.s.prefix}/approvals'>All pending requests</a></p>"
        return self.s.html(page(f"Approval request #{r.id}", body, who=self._who(sess)))

    async def decide(self, request: web.Request) -> web.StreamResponse:
        sess = self.s.session(request)
        rid = int(request.match_info["rid"])
        form = await request.post()
        source = self.s.source(request)
        if sess is None:
            return self.s.html(message("Signed out", "Your browser session ended; sign in "
                                       "again and reopen the request."), 401)
        if not self.s.same_origin(request) or not same(str(form.get("csrf", "")), sess.csrf):
            self.s.audit(AuditEvent(Kind.APPROVAL, "refused", user=sess.identity.user,
                                    source=source, detail={"request": rid, "via": "web",
                                                           "error": "CSRF check failed"}))
            return self.s.html(message("Refused", "The form did not come from this page "
                                       "(CSRF check failed).", who=self._who(sess)), 403)
        decision = str(form.get("decision", ""))
        reason = " ".join(str(form.get("reason", "")).split())[:MAX_REASON]
        if decision not in ("approve", "deny"):
            return self.s.html(message("Refused", "Choose approve or deny.",
                                       who=self._who(sess)), 400)
        ident = sess.identity
        detail: dict[str, object] = {"request": rid, "via": "web", "method": ident.method,
                                     "subject": ident.subject, "issuer": ident.issuer}
        try:
            result = self.s.approvals.decide(
                rid, approver=ident.user, approver_groups=ident.groups,
                approvers=self.s.config.approvals.approvers, approve=decision == "approve",
                reason=reason)
        except ApprovalError as exc:
            self.s.audit(AuditEvent(Kind.APPROVAL, "refused", user=ident.user, source=source,
                                    detail={**detail, "error": str(exc)}))
            return self.s.html(message("Refused", str(exc), who=self._who(sess)), 403)
        self.s.audit(AuditEvent(Kind.APPROVAL, result.status, user=ident.user, source=source,
                                target=result.target, session=result.session,
                                detail={**detail, "requester": result.user,
                                        "command": self.mask(result.command),
                                        "reason": self.mask(reason)}))
        text = (f"Request #{rid} {result.status}: {result.user}@{result.target}: "
                f"{self.mask(result.command)}")
        return self.s.html(page(f"Request #{rid} {result.status}",
                                f"<p class='ok'>{esc(text)}</p>{self._detail(result)}"
                                f"<p><a href='{self.s.prefix}/approvals'>All pending "
                                "requests</a></p>", who=self._who(sess)))
