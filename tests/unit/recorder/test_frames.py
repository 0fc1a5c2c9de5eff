"""The frame cache of RDP desktops (recorder.frames): written, read back, refused when bad."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from recorder import frames as fc
from recorder.errors import FormatError

W, H = 40, 30


def solid(w: int, h: int, rgb: tuple[int, int, int]) -> bytes:
    return bytes(rgb) * (w * h)


def pixel(frame: fc.Frame, x: int, y: int) -> tuple[int, int, int]:
    i = (y * frame.width + x) * 3
    return (frame.rgb[i], frame.rgb[i + 1], frame.rgb[i + 2])


def write_cache(path: Path) -> Path:
    w = fc.FrameWriter(path, session_id="s1", source_size=1234)
    w.key(1.0, W, H, solid(W, H, (0, 0, 128)))
    w.rect(2.0, 5, 5, 10, 4, solid(10, 4, (255, 0, 0)))
    w.rect(3.0, 0, 0, 2, 2, solid(2, 2, (0, 255, 0)))
    w.key(10.0, W, H, solid(W, H, (9, 9, 9)))
    w.rect(11.0, 39, 29, 1, 1, solid(1, 1, (1, 2, 3)))
    return w.finish(until=12.0, complete=True,
                    ocr=[fc.OcrLine(2.5, "hello world", (1, 2, 3, 4))], notes={"x": 1})


def test_round_trip_and_seeking(tmp_path: Path) -> None:
    path = write_cache(fc.cache_path(tmp_path, "s1"))
    cache = fc.FrameCache.open(path)
    try:
        assert (cache.session_id, cache.source_size, cache.until, cache.complete) == \
            ("s1", 1234, 12.0, True)
        assert cache.times == [1.0, 2.0, 3.0, 10.0, 11.0]
        assert cache.size == (W, H)
        assert cache.ocr == [fc.OcrLine(2.5, "hello world", (1, 2, 3, 4))]
        assert cache.frame_at(0.5) is None  # nothing drawn before the first key
        f = cache.frame_at(2.5)
        assert f is not None and (f.time, f.index) == (2.0, 1)
        assert pixel(f, 6, 6) == (255, 0, 0) and pixel(f, 0, 0) == (0, 0, 128)
        f = cache.frame_at(3.0)  # forward: one more rectangle
        assert f is not None and pixel(f, 0, 0) == (0, 255, 0) and pixel(f, 6, 6) == (255, 0, 0)
        f = cache.frame_at(1.5)  # backward: from the key again
        assert f is not None and pixel(f, 6, 6) == (0, 0, 128) and pixel(f, 0, 0) == (0, 0, 128)
        f = cache.frame_at(11.5)  # the second key hides what came before it
        assert f is not None and pixel(f, 6, 6) == (9, 9, 9) and pixel(f, 39, 29) == (1, 2, 3)
        f = cache.frame_at(10.0)
        assert f is not None and pixel(f, 39, 29) == (9, 9, 9)
    finally:
        cache.close()


def test_private_file_in_private_directory(tmp_path: Path) -> None:
    os.umask(0o022)
    path = write_cache(fc.cache_path(tmp_path, "s1"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["s1.frames"]  # no temporary left


def test_abort_leaves_nothing(tmp_path: Path) -> None:
    w = fc.FrameWriter(fc.cache_path(tmp_path, "s2"), session_id="s2", source_size=1)
    w.key(0.0, 2, 2, solid(2, 2, (1, 1, 1)))
    w.abort()
    assert list((tmp_path / "frames").iterdir()) == []


def test_session_id_must_be_plain(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="not a valid id"):
        fc.cache_path(tmp_path, "../../etc/passwd")


@pytest.mark.parametrize("bad", [
    lambda w: w.rect(0.0, 0, 0, 1, 1, b"\0\0\0"),  # no key yet
])
def test_writer_needs_a_key_first(tmp_path: Path, bad: object) -> None:
    w = fc.FrameWriter(tmp_path / "frames" / "x.frames", session_id="x", source_size=1)
    with pytest.raises(ValueError, match="key frame must come first"):
        bad(w)  # type: ignore[operator]
    w.abort()


def test_writer_refuses_rectangles_outside_the_desktop(tmp_path: Path) -> None:
    w = fc.FrameWriter(tmp_path / "frames" / "x.frames", session_id="x", source_size=1)
    w.key(0.0, 4, 4, solid(4, 4, (0, 0, 0)))
    with pytest.raises(ValueError, match="outside"):
        w.rect(1.0, 3, 3, 2, 2, solid(2, 2, (0, 0, 0)))
    with pytest.raises(ValueError, match="needs 12 bytes"):
        w.rect(1.0, 0, 0, 2, 2, b"\0" * 11)
    w.abort()


def test_damaged_caches_are_refused(tmp_path: Path) -> None:
    path = write_cache(tmp_path / "frames" / "s1.frames")
    data = path.read_bytes()
    cases = {
        "magic": b"XXXXXXXX" + data[8:],
        "cut": data[:-5],
        "empty": b"",
        "trailer": data[:-fc.FOOTER.size - 3] + b"\xff\xff\xff" + data[-fc.FOOTER.size:],
    }
    for name, blob in cases.items():
        bad = tmp_path / f"{name}.frames"
        bad.write_bytes(blob)
        with pytest.raises(FormatError):
            fc.FrameCache.open(bad)
    link = tmp_path / "link.frames"
    link.symlink_to(path)
    with pytest.raises(OSError):
        fc.FrameCache.open(link)


def test_damaged_payload_is_reported_when_drawn(tmp_path: Path) -> None:
    path = write_cache(tmp_path / "frames" / "s1.frames")
    cache = fc.FrameCache.open(path)
    first = cache.records[1]
    cache.close()
    data = bytearray(path.read_bytes())
    data[first.offset:first.offset + first.length] = b"\x00" * first.length
    path.write_bytes(bytes(data))
    cache = fc.FrameCache.open(path)
    try:
        assert cache.frame_at(1.0) is not None
        with pytest.raises(FormatError, match="damaged frame"):
            cache.frame_at(2.0)
    finally:
        cache.close()


def test_records_outside_the_desktop_are_refused_on_open(tmp_path: Path) -> None:
    """A cache whose index puts a rectangle outside its key's desktop is refused."""
    import json

    import zstandard

    path = write_cache(tmp_path / "frames" / "s1.frames")
    data = path.read_bytes()
    offset, length, end = fc.FOOTER.unpack(data[-fc.FOOTER.size:])
    body = json.loads(zstandard.ZstdDecompressor().decompress(data[offset:offset + length]))
    body["records"][1][2] = 35  # x = 35 with w = 10 on a 40-wide desktop
    trailer = zstandard.ZstdCompressor().compress(json.dumps(body).encode())
    path.write_bytes(data[:offset] + trailer + fc.FOOTER.pack(offset, len(trailer), end))
    with pytest.raises(FormatError, match="bad frame record"):
        fc.FrameCache.open(path)
