"""``[web]`` and ``[saml]``: defaults, and every mistake reported with file, key and line
(as ``bastille config check`` prints them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import SSO_LOGIN_TIMEOUT, load_config
from gateway.errors import ConfigError
from tests.saml.harness import have_xmlsec, write_config
from tests.saml.idp import write_idp_files

pytestmark = pytest.mark.skipif(have_xmlsec() is not None, reason=str(have_xmlsec()))


@pytest.fixture(scope="module")
def metadata(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_idp_files(tmp_path_factory.mktemp("idp"), 9)["metadata"]


def _problems(path: Path) -> str:
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    return str(exc.value)


def test_defaults(tmp_path: Path, metadata: Path) -> None:
    cfg = write_config(tmp_path, web_port=8443, saml=f'[saml]\nidp_metadata = "{metadata}"\n')
    c = load_config(cfg)
    assert c.web is not None and c.saml is not None
    assert c.web.base_url == "https://127.0.0.1:8443"
    assert (c.web.session_ttl, c.web.login_ttl) == (600.0, 300.0)  # harness: 10m
    assert c.saml.username_attribute == "uid" and c.saml.groups_attribute == "groups"
    assert c.saml.clock_skew == 60.0 and c.saml.binding_ttl == 8 * 3600
    assert c.saml.map_groups(["a", "b"]) == {"a", "b"}
    assert c.gateway.login_timeout == SSO_LOGIN_TIMEOUT  # the user needs time in a browser


def test_group_map_and_public_url(tmp_path: Path, metadata: Path) -> None:
    saml = f"""[saml]
idp_metadata = "{metadata}"
username_attribute = ""
[saml.group_map]
"corp-sre" = ["ops"]
"""
    cfg = write_config(tmp_path, web_port=8443, saml=saml,
                       extra="")
    text = cfg.read_text().replace('session_ttl = "10m"',
                                   'session_ttl = "10m"\npublic_url = "https://bastion.example/"')
    cfg.write_text(text)
    c = load_config(cfg)
    assert c.web is not None and c.web.base_url == "https://bastion.example"
    assert c.saml is not None and c.saml.map_groups(["corp-sre", "x"]) == {"ops"}
    assert c.saml.username_attribute == ""


def test_mistakes_are_reported_with_lines(tmp_path: Path, metadata: Path) -> None:
    saml = f"""[saml]
idp_metadata = "{tmp_path / 'missing.xml'}"
sp_key = "nokey.pem"
clock_skew = "1h"
xmlsec_binary = "no-such-xmlsec"
idp_metadta = "typo"
"""
    cfg = write_config(tmp_path, web_port=8443, saml=saml)
    text = cfg.read_text().replace('[web]\nlisten = "127.0.0.1:8443"',
                                   '[web]\nlisten = "0.0.0.0:8443"\ntls_cert = "c.pem"\n'
                                   'public_url = "http://bastion"')
    cfg.write_text(text)
    out = _problems(cfg)
    lines = text.splitlines()

    def line_of(key: str) -> int:
        return next(i + 1 for i, line in enumerate(lines) if line.startswith(key))

    assert f"bastille.toml:{line_of('idp_metadata')}: saml.idp_metadata: cannot read" in out
    assert "saml.sp_key: set both sp_key and sp_cert" in out
    assert "saml.clock_skew: at most 10m" in out
    assert "saml.xmlsec_binary: 'no-such-xmlsec' not found" in out
    assert "saml.idp_metadta: unknown key (did you mean 'idp_metadata'?)" in out
    assert f":{line_of('public_url')}: web.public_url: expected https://" in out
    assert "web.tls_cert: set both tls_cert and tls_key" in out


def test_saml_needs_web_and_web_needs_a_sign_in(tmp_path: Path, metadata: Path) -> None:
    cfg = write_config(tmp_path, web_port=8443, saml=f'[saml]\nidp_metadata = "{metadata}"\n')
    cfg.write_text(cfg.read_text().replace('[web]\nlisten = "127.0.0.1:8443"\n'
                                           'session_ttl = "10m"\n', ""))
    assert "saml: SAML logins need the [web] section" in _problems(cfg)
    cfg2 = write_config(tmp_path / "b", web_port=8443)
    assert "web: the web endpoint needs [oidc] or [saml]" in _problems(cfg2)
    cfg3 = write_config(tmp_path / "c", web_port=8443, saml=f'[saml]\nidp_metadata = '
                        f'"{metadata}"\n')
    cfg3.write_text(cfg3.read_text().replace('listen = "127.0.0.1:8443"',
                                             'listen = "0.0.0.0:8443"'))
    assert "web.public_url: required when web.listen is a wildcard" in _problems(cfg3)


def test_bad_metadata(tmp_path: Path) -> None:
    for text, why in [("<not xml", "is not valid XML"),
                      ("<md:EntityDescriptor xmlns:md='urn:oasis:names:tc:SAML:2.0:metadata' "
                       "entityID='x'><md:IDPSSODescriptor/></md:EntityDescriptor>",
                       "has no SingleSignOnService"),
                      ('<!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>', "is not valid XML")]:
        meta = tmp_path / "m.xml"
        meta.write_text(text)
        cfg = write_config(tmp_path, web_port=8443, saml=f'[saml]\nidp_metadata = "{meta}"\n')
        assert why in _problems(cfg), text


def test_config_check_cli(tmp_path: Path, metadata: Path) -> None:
    cfg = write_config(tmp_path, web_port=8443, saml=f'[saml]\nidp_metadata = "{metadata}"\n'
                       'idp_entity_id = "https://other.example/idp"\n')
    r = subprocess.run([sys.executable, "-m", "gateway", "config", "check", "-c", str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "saml.idp_metadata:" in r.stdout + r.stderr
    assert "has no IdP 'https://other.example/idp'" in r.stdout + r.stderr
