"""Incompressible output is stored in zstd raw blocks, not run through the compressor.

The recording stays a standard v1 file: every part still decodes with any zstd decoder,
the reader and ``verify`` accept it, and compression comes back as soon as the data is
compressible again.
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest
import zstandard

from recorder import events as ev
from recorder.format import v1
from recorder.reader import Recording
from recorder.verify import verify_source

LINE = b"\x1b[32muser@host\x1b[0m:~$ ls -la /var/log  total 4 drwxr-xr-x 2 root root .\r\n"
TEXT = LINE * 40_000


def _encode(pieces: list[bytes], *, chunk: int = 64 * 1024) -> tuple[bytes, v1.Encoder]:
    enc = v1.Encoder({"session_id": "stored"})
    out = [enc.begin()]
    t = 0
    for data in pieces:
        for i in range(0, len(data), chunk):
            t += 1
            piece = data[i : i + chunk]
            raw = bytearray(v1.EVENT_HDR.pack(ev.OUTPUT, t, len(piece)))
            raw += piece
            out.append(enc.data(raw, t, t))
    out.append(enc.trailer({"end_time": 1.0}))
    return b"".join(out), enc


def _outputs(blob: bytes) -> bytes:
    rec = Recording.from_bytes(blob)
    assert rec.problems == []
    data = [c for c in rec.chunks if c.type == v1.DATA]
    # every part is closed: the trailer ends an open part, stored or compressed
    assert data and data[-1].flags & v1.FRAME_END
    assert sum(1 for c in data if c.flags & v1.FRAME_START) == sum(
        1 for c in data if c.flags & v1.FRAME_END)
    return b"".join(e.data for e in rec.events() if e.type == ev.OUTPUT)


def _parts(blob: bytes) -> list[bytes]:
    """Each part's payloads, concatenated: one zstd frame each."""
    rec = Recording.from_bytes(blob)
    frames: dict[int, bytearray] = {}
    for c in rec.chunks:
        if c.type == v1.DATA:
            frames.setdefault(c.part, bytearray()).extend(
                blob[c.offset + v1.HEADER_LEN : c.offset + v1.HEADER_LEN + c.length])
    return [bytes(f) for _, f in sorted(frames.items())]


