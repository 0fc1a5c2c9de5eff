"""Fuzzing the reader: random and mutated input never crashes it or exhausts memory."""

from __future__ import annotations

import io
import tracemalloc

import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recorder_helpers import build_recording, make_header

from recorder import events as ev
from recorder.errors import FormatError
from recorder.export import export_asciicast
from recorder.format import v1
from recorder.reader import Recording
from recorder.verify import verify_source

VALID, _ = build_recording(
    [
        [(0.1 * i, ev.OUTPUT, b"\x1b[31mhello\x1b[0m %d\n" % i), (0.1 * i, ev.INPUT, b"x")]
        for i in range(8)
    ]
    + [[(1.0, ev.COMMAND, ev.dumps({"text": "ls", "source": "exec"}))]]
)


def _read_everything(data: bytes) -> None:
    """Every reader entry point; only FormatError may escape."""
    report = verify_source(v1.BytesSource(data))
    assert report.status in {
        "ok",
        "unsigned",
        "truncated",
        "damaged",
        "bad-signature",
        "wrong-key",
        "missing-signature",
        "unreadable",
    }
    try:
        rec = Recording.from_bytes(data)
    except FormatError:
        return
    for e in rec.events():
        e.fields()
        _ = e.name
    _ = (rec.status, rec.duration, rec.size, rec.start_time)
    export_asciicast(rec, io.StringIO(), include_input=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    _read_everything(data)
    _read_everything(v1.FILE_HEADER + data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["flip", "insert", "delete", "truncate", "set"]),
            st.integers(min_value=0, max_value=len(VALID) - 1),
            st.integers(min_value=0, max_value=255),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_mutated_valid_recording(mutations: list[tuple[str, int, int]]) -> None:
    data = bytearray(VALID)
    for op, pos, value in mutations:
        pos = min(pos, max(len(data) - 1, 0))
        if not data:
            break
        if op == "flip":
            data[pos] ^= 1 << (value % 8)
        elif op == "insert":
            data[pos:pos] = bytes([value]) * (value % 5 + 1)
        elif op == "delete":
            del data[pos : pos + value % 9 + 1]
        elif op == "truncate":
            del data[pos:]
        else:
            data[pos] = value
    _read_everything(bytes(data))


def _forged_chunk(payload: bytes, raw_len: int, length: int | None = None) -> bytes:
    """A recording whose chain is valid but whose data chunk lies about its sizes."""
    enc = v1.Encoder({"session_id": "bomb"})
    out = enc.begin()
    out += b"".join(enc._chunk_parts(v1.DATA, (payload,), flags=v1.FRAME_START | v1.FRAME_END,
                                     raw_len=raw_len))
    if length is not None:  # patch the length field (and header checksum) after the fact
        import zlib

        hdr = bytearray(out[len(out) - len(payload) - 32 - v1.HEADER_LEN :][: v1.HEADER_LEN])
        hdr[16:20] = length.to_bytes(4, "little")
        hdr[40:44] = zlib.crc32(bytes(hdr[:40])).to_bytes(4, "little")
        out = out[: len(out) - len(payload) - 32 - v1.HEADER_LEN] + bytes(hdr) + payload
    return out


def test_decompression_bomb_is_bounded() -> None:
    bomb = zstandard.ZstdCompressor(level=19).compress(b"\0" * (512 << 20))  # 512 MiB
    assert len(bomb) < 100_000
    data = _forged_chunk(bomb, raw_len=1000)
    tracemalloc.start()
    try:
        rec = Recording.from_bytes(data)
        events = list(rec.events())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert events == [] or all(len(e.data) <= 1000 for e in events)
    assert rec.problems  # reported, not crashed on
    assert peak < 64 << 20


def test_oversized_length_fields_are_rejected_without_allocating() -> None:
    data = _forged_chunk(b"abc", raw_len=0xFFFFFFFF)
    tracemalloc.start()
    try:
        report = verify_source(v1.BytesSource(data))
        try:
            Recording.from_bytes(data)
        except FormatError:
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.status == "damaged" and report.first_bad_chunk == 1
    assert "over the limit" in report.message
    assert peak < 8 << 20
    data = _forged_chunk(b"abc", raw_len=3, length=0xFFFFFF00)
    report = verify_source(v1.BytesSource(data))
    assert report.status == "damaged" and report.first_bad_chunk == 1


def test_unknown_major_version_is_a_clear_error() -> None:
    data = v1.FILE_MAGIC + bytes([2, 0]) + VALID[8:]
    try:
        Recording.from_bytes(data)
    except FormatError as exc:
        assert "unsupported recording format version 2.0" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("no FormatError")


def test_unknown_event_types_are_skipped_by_consumers() -> None:
    data, _ = build_recording(
        [[(0.0, 99, b"future"), (0.1, ev.OUTPUT, b"ok")]], header=make_header("fut1")
    )
    rec = Recording.from_bytes(data)
    assert b"".join(rec.output()) == b"ok"
    assert [e.name for e in rec.events()][:2] == ["unknown-99", "output"]
