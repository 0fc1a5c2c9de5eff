"""SAML sign-in through the real web endpoint (TLS, aiohttp) against a real pysaml2 IdP in
its own process, driven by a scripted browser (plain HTTP form posts).

Covers the SSH login link (the path keyboard-interactive uses) and the approver sign-in,
and every refusal the issue lists: unsigned assertion, signature by another key, wrong
audience, expired, replayed response, wrong InResponseTo, XML signature wrapping; plus
a response signed only at the Response level, tampering after signing, not yet valid,
wrong Destination, wrong Recipient, another Issuer, SHA-1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config
from gateway.web.server import FLOW_COOKIE, PRE_COOKIE, SESSION_COOKIE, WebLoginError
from gateway.web.state import WebIdentity
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

GROUP_MAP = """
[saml.group_map]
ops = ["ops"]
eng = ["developers"]
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebThread, IdpProcess]]:
    root = tmp_path_factory.mktemp("saml")
    idp_port = free_port()
    files = write_idp_files(root / "idp", idp_port)
    cfg = write_config(root / "gw", web_port=free_port(),
                       saml=saml_section(files["metadata"], clock_skew='"30s"',
                                         group_map_table=GROUP_MAP))
    web = WebThread(load_config(cfg)).start()
    idp = IdpProcess(root / "idp", idp_port)
    try:
        idp.start(web.url("/saml/metadata"), web.cert)
        yield web, idp
    finally:
        idp.stop()
        web.stop()


def _ssh_login(web: WebThread, user: str = "dave") -> Any:
    return web.call(lambda: web.service.begin_ssh_login(user, "192.0.2.7:40022"))


def _result(web: WebThread, pending: Any, timeout: float = 10) -> WebIdentity:
    async def wait() -> WebIdentity:
        return await asyncio.wait_for(asyncio.shield(pending.result), timeout)
    return web.run(wait())


def _through_idp(web: WebThread, browser: Browser, page: Page, user: str,
                 attack: str = "") -> Page:
    """From the IdP login page to what the bastion answers at its ACS."""
    posted = idp_login(browser, page, user, attack)
    action, _fields = posted.form()
    assert action == web.url("/saml/acs")
    return browser.submit(posted)


# ------------------------------------------------------------------ the SSH login link


def test_ssh_login_link_signs_in_and_maps_groups(env: tuple[WebThread, IdpProcess]) -> None:
    web, _ = env
    pending = _ssh_login(web, "alice")
    url = web.service.login_url(pending.code)
    assert url.startswith("https://127.0.0.1:") and len(url.rsplit("/", 1)[1]) == 11
    b = Browser(web.cert)
    confirm = b.get(url)
    assert confirm.status == 200
    # the page names the SSH user and the client's address before anything happens
    assert "<b>alice</b>" in confirm.text and "192.0.2.7:40022" in confirm.text
    at_idp = b.submit(confirm)
    done = _through_idp(web, b, at_idp, "alice")
    assert done.status == 200 and "Signed in as alice" in done.text, done.text
    ident = _result(web, pending)
    assert ident.user == "alice" and ident.method == "saml"
    assert ident.groups == frozenset({"ops", "developers"})  # eng -> developers, ops -> ops
    assert ident.idp_groups == ("ops", "eng")
    assert ident.subject == "alice" and ident.issuer.endswith("/idp")
    # the link is one-time
    again = Browser(web.cert).get(url)
    assert again.status == 404 and "unknown, used or expired" in again.text


def test_other_identity_at_the_idp_is_refused(env: tuple[WebThread, IdpProcess]) -> None:
    web, _ = env
    pending = _ssh_login(web, "dave")
    b = Browser(web.cert)
    at_idp = b.submit(b.get(web.service.login_url(pending.code)))
    done = _through_idp(web, b, at_idp, "alice")
    assert done.status == 403
    assert "you signed in at the identity provider as &#x27;alice&#x27;, but asked for SSH " \
        "user &#x27;dave&#x27;" in done.text
    with pytest.raises(WebLoginError, match="as 'alice', but asked for SSH user 'dave'"):
        _result(web, pending)


def test_user_in_no_group_is_refused(env: tuple[WebThread, IdpProcess]) -> None:
    web, _ = env
    pending = _ssh_login(web, "carol")  # carol: no IdP group, not in [users]
    b = Browser(web.cert)
    done = _through_idp(web, b, b.submit(b.get(web.service.login_url(pending.code))), "carol")
    assert done.status == 403
    with pytest.raises(WebLoginError, match="carol is in no group with access"):
        _result(web, pending)


