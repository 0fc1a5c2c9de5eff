"""Pre-rendered desktop frames of an RDP recording: the frame cache (no pyrdp here).

An RDP recording holds pyrdp's replay stream (bitmap updates and drawing orders), which
only pyrdp (GPLv3, imported only by ``gateway.rdp``) can draw, and only from the start.
After a session ends, ``gateway.rdp.screens`` draws it once, offscreen, and writes what
it saw here: a full frame (a *key*) now and then and, between keys, the rectangle that
changed since the previous sample. The player reads this file to show the desktop at any
moment without pyrdp; the same pass OCRs some of the frames (``ocr`` lines below).

File ``data_dir/frames/<session_id>.frames`` (derived data, rebuildable; 0600 in a 0700
directory, written under a temporary name and renamed into place)::

    MAGIC
    record*       struct RECORD (payload length, time, kind, x, y, w, h) + payload:
                  zstd(RGB24 rows of the w x h rectangle); kind KEY: x = y = 0 and
                  w x h is the desktop's size from then on; kind RECT: a part of it
    trailer       zstd(JSON): version, session id, source size (of the recording the
                  frames were drawn from), until (the last moment drawn), complete,
                  record index, OCR lines [time, text, x, y, w, h], notes
    footer        struct FOOTER (trailer offset, trailer length) + END

Seeking to ``t``: the last key at or before ``t``, then the rectangles after it up to
``t`` (the writer puts a key at least every ``KEY_INTERVAL`` s of changes, and whenever
the rectangles since the last key add up to more than a key's size).

Known limits: frames are samples (the writer's rate, at most a few per second), not
every screen update; the mouse pointer is not drawn.
"""

from __future__ import annotations

import bisect
import json
import os
import secrets
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import zstandard

from common.safefiles import FILE_MODE, private_dir, safe_id
from recorder.errors import FormatError

MAGIC = b"BSTLFRM1"
END = b"BSTLFEND"
VERSION = 1
RECORD = struct.Struct("<IdB4H")  # payload length, time, kind, x, y, w, h
FOOTER = struct.Struct("<QQ8s")  # trailer offset, trailer length, END
KEY, RECT = 0, 1
MAX_SIDE = 8192  # pixels: RDP desktops are at most 8192 wide or high
MAX_TRAILER = 256 << 20  # a trailer larger than this is not ours
PIXEL = 3  # bytes per pixel (RGB24)


def cache_path(data_dir: Path, session_id: str) -> Path:
    """Where the frames of a session are cached (``session_id`` must be a plain id)."""
    return Path(data_dir) / "frames" / f"{safe_id(session_id)}.frames"


@dataclass(frozen=True)
class Record:
    """One stored sample: a key (the whole desktop) or a changed rectangle."""

    time: float
    kind: int
    x: int
    y: int
    w: int
    h: int
    offset: int  # of the payload in the file
    length: int  # of the compressed payload


@dataclass(frozen=True)
class OcrLine:
    """A line of text read from the screen, when it first appeared, and where."""

    time: float
    text: str
    box: tuple[int, int, int, int] = (0, 0, 0, 0)  # x, y, w, h in desktop pixels


@dataclass
class Frame:
    """The desktop at some moment: RGB24 rows, ``width * height * 3`` bytes."""

    width: int
    height: int
    rgb: bytes
    time: float  # the time of the last sample drawn into it
    index: int  # the index of that sample (-1: nothing drawn yet)


