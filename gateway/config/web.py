"""``[web]`` and ``[saml]``: the HTTPS endpoint and SAML single sign-on (docs/sso.md)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from gateway.config.model import GatewaySettings, OidcSettings, SamlSettings, WebSettings
from gateway.config.reader import Reader
from gateway.config.saml_metadata import idp_metadata_problem
from gateway.config.sections import _listen

_WEB = {"listen", "public_url", "tls_cert", "tls_key", "session_ttl", "login_ttl"}
_SAML = {"idp_metadata", "idp_entity_id", "entity_id", "sp_key", "sp_cert",
         "username_attribute", "groups_attribute", "group_map", "binding_ttl", "clock_skew",
         "xmlsec_binary"}


def _web(r: Reader, data: dict[str, Any], gw: GatewaySettings,
         oidc: OidcSettings | None) -> WebSettings | None:
    if "web" not in data:
        if "saml" in data:
            r.problem("saml", "SAML logins need the [web] section (the HTTPS endpoint that "
                      "receives the identity provider's answer)")
        return None
    w = r.table(data, "web", "web")
    r.check_keys(w, "web", _WEB)
    host, port = _listen(r, w, "web", ("127.0.0.1", 8443))
    if port == gw.listen_port and host in (gw.listen_host, "0.0.0.0", "::"):
        r.problem("web.listen", f"port {port} is already used by gateway.listen")
    public = r.get(w, "public_url", "web", str, "").rstrip("/")
    if public and (not public.startswith("https://") or "?" in public or "#" in public):
        r.problem("web.public_url", f"expected https://HOST[:PORT][/PATH], got {public!r}")
    if not public and host in ("0.0.0.0", "::", ""):
        r.problem("web.public_url", "required when web.listen is a wildcard address: the "
                  "https:// address browsers reach (it is written into login and approval "
                  "links)")
    cert = r.path_value(w, "tls_cert", "web", None)
    key = r.path_value(w, "tls_key", "web", None)
    if (cert is None) != (key is None):
        r.problem("web.tls_cert", "set both tls_cert and tls_key, or neither (a self-signed "
                  "certificate is then created in DATA_DIR/web)")
    for name, p in (("tls_cert", cert), ("tls_key", key)):
        if p is not None and not p.is_file():
            r.problem(f"web.{name}", f"{p} does not exist")
    if oidc is None and "saml" not in data:
        r.problem("web", "the web endpoint needs [oidc] or [saml] to sign people in")
    session_ttl = r.duration(w, "session_ttl", "web", 900.0)
    if not 60 <= session_ttl <= 12 * 3600:
        r.problem("web.session_ttl", "expected between 1m and 12h")
    login_ttl = r.duration(w, "login_ttl", "web", 300.0)
    if not 30 <= login_ttl <= 3600:
        r.problem("web.login_ttl", "expected between 30s and 1h")
    return WebSettings(listen_host=host, listen_port=port, public_url=public, tls_cert=cert,
                       tls_key=key, session_ttl=session_ttl, login_ttl=login_ttl)


def _saml(r: Reader, data: dict[str, Any]) -> SamlSettings | None:
    if "saml" not in data:
        return None
    s = r.table(data, "saml", "saml")
    r.check_keys(s, "saml", _SAML)
    metadata = r.path_value(s, "idp_metadata", "saml", None)
    idp_entity = r.get(s, "idp_entity_id", "saml", str, "")
    if metadata is None:
        r.problem("saml.idp_metadata", "required: the identity provider's metadata XML file "
                  "(downloaded once; it pins the IdP's signing certificate)")
    else:
        why = idp_metadata_problem(metadata, idp_entity)
        if why:
            r.problem("saml.idp_metadata", why)
    sp_key = r.path_value(s, "sp_key", "saml", None)
    sp_cert = r.path_value(s, "sp_cert", "saml", None)
    if (sp_key is None) != (sp_cert is None):
        r.problem("saml.sp_key", "set both sp_key and sp_cert, or neither (a key pair is "
                  "then created in DATA_DIR/web)")
    for name, p in (("sp_key", sp_key), ("sp_cert", sp_cert)):
        if p is not None and not p.is_file():
            r.problem(f"saml.{name}", f"{p} does not exist")
    entity = r.get(s, "entity_id", "saml", str, "")
    xmlsec = r.get(s, "xmlsec_binary", "saml", str, "xmlsec1")
    if shutil.which(xmlsec) is None:
        r.problem("saml.xmlsec_binary", f"{xmlsec!r} not found: SAML signatures are checked "
                  "with xmlsec1 (Debian: apt-get install xmlsec1)")
    group_map: dict[str, tuple[str, ...]] = {}
    for idp_group, value in r.table(s, "group_map", "saml.group_map").items():
        group_map[idp_group] = r.str_list({"v": value}, "v", f"saml.group_map.{idp_group}")
    skew = r.duration(s, "clock_skew", "saml", 60.0)
    if skew > 600:
        r.problem("saml.clock_skew", "at most 10m: a larger skew lets old assertions in")
    return SamlSettings(
        idp_metadata=metadata or Path("/nonexistent"),
        idp_entity_id=idp_entity,
        entity_id=entity,
        sp_key=sp_key,
        sp_cert=sp_cert,
        username_attribute=r.get(s, "username_attribute", "saml", str, "uid"),
        groups_attribute=r.get(s, "groups_attribute", "saml", str, "groups"),
        group_map=group_map,
        binding_ttl=r.duration(s, "binding_ttl", "saml", 8 * 3600.0),
        clock_skew=skew,
        xmlsec_binary=shutil.which(xmlsec) or xmlsec,
    )


