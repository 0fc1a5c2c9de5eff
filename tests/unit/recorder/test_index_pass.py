"""The after-close index pass of a recording its own writer has just closed does not hash
the recording again; a failed or stale one (and every other reader) checks the chain.

The pass cost ~1.8 ms of CPU per MiB recorded after a bulk transfer, a third of it the
chain's SHA-256 over every payload, which the writer had computed a moment before.
"""

from __future__ import annotations

import hashlib
import random
import types
from pathlib import Path
from typing import Any

import pytest
from recorder_helpers import build_recording, make_header, wait_until

from recorder import events as ev
from recorder.format import v1
from recorder.index import Index
from recorder.postprocess import Postprocessor
from recorder.reader import Recording
from recorder.settings import RecorderSettings
from recorder.sinks.memory import MemorySink

_BIG = random.Random(18).randbytes(64 * 1024)  # stored, not compressed


def _recording(session_id: str) -> tuple[MemorySink, str, bytes]:
    sink = MemorySink()
    batches = [[(0.1 * i, ev.OUTPUT, b"line %d\r\n" % i + _BIG)] for i in range(8)]
    data, name = build_recording(batches, header=make_header(session_id), sink=sink)
    return sink, name, data


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes hashed by the format module's SHA-256 (its chain checks)."""
    counted: list[int] = []

    class Counting:
        def __init__(self, data: bytes = b"") -> None:
            self._h = hashlib.sha256(data)
            counted.append(len(data))

        def update(self, data: Any) -> None:
            counted.append(len(data))
            self._h.update(data)

        def digest(self) -> bytes:
            return self._h.digest()

    monkeypatch.setattr(v1, "hashlib", types.SimpleNamespace(sha256=Counting))
    return counted


@pytest.mark.parametrize("kind", ["screen", "failed", "stale"])
def test_only_the_pass_of_a_fresh_recording_skips_the_chain(
    kind: str, hashed: list[int], tmp_path: Path
) -> None:
    sink, name, _ = _recording("fresh00001")
    hashed.clear()  # what writing it hashed
    index = Index(tmp_path / "index.sqlite3")
    post = Postprocessor(RecorderSettings(data_dir=tmp_path / "data"), sink, index)
    post.start()
    try:
        if kind == "stale":
            post.submit_stale(name, "fresh00001")
        else:
            post.submit(name, "fresh00001", failed=kind == "failed")
        assert wait_until(lambda: (row := index.get("fresh00001")) is not None
                          and bool(row.screen_indexed), 10)
    finally:
        post.stop(2)
    row = index.get("fresh00001")
    assert row is not None and row.output_bytes == sum(len(b"line %d\r\n" % i) + len(_BIG)
                                                       for i in range(8))
    index.close()
    if kind == "screen":
        assert sum(hashed) == 0  # not one payload byte hashed again
    else:
        assert sum(hashed) > 8 * len(_BIG)  # every payload checked


def test_a_scan_without_the_chain_finds_the_same_chunks_and_header_damage() -> None:
    _, _, data = _recording("same000001")
    whole = v1.scan(v1.BytesSource(data))
    light = v1.scan(v1.BytesSource(data), chain=False)
    assert whole.problem is None and light.problem is None
    assert light.chunks == whole.chunks
    cut = data[: whole.chunks[-2].offset + 10]  # ends inside a chunk header
    assert v1.scan(v1.BytesSource(cut), chain=False).problem.kind == "truncated"  # type: ignore[union-attr]
    # what it does not see: a changed payload byte (verify, the player and reindex do)
    at = whole.chunks[3].payload_offset + 100
    changed = data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]
    assert v1.scan(v1.BytesSource(changed)).problem.kind == "hash"  # type: ignore[union-attr]
    assert v1.scan(v1.BytesSource(changed), chain=False).problem is None
    assert Recording.from_bytes(changed).problems  # a reader checks by default
