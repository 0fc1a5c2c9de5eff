"""Single sign-on end to end: a real OIDC provider (npm oidc-provider under node), the
real OpenSSH client in tmux, the gateway as a subprocess, and a browser played over HTTP.

The provider's login page accepts any password for its test users (it stands in for a
company IdP; see tests/oidc/idp.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import audit_events
from tests.e2e.rig import Rig, Tmux, free_port, keygen
from tests.oidc.idp import Provider, approve, have_node, npm_ci

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(have_node() is not None, reason=str(have_node()))]

SECRET_ENV = "BASTILLE_TEST_OIDC_SECRET"


@pytest.fixture(scope="module")
def idp() -> Iterator[Provider]:
    npm_ci()
    p = Provider(free_port())
    p.start()
    yield p
    p.stop()


def _oidc_section(issuer: str, **extra: str) -> str:
    lines = [f'issuer = "{issuer}"', 'client_id = "bastille"',
             f'client_secret_env = "{SECRET_ENV}"', 'binding_ttl = "8h"',
             *(f"{k} = {v}" for k, v in extra.items())]
    return "\n[oidc]\n" + "\n".join(lines) + "\n"


@pytest.fixture
def sso_gateway(make_gateway: Any, idp: Provider, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv(SECRET_ENV, "bastille-test-secret")

    def start(issuer: str | None = None) -> Rig:
        return make_gateway(extra=_oidc_section(issuer or idp.issuer),
                            gateway_extra='login_timeout = "60s"')
    return start


def _ssh(rig: Rig, user: str, key: Path, *command: str, batch: bool = False,
         tty: bool = False) -> list[str]:
    return ["ssh", "-F", "/dev/null", "-p", str(rig.gateway.port),
            "-o", f"UserKnownHostsFile={rig.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", f"BatchMode={'yes' if batch else 'no'}", "-o", "IdentitiesOnly=yes",
            "-o", "PreferredAuthentications=publickey,keyboard-interactive",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", "-i", str(key),
            "-tt" if tty else "-T", f"{user}@127.0.0.1", *command]


_CODE = re.compile(r"open (http://\S+/device) and enter the code (\S+)")


def _flat(text: str) -> str:
    """Screen text without whitespace (tmux wraps long lines and trims their ends)."""
    return re.sub(r"\s", "", text)


def _sso_prompt(t: Tmux) -> tuple[str, str]:
    screen = t.wait_re(_CODE.pattern, timeout=20)
    m = _CODE.search(screen)
    assert m is not None
    return m.group(1), m.group(2)


@pytest.fixture
def terms() -> Iterator[list[Tmux]]:
    opened: list[Tmux] = []
    yield opened
    for t in opened:
        t.close()


def test_sso_login_binding_and_revoke(sso_gateway: Any, rig: Rig, tmp_path: Path,
                                      terms: list[Tmux]) -> None:
    """dave exists only at the IdP, in group ops which web1 allows."""
    gw = sso_gateway()
    key = tmp_path / "dave_key"
    keygen(key, "dave")
    t = Tmux(rig.root, _ssh(gw, "dave", key, "web1", tty=True))
    terms.append(t)
    uri, code = _sso_prompt(t)
    page = approve(uri, code, "dave")
    assert "Sign-in Success" in page
    t.type("\n")  # "press Enter here"
    t.type("echo sso-$((6*7))\n")
    t.wait_for("sso-42", timeout=20)
    t.type("exit\n")
    assert t.dead_status() == 0

    # the same key now logs in without a browser (BatchMode: no prompt possible)
    again = subprocess.run(_ssh(gw, "dave", key, "web1", "--", "echo", "bound-ok", batch=True),
                           capture_output=True, timeout=30)
    assert again.returncode == 0, again.stderr.decode()
    assert b"bound-ok" in again.stdout
    # scp reuses the binding too (USER+TARGET form), both ways, byte for byte
    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(100_000))
    remote = f"/tmp/bastille-sso-{os.getpid()}.bin"
    scp = ["scp", "-F", "/dev/null", "-P", str(gw.gateway.port), "-o",
           f"UserKnownHostsFile={gw.known_hosts}", "-o", "StrictHostKeyChecking=yes", "-o",
           "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", str(key)]
    up = subprocess.run([*scp, str(src), f"dave+web1@127.0.0.1:{remote}"], capture_output=True,
                        timeout=30)
    assert up.returncode == 0, up.stderr.decode()
    back = tmp_path / "back.bin"
    down = subprocess.run([*scp, f"dave+web1@127.0.0.1:{remote}", str(back)],
                          capture_output=True, timeout=30)
    assert down.returncode == 0, down.stderr.decode()
    assert back.read_bytes() == src.read_bytes()
    subprocess.run(_ssh(gw, "dave", key, "web1", "--", "rm", "-f", remote, batch=True),
                   capture_output=True, timeout=30)
    # but only for dave
    other = subprocess.run(_ssh(gw, "alice", key, "web1", "--", "true", batch=True),
                           capture_output=True, timeout=30)
    assert other.returncode == 255

    listed = subprocess.run([sys.executable, "-m", "gateway", "oidc", "bindings", "-c",
                             str(gw.gateway.config)], capture_output=True, text=True)
    assert listed.returncode == 0 and "dave" in listed.stdout and "ops" in listed.stdout
    revoked = subprocess.run([sys.executable, "-m", "gateway", "oidc", "revoke", "dave", "-c",
                              str(gw.gateway.config)], capture_output=True, text=True)
    assert revoked.returncode == 0
    assert "revoked 1 live binding(s) of dave" in revoked.stdout

    after = subprocess.run(_ssh(gw, "dave", key, "web1", "--", "true", batch=True),
                           capture_output=True, timeout=30)
    assert after.returncode == 255
    assert b"Permission denied" in after.stderr
    assert audit_events(gw, kind="login", outcome="ok", user="dave", method="oidc")
    # the client secret never reaches the gateway's log or the audit log
    assert "bastille-test-secret" not in gw.gateway.logs()
    assert "bastille-test-secret" not in (gw.data / "audit.jsonl").read_text()


def test_other_user_approving_the_code_is_refused(sso_gateway: Any, rig: Rig,
                                                  tmp_path: Path, terms: list[Tmux]) -> None:
    gw = sso_gateway()
    key = tmp_path / "dave_key"
    keygen(key, "dave")
    t = Tmux(rig.root, _ssh(gw, "dave", key, "web1", tty=True))
    terms.append(t)
    uri, code = _sso_prompt(t)
    assert "Sign-in Success" in approve(uri, code, "alice")
    t.type("\n")
    screen = t.wait_for("single sign-on failed", timeout=20)
    assert _flat("you signed in at the identity provider as 'alice', but asked for SSH user "
                 "'dave'") in _flat(screen)
    assert t.dead_status() == 255
    # nothing was bound
    after = subprocess.run(_ssh(gw, "dave", key, "web1", "--", "true", batch=True),
                           capture_output=True, timeout=30)
    assert after.returncode == 255


def test_user_in_no_group_is_refused(sso_gateway: Any, rig: Rig, tmp_path: Path,
                                     terms: list[Tmux]) -> None:
    gw = sso_gateway()
    key = tmp_path / "carol_key"
    keygen(key, "carol")
    t = Tmux(rig.root, _ssh(gw, "carol", key, "web1", tty=True))
    terms.append(t)
    uri, code = _sso_prompt(t)
    approve(uri, code, "carol")
    t.type("\n")
    screen = t.wait_for("single sign-on failed", timeout=20)
    assert _flat("carol is in no group with access to this bastion") in _flat(screen)
    assert t.dead_status() == 255


def test_idp_down_gives_a_clear_message(sso_gateway: Any, rig: Rig, tmp_path: Path,
                                        terms: list[Tmux]) -> None:
    gw = sso_gateway(issuer=f"http://127.0.0.1:{free_port()}")
    key = tmp_path / "dave_key"
    keygen(key, "dave")
    t = Tmux(rig.root, _ssh(gw, "dave", key, "web1", tty=True))
    terms.append(t)
    screen = t.wait_for("single sign-on failed", timeout=20)
    assert _flat("the identity provider is unreachable; try again later") in _flat(screen)
    assert t.dead_status() == 255


def test_expired_code_gives_a_clear_message(make_gateway: Any, rig: Rig, tmp_path: Path,
                                            terms: list[Tmux],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """An IdP whose device codes live 2 s; the user never approves."""
    npm_ci()
    short = Provider(free_port(), device_code_ttl=2)
    short.start()
    try:
        monkeypatch.setenv(SECRET_ENV, "bastille-test-secret")
        gw = make_gateway(extra=_oidc_section(short.issuer))
        key = tmp_path / "dave_key"
        keygen(key, "dave")
        t = Tmux(rig.root, _ssh(gw, "dave", key, "web1", tty=True))
        terms.append(t)
        _sso_prompt(t)
        t.type("\n")
        screen = t.wait_for("single sign-on failed", timeout=30)
        assert _flat("the login code expired before it was approved") in _flat(screen)
        assert t.dead_status() == 255
    finally:
        short.stop()


def test_sso_user_gets_a_one_time_rdp_password(make_gateway: Any, idp: Provider, rig: Rig,
                                               tmp_path: Path, terms: list[Tmux],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """dave exists only at the IdP: after his SSO login, `ssh dave@bastion rdp win1` gives
    him a one-time RDP password carrying his IdP groups (the RDP gate accepts it for users
    not in [users]; tests/unit/test_rdp_gate.py drives that login)."""
    pytest.importorskip("pyrdp", reason="the RDP extra is not installed")
    from state.tokens import TokenStore

    monkeypatch.setenv(SECRET_ENV, "bastille-test-secret")
    (tmp_path / "win1.pw").write_text("Target-Pw-9\n")
    rdp = f"""