def test_login_confirmation_needs_its_csrf_token(env: tuple[WebThread, IdpProcess]) -> None:
    """A page elsewhere cannot post the confirmation for a link it knows (that would send
    the victim's browser to the IdP for the attacker's SSH login)."""
    web, _ = env
    pending = _ssh_login(web, "dave")
    url = web.service.login_url(pending.code)
    forged = Browser(web.cert).open(url, {"csrf": "0" * 64})
    assert forged.status == 403 and "CSRF" in forged.text
    b = Browser(web.cert)
    page = b.get(url)
    _, fields = page.form()
    cross = b.open(url, fields, headers={"Origin": "https://evil.example"})
    assert cross.status == 403
    # the link survived both attempts and still works from its own page
    assert b.submit(page).status == 200
    cookie = b.cookie(PRE_COOKIE)
    assert cookie is not None and cookie.secure


def test_unknown_code_is_404(env: tuple[WebThread, IdpProcess]) -> None:
    web, _ = env
    page = Browser(web.cert).get(web.url("/l/BCDFG-HJKLM"))
    assert page.status == 404


# ------------------------------------------------------------------ refusals

REFUSED = ["unsigned", "response_signed_only", "other_key", "tampered", "wrong_audience",
           "expired", "not_yet_valid", "wrong_in_response_to", "wrong_destination",
           "wrong_recipient", "xsw_wrap", "xsw_before", "xsw_extensions", "xsw_same_id",
           "other_issuer", "sha1", "unsolicited"]


@pytest.mark.parametrize("attack", REFUSED)
def test_forged_or_broken_response_is_refused(env: tuple[WebThread, IdpProcess],
                                              attack: str) -> None:
    """The IdP signs for bob; the attacks try to get in (as dave for the wrapping ones)."""
    web, _ = env
    pending = _ssh_login(web, "dave" if attack.startswith(("xsw", "tampered")) else "bob")
    b = Browser(web.cert)
    at_idp = b.submit(b.get(web.service.login_url(pending.code)))
    done = _through_idp(web, b, at_idp, "bob", attack)
    assert done.status == 403, (attack, done.text[:300])
    assert "the identity provider&#x27;s answer was rejected" in done.text
    with pytest.raises(WebLoginError, match="answer was rejected"):
        _result(web, pending)


@pytest.mark.parametrize("attack", ["unsigned", "other_key", "xsw_wrap", "expired"])
def test_refused_approver_sign_in_gets_no_session(env: tuple[WebThread, IdpProcess],
                                                  attack: str) -> None:
    web, _ = env
    b = Browser(web.cert)
    at_idp = b.get(web.url("/login/saml?next=/approvals"))
    done = _through_idp(web, b, at_idp, "dave", attack)
    assert done.status == 403
    assert b.cookie(SESSION_COOKIE) is None
    assert "Sign in" in b.get(web.url("/approvals")).text or \
        "Test IdP login" in b.get(web.url("/approvals")).text
    failed = [e for e in web.events if e.kind == "login" and e.outcome == "failed"]
    assert failed and failed[-1].detail["method"] == "saml"


def test_comment_in_the_signed_name_does_not_truncate_it(
        env: tuple[WebThread, IdpProcess]) -> None:
    """``dave<!---->.evil`` still verifies (c14n drops comments); the name read must be
    the whole ``dave.evil``, never ``dave``."""
    web, _ = env
    pending = _ssh_login(web, "dave")
    b = Browser(web.cert)
    at_idp = b.submit(b.get(web.service.login_url(pending.code)))
    done = _through_idp(web, b, at_idp, "dave.evil", "comment")
    assert done.status == 403
    with pytest.raises(WebLoginError, match=r"as 'dave\.evil', but asked for SSH user 'dave'"):
        _result(web, pending)


def test_unusable_user_name_is_refused(env: tuple[WebThread, IdpProcess]) -> None:
    """A name with a bidi override would be shown reversed in audit and approval lists."""
    web, _ = env
    b = Browser(web.cert)
    done = _through_idp(web, b, b.get(web.url("/login/saml")), "ops\u202eadmin")
    assert done.status == 403 and "user name bastille cannot use" in done.text
    assert b.cookie(SESSION_COOKIE) is None