def test_random_output_is_never_run_through_the_compressor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[Any] = []
    real = zstandard.ZstdCompressor.compressobj

    def counting(self: zstandard.ZstdCompressor, *a: Any, **k: Any) -> Any:
        made.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(zstandard.ZstdCompressor, "compressobj", counting)
    data = os.urandom(8 << 20)
    blob, enc = _encode([data])
    # 8 MiB is four 2 MiB parts: the sample of each first chunk shows the data does not
    # shrink, and every part is stored as it is (no compressor is even made)
    assert made == []
    assert _outputs(blob) == data
    assert len(blob) < len(data) * 1.002
    # every part is a standard zstd frame: a stock decoder reads it
    frames = _parts(blob)
    assert len(frames) == len(enc.parts)
    decoded = b"".join(zstandard.ZstdDecompressor().decompressobj().decompress(f)
                       for f in frames)
    assert len(decoded) == len(data) + (len(data) // (64 * 1024)) * v1.EVENT_HDR.size


class _Counting:
    """A compressobj that counts the bytes it was given."""

    def __init__(self, inner: Any, fed: list[int]) -> None:
        self._inner, self._fed = inner, fed

    def compress(self, data: bytes) -> bytes:
        self._fed.append(len(data))
        return bytes(self._inner.compress(data))

    def flush(self, mode: int = zstandard.COMPRESSOBJ_FLUSH_FINISH) -> bytes:
        return bytes(self._inner.flush(mode))


def test_lone_events_between_bulk_chunks_do_not_bring_the_compressor_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An SFTP download: 256 KiB chunks of file data with a small event between some
    (a read request, a transfer event). A small chunk says nothing of the data's kind:
    before, one ended the stored part and the next part ran 2 MiB through the compressor
    (a third of a download's bytes, measured); now no file byte is compressed."""
    fed: list[int] = []
    real = zstandard.ZstdCompressor.compressobj
    monkeypatch.setattr(zstandard.ZstdCompressor, "compressobj",
                        lambda self, *a, **k: _Counting(real(self, *a, **k), fed))
    rng = random.Random(3)
    pieces: list[bytes] = []
    for i in range(80):
        pieces.append(os.urandom(256 * 1024 + rng.randrange(0, 9000)))
        if i % 3 == 0:
            pieces.append(rng.randbytes(rng.choice([71, 129])))  # a lone small event
    enc = v1.Encoder({"session_id": "lone"})
    out = [enc.begin()]
    for t, data in enumerate(pieces, 1):
        raw = bytearray(v1.EVENT_HDR.pack(ev.OUTPUT, t, len(data)))
        raw += data
        out.append(enc.data(raw, t, t))
    out.append(enc.trailer({"end_time": 1.0}))
    blob = b"".join(out)
    assert _outputs(blob) == b"".join(pieces)
    assert sum(fed) < 4096  # only lone events, never a bulk chunk
    assert verify_source(v1.BytesSource(blob)).ok


def test_an_incompressible_chunk_ends_a_compressed_part_at_once() -> None:
    """Text, then random data: the compressed part is closed by an empty chunk and the
    random data starts a stored part in the same call (nothing random is compressed)."""
    enc = v1.Encoder({"session_id": "switch"})
    out = [enc.begin()]
    text = bytearray(v1.EVENT_HDR.pack(ev.OUTPUT, 1, 60_000)) + TEXT[:60_000]
    out.append(enc.data(text, 1, 1))
    rnd = os.urandom(200_000)
    raw = bytearray(v1.EVENT_HDR.pack(ev.OUTPUT, 2, len(rnd))) + rnd
    out.append(enc.data(raw, 2, 2))
    out.append(enc.trailer({"end_time": 1.0}))
    blob = b"".join(out)
    assert _outputs(blob) == TEXT[:60_000] + rnd
    rec = Recording.from_bytes(blob)
    data = [c for c in rec.chunks if c.type == v1.DATA]
    # text (compressed, open), the empty closing chunk, the stored random part, the end
    assert [c.raw_len for c in data][:3] == [len(text), 0, len(raw)]
    assert data[1].flags & v1.FRAME_END and data[2].flags & v1.FRAME_START
    assert data[2].length >= len(raw)  # stored: raw blocks, not smaller
    assert data[1].t_first == data[1].t_last == 2
    assert verify_source(v1.BytesSource(blob)).ok


def test_compression_comes_back_within_one_chunk_when_the_data_changes() -> None:
    rnd = os.urandom(3 << 20)
    blob, _ = _encode([rnd, TEXT, rnd[: 1 << 20], TEXT])
    assert _outputs(blob) == rnd + TEXT + rnd[: 1 << 20] + TEXT
    rec = Recording.from_bytes(blob)
    text_chunks = [c for c in rec.chunks if c.type == v1.DATA and c.length < c.raw_len // 4]
    text_bytes = sum(c.raw_len for c in text_chunks)
    # all of the text but at most one 64 KiB chunk per change of kind is compressed
    assert text_bytes >= 2 * len(TEXT) - 2 * 64 * 1024 - 2 * 4096


def test_mixed_recordings_round_trip_and_verify() -> None:
    rng = random.Random(7)
    pieces = []
    for _ in range(30):
        n = rng.choice([100, 20_000, 70_000, 300_000])
        kind = rng.random()
        if kind < 0.4:
            pieces.append(os.urandom(n))
        elif kind < 0.8:
            start = rng.randrange(0, len(TEXT) - n)
            pieces.append(TEXT[start : start + n])
        else:
            pieces.append(bytes(n))
    for chunk in (5_000, 20_000, 64 * 1024, 200_000):
        blob, _ = _encode(pieces, chunk=chunk)
        assert _outputs(blob) == b"".join(pieces)
        report = verify_source(v1.BytesSource(blob))
        assert report.ok and report.status == "unsigned", report


def test_raw_blocks_split_at_the_zstd_block_limit() -> None:
    big = os.urandom(400_000)
    blocks = v1._raw_blocks([big], len(big), start=True, last=True)
    assert blocks[0] == v1.RAW_FRAME_HEADER
    headers = [int.from_bytes(b, "little") for b in blocks[1::2]]
    assert [h >> 3 for h in headers] == [131072, 131072, 131072, 400_000 - 3 * 131072]
    assert [h & 1 for h in headers] == [0, 0, 0, 1]
    assert zstandard.ZstdDecompressor().decompressobj().decompress(b"".join(blocks)) == big
    assert v1._raw_blocks([], 0, start=False, last=True) == [b"\x01\x00\x00"]


def test_raw_blocks_span_the_pieces_they_are_given() -> None:
    """Event headers and data as separate pieces: blocks cut across them, not copied."""
    rng = random.Random(5)
    for _ in range(50):
        parts = [os.urandom(rng.choice([1, 13, 4096, 131071, 131072, 131073, 300_000]))
                 for _ in range(rng.randint(1, 6))]
        n = sum(map(len, parts))
        blocks = v1._raw_blocks(parts, n, start=True, last=True)
        frame = b"".join(blocks)
        assert zstandard.ZstdDecompressor().decompressobj().decompress(frame) == b"".join(parts)
        sizes, pos = [], len(v1.RAW_FRAME_HEADER)
        while pos < len(frame):
            h = int.from_bytes(frame[pos:pos + 3], "little")
            sizes.append(h >> 3)
            pos += 3 + (h >> 3)
        assert sizes == [min(v1.RAW_BLOCK_MAX, n - i) for i in range(0, n, v1.RAW_BLOCK_MAX)]
