"""A real SAML 2.0 identity provider for the tests (pysaml2's IdP code), run in its own
process on a loopback port, and the helpers that start it.

    python tests/saml/idp.py --dir DIR --port PORT --sp-metadata-url URL --ca CERT

``write_idp_files(DIR, PORT)`` first creates the IdP's signing key and certificate, a
second ("attacker's") key pair, and the IdP metadata file the bastion pins. At start the
IdP fetches the bastion's SP metadata over HTTPS (verifying the bastion's certificate
with ``--ca``), and then verifies the signature of every AuthnRequest with the SP
certificate found there.

Endpoints: ``GET /sso/redirect`` (HTTP-Redirect binding) shows a login form;
``POST /sso/login`` (username, password: any password is accepted, this stands in for a
company IdP's login page) answers with the usual auto-submitting form that posts
``SAMLResponse`` and ``RelayState`` to the SP's ACS. A test may add ``attack=NAME`` to
the login form to get a forged or broken response (see ``ATTACKS``): the IdP builds it
with the same code path and real xmlsec1 signatures, only changed where the attack says.
"""

from __future__ import annotations

import argparse
import base64
import html
import re
import shutil
import ssl
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
if str(REPO) not in sys.path:  # run as a script: make `gateway` importable
    sys.path.insert(0, str(REPO))

USERS: dict[str, list[str]] = {"dave": ["ops"], "alice": ["ops", "eng"], "bob": ["eng"],
                               "carol": [], "dave.evil": ["eng"],
                               "ops\u202eadmin": ["ops"]}

ATTACKS = (
    "unsigned",              # no signature anywhere
    "response_signed_only",  # the Response is signed, the Assertion is not
    "other_key",             # signed by another key (its certificate in KeyInfo)
    "tampered",              # signed, then the user name changed
    "wrong_audience",        # AudienceRestriction names another SP
    "expired",               # NotOnOrAfter an hour ago
    "not_yet_valid",         # NotBefore in an hour
    "wrong_in_response_to",  # answers a request the SP never made
    "wrong_destination",     # Response Destination is another URL
    "wrong_recipient",       # SubjectConfirmationData Recipient is another URL
    "xsw_wrap",              # unsigned assertion for the victim around the signed one
    "xsw_before",            # unsigned assertion for the victim before the signed one
    "xsw_extensions",        # signed one moved into Extensions, unsigned one in its place
    "other_issuer",          # signed by the IdP key but Issuer is another entity
    "sha1",                  # signed by the IdP key with RSA-SHA1 (broken digest)
    "unsolicited",           # no InResponseTo at all (IdP-initiated)
    "xsw_same_id",           # unsigned assertion with the signed one's ID, before it
    "comment",               # a comment inserted in the signed user name after signing
)


def write_idp_files(root: Path, port: int) -> dict[str, Path]:
    """IdP key, certificate, metadata (and an attacker's key pair) under ``root``."""
    from gateway.web.tls import ensure_self_signed

    root.mkdir(parents=True, exist_ok=True)
    cert, key = ensure_self_signed(root / "idp.crt", root / "idp.key", ["test-idp"],
                                   server=False)
    other_cert, other_key = ensure_self_signed(root / "other.crt", root / "other.key",
                                               ["test-idp"], server=False)
    from saml2.config import IdPConfig
    from saml2.metadata import entity_descriptor

    conf = IdPConfig()
    conf.load(_config(port, cert, key, None))
    metadata = root / "idp-metadata.xml"
    metadata.write_text(str(entity_descriptor(conf)))
    return {"cert": cert, "key": key, "other_cert": other_cert, "other_key": other_key,
            "metadata": metadata}


def _config(port: int, cert: Path, key: Path, sp_metadata: Path | None) -> dict[str, Any]:
    from saml2 import BINDING_HTTP_REDIRECT
    from saml2.saml import NAME_FORMAT_BASIC, NAMEID_FORMAT_UNSPECIFIED

    base = f"http://127.0.0.1:{port}"
    conf: dict[str, Any] = {
        "entityid": f"{base}/idp",
        "xmlsec_binary": shutil.which("xmlsec1"),
        "key_file": str(cert.with_name(key.name)),
        "cert_file": str(cert),
        "delete_tmpfiles": True,
        "service": {"idp": {
            "name": "bastille test IdP",
            "endpoints": {"single_sign_on_service": [(f"{base}/sso/redirect",
                                                      BINDING_HTTP_REDIRECT)]},
            "want_authn_requests_signed": True,
            "name_id_format": [NAMEID_FORMAT_UNSPECIFIED],
            "policy": {"default": {"lifetime": {"minutes": 5},
                                   "attribute_restrictions": None,
                                   "name_form": NAME_FORMAT_BASIC}},
        }},
    }
    if sp_metadata is not None:
        conf["metadata"] = {"local": [str(sp_metadata)]}
    return conf


# --------------------------------------------------------------------------- the IdP


