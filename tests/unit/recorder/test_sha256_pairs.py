"""common.sha256: SHA-256 with two streams at once (common/_sha2x.c), and its use by the
recording writer (each chunk's chain hash paired with the output digest).

Every digest must be exactly hashlib's, whatever was deferred, settled, copied or split.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys

import pytest
from recorder_helpers import run_without_sha_ext

from common import sha256
from recorder.digests import OutputDigests
from recorder.format import v1

needs_ext = pytest.mark.skipif(
    not sha256.ACCELERATED, reason="common._sha2x not built or this CPU has no SHA extensions")


def _random_ops(seed: int) -> None:
    rnd = random.Random(seed)
    a, b = sha256.new(), sha256.new()
    ra, rb = hashlib.sha256(), hashlib.sha256()
    for _ in range(rnd.randint(0, 14)):
        n = rnd.choice([0, 1, 3, 55, 56, 63, 64, 65, 127, 128, 1000, 4095, 4096, 70001])
        data = rnd.randbytes(n)
        h, ref = (a, ra) if rnd.random() < 0.5 else (b, rb)
        how = rnd.randint(0, 6)
        if how == 0:
            h.update(data)
            ref.update(data)
        elif how == 1:
            h.defer(data)
            ref.update(data)
        elif how == 2:
            i = rnd.randint(0, n)
            j = rnd.randint(i, n)
            h.defer(data, i, j)
            ref.update(data[i:j])
        elif how == 3:
            view = memoryview(data)[n // 3:]
            h.defer(view)
            ref.update(view)
        elif how == 4:  # mutable: hashed at once, a later change does not count
            buf = bytearray(data)
            h.defer(buf)
            buf[:] = b"x" * len(buf)
            ref.update(data)
        elif how == 5:
            sha256.settle(a, b) if rnd.random() < 0.5 else sha256.settle(b, a)
        else:
            assert h.copy().digest() == ref.copy().digest()
    if rnd.random() < 0.5:
        sha256.settle(a, b)
    assert a.digest() == ra.digest()
    assert b.hexdigest() == rb.hexdigest()
    assert a.digest() == ra.digest()  # a digest does not end the hash


@pytest.mark.parametrize(("data", "want"), [
    (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    (b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    (b"a" * 1_000_000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
])
def test_the_fips_180_examples(data: bytes, want: str) -> None:
    h = sha256.new()
    h.defer(data)
    partner = sha256.new(b"other")
    partner.defer(data[::-1])
    sha256.settle(h, partner)
    assert h.hexdigest() == want


def test_digests_equal_hashlib_whatever_was_deferred_settled_or_copied() -> None:
    for seed in range(3000):
        _random_ops(seed)


@needs_ext
def test_settle_hashes_all_of_the_first_and_leaves_the_partners_excess_deferred() -> None:
    big, small = os.urandom(200_000), os.urandom(64_000)
    a, b = sha256.new(), sha256.new()
    a.defer(small)
    b.defer(big)
    assert (a.deferred, b.deferred) == (64_000, 200_000)  # type: ignore[attr-defined]
    sha256.settle(a, b)
    assert a.deferred == 0  # type: ignore[attr-defined]
    assert b.deferred == 200_000 - 64_000  # type: ignore[attr-defined]
    assert a.digest() == hashlib.sha256(small).digest()
    assert b.digest() == hashlib.sha256(big).digest()
    assert b.deferred == 0  # type: ignore[attr-defined]


@needs_ext
def test_deferred_bytes_are_held_not_copied_and_bounded() -> None:
    data = os.urandom(1 << 20)
    h = sha256.new()
    before = sys.getrefcount(data)
    h.defer(data)
    assert sys.getrefcount(data) == before + 1
    for _ in range(20):  # a partner that never settles cannot make it hold more than 8 MiB
        h.defer(data)
        assert h.deferred <= 8 << 20  # type: ignore[attr-defined]
    assert h.digest() == hashlib.sha256(data * 21).digest()
    assert sys.getrefcount(data) == before


def test_without_the_extension_it_is_hashlib_and_the_same_digests() -> None:
    code = (
        "import hashlib; from common import sha256 as s\n"
        "assert not s.ACCELERATED\n"
        "a = s.new(b'x'); b = s.new(); a.defer(b'abc' * 999, 5, 700); b.defer(b'q' * 99)\n"
        "s.settle(a, b)\n"
        "assert a.digest() == hashlib.sha256(b'x' + (b'abc' * 999)[5:700]).digest()\n"
        "assert b.hexdigest() == hashlib.sha256(b'q' * 99).hexdigest()\n"
        "print('ok')\n"
    )
    run_without_sha_ext(code)


def _recording(partner: bool, chunks: list[bytes]) -> tuple[bytes, str]:
    digests = OutputDigests()
    enc = v1.Encoder({"id": "t"})
    if partner:
        enc.hash_partner = digests.partner
    out = [enc.begin()]
    for i, data in enumerate(chunks):
        digests.output(data)
        out.append(enc.data(v1.EVENT_HDR.pack(1, i, len(data)) + data, i, i))
    out.append(enc.trailer({"output_sha256": digests.output_hex()}))
    return b"".join(out), digests.output_hex()


def test_a_recording_is_the_same_bytes_with_its_chain_paired_with_the_output_digest() -> None:
    rnd = random.Random(7)
    chunks = [rnd.randbytes(rnd.choice([0, 10, 5000, 70_000, 300_000])) for _ in range(30)]
    chunks += [b"ls -l\r\n" * 9000]  # compressible: the chain is short, the output long
    alone, out_alone = _recording(False, chunks)
    paired, out_paired = _recording(True, chunks)
    assert paired == alone
    assert out_paired == out_alone == hashlib.sha256(b"".join(chunks)).hexdigest()
    result = v1.scan(v1.BytesSource(paired))  # the chain verifies as any reader checks it
    assert result.problem is None and result.finished


@needs_ext
def test_the_encoder_hashes_the_waiting_output_with_each_chunk() -> None:
    digests = OutputDigests()
    enc = v1.Encoder({"id": "t"})
    enc.hash_partner = digests.partner
    enc.begin()
    data = os.urandom(256 * 1024)
    digests.output(data)
    assert digests.partner.deferred == len(data)  # type: ignore[attr-defined]
    enc.data(v1.EVENT_HDR.pack(1, 0, len(data)) + data, 0, 0)
    # the chunk's chain hash took the output along: little or nothing of it still waits
    assert digests.partner.deferred < 4096  # type: ignore[attr-defined]


@needs_ext
def test_a_deferred_view_outlives_its_release_and_its_bytes_name() -> None:
    """A memoryview handed to defer may be released by its owner, and the bytes dropped
    by their name: the data hashed later is still the data given (the hash holds the
    bytes object behind the view, not the view)."""
    data = os.urandom(300_000)
    want = hashlib.sha256(data[7:]).digest()
    h = sha256.new()
    view = memoryview(data)[7:]
    h.defer(view)
    view.release()
    del data
    noise = [os.urandom(300_000) for _ in range(20)]  # reuse of freed memory would show
    assert h.digest() == want
    assert len(noise) == 20
