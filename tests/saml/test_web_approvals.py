"""Approving from a browser, through the real web endpoint, with approvers signed in at the
real test SAML IdP (the OIDC sign-in is driven end to end in tests/e2e/test_web.py).

The approval queue is the real SQLite store the gateway's sessions wait on.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from gateway.config import load_config
from gateway.web.state import Expiring, WebIdentity, WebSession
from tests.e2e.rig import free_port
from tests.saml.harness import (
    Browser,
    IdpProcess,
    Page,
    WebThread,
    have_xmlsec,
    idp_login,
    saml_section,
    write_config,
)
from tests.saml.idp import write_idp_files

pytestmark = pytest.mark.skipif(have_xmlsec() is not None, reason=str(have_xmlsec()))

SECRET = "AKIAIOSFODNN7EXAMPLE"
NASTY = f"aws s3 ls --key {SECRET} \x1b[2K\rsystemctl restart nginx <b>bold</b> \u202e"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebThread]:
    root = tmp_path_factory.mktemp("webapprovals")
    idp_port = free_port()
    files = write_idp_files(root / "idp", idp_port)
    cfg = write_config(root / "gw", web_port=free_port(),
                       saml=saml_section(files["metadata"]))
    web = WebThread(load_config(cfg)).start()
    idp = IdpProcess(root / "idp", idp_port)
    try:
        idp.start(web.url("/saml/metadata"), web.cert)
        yield web
    finally:
        idp.stop()
        web.stop()


def _request(web: WebThread, user: str = "bob", command: str = NASTY) -> int:
    r = web.approvals.create(user=user, target="web1", session="s-1", command=command,
                             rule="approve-service-stop", reason="matches rule "
                             "approve-service-stop", timeout=300)
    return r.id


def _sign_in_to(web: WebThread, path: str, user: str) -> tuple[Browser, Page]:
    """Open ``path`` signed out: the bastion sends the browser to the IdP and back."""
    b = Browser(web.cert)
    first = b.get(web.url(path))
    assert "Test IdP login" in first.text  # one sign-in method configured: straight there
    posted = idp_login(b, first, user)
    page = b.submit(posted)
    assert page.url == web.url(path), page.url
    return b, page


def test_approve_from_the_webhook_link(env: WebThread) -> None:
    web = env
    rid = _request(web)
    link = web.service.approval_url(rid)
    assert link == web.url(f"/approvals/{rid}")
    b, page = _sign_in_to(web, f"/approvals/{rid}", "dave")
    assert page.status == 200 and "signed in as dave (ops) via saml" in page.text
    # what the requester controls is masked and shown, never interpreted
    assert SECRET not in page.text
    assert "aws s3 ls --key ****" in page.text
    assert "\\x1b[2K\\rsystemctl restart nginx" in page.text and "\x1b" not in page.text
    assert "&lt;b&gt;bold&lt;/b&gt;" in page.text and "<b>bold</b>" not in page.text
    assert "\\u202e" in page.text and "\u202e" not in page.text
    assert "approve-service-stop" in page.text and "bob" in page.text and "web1" in page.text
    done = b.submit(page, decision="approve", reason="change #42 \x1b]52;c;AAAA\x07")
    assert done.status == 200 and f"Request #{rid} approved" in done.text
    r = web.approvals.get(rid)
    assert r is not None and r.status == "approved" and r.decided_by == "dave"
    assert r.decision_reason == "change #42 \x1b]52;c;AAAA\x07"
    assert "\\x1b]52;c;AAAA\\x07" in done.text
    ev = [e for e in web.events if e.kind == "approval" and e.detail.get("request") == rid]
    assert [e.outcome for e in ev] == ["approved"]
    assert ev[0].user == "dave" and ev[0].target == "web1" and ev[0].session == "s-1"
    assert ev[0].detail["via"] == "web" and ev[0].detail["method"] == "saml"
    assert ev[0].detail["subject"] == "dave" and ev[0].detail["requester"] == "bob"
    assert SECRET not in str(ev[0].detail)
    # decided once
    again = b.open(web.url(f"/approvals/{rid}"), {"csrf": _csrf(page), "decision": "deny"})
    assert again.status == 403 and "already approved" in again.text


def _csrf(page: Page) -> str:
    m = re.search(r"name='csrf' value='([^']+)'", page.text)
    assert m is not None
    return m.group(1)


def test_deny_with_reason(env: WebThread) -> None:
    web = env
    rid = _request(web, command="systemctl stop postgresql")
    b, page = _sign_in_to(web, f"/approvals/{rid}", "alice")
    assert "signed in as alice (admins, eng, ops) via saml" in page.text  # [users] + IdP groups
    done = b.submit(page, decision="deny", reason="not during business hours")
    assert f"Request #{rid} denied" in done.text
    r = web.approvals.get(rid)
    assert r is not None and (r.status, r.decided_by, r.decision_reason) == \
        ("denied", "alice", "not during business hours")


def test_self_approval_is_refused(env: WebThread) -> None:
    web = env
    rid = _request(web, user="dave", command="systemctl restart nginx")
    b, page = _sign_in_to(web, f"/approvals/{rid}", "dave")
    assert "This is your own request" in page.text
    refused = b.submit(page, decision="approve")
    assert refused.status == 403
    assert "nobody may approve or deny their own request" in refused.text
    r = web.approvals.get(rid)
    assert r is not None and r.status == "pending"
    ev = [e for e in web.events if e.kind == "approval" and e.detail.get("request") == rid]
    assert ev and ev[-1].outcome == "refused" and ev[-1].user == "dave"


def test_csrf_is_required(env: WebThread) -> None:
    web = env
    rid = _request(web, command="systemctl restart nginx")
    b, page = _sign_in_to(web, f"/approvals/{rid}", "dave")
    url = web.url(f"/approvals/{rid}")
    assert b.open(url, {"decision": "approve"}).status == 403
    assert b.open(url, {"decision": "approve", "csrf": "x" * 43}).status == 403
    cross = b.open(url, {"decision": "approve", "csrf": _csrf(page)},
                   headers={"Origin": "https://evil.example"})
    assert cross.status == 403 and "CSRF" in cross.text
    # another browser (no session) with a stolen token gets nothing either
    assert Browser(web.cert).open(url, {"decision": "approve", "csrf": _csrf(page)}).status \
        == 401
    r = web.approvals.get(rid)
    assert r is not None and r.status == "pending"
    # the real form still works
    assert "approved" in b.submit(page, decision="approve").text


def test_non_approver_sees_nothing(env: WebThread) -> None:
    web = env
    rid = _request(web, user="alice", command="systemctl restart nginx")
    b, page = _sign_in_to(web, f"/approvals/{rid}", "bob")  # bob: group eng only
    assert page.status == 403 and "bob is not an approver" in page.text
    assert "systemctl" not in page.text
    assert b.get(web.url("/approvals")).status == 403


def test_list_and_logout(env: WebThread) -> None:
    web = env
    rid = _request(web, command="systemctl restart haproxy")
    b, page = _sign_in_to(web, "/approvals", "dave")
    assert f"/approvals/{rid}'>#{rid}</a>" in page.text and "haproxy" in page.text
    out = b.submit(page)  # the sign-out form
    assert "signed out" in out.text
    again = b.get(web.url("/approvals"))
    assert "Test IdP login" in again.text  # back to signing in


def test_sessions_expire() -> None:
    now = [1000.0]
    store: Expiring[WebSession] = Expiring(2, lambda: now[0])
    ident = WebIdentity("dave", frozenset({"ops"}), "saml", "dave", "idp")
    store.put("a", WebSession("a", ident, "c", expires=1900.0))
    store.put("b", WebSession("b", ident, "c", expires=1100.0))
    assert store.full()
    now[0] = 1100.0
    assert store.get("b") is None and store.get("a") is not None and not store.full()
    now[0] = 1900.0
    assert store.get("a") is None