class Idp:
    def __init__(self, root: Path, port: int, sp_metadata: Path) -> None:
        from saml2.config import IdPConfig
        from saml2.server import Server

        self.root = root
        self.port = port
        conf = IdPConfig()
        conf.load(_config(port, root / "idp.crt", root / "idp.key", sp_metadata))
        self.server = Server(config=conf)
        self.tickets: dict[str, dict[str, str]] = {}
        self.attack = ""

    def sso(self, query: dict[str, str]) -> tuple[str, str]:
        from saml2 import BINDING_HTTP_REDIRECT
        from saml2.response import IncorrectlySigned

        try:  # verifies the redirect binding's signature with the SP metadata's cert
            req = self.server.parse_authn_request(
                query["SAMLRequest"], BINDING_HTTP_REDIRECT,
                relay_state=query.get("RelayState"), sigalg=query.get("SigAlg"),
                signature=query.get("Signature"))
        except IncorrectlySigned:
            return "403 Forbidden", "<p>AuthnRequest signature invalid</p>"
        sp = req.message.issuer.text
        ticket = uuid.uuid4().hex
        self.tickets[ticket] = {"id": req.message.id, "sp": sp,
                                "acs": req.message.assertion_consumer_service_url,
                                "relay": query.get("RelayState", "")}
        return "200 OK", (
            "<html><body><h1>Test IdP login</h1>"
            "<form method='post' action='/sso/login'>"
            f"<input type='hidden' name='ticket' value='{ticket}'>"
            "<input name='username'><input name='password' type='password'>"
            "<button>Sign in</button></form></body></html>")

    def login(self, form: dict[str, str]) -> tuple[str, str]:
        ticket = self.tickets.pop(form.get("ticket", ""), None)
        user = form.get("username", "")
        if ticket is None or user not in USERS:
            return "403 Forbidden", "<p>unknown ticket or user</p>"
        xml = self.response(ticket, user, form.get("attack", ""))
        encoded = base64.b64encode(xml.encode()).decode()
        return "200 OK", (
            "<html><body onload='document.forms[0].submit()'>"
            f"<form method='post' action='{html.escape(ticket['acs'])}'>"
            f"<input type='hidden' name='SAMLResponse' value='{encoded}'>"
            f"<input type='hidden' name='RelayState' value='{html.escape(ticket['relay'])}'>"
            "<noscript><button>Continue</button></noscript></form></body></html>")

    # ------------------------------------------------------------------ responses
    def _unsigned(self, ticket: dict[str, str], user: str, attack: str) -> Any:
        from saml2 import samlp
        from saml2.saml import NAMEID_FORMAT_UNSPECIFIED, NameID
        from saml2.time_util import instant

        in_response_to: str | None = "_never" + uuid.uuid4().hex \
            if attack == "wrong_in_response_to" else ticket["id"]
        if attack == "unsolicited":
            in_response_to = None
        identity = {"uid": [user], "groups": USERS[user], "mail": [f"{user}@example.test"]}
        text = self.server.create_authn_response(
            identity, in_response_to=in_response_to, destination=ticket["acs"],
            sp_entity_id=ticket["sp"], userid=user,
            name_id=NameID(format=NAMEID_FORMAT_UNSPECIFIED, text=user),
            authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"},
            sign_assertion=False, sign_response=False)
        resp = samlp.response_from_string(str(text))
        a = resp.assertion[0] if isinstance(resp.assertion, list) else resp.assertion
        cond = a.conditions
        scd = a.subject.subject_confirmation[0].subject_confirmation_data
        if attack == "wrong_audience":
            cond.audience_restriction[0].audience[0].text = "https://evil.example/sp"
        elif attack == "expired":
            cond.not_before = instant(time_stamp=int(time.time()) - 7200)
            cond.not_on_or_after = instant(time_stamp=int(time.time()) - 3600)
            scd.not_on_or_after = instant(time_stamp=int(time.time()) - 3600)
        elif attack == "not_yet_valid":
            cond.not_before = instant(time_stamp=int(time.time()) + 3600)
        elif attack == "wrong_destination":
            resp.destination = "https://evil.example/saml/acs"
        elif attack == "wrong_recipient":
            scd.recipient = "https://evil.example/saml/acs"
        elif attack == "other_issuer":
            a.issuer.text = "https://evil.example/idp"
        return resp

    def response(self, ticket: dict[str, str], user: str, attack: str) -> str:
        from saml2.s_utils import sid

        self.attack = attack
        resp = self._unsigned(ticket, user, attack)
        if attack == "unsigned":
            return str(resp)
        if attack == "response_signed_only":
            return self._sign(resp, resp.id, "Response", self.root / "idp.key",
                              self.root / "idp.crt")
        a = resp.assertion[0] if isinstance(resp.assertion, list) else resp.assertion
        other = attack == "other_key"
        key = self.root / ("other.key" if other else "idp.key")
        cert = self.root / ("other.crt" if other else "idp.crt")
        signed = self._sign(resp, a.id, "Assertion", key, cert)
        if attack == "tampered":
            return _replace_user(signed, user, "dave" if user != "dave" else "alice")
        if attack == "comment":  # "dave.evil" -> "dave<!---->.evil": c14n ignores comments
            head, dot, tail = user.partition(".")
            return signed.replace(f">{user}<", f">{head}<!---->{dot}{tail}<")
        if attack.startswith("xsw_"):
            return _wrap(signed, attack, victim="dave" if user != "dave" else "alice",
                         user=user, evil_id=sid())
        return signed

    def _sign(self, resp: Any, node_id: str, what: str, key: Path, cert: Path) -> str:
        from saml2 import samlp
        from saml2.saml import NAMESPACE as SAML_NS
        from saml2.sigver import pre_signature_part
        from saml2.xmldsig import DIGEST_SHA1, DIGEST_SHA256, SIG_RSA_SHA1, SIG_RSA_SHA256

        pub = "".join(line for line in cert.read_text().splitlines() if "-----" not in line)
        sha1 = self.attack == "sha1"
        sig = pre_signature_part(node_id, public_key=pub,
                                 digest_alg=DIGEST_SHA1 if sha1 else DIGEST_SHA256,
                                 sign_alg=SIG_RSA_SHA1 if sha1 else SIG_RSA_SHA256)
        if what == "Assertion":
            a = resp.assertion[0] if isinstance(resp.assertion, list) else resp.assertion
            a.signature = sig
            node = f"{SAML_NS}:Assertion"
        else:
            resp.signature = sig
            node = f"{samlp.NAMESPACE}:Response"
        return str(self.server.sec.sign_statement(str(resp), node, key_file=str(key),
                                                  node_id=node_id))


