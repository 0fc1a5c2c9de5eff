"""SAML 2.0 single sign-on: the bastion as a Service Provider (pysaml2 + xmlsec1).

The web endpoint (gateway/web/) drives it:

1. :meth:`SamlServiceProvider.begin` makes a signed AuthnRequest (HTTP-Redirect binding)
   and remembers its ID as outstanding, bound to one browser flow.
2. The IdP posts a Response to the ACS (HTTP-POST binding);
   :meth:`SamlServiceProvider.finish` validates it for *that* flow's request:

   * a structural guard first (our own, before pysaml2 sees the XML): one Response, at
     most one Signature on it, exactly one Assertion and it is a direct child of the
     Response, IDs unique in the document, the Assertion carries an enveloped signature
     whose single Reference points at its own ID, and no EncryptedAssertion. That refuses
     the XML signature wrapping shapes (an unsigned assertion around, before or after the
     signed one; a signed one moved into Extensions or Advice) however pysaml2 would read
     them;
   * pysaml2 then checks the assertion's signature with the IdP certificate *from the
     local metadata file only* (``only_use_keys_in_metadata``; a certificate embedded in
     the message is never trusted), Destination, Recipient, InResponseTo (the flow's
     request only; unsolicited responses are refused), Audience (our entity id),
     NotBefore/NotOnOrAfter with ``clock_skew``, and the status;
   * one-time use: the request is consumed on the first answer (good or bad), and the
     Response and Assertion IDs are remembered until they expire, so a replay is refused
     even by a later flow.
3. :meth:`SamlServiceProvider.identity` maps the attributes to a user name
   (``username_attribute``, or the NameID) and IdP groups (``groups_attribute``).

Known limits: encrypted assertions are not supported (use TLS to the ACS, which is the
only transport); Single Logout is not implemented (bastion logins are short-lived and
bindings are revoked with ``bastille oidc revoke``); the AuthnRequest is signed with the
SP key, but IdPs that need an artifact binding or a metadata aggregate with several IdPs
are not supported. xmlsec1 runs as a subprocess per signature check (a whole response: ~40 ms), in a
worker thread.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from defusedxml import ElementTree as SafeET

from gateway.config import SamlSettings
from gateway.config.saml_metadata import (
    NS_DS,
)
from gateway.errors import AuthError

log = logging.getLogger("bastille.saml")

NS_SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
NS_SAML = "urn:oasis:names:tc:SAML:2.0:assertion"

MAX_RESPONSE = 256 * 1024  # bytes of base64 SAMLResponse accepted (real ones are ~10 KiB)
MAX_OUTSTANDING = 4096  # AuthnRequests waiting for an answer (each login holds one)
REQUEST_TTL = 600.0  # an AuthnRequest unanswered this long is forgotten
REJECTED = "the identity provider's answer was rejected"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
#: Signature and digest algorithms accepted (SHA-1 is refused: collisions are practical)
SIGNATURE_ALGS = frozenset({
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
})
DIGEST_ALGS = frozenset({
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
})

# pysaml2 logs whole messages and xmlsec1 command lines at debug level, and assertions
# are bearer credentials until they expire: its own logging stays off; the reasons of
# every refusal are logged here, without the message.
logging.getLogger("saml2").setLevel(logging.CRITICAL)


class SamlError(AuthError):
    """A SAML login failed; the message is meant for the user (reasons go to the log)."""


@dataclass(frozen=True)
class SamlIdentity:
    """Who the IdP says signed in."""

    user: str
    idp_groups: tuple[str, ...]
    name_id: str
    issuer: str


def structural_check(xml: bytes, idp_entity_id: str) -> str:
    """Refuse shapes that XML signature wrapping needs; return the Assertion's ID.

    Raises:
        SamlError: with a generic message; the reason is logged.
    """
    try:
        root = SafeET.fromstring(xml)
    except Exception as exc:
        _reject(f"unparsable response: {exc}")
    if root.tag != f"{{{NS_SAMLP}}}Response":
        _reject(f"root element is {root.tag}, not a Response")
    ids = [el.get("ID") for el in root.iter() if el.get("ID") is not None]
    if len(ids) != len(set(ids)):
        _reject("duplicate ID attributes")
    if root.find(f".//{{{NS_SAML}}}EncryptedAssertion") is not None:
        _reject("encrypted assertions are not supported")
    assertions = list(root.iter(f"{{{NS_SAML}}}Assertion"))
    direct = root.findall(f"{{{NS_SAML}}}Assertion")
    if len(assertions) != 1 or len(direct) != 1:
        _reject(f"{len(assertions)} assertions ({len(direct)} direct); exactly one expected")
    assertion = direct[0]
    aid = assertion.get("ID") or ""
    sigs = list(root.iter(f"{{{NS_DS}}}Signature"))
    own = assertion.findall(f"{{{NS_DS}}}Signature")
    outer = root.findall(f"{{{NS_DS}}}Signature")
    if len(own) != 1:
        _reject("the assertion is not signed")
    if len(sigs) != len(own) + len(outer):
        _reject("a signature in an unexpected place")
    for sig, owner in ((own[0], aid), *((s, root.get("ID") or "") for s in outer)):
        refs = sig.findall(f"{{{NS_DS}}}SignedInfo/{{{NS_DS}}}Reference")
        if len(refs) != 1 or refs[0].get("URI") != f"#{owner}" or not owner:
            _reject("a signature does not cover its own element")
        method = sig.find(f"{{{NS_DS}}}SignedInfo/{{{NS_DS}}}SignatureMethod")
        digest = refs[0].find(f"{{{NS_DS}}}DigestMethod")
        for what, el, allowed in (("signature", method, SIGNATURE_ALGS),
                                  ("digest", digest, DIGEST_ALGS)):
            alg = el.get("Algorithm") if el is not None else None
            if alg not in allowed:
                _reject(f"{what} algorithm {alg!r} is not allowed")
    issuer = assertion.find(f"{{{NS_SAML}}}Issuer")
    if issuer is None or (issuer.text or "").strip() != idp_entity_id:
        _reject(f"assertion issuer {issuer.text if issuer is not None else None!r} is not "
                f"{idp_entity_id!r}")
    return aid


def _reject(reason: str) -> Any:
    log.warning("SAML response rejected: %s", reason)
    raise SamlError(REJECTED)


class SamlServiceProvider:
    """One SP, one IdP (from the pinned metadata file).

    Args:
        settings: the ``[saml]`` config section.
        base_url: the web endpoint's public https:// URL.
        sp_key, sp_cert: PEM files of the key that signs AuthnRequests.
        clock: seconds since the epoch, for the replay cache and request expiry (pysaml2
            checks assertion times against the system clock).
    """

    def __init__(self, settings: SamlSettings, base_url: str, sp_key: Path, sp_cert: Path,
                 *, clock: Callable[[], float] = time.time) -> None:
        with warnings.catch_warnings():  # pysaml2 imports a mode cryptography deprecated
            warnings.simplefilter("ignore")
            from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
            from saml2.client import Saml2Client
            from saml2.config import SPConfig

        self.settings = settings
        self.acs_url = f"{base_url}/saml/acs"
        self.metadata_url = f"{base_url}/saml/metadata"
        self.entity_id = settings.entity_id or self.metadata_url
        self.clock = clock
        self._redirect = BINDING_HTTP_REDIRECT
        self._post = BINDING_HTTP_POST
        conf = SPConfig()
        conf.load({
            "entityid": self.entity_id,
            "xmlsec_binary": settings.xmlsec_binary,
            "key_file": str(sp_key),
            "cert_file": str(sp_cert),
            "metadata": {"local": [str(settings.idp_metadata)]},
            "accepted_time_diff": int(settings.clock_skew),
            "signing_algorithm": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            "digest_algorithm": "http://www.w3.org/2001/04/xmlenc#sha256",
            "allow_unknown_attributes": True,
            "delete_tmpfiles": True,
            "service": {"sp": {
                "name": "bastille",
                "endpoints": {"assertion_consumer_service": [(self.acs_url,
                                                              BINDING_HTTP_POST)]},
                "allow_unsolicited": False,
                "authn_requests_signed": True,
                "want_assertions_signed": True,
                "want_response_signed": False,
                "only_use_keys_in_metadata": True,
                "name_id_format_allow_create": True,
            }},
        })
        self._client = Saml2Client(config=conf)
        idps = list(self._client.metadata.identity_providers())
        if settings.idp_entity_id:
            idps = [i for i in idps if i == settings.idp_entity_id]
        if len(idps) != 1:
            raise SamlError("saml.idp_metadata must describe exactly one identity provider "
                            "(or set saml.idp_entity_id)")
        self.idp_entity_id: str = idps[0]
        sso = self._client.metadata.single_sign_on_service(self.idp_entity_id,
                                                           BINDING_HTTP_REDIRECT)
        if not sso:
            raise SamlError("the identity provider has no HTTP-Redirect SingleSignOnService")
        self.sso_url: str = sso[0]["location"]
        self._lock = threading.Lock()  # pysaml2's client is not thread-safe
        self._outstanding: dict[str, float] = {}  # AuthnRequest ID -> expiry
        self._seen: dict[str, float] = {}  # Response/Assertion IDs used -> forget after

    # ------------------------------------------------------------------ requests
    def begin(self, relay_state: str) -> tuple[str, str]:
        """A signed AuthnRequest: (its ID, the IdP URL to redirect the browser to)."""
        with self._lock:
            self._expire()
            if len(self._outstanding) >= MAX_OUTSTANDING:
                raise SamlError("too many logins in progress; try again in a minute")
            req_id, info = self._client.prepare_for_authenticate(
                entityid=self.idp_entity_id, relay_state=relay_state,
                binding=self._redirect)
            self._outstanding[req_id] = self.clock() + REQUEST_TTL
        location = dict(info["headers"])["Location"]
        return req_id, location

    def forget(self, request_id: str) -> None:
        """Drop an outstanding request (its flow was abandoned)."""
        with self._lock:
            self._outstanding.pop(request_id, None)

    def _expire(self) -> None:
        now = self.clock()
        for table in (self._outstanding, self._seen):
            for key in [k for k, exp in table.items() if exp <= now]:
                del table[key]

    # ------------------------------------------------------------------ responses
    def finish(self, saml_response: str, request_id: str) -> SamlIdentity:
        """Validate the IdP's answer to ``request_id`` (blocking: call in a thread).

        Raises:
            SamlError: for every refusal, with a generic message (the reason is logged).
        """
        with self._lock:
            self._expire()
            expiry = self._outstanding.pop(request_id, None)  # one answer per request
        if expiry is None:
            _reject(f"no outstanding request {request_id!r} (replayed or expired)")
        if len(saml_response) > MAX_RESPONSE:
            _reject("response too large")
        try:
            xml = base64.b64decode(saml_response, validate=False)
        except (binascii.Error, ValueError):
            _reject("not base64")
        assertion_id = structural_check(xml, self.idp_entity_id)
        try:
            with self._lock:
                resp = self._client.parse_authn_request_response(
                    saml_response, self._post, outstanding={request_id: "/"})
        except SamlError:
            raise
        except Exception as exc:  # pysaml2 raises many types, some bare Exception
            _reject(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
        if resp is None or resp.assertion is None:
            _reject("pysaml2 refused the response (destination, status or time)")
        if resp.assertion.id != assertion_id:
            _reject("the validated assertion is not the one checked")
        if (resp.in_response_to or "") != request_id:
            _reject(f"InResponseTo {resp.in_response_to!r} is not {request_id!r}")
        issuer = (resp.assertion.issuer.text or "").strip()
        if issuer != self.idp_entity_id:
            _reject(f"issuer {issuer!r}")
        self._check_confirmation(resp, request_id)
        response_id = str(resp.response.id)
        keep_until = max(float(resp.not_on_or_after or 0), self.clock() + REQUEST_TTL) + \
            self.settings.clock_skew
        with self._lock:
            if response_id in self._seen or assertion_id in self._seen:
                _reject("response or assertion already used (replay)")
            self._seen[response_id] = keep_until
            self._seen[assertion_id] = keep_until
        return self._identity(resp)

    def _check_confirmation(self, resp: Any, request_id: str) -> None:
        """Bearer confirmation for *this* ACS and request (pysaml2 skips Recipient)."""
        subject = resp.assertion.subject
        confs = list(subject.subject_confirmation or []) if subject is not None else []
        if not confs:
            _reject("no subject confirmation")
        for sc in confs:
            data = sc.subject_confirmation_data
            if sc.method != BEARER or data is None:
                _reject(f"subject confirmation method {sc.method!r}")
            if data.recipient != self.acs_url:
                _reject(f"Recipient {data.recipient!r} is not {self.acs_url!r}")
            if (data.in_response_to or "") != request_id:
                _reject(f"SubjectConfirmationData InResponseTo {data.in_response_to!r}")
            if not data.not_on_or_after:
                _reject("SubjectConfirmationData has no NotOnOrAfter")

    def _identity(self, resp: Any) -> SamlIdentity:
        attrs = _attributes(resp)
        name_id = (resp.name_id.text or "").strip() if resp.name_id is not None else ""
        want = self.settings.username_attribute
        if want:
            values = attrs.get(want, [])
            if len(values) != 1 or not values[0]:
                log.warning("SAML assertion has %d values for %r", len(values), want)
                raise SamlError(f"the identity provider sent no single {want!r} attribute; "
                                "ask your administrator (saml.username_attribute)")
            user = values[0]
        else:
            user = name_id
        if not user:
            raise SamlError("the identity provider sent no user name")
        groups = tuple(attrs.get(self.settings.groups_attribute, []))
        return SamlIdentity(user=user, idp_groups=groups, name_id=name_id,
                            issuer=self.idp_entity_id)

    # ------------------------------------------------------------------ metadata
    def metadata(self) -> bytes:
        """This SP's metadata XML (for the IdP administrator)."""
        from saml2.metadata import entity_descriptor

        with self._lock:
            return str(entity_descriptor(self._client.config)).encode()


def _attributes(resp: Any) -> dict[str, list[str]]:
    """Attribute values by pysaml2's friendly name *and* by the raw Name/FriendlyName."""
    out: dict[str, list[str]] = {}
    for name, values in (resp.ava or {}).items():
        out.setdefault(name, []).extend(str(v) for v in values if isinstance(v, str))
    for statement in resp.assertion.attribute_statement or []:
        for attr in statement.attribute or []:
            values = [str(v.text).strip() for v in attr.attribute_value or []
                      if v.text is not None]
            for key in {attr.name, attr.friendly_name} - {None, ""}:
                if key not in out:
                    out[key] = values
    return out
