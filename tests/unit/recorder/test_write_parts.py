"""A chunk goes to storage as its pieces (header, event headers, data, digest), written
with ``os.writev`` and not joined first: the bytes on disk are the same, in order,
through short writes, more pieces than one call takes, and a refusal midway."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path
from typing import Any

import pytest

from recorder import events as ev
from recorder.errors import SinkFullError
from recorder.format import v1
from recorder.reader import Recording
from recorder.sinks import base
from recorder.sinks.file import FileSink
from recorder.verify import verify_source


def _pieces(rng: random.Random, count: int) -> list[Any]:
    out: list[Any] = []
    for _ in range(count):
        data = rng.randbytes(rng.choice([0, 1, 3, 13, 4096, 70_000]))
        out.append(rng.choice([bytes, bytearray, memoryview])(data))
    return out


def test_every_piece_lands_in_order_through_short_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.writev
    calls: list[int] = []

    def short(fd: int, buffers: list[Any]) -> int:  # fault injection: a short write
        calls.append(len(buffers))
        assert len(buffers) <= base.IOV_MAX
        prefix, left = [], 777  # the first 777 bytes of what was asked
        for b in buffers:
            if not left:
                break
            prefix.append(memoryview(b)[:left])
            left -= len(prefix[-1])
        return real(fd, prefix)

    monkeypatch.setattr(os, "writev", short)
    rng = random.Random(1)
    pieces = _pieces(rng, 2500)  # more than one writev takes
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    done = [0]
    try:
        base.write_parts(fd, pieces, done)
    finally:
        os.close(fd)
    want = b"".join(bytes(p) for p in pieces)
    assert path.read_bytes() == want and done[0] == len(want)
    assert len(calls) > 10


def test_a_refusal_midway_leaves_nothing_of_the_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file sink undoes a partly written chunk when storage refuses the rest."""
    sink = FileSink(tmp_path)
    stream = sink.create("rec0001.bstl")
    stream.write(b"header")
    real = os.writev
    state = {"n": 0}

    def refuse_second(fd: int, buffers: list[Any]) -> int:  # fault injection: ENOSPC
        state["n"] += 1
        if state["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, buffers[:1])

    monkeypatch.setattr(os, "writev", refuse_second)
    with pytest.raises(SinkFullError):
        stream.write_parts([b"a" * 5000, b"b" * 5000])
    monkeypatch.setattr(os, "writev", real)
    stream.write_parts([b"c", memoryview(b"de"), bytearray(b"f")])
    stream.close()
    assert (tmp_path / "rec0001.bstl").read_bytes() == b"headercdef"


def test_recordings_written_in_pieces_read_and_verify(tmp_path: Path) -> None:
    """An encoder's data chunks as pieces, written by the file sink: a valid recording."""
    enc = v1.Encoder({"session_id": "pieces01"})
    sink = FileSink(tmp_path)
    stream = sink.create("pieces01.bstl")
    stream.write(enc.begin())
    rng = random.Random(2)
    outputs = []
    for t in range(1, 60):
        data = rng.randbytes(rng.choice([10, 5000, 300_000])) if t % 2 else b"text " * 3000
        outputs.append(data)
        stream.write_parts(enc.data_parts(
            [v1.EVENT_HDR.pack(ev.OUTPUT, t, len(data)), data], t, t))
    stream.write(enc.trailer({"end_time": 1.0}))
    stream.close()
    blob = (tmp_path / "pieces01.bstl").read_bytes()
    rec = Recording.from_bytes(blob)
    assert rec.problems == []
    assert [e.data for e in rec.events() if e.type == ev.OUTPUT] == outputs
    assert verify_source(v1.BytesSource(blob)).ok
