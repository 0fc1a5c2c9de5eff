"""common.shared_sha256: a transferred file's SHA-256, fed by the event loop, hashed by
the recorder's writer in the gaps of its chunk hashes (or by the loop when the writer
does not take it).

Whoever hashes, and however the two threads interleave, the digest must be exactly
hashlib's; the writer must actually take the bytes (else nothing moved off the loop);
the loop never waits for the writer to get its digest; nothing is kept unbounded.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import threading
import time

import pytest
from recorder_helpers import run_without_sha_ext

from common import sha256, shared_sha256
from common.shared_sha256 import LIMIT, MAX_OPEN, SharedSha256, settle_chunk
from recorder.format import v1

needs_ext = pytest.mark.skipif(
    not sha256.ACCELERATED, reason="common._sha2x not built or this CPU has no SHA extensions")


def _pieces(rnd: random.Random, total: int) -> list[bytes | bytearray | memoryview]:
    out: list[bytes | bytearray | memoryview] = []
    while total > 0:
        n = min(total, rnd.choice([1, 63, 64, 65, 4096, 32_768, 70_001, 300_000]))
        total -= n
        data = rnd.randbytes(n + 9)
        kind = rnd.randint(0, 2)
        out.append(data[:n] if kind == 0 else memoryview(data)[9:] if kind == 1
                   else bytearray(data[:n]))
    return out


@needs_ext
def test_the_digest_is_hashlibs_while_a_writer_thread_takes_the_bytes_at_random() -> None:
    rnd = random.Random(11)
    stop = threading.Event()
    chunks = 0

    def writer() -> None:  # the recorder's writer: hashes chunks, pairs with what waits
        nonlocal chunks
        w = random.Random(5)
        while not stop.is_set():
            h = sha256.new(b"chain")
            data = w.randbytes(w.choice([100, 40_000, 200_000]))
            h.defer(data)
            settle_chunk(h, None)
            assert h.digest() == hashlib.sha256(b"chain" + data).digest()
            chunks += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(12):
            s, ref = SharedSha256(), hashlib.sha256()
            for piece in _pieces(rnd, rnd.randint(0, 6 << 20)):
                s.add(piece)
                ref.update(piece)
                if isinstance(piece, memoryview):
                    piece.release()  # the caller's view: the hash has its own
                elif isinstance(piece, bytearray):
                    piece[:] = b"x" * len(piece)  # mutable data changed after add
                if rnd.random() < 0.05:
                    time.sleep(0.001)  # let the writer run
            assert s.hexdigest() == ref.hexdigest()
    finally:
        stop.set()
        t.join()
    assert chunks > 0


@needs_ext
def test_the_writers_chunk_hash_takes_the_files_bytes() -> None:
    """What moves the work off the loop: after one chunk of the same size, nothing of
    the file waits, and the chunk's own hash is unchanged."""
    s = SharedSha256()
    data = os.urandom(512 * 1024)
    s.add(data)
    assert s.waiting() == len(data)
    enc = v1.Encoder({"id": "t"})
    enc.begin()
    payload = v1.EVENT_HDR.pack(0, 0, len(data)) + data
    chunk = enc.data(payload, 0, 0)
    assert s.waiting() < 4096
    alone = v1.Encoder({"id": "t"})
    alone.begin()
    assert s.hexdigest() == hashlib.sha256(data).hexdigest()
    assert alone.data(payload, 0, 0) == chunk  # no shared hash open now: same bytes
    assert not shared_sha256._open


@needs_ext
def test_a_writer_holding_the_lock_never_makes_the_loop_wait_and_order_is_kept() -> None:
    s, ref = SharedSha256(), hashlib.sha256()
    first = os.urandom(100_000)
    s.add(first)
    ref.update(first)
    assert s._lock.acquire()  # the writer is in the middle of a settle
    try:
        t0 = time.monotonic()
        later = [os.urandom(50_000) for _ in range(5)]
        for piece in later:
            s.add(piece)  # queued behind, without blocking
            ref.update(piece)
        assert time.monotonic() - t0 < 0.5
        assert s.waiting() == 100_000 + 250_000
    finally:
        s._lock.release()
    last = os.urandom(10)
    s.add(last)
    ref.update(last)
    assert s.hexdigest() == ref.hexdigest()


@needs_ext
def test_without_a_writer_the_loop_hashes_past_the_limit_and_keeps_no_more() -> None:
    s, ref = SharedSha256(), hashlib.sha256()
    data = os.urandom(64 * 1024)
    before = sys.getrefcount(data)
    for _ in range(200):  # 12.5 MiB, nobody settles
        s.add(data)
        ref.update(data)
        assert s.waiting() < LIMIT
    assert sys.getrefcount(data) - before <= LIMIT // len(data)
    assert s.hexdigest() == ref.hexdigest()
    assert sys.getrefcount(data) == before  # the digest released every reference


@needs_ext
def test_what_waits_is_bounded_per_process_whatever_a_client_opens() -> None:
    """A session may hold 1,024 files open, and with storage full no chunk is written
    to pair with: only MAX_OPEN hashes keep bytes for the writer, the rest hash now."""
    files = [SharedSha256() for _ in range(MAX_OPEN * 4)]
    refs = [hashlib.sha256() for _ in files]
    data = os.urandom(LIMIT // 2 + 1000)
    for s, ref in zip(files, refs, strict=True):
        s.add(data)
        ref.update(data)
    waiting = [s.waiting() for s in files]
    assert sum(waiting) <= MAX_OPEN * LIMIT
    assert waiting.count(0) == len(files) - MAX_OPEN
    assert len(shared_sha256._open) == MAX_OPEN
    assert [s.hexdigest() for s in files] == [r.hexdigest() for r in refs]
    assert not shared_sha256._open
    again = SharedSha256()  # room again: the next file shares
    again.add(data)
    assert again.waiting() == len(data)
    assert again.hexdigest() == hashlib.sha256(data).hexdigest()


@needs_ext
def test_an_abandoned_hash_is_no_candidate_and_a_finished_one_neither() -> None:
    s = SharedSha256()
    s.add(os.urandom(100_000))
    assert id(s) in shared_sha256._open
    del s  # a session that ended mid-transfer
    assert not shared_sha256._open
    f = SharedSha256()
    f.add(os.urandom(100_000))
    f.hexdigest()
    assert not shared_sha256._open
    h = sha256.new(b"c")
    h.defer(os.urandom(100_000))
    settle_chunk(h, None)  # nothing open: settles alone, later
    assert h.deferred == 100_000  # type: ignore[attr-defined]


def test_without_the_extension_it_hashes_at_once_with_hashlib() -> None:
    code = (
        "import hashlib; from common import shared_sha256 as m, sha256 as s\n"
        "assert not s.ACCELERATED\n"
        "h = m.SharedSha256(); v = memoryview(b'abc' * 999)[5:]; h.add(v); h.add(bytearray(b'q'))\n"
        "assert not m._open\n"
        "assert h.hexdigest() == hashlib.sha256((b'abc' * 999)[5:] + b'q').hexdigest()\n"
        "print('ok')\n"
    )
    run_without_sha_ext(code)
