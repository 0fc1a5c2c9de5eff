"""Approving from a browser end to end: a command through the real gateway waits for
approval; the webhook's link opens the web endpoint; approvers sign in at the real OIDC
provider of the SSO tests (npm oidc-provider: authorization code flow with PKCE), driven
by a scripted browser; the requester cannot approve their own request; a forged form is
refused; another approver's decision releases the waiting command.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import audit_events
from tests.e2e.rig import Rig, free_port
from tests.oidc.idp import Provider, have_node, npm_ci
from tests.saml.harness import Browser, Page

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(have_node() is not None, reason=str(have_node()))]

SECRET_ENV = "BASTILLE_TEST_OIDC_SECRET"


@pytest.fixture
def hook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


@pytest.fixture
def web_gateway(make_gateway: Any, hook: tuple[str, list[dict[str, Any]]],
                monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Rig, int]]:
    npm_ci()
    web_port = free_port()
    idp = Provider(free_port(),
                   redirect_uris=(f"https://127.0.0.1:{web_port}/oidc/callback",))
    idp.start()
    monkeypatch.setenv(SECRET_ENV, "bastille-test-secret")
    extra = f"""
[policy]
default = "allow"

[[policy.rules]]
name = "echo-needs-approval"
match = '^echo approve-me'
action = "approve"

[approvals]
approvers = ["group:ops"]
timeout = "60s"
webhook_url = "{hook[0]}"

[web]
listen = "127.0.0.1:{web_port}"

[oidc]
issuer = "{idp.issuer}"
client_id = "bastille"
client_secret_env = "{SECRET_ENV}"
"""
    try:
        yield make_gateway(extra=extra), web_port
    finally:
        idp.stop()


def _sign_in(b: Browser, url: str, login: str) -> Page:
    """Open ``url`` signed out: bastion -> IdP (login, consent) -> bastion -> ``url``."""
    page = b.get(url)
    for _ in range(4):
        if 'name="login"' in page.text:
            page = b.submit(page, prompt="login", login=login, password="any")
        elif 'name="prompt" value="consent"' in page.text:
            page = b.submit(page, prompt="consent")
        else:
            break
    return page


def test_approve_from_the_webhook_link_with_oidc(
        web_gateway: tuple[Rig, int], hook: tuple[str, list[dict[str, Any]]]) -> None:
    gw, web_port = web_gateway
    received = hook[1]
    cert = gw.data / "web" / "tls.crt"
    waiting = subprocess.Popen([*gw.ssh_args("alice"), "web1", "--", "echo approve-me-web"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not received and time.monotonic() < deadline:
            time.sleep(0.1)
        assert received, "the webhook was not called"
        link = received[0]["url"]
        rid = received[0]["request"]["id"]
        assert link == f"https://127.0.0.1:{web_port}/approvals/{rid}"

        # alice asked; she is an approver (group ops) but not for her own request
        a = Browser(cert)
        page = _sign_in(a, link, "alice")
        assert page.url == link, (page.url, page.text[:400])
        assert "signed in as alice" in page.text and "via oidc" in page.text
        assert "echo approve-me-web" in page.text and "This is your own request" in page.text
        own = a.submit(page, decision="approve", reason="me")
        assert own.status == 403 and "nobody may approve or deny their own request" in own.text

        # dave (only at the IdP, group ops): a forged form without his token is refused
        d = Browser(cert)
        page = _sign_in(d, link, "dave")
        assert "signed in as dave (ops) via oidc" in page.text
        forged = d.open(link, {"decision": "approve", "reason": "x"})
        assert forged.status == 403
        assert waiting.poll() is None, "the command ran before anyone approved it"
        done = d.submit(page, decision="approve", reason="ticket 42")
        assert done.status == 200 and f"Request #{rid} approved" in done.text
        out, err = waiting.communicate(timeout=30)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert waiting.returncode == 0, err
    assert out == b"approve-me-web\n"
    assert b"approved by dave" in err
    decided = audit_events(gw, kind="approval", outcome="approved", user="dave")
    assert decided and decided[0]["detail"]["method"] == "oidc"
    assert decided[0]["detail"]["via"] == "web" and decided[0]["detail"]["reason"] == "ticket 42"
    assert decided[0]["detail"]["subject"] == "dave"
    assert audit_events(gw, kind="approval", outcome="refused", user="alice", via="web")
    assert audit_events(gw, kind="login", outcome="ok", user="dave", method="oidc", via="web")
    assert "bastille-test-secret" not in gw.gateway.logs()
    assert "bastille-test-secret" not in (gw.data / "audit.jsonl").read_text()


def test_signed_out_decision_and_idp_refusal(web_gateway: tuple[Rig, int]) -> None:
    gw, web_port = web_gateway
    cert = gw.data / "web" / "tls.crt"
    b = Browser(cert)
    # a POST without a session is refused and changes nothing
    r = b.open(f"https://127.0.0.1:{web_port}/approvals/1", {"decision": "approve"})
    assert r.status == 401
    # a callback this browser never started is refused
    cb = b.get(f"https://127.0.0.1:{web_port}/oidc/callback?code=x&state=y")
    assert cb.status == 400 and "not (or no longer) in progress" in cb.text
