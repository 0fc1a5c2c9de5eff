"""SAML single sign-on end to end: the real OpenSSH client in tmux logs in through
keyboard-interactive with the bastion's one-time URL; a scripted browser follows it to
the real test IdP (pysaml2, its own process) and back to the bastion's ACS; the gateway
(``bastille serve``) then relays to a real sshd target.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import audit_events
from tests.e2e.rig import Rig, Tmux, free_port, keygen
from tests.saml.harness import Browser, IdpProcess, have_xmlsec, idp_login
from tests.saml.idp import write_idp_files

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(have_xmlsec() is not None, reason=str(have_xmlsec()))]

_URL = re.compile(r"Single sign-on: open (https://\S+/l/[A-Z0-9]{5}-[A-Z0-9]{5})")


@pytest.fixture
def saml_gateway(make_gateway: Any, tmp_path: Path) -> Iterator[tuple[Rig, IdpProcess]]:
    idp_port, web_port = free_port(), free_port()
    files = write_idp_files(tmp_path / "idp", idp_port)
    extra = f"""
[web]
listen = "127.0.0.1:{web_port}"

[saml]
idp_metadata = "{files['metadata']}"
binding_ttl = "8h"
"""
    gw: Rig = make_gateway(extra=extra, gateway_extra='login_timeout = "60s"')
    idp = IdpProcess(tmp_path / "idp", idp_port)
    try:
        idp.start(f"https://127.0.0.1:{web_port}/saml/metadata", gw.data / "web" / "tls.crt")
        yield gw, idp
    finally:
        idp.stop()


def _ssh(rig: Rig, user: str, key: Path, *command: str, batch: bool = False,
         tty: bool = False) -> list[str]:
    return ["ssh", "-F", "/dev/null", "-p", str(rig.gateway.port),
            "-o", f"UserKnownHostsFile={rig.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", f"BatchMode={'yes' if batch else 'no'}", "-o", "IdentitiesOnly=yes",
            "-o", "PreferredAuthentications=publickey,keyboard-interactive",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", "-i", str(key),
            "-tt" if tty else "-T", f"{user}@127.0.0.1", *command]


def _flat(text: str) -> str:
    return re.sub(r"\s", "", text)


def _browser_login(gw: Rig, t: Tmux, user: str, attack: str = "") -> str:
    screen = t.wait_re(_URL.pattern, timeout=20)
    m = _URL.search(screen)
    assert m is not None
    b = Browser(gw.data / "web" / "tls.crt")
    confirm = b.get(m.group(1))
    assert confirm.status == 200 and "127.0.0.1:" in confirm.text
    posted = idp_login(b, b.submit(confirm), user, attack)
    return b.submit(posted).text


def test_saml_login_binding_and_revoke(saml_gateway: tuple[Rig, IdpProcess], rig: Rig,
                                       tmp_path: Path) -> None:
    """dave exists only at the IdP, in group ops which web1 allows."""
    gw, _ = saml_gateway
    key = tmp_path / "dave_key"
    keygen(key, "dave")
    t = Tmux(rig.root, _ssh(gw, "dave", key, "web1", tty=True))
    try:
        page = _browser_login(gw, t, "dave")
        assert "Signed in as dave" in page
        t.type("\n")  # "press Enter here"
        t.type("echo saml-$((6*7))\n")
        t.wait_for("saml-42", timeout=20)
        t.type("exit\n")
        assert t.dead_status() == 0
    finally:
        t.close()
    # the key offered before keyboard-interactive is now bound: no browser, BatchMode
    again = subprocess.run(_ssh(gw, "dave", key, "web1", "--", "echo", "bound-ok", batch=True),
                           capture_output=True, timeout=30)
    assert (again.returncode, again.stdout) == (0, b"bound-ok\n"), again.stderr
    other = subprocess.run(_ssh(gw, "alice", key, "web1", "--", "true", batch=True),
                           capture_output=True, timeout=30)
    assert other.returncode == 255
    cli = [sys.executable, "-m", "gateway", "oidc"]
    listed = subprocess.run([*cli, "bindings", "-c", str(gw.gateway.config)],
                            capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0 and "dave" in listed.stdout and "ops" in listed.stdout
    revoked = subprocess.run([*cli, "revoke", "dave", "-c", str(gw.gateway.config)],
                             capture_output=True, text=True, timeout=30)
    assert "revoked 1 live binding(s) of dave" in revoked.stdout
    after = subprocess.run(_ssh(gw, "dave", key, "web1", "--", "true", batch=True),
                           capture_output=True, timeout=30)
    assert after.returncode == 255 and b"Permission denied" in after.stderr
    ok = audit_events(gw, kind="login", outcome="ok", user="dave", method="saml")
    assert ok and ok[0]["detail"]["bound_keys"] == 1 and ok[0]["detail"]["subject"] == "dave"
    # no one-time code or assertion in the gateway's log
    assert "SAMLResponse" not in gw.gateway.logs()
    assert not re.search(r"/l/[A-Z0-9]{5}-", gw.gateway.logs())


def test_forged_assertion_fails_the_ssh_login(saml_gateway: tuple[Rig, IdpProcess], rig: Rig,
                                              tmp_path: Path) -> None:
    """bob signs in at the IdP and wraps an unsigned assertion for dave around his own."""
    gw, _ = saml_gateway
    key = tmp_path / "dave_key"
    keygen(key, "dave")
    t = Tmux(rig.root, _ssh(gw, "dave", key, "web1", tty=True))
    try:
        page = _browser_login(gw, t, "bob", attack="xsw_wrap")
        assert "answer was rejected" in page
        t.type("\n")
        screen = t.wait_for("single sign-on failed", timeout=20)
        assert _flat("the identity provider's answer was rejected") in _flat(screen)
        assert t.dead_status() == 255
    finally:
        t.close()
    failed = audit_events(gw, kind="login", outcome="failed", user="dave", method="saml")
    assert failed


def test_identity_mismatch_fails_the_ssh_login(saml_gateway: tuple[Rig, IdpProcess],
                                               rig: Rig, tmp_path: Path) -> None:
    gw, _ = saml_gateway
    key = tmp_path / "dave_key"
    keygen(key, "dave")
    t = Tmux(rig.root, _ssh(gw, "dave", key, "web1", tty=True))
    try:
        _browser_login(gw, t, "alice")
        t.type("\n")
        screen = t.wait_for("single sign-on failed", timeout=20)
        assert _flat("you signed in at the identity provider as 'alice', but asked for SSH "
                     "user 'dave'") in _flat(screen)
        assert t.dead_status() == 255
    finally:
        t.close()
    nothing_bound = subprocess.run(_ssh(gw, "dave", key, "web1", "--", "true", batch=True),
                                   capture_output=True, timeout=30)
    assert nothing_bound.returncode == 255
