"""Strict KEX (Terrapin fix) and modern algorithms only, seen by the real OpenSSH client."""

from __future__ import annotations

import pytest

from tests.e2e.rig import Rig

pytestmark = pytest.mark.e2e


def test_strict_kex_offered_and_modern_algorithms(rig: Rig) -> None:
    r = rig.ssh("alice", "web1", "--", "true", extra=["-vv", "-o", "LogLevel=DEBUG2"])
    assert r.returncode == 0
    log = r.stderr.decode()
    server_kex = [ln for ln in log.splitlines() if "KEX algorithms:" in ln and "ext-info-s" in ln]
    assert server_kex and "kex-strict-s-v00@openssh.com" in server_kex[0]
    assert "diffie-hellman-group1-sha1" not in server_kex[0]


@pytest.mark.parametrize("options", [
    ["KexAlgorithms=diffie-hellman-group14-sha1"],
    ["Ciphers=aes128-cbc"],
    ["Ciphers=aes128-ctr", "MACs=hmac-sha1"],  # a non-AEAD cipher makes the MAC count
])
def test_weak_algorithms_refused(rig: Rig, options: list[str]) -> None:
    extra = [x for o in [*options, "LogLevel=INFO"] for x in ("-o", o)]
    r = rig.ssh("alice", "web1", "--", "true", extra=extra)
    assert r.returncode == 255
    assert b"no matching" in r.stderr or b"Unable to negotiate" in r.stderr


def _ciphers(log: str) -> set[str]:
    """The ciphers the OpenSSH client says were chosen (both directions)."""
    return {ln.split("cipher: ")[1].split()[0] for ln in log.splitlines()
            if "kex: " in ln and "cipher: " in ln}


def test_aes_gcm_is_chosen_when_the_client_offers_it(rig: Rig) -> None:
    # OpenSSH lists chacha20-poly1305 first; the gateway answers with AES-GCM only
    r = rig.ssh("alice", "web1", "--", "echo", "ok", extra=["-v", "-o", "LogLevel=DEBUG1"])
    assert r.returncode == 0 and r.stdout == b"ok\n", r.stderr
    assert _ciphers(r.stderr.decode()) == {"aes128-gcm@openssh.com"}


@pytest.mark.parametrize("ciphers", ["chacha20-poly1305@openssh.com",
                                     "aes256-ctr", "aes256-gcm@openssh.com"])
def test_a_client_without_aes128_gcm_gets_what_it_allows(rig: Rig, ciphers: str) -> None:
    r = rig.ssh("alice", "web1", "--", "echo", "ok",
                extra=["-v", "-o", "LogLevel=DEBUG1", "-o", f"Ciphers={ciphers}"])
    assert r.returncode == 0 and r.stdout == b"ok\n", r.stderr
    assert _ciphers(r.stderr.decode()) == {ciphers}


def test_no_padding_packets_reach_the_client(rig: Rig) -> None:
    """asyncssh sends an empty SSH_MSG_IGNORE before every packet (a CBC countermeasure);
    the gateway negotiates no CBC, so its client receives none (gateway/ssh/wire.py)."""
    r = rig.ssh("alice", "web1", "--", "seq", "1", "200000",
                extra=["-vvv", "-o", "LogLevel=DEBUG3"])
    assert r.returncode == 0 and r.stdout.endswith(b"\n199999\n200000\n"), r.stderr[-2000:]
    log = r.stderr.decode(errors="replace")
    assert "debug3:" in log  # the client logs every SSH_MSG_IGNORE it receives at DEBUG3
    assert log.count("Received SSH2_MSG_IGNORE") == 0, log.count("Received SSH2_MSG_IGNORE")
