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
