"""``[oidc]`` and ``[saml]`` together: approvers choose; an unreachable OIDC IdP gives a
clear page; the listener's port in use gives a clear error."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.web.server import WebService
from tests.e2e.rig import free_port
from tests.saml.harness import Browser, WebThread, have_xmlsec, saml_section, write_config
from tests.saml.idp import write_idp_files

pytestmark = pytest.mark.skipif(have_xmlsec() is not None, reason=str(have_xmlsec()))


def test_both_sign_in_methods(tmp_path: Path) -> None:
    files = write_idp_files(tmp_path / "idp", free_port())
    down = f"http://127.0.0.1:{free_port()}"
    oidc = f'[oidc]\nissuer = "{down}"\nclient_id = "bastille"\nhttp_timeout = "3s"\n'
    cfg = write_config(tmp_path / "gw", web_port=free_port(),
                       saml=saml_section(files["metadata"]), oidc=oidc)
    web = WebThread(load_config(cfg)).start()
    try:
        b = Browser(web.cert)
        choose = b.get(web.url("/approvals/3"))
        assert choose.url.startswith(web.url("/login?next="))
        assert "/login/oidc?next=%2Fapprovals%2F3" in choose.text
        assert "/login/saml?next=%2Fapprovals%2F3" in choose.text
        csp = choose.headers["Content-Security-Policy"]
        assert f"form-action 'self' {down} http://127.0.0.1:" in csp
        unavailable = b.get(web.url("/login/oidc?next=/approvals/3"))
        assert unavailable.status == 503
        assert "the identity provider is unreachable; try again later" in unavailable.text
    finally:
        web.stop()


def test_port_in_use(tmp_path: Path) -> None:
    files = write_idp_files(tmp_path / "idp", free_port())
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = write_config(tmp_path / "gw", web_port=port,
                           saml=saml_section(files["metadata"]))
        web = WebThread(load_config(cfg))
        try:
            with pytest.raises(OSError, match=f"web.listen 127.0.0.1:{port}"):
                web.start()
        finally:
            web.stop()
    assert isinstance(web.service, WebService)