[rdp]
listen = "127.0.0.1:{free_port()}"

[targets.win1]
protocol = "rdp"
host = "127.0.0.1"
port = {free_port()}
user = "Administrator"
password_file = "{tmp_path / 'win1.pw'}"
rdp_cert_sha256 = ["{'ab' * 32}"]
groups = ["ops"]
"""
    gw = make_gateway(extra=_oidc_section(idp.issuer) + rdp,
                      gateway_extra='login_timeout = "60s"')
    key = tmp_path / "dave_key"
    keygen(key, "dave")
    t = Tmux(rig.root, _ssh(gw, "dave", key, "rdp", "win1", tty=True))
    terms.append(t)
    uri, code = _sso_prompt(t)
    assert "Sign-in Success" in approve(uri, code, "dave")
    t.type("\n")
    screen = t.wait_re(r"password: +\d{8}", timeout=20)
    assert "dave#win1" in screen
    m = re.search(r"password: +(\d{8})", screen)
    assert m is not None
    pin = m.group(1)
    t.dead_status()
    # not a target he may not use
    other = subprocess.run(_ssh(gw, "dave", key, "rdp", "web1", batch=True),
                           capture_output=True, timeout=30)
    assert other.returncode != 0 and b"not an RDP target you may use" in other.stdout
    # the PIN is a one-time SSO login for dave with his IdP groups, and nobody else's
    store = TokenStore(gw.data / "rdp_tokens.sqlite3")
    try:
        assert store.consume_sso_pin("alice", pin) is None
        groups = store.consume_sso_pin("dave", pin)
        assert groups is not None and "ops" in groups
        assert store.consume_sso_pin("dave", pin) is None
    finally:
        store.close()
    issued = audit_events(gw, kind="gateway", user="dave")
    assert any(e["detail"].get("event") == "rdp pin issued" for e in issued)
    assert pin not in (gw.data / "audit.jsonl").read_text()
    assert pin not in gw.gateway.logs()