class FrameWriter:
    """Writes a frame cache. Call :meth:`key` first, then :meth:`key`/:meth:`rect` in
    time order, then :meth:`finish` (or :meth:`abort`).

    Args:
        path: the cache file to create (see :func:`cache_path`); its directory is made
            private (0700).
        session_id: the recording's session id.
        source_size: the recording's size when it was drawn (the reader's freshness check).
        level: zstd level of the payloads.
    """

    def __init__(self, path: Path, *, session_id: str, source_size: int, level: int = 3) -> None:
        self.path = Path(path)
        private_dir(self.path.parent)
        self._tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, FILE_MODE)
        self._f: BinaryIO = os.fdopen(fd, "wb")
        self._f.write(MAGIC)
        self._pos = len(MAGIC)
        self._zstd = zstandard.ZstdCompressor(level=level)
        self.session_id = session_id
        self.source_size = source_size
        self.records: list[Record] = []
        self.size: tuple[int, int] | None = None
        self.bytes_since_key = 0
        self.last_key_bytes = 0
        self.payload_bytes = 0

    def _put(self, t: float, kind: int, x: int, y: int, w: int, h: int, rgb: bytes) -> None:
        if self.records and t < self.records[-1].time:
            t = self.records[-1].time  # never backwards: the reader bisects on time
        if len(rgb) != w * h * PIXEL:
            raise ValueError(f"{w}x{h} rectangle needs {w * h * PIXEL} bytes, got {len(rgb)}")
        data = self._zstd.compress(rgb)
        self._f.write(RECORD.pack(len(data), t, kind, x, y, w, h))
        self._f.write(data)
        self.records.append(Record(t, kind, x, y, w, h, self._pos + RECORD.size, len(data)))
        self._pos += RECORD.size + len(data)
        self.payload_bytes += len(data)
        if kind == KEY:
            self.bytes_since_key = 0
            self.last_key_bytes = len(data)
        else:
            self.bytes_since_key += len(data)

    def key(self, t: float, width: int, height: int, rgb: bytes) -> None:
        """The whole desktop (``width`` x ``height``) at ``t``."""
        if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
            raise ValueError(f"bad desktop size {width}x{height}")
        self.size = (width, height)
        self._put(t, KEY, 0, 0, width, height, rgb)

    def rect(self, t: float, x: int, y: int, w: int, h: int, rgb: bytes) -> None:
        """The rectangle at (``x``, ``y``) of the desktop changed to ``rgb`` at ``t``."""
        if self.size is None:
            raise ValueError("a key frame must come first")
        width, height = self.size
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
            raise ValueError(f"rectangle {w}x{h}+{x}+{y} outside the {width}x{height} desktop")
        self._put(t, RECT, x, y, w, h, rgb)

    def finish(self, *, until: float, complete: bool, ocr: Iterable[OcrLine] = (),
               notes: dict[str, Any] | None = None) -> Path:
        """Write the trailer and put the file in place; returns its path."""
        body = {
            "v": VERSION,
            "session_id": self.session_id,
            "source_size": self.source_size,
            "until": until,
            "complete": complete,
            "records": [[r.time, r.kind, r.x, r.y, r.w, r.h, r.offset, r.length]
                        for r in self.records],
            "ocr": [[o.time, o.text, *o.box] for o in ocr],
            "notes": notes or {},
        }
        trailer = self._zstd.compress(json.dumps(body).encode())
        self._f.write(trailer)
        self._f.write(FOOTER.pack(self._pos, len(trailer), END))
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the file being written."""
        try:
            self._f.close()
        finally:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass


@dataclass
class FrameCache:
    """A frame cache opened for reading (thread-safe: one lock around the file and the
    frame being composed)."""

    path: Path
    session_id: str
    source_size: int
    until: float
    complete: bool
    records: list[Record]
    ocr: list[OcrLine]
    notes: dict[str, Any]
    _fd: int = -1
    _times: list[float] = field(default_factory=list)
    _keys: list[int] = field(default_factory=list)  # indexes of the key records
    _current: Frame | None = None
    _buf: bytearray | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, path: Path) -> FrameCache:
        """Open a cache file (FormatError when it is not a complete, sane one;
        OSError when it cannot be read)."""
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            return cls._read(Path(path), fd)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def _read(cls, path: Path, fd: int) -> FrameCache:
        size = os.fstat(fd).st_size
        if size < len(MAGIC) + FOOTER.size or os.pread(fd, len(MAGIC), 0) != MAGIC:
            raise FormatError(f"{path}: not a frame cache")
        offset, length, end = FOOTER.unpack(os.pread(fd, FOOTER.size, size - FOOTER.size))
        if end != END or length > MAX_TRAILER or offset + length + FOOTER.size != size:
            raise FormatError(f"{path}: frame cache cut short or damaged")
        try:
            raw = zstandard.ZstdDecompressor().decompress(os.pread(fd, length, offset),
                                                          max_output_size=MAX_TRAILER)
            body = json.loads(raw)
            records = [Record(float(t), int(k), int(x), int(y), int(w), int(h), int(o), int(n))
                       for t, k, x, y, w, h, o, n in body["records"]]
            ocr = [OcrLine(float(o[0]), str(o[1]), (int(o[2]), int(o[3]), int(o[4]), int(o[5])))
                   for o in body.get("ocr", [])]
            cache = cls(path, str(body["session_id"]), int(body["source_size"]),
                        float(body["until"]), bool(body["complete"]), records, ocr,
                        dict(body.get("notes") or {}), fd)
        except (zstandard.ZstdError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise FormatError(f"{path}: damaged frame cache trailer: {exc}") from exc
        cache._check(offset)
        return cache

    def _check(self, limit: int) -> None:
        size: tuple[int, int] | None = None
        for r in self.records:
            if r.offset < len(MAGIC) or r.offset + r.length > limit:
                raise FormatError(f"{self.path}: a frame lies outside the file")
            if r.kind == KEY:
                if not (0 < r.w <= MAX_SIDE and 0 < r.h <= MAX_SIDE) or r.x or r.y:
                    raise FormatError(f"{self.path}: bad key frame {r.w}x{r.h}")
                size = (r.w, r.h)
            elif r.kind != RECT or size is None or r.w <= 0 or r.h <= 0 \
                    or r.x + r.w > size[0] or r.y + r.h > size[1]:
                raise FormatError(f"{self.path}: bad frame record at {r.time:.3f} s")
        self._times = [r.time for r in self.records]
        self._keys = [i for i, r in enumerate(self.records) if r.kind == KEY]
        if self.records and self.records[0].kind != KEY:
            raise FormatError(f"{self.path}: the first frame is not a key frame")

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    @property
    def times(self) -> list[float]:
        """The time of every stored sample (sorted)."""
        return self._times

    @property
    def size(self) -> tuple[int, int]:
        """The desktop size of the first key (0, 0 when there is none)."""
        for r in self.records:
            return (r.w, r.h)
        return (0, 0)

    def _payload(self, r: Record) -> bytes:
        if self._fd < 0:
            raise FormatError(f"{self.path}: closed")
        data = os.pread(self._fd, r.length, r.offset)
        try:
            rgb = zstandard.ZstdDecompressor().decompress(data, max_output_size=r.w * r.h * PIXEL)
        except zstandard.ZstdError as exc:
            raise FormatError(f"{self.path}: damaged frame at {r.time:.3f} s: {exc}") from exc
        if len(rgb) != r.w * r.h * PIXEL:
            raise FormatError(f"{self.path}: frame at {r.time:.3f} s has the wrong size")
        return rgb

    def _apply(self, i: int) -> None:
        r = self.records[i]
        rgb = self._payload(r)
        cur = self._current
        if r.kind == KEY or cur is None or self._buf is None:
            self._buf = bytearray(rgb)
            self._current = Frame(r.w, r.h, b"", r.time, i)
            return
        stride = cur.width * PIXEL
        row = r.w * PIXEL
        buf = self._buf
        for j in range(r.h):
            start = (r.y + j) * stride + r.x * PIXEL
            buf[start:start + row] = rgb[j * row:(j + 1) * row]
        cur.time, cur.index = r.time, i

    def index_at(self, t: float) -> int:
        """The index of the last sample at or before ``t`` (-1: none)."""
        return bisect.bisect_right(self._times, t + 1e-6) - 1

    def frame_at(self, t: float) -> Frame | None:
        """The desktop at ``t`` (None before the first sample). Sequential calls
        forward in time only draw the new rectangles."""
        with self._lock:
            i = self.index_at(t)
            if i < 0:
                return None
            cur = self._current
            k = self._keys[bisect.bisect_right(self._keys, i) - 1]
            if cur is None or cur.index > i or cur.index < k:
                self._current = None
                start = k
            else:
                start = cur.index + 1
            for j in range(start, i + 1):
                self._apply(j)
            cur = self._current
            assert cur is not None and self._buf is not None
            return Frame(cur.width, cur.height, bytes(self._buf), cur.time, cur.index)