def test_replayed_response_is_refused(env: tuple[WebThread, IdpProcess]) -> None:
    web, _ = env
    b = Browser(web.cert)
    posted = idp_login(b, b.get(web.url("/login/saml?next=/approvals")), "dave")
    action, fields = posted.form()
    first = b.open(action, fields)
    assert first.status == 200 and "dave" in first.text
    # the same post again: that sign-in is over
    assert b.open(action, fields).status == 400
    # in a new sign-in of the same browser: answers another request, and was used
    b.get(web.url("/login/saml?next=/approvals"))  # new flow cookie + AuthnRequest
    new_flow = b.cookie(FLOW_COOKIE)
    assert new_flow is not None
    replay = b.open(action, {"SAMLResponse": fields["SAMLResponse"],
                             "RelayState": new_flow.value})
    assert replay.status == 403 and "answer was rejected" in replay.text
    # another browser that captured the post has no flow cookie
    assert Browser(web.cert).open(action, fields).status == 400


def test_wrong_in_response_to_across_two_flows(env: tuple[WebThread, IdpProcess]) -> None:
    """A valid, signed, unused response for flow A posted as the answer of flow B."""
    web, _ = env
    a, b = Browser(web.cert), Browser(web.cert)
    posted_a = idp_login(a, a.get(web.url("/login/saml")), "dave")
    b.get(web.url("/login/saml"))
    flow_b = b.cookie(FLOW_COOKIE)
    assert flow_b is not None
    action, fields = posted_a.form()
    swapped = b.open(action, {"SAMLResponse": fields["SAMLResponse"],
                              "RelayState": flow_b.value})
    assert swapped.status == 403
    assert b.cookie(SESSION_COOKIE) is None


# ------------------------------------------------------------------ endpoint basics


def test_sp_metadata_and_headers(env: tuple[WebThread, IdpProcess]) -> None:
    web, _ = env
    b = Browser(web.cert)
    meta = b.get(web.url("/saml/metadata"))
    assert meta.status == 200
    assert f'entityID="{web.url("/saml/metadata")}"' in meta.text
    assert web.url("/saml/acs") in meta.text and "X509Certificate" in meta.text
    assert 'AuthnRequestsSigned="true"' in meta.text
    assert 'WantAssertionsSigned="true"' in meta.text
    page = b.get(web.service.login_url(_ssh_login(web).code))
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    assert any("HttpOnly" in c and "Secure" in c and "SameSite=Strict" in c
               for c in page.cookies_set)


def test_approver_session_cookie(env: tuple[WebThread, IdpProcess]) -> None:
    web, _ = env
    b = Browser(web.cert)
    at_idp = b.get(web.url("/login/saml?next=/approvals"))
    posted = idp_login(b, at_idp, "dave")
    action, fields = posted.form()
    acs = b.open(action, fields, follow=False)
    assert acs.status == 303 and acs.headers["Location"] == "/approvals"
    session = [c for c in acs.cookies_set if c.startswith(SESSION_COOKIE)]
    assert session and all(x in session[0] for x in ("Secure", "HttpOnly", "SameSite=Lax",
                                                     "Max-Age=600", "Path=/"))
    listed = b.get(web.url("/approvals"))
    assert listed.status == 200 and "signed in as dave (ops) via saml" in listed.text
    ok = [e for e in web.events if e.kind == "login" and e.outcome == "ok"]
    assert ok[-1].user == "dave" and ok[-1].detail == {"method": "saml", "via": "web",
                                                        "subject": "dave"}


def test_next_must_stay_on_this_site(env: tuple[WebThread, IdpProcess]) -> None:
    web, _ = env
    b = Browser(web.cert)
    for bad in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        at_idp = b.get(web.url(f"/login/saml?next={bad}"))
        acs = b.open(*idp_login(b, at_idp, "dave").form(), follow=False)
        assert acs.status == 303 and acs.headers["Location"] == "/approvals", bad


def test_idp_down_gives_a_clear_page(tmp_path: Path) -> None:
    """Sign-in with nothing listening at the IdP: the redirect still goes out (the IdP
    is the browser's business), but a config without a usable IdP is refused at load."""
    from gateway.errors import ConfigError

    bad = tmp_path / "idp.xml"
    bad.write_text("<md:EntityDescriptor xmlns:md='urn:oasis:names:tc:SAML:2.0:metadata' "
                   "entityID='x'/>")
    cfg = write_config(tmp_path / "gw", web_port=free_port(), saml=saml_section(bad))
    with pytest.raises(ConfigError, match="describes no identity provider"):
        load_config(cfg)
