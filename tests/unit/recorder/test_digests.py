"""The trailer's two digests, hashed in one pass while the streams are the same bytes:
always exactly SHA-256 of each stream, whatever the cuts, the order and the lag."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder import digests
from recorder.digests import OutputDigests


def _cuts(rng: random.Random, data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        n = rng.choice((1, 7, 100, 4096, 65536, 300_000))
        out.append(data[pos:pos + n])
        pos += n
    return out


def _feed(d: OutputDigests, rng: random.Random, out: list[bytes], dlv: list[bytes]) -> None:
    """Interleave the two streams at random (each keeps its own order)."""
    i = j = 0
    while i < len(out) or j < len(dlv):
        if j >= len(dlv) or (i < len(out) and rng.random() < 0.5):
            d.output(out[i])
            i += 1
        else:
            d.delivered(dlv[j])
            j += 1


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32), size=st.integers(0, 400_000),
       change=st.one_of(st.none(), st.integers(0, 399_999)), tail=st.integers(0, 3))
def test_digests_are_sha256_of_each_stream(seed: int, size: int, change: int | None,
                                           tail: int) -> None:
    rng = random.Random(seed)
    delivered = rng.randbytes(size)
    output = bytearray(delivered)
    if change is not None and change < size:  # the masker changed one byte
        output[change] ^= 0x2A
    output = bytes(output) + b"x" * tail  # or recorded more than was delivered
    d = OutputDigests()
    d.pair()
    _feed(d, rng, _cuts(rng, output), _cuts(rng, delivered))
    assert d.output_hex() == hashlib.sha256(output).hexdigest()
    expected = hashlib.sha256(delivered).hexdigest() if delivered else None
    assert d.delivered_hex() == expected


def test_the_same_bytes_are_hashed_once() -> None:
    """Cut differently, each stream at most a few pieces ahead (as a relay reports them:
    one batch per loop turn each)."""
    rng = random.Random(7)
    data = rng.randbytes(3_000_000)
    d = OutputDigests()
    d.pair()
    out, dlv = _cuts(rng, data), _cuts(rng, data)
    fed = [0, 0]  # bytes of output, delivered given so far
    while out or dlv:
        if dlv and (not out or fed[1] <= fed[0]):
            piece = dlv.pop(0)
            d.delivered(piece)
            fed[1] += len(piece)
        else:
            piece = out.pop(0)
            d.output(piece)
            fed[0] += len(piece)
    assert d.paired  # never split: one SHA-256 pass served both
    assert d.output_hex() == d.delivered_hex() == hashlib.sha256(data).hexdigest()


def test_a_difference_splits_and_both_stay_exact() -> None:
    d = OutputDigests()
    d.pair()
    d.delivered(b"key AKIAIOSFODNN7EXAMPLE\n")
    d.output(b"key ********************\n")
    assert not d.paired
    d.output(b"more")
    d.delivered(b"more")
    assert d.output_hex() == hashlib.sha256(b"key ********************\nmore").hexdigest()
    assert d.delivered_hex() == hashlib.sha256(b"key AKIAIOSFODNN7EXAMPLE\nmore").hexdigest()


def test_a_stream_far_ahead_is_not_held_beyond_the_bound(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Delivered bytes whose recording was dropped (storage full) do not pile up."""
    monkeypatch.setattr(digests, "MAX_LAG", 1000)
    d = OutputDigests()
    d.pair()
    for _ in range(5):
        d.delivered(b"y" * 400)
    assert not d.paired and d._ahead_len == 0
    assert d.delivered_hex() == hashlib.sha256(b"y" * 2000).hexdigest()
    assert d.output_hex() == hashlib.sha256(b"").hexdigest()


def test_unpaired_sessions_hash_apart_and_report_no_delivery() -> None:
    d = OutputDigests()
    d.output(b"abc")
    d.pair()  # too late: output was hashed already
    d.delivered(b"abc")
    assert not d.paired
    assert d.output_hex() == d.delivered_hex() == hashlib.sha256(b"abc").hexdigest()
    e = OutputDigests()
    e.output(b"abc")
    assert e.delivered_hex() is None
