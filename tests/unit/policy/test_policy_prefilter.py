"""The Hyperscan prefilter changes how fast the masker is, never what it outputs."""

from __future__ import annotations

import os
import platform

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_policy_masker import CORE, PEM, SECRETS, SGR, VAULTED, run

from gateway.policy import BUILTIN_PATTERNS, MaskPattern, StreamMasker, prefilter

needs_hs = pytest.mark.skipif(not prefilter.available(), reason="hyperscan not installed here")

PIECES = st.sampled_from(
    [
        *SECRETS.values(),
        PEM,
        *SGR,
        "4111111111111112",  # fails Luhn
        "AKIA",
        "ghp_",
        "xoxb-12",
        "secret_access_key=",
        "1234 5678 ",
        "Vault-S3c",
        "-----BEGIN ",
        " ",
        "\r\n",
        "word",
        "0123456789",
        "中文",
    ]
)


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or os.environ.get(prefilter.DISABLE_ENV),
    reason="Hyperscan wheels exist for x86-64 only",
)
def test_prefilter_is_used_on_x86_64() -> None:
    """The fast path must not silently disappear (hyperscan is a dependency on x86-64)."""
    assert prefilter.available()
    assert StreamMasker(secrets=[VAULTED])._scan is not None


@needs_hs
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(PIECES, max_size=25),
    cuts=st.lists(st.integers(0, 2000), max_size=12),
)
def test_same_output_with_and_without_prefilter(pieces: list[str], cuts: list[int]) -> None:
    data = "".join(pieces).encode()
    fast = run(StreamMasker(BUILTIN_PATTERNS, secrets=[VAULTED], accelerate=True), data, cuts)
    slow = run(StreamMasker(BUILTIN_PATTERNS, secrets=[VAULTED], accelerate=False), data, cuts)
    assert fast == slow


@needs_hs
@pytest.mark.parametrize("name", sorted(SECRETS))
def test_every_builtin_secret_masked_through_the_prefilter(name: str) -> None:
    m = StreamMasker(secrets=[VAULTED], accelerate=True)
    out = run(m, f"before {SECRETS[name]} after\r\n".encode() * 3, [5, 300])
    assert CORE[name].encode() not in out
    assert out.startswith(b"before ")


@needs_hs
def test_pattern_hyperscan_cannot_compile_still_masks() -> None:
    # a look-behind with a back-reference: not supported by Hyperscan even as a
    # prefilter -> this pattern has no gate and runs on every chunk
    p = MaskPattern.from_config("pin", r"(?<=PIN )(\d)\1\d{4}", r"PIN \d{0,5}")
    m = StreamMasker([*BUILTIN_PATTERNS, p], accelerate=True)
    out = run(m, b"your PIN 112233 is set\r\n", [3, 11])
    assert b"112233" not in out
    assert b"your PIN ******" in out


@needs_hs
def test_large_quiet_output_passes_unchanged() -> None:
    data = os.urandom(1 << 20).replace(b"\x1b", b"e")
    m = StreamMasker(secrets=[VAULTED], accelerate=True)
    assert run(m, data, list(range(0, 1 << 20, 32768))) == run(
        StreamMasker(secrets=[VAULTED], accelerate=False), data, list(range(0, 1 << 20, 32768))
    )