_ASSERTION = re.compile(r"<(?P<p>[\w.-]+:)?Assertion\b.*?</(?P=p)Assertion>", re.S)
_SIGNATURE = re.compile(r"<(?P<p>[\w.-]+:)?Signature\b.*?</(?P=p)Signature>", re.S)


def _replace_user(xml: str, user: str, victim: str) -> str:
    return xml.replace(f">{user}<", f">{victim}<")


def _wrap(signed: str, attack: str, *, victim: str, user: str, evil_id: str) -> str:
    """XML signature wrapping: the signed assertion kept intact (its signature still
    verifies), plus an unsigned assertion for ``victim`` where a naive SP would look."""
    m = _ASSERTION.search(signed)
    assert m is not None, signed[:500]
    good = m.group(0)
    prefix = m.group("p") or ""
    evil = _SIGNATURE.sub("", good, count=1)
    if attack != "xsw_same_id":
        evil = re.sub(r'\bID="[^"]+"', f'ID="{evil_id}"', evil, count=1)
    evil = _replace_user(evil, user, victim).replace(">eng<", ">ops<")
    if attack == "xsw_wrap":
        close = f"</{prefix}Conditions>"
        if close in evil:
            evil = evil.replace(close, f"{close}<{prefix}Advice>{good}</{prefix}Advice>", 1)
        else:
            evil = evil.replace(f"</{prefix}Assertion>",
                                f"<{prefix}Advice>{good}</{prefix}Advice></{prefix}Assertion>")
        return signed.replace(good, evil)
    if attack in ("xsw_before", "xsw_same_id"):
        return signed.replace(good, evil + good)
    # xsw_extensions: the signed assertion hidden in samlp:Extensions after the Issuer
    root = re.search(r"<(?P<p>[\w.-]+:)?Response\b", signed)
    assert root is not None
    rp = root.group("p") or ""
    body = signed.replace(good, evil)
    issuer = re.search(r"</(?:[\w.-]+:)?Issuer>", body)
    assert issuer is not None
    return body[:issuer.end()] + f"<{rp}Extensions>{good}</{rp}Extensions>" + \
        body[issuer.end():]


# --------------------------------------------------------------------------- WSGI


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


def serve(root: Path, port: int, sp_metadata_url: str, ca: Path) -> None:
    ctx = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(sp_metadata_url, context=ctx, timeout=5) as resp:
                sp_xml = resp.read()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    sp_file = root / "sp-metadata.xml"
    sp_file.write_bytes(sp_xml)
    idp = Idp(root, port, sp_file)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ["REQUEST_METHOD"] == "GET" and path == "/sso/redirect":
            query = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
            status, body = idp.sso(query)
        elif environ["REQUEST_METHOD"] == "POST" and path == "/sso/login":
            size = int(environ.get("CONTENT_LENGTH") or 0)
            form = dict(urllib.parse.parse_qsl(environ["wsgi.input"].read(size).decode()))
            status, body = idp.login(form)
        else:
            status, body = "404 Not Found", "not found"
        start_response(status, [("Content-Type", "text/html; charset=utf-8")])
        return [body.encode()]

    with make_server("127.0.0.1", port, app, handler_class=_Quiet) as httpd:
        print("READY", flush=True)
        httpd.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sp-metadata-url", required=True)
    ap.add_argument("--ca", type=Path, required=True)
    a = ap.parse_args()
    serve(a.dir, a.port, a.sp_metadata_url, a.ca)


if __name__ == "__main__":
    main()
