"""The desktop of an RDP session, for the player (no Textual here; blocking: workers only).

The frames come from the session's frame cache (:mod:`recorder.frames`), written by the
gateway's screen pass when the session ended (pyrdp draws them; pyrdp is GPLv3 and is
only ever imported by ``gateway.rdp``, never by the player). When a session has no
cache yet, or a live session's cache is behind, the player asks the *frame builder* it
was given by its entry point (``bastille player`` registers one that runs ``python -m
gateway.rdp.screens --frames-only`` in a niced child process); ``python -m player``
has none and says how to draw them.

Rendering (:func:`render`): the frame at a time, optionally cropped to a zoomed view,
fitted into the space given (aspect ratio kept), as

* **half-blocks** (``▀`` with a foreground colour for the upper pixel and a background
  colour for the lower one: two pixels per cell, true colour, any terminal, also over
  ``ssh -t``), or
* an image at the terminal's pixel resolution for Kitty's graphics protocol or Sixel
  (drawn by the ``textual-image`` package; see :mod:`player.graphics`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from rich.color import Color
from rich.segment import Segment
from rich.style import Style

from recorder import frames as fc
from recorder.errors import FormatError

UPPER_HALF = "\u2580"  # ▀: foreground = upper pixel, background = lower pixel
ZOOMS = (1, 2, 4, 8)
_STYLE_CACHE_MAX = 65536

#: ``bastille player``'s frame builder: draws the frames of a session (blocking); raises
#: RuntimeError with a message for the user when it cannot.
FrameBuilder = Callable[[str], None]


class DesktopUnavailable(Exception):
    """The session's desktop cannot be shown (the message says why and what to do)."""


def open_cache(data_dir: Path, session_id: str, source_size: int, *,
               live: bool) -> fc.FrameCache | None:
    """The session's frame cache if it is usable: drawn from this recording (the same
    size; a live session's may be behind). None when there is none or it is stale."""
    try:
        cache = fc.FrameCache.open(fc.cache_path(data_dir, session_id))
    except (OSError, FormatError):
        return None
    if cache.session_id != session_id or cache.source_size > source_size or \
            (cache.source_size != source_size and not live):
        cache.close()
        return None
    return cache


def fit(size: tuple[int, int], room: tuple[int, int]) -> tuple[int, int]:
    """The largest (w, h) with ``size``'s aspect ratio inside ``room`` (at least 1x1)."""
    w, h = size
    rw, rh = room
    if w <= 0 or h <= 0 or rw <= 0 or rh <= 0:
        return (1, 1)
    scale = min(rw / w, rh / h)
    return (max(1, min(rw, round(w * scale))), max(1, min(rh, round(h * scale))))


def view_box(size: tuple[int, int], zoom: int, center: tuple[float, float]) -> tuple[int, int,
                                                                                     int, int]:
    """The part of the desktop shown at ``zoom`` around ``center`` (x0, y0, x1, y1)."""
    w, h = size
    zw, zh = max(1, round(w / zoom)), max(1, round(h / zoom))
    cx = min(max(center[0], zw / 2), w - zw / 2)
    cy = min(max(center[1], zh / 2), h - zh / 2)
    x0, y0 = round(cx - zw / 2), round(cy - zh / 2)
    return (x0, y0, x0 + zw, y0 + zh)


class _Styles:
    """Rich styles per (upper, lower) colour pair, shared by every frame (bounded)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int], Style] = {}
        self._lock = threading.Lock()

    def get(self, top: int, bottom: int) -> Style:
        key = (top, bottom)
        style = self._cache.get(key)
        if style is None:
            style = Style(color=_color(top), bgcolor=_color(bottom))
            with self._lock:
                if len(self._cache) >= _STYLE_CACHE_MAX:
                    self._cache.clear()
                self._cache[key] = style
        return style


def _color(rgb: int) -> Color:
    return Color.from_rgb((rgb >> 16) & 255, (rgb >> 8) & 255, rgb & 255)


_STYLES = _Styles()


def halfblocks(image: Image.Image) -> list[list[Segment]]:
    """Lines of half-block cells for an RGB image: one cell per pixel column and per two
    pixel rows (an odd last row gets black below it). Runs of equal cells are merged."""
    img = image.convert("RGB")
    w, h = img.size
    if h % 2:
        padded = Image.new("RGB", (w, h + 1))
        padded.paste(img, (0, 0))
        img, h = padded, h + 1
    raw = img.tobytes()
    stride = w * 3
    lines: list[list[Segment]] = []
    for y in range(0, h, 2):
        top_row = raw[y * stride:(y + 1) * stride]
        bottom_row = raw[(y + 1) * stride:(y + 2) * stride]
        segments: list[Segment] = []
        run_key: tuple[int, int] | None = None
        run = 0
        for x in range(0, stride, 3):
            top = (top_row[x] << 16) | (top_row[x + 1] << 8) | top_row[x + 2]
            bottom = (bottom_row[x] << 16) | (bottom_row[x + 1] << 8) | bottom_row[x + 2]
            key = (top, bottom)
            if key == run_key:
                run += 1
                continue
            if run_key is not None:
                segments.append(Segment(UPPER_HALF * run, _STYLES.get(*run_key)))
            run_key, run = key, 1
        if run_key is not None:
            segments.append(Segment(UPPER_HALF * run, _STYLES.get(*run_key)))
        lines.append(segments)
    return lines


@dataclass
class Rendered:
    """A frame ready for the screen (made in a worker; the UI thread only shows it)."""

    time: float  # the session time asked for
    drawn: float  # the time of the frame shown (its last update)
    desktop: tuple[int, int]  # the desktop's size in pixels
    cells: tuple[int, int]  # columns, rows the picture takes
    lines: list[list[Segment]] | None  # half-block mode
    image: Image.Image | None  # graphics mode: scaled to the pixels of ``cells``
    box: tuple[int, int, int, int]  # the part of the desktop shown


def to_image(frame: fc.Frame) -> Image.Image:
    return Image.frombuffer("RGB", (frame.width, frame.height), frame.rgb, "raw", "RGB", 0, 1)


def render(frame: fc.Frame, t: float, room: tuple[int, int], *, zoom: int = 1,
           center: tuple[float, float] | None = None,
           cell_pixels: tuple[int, int] | None = None) -> Rendered:
    """Fit the frame (or its zoomed part) into ``room`` (columns, rows).

    With ``cell_pixels`` (a cell's width and height in pixels: Kitty/Sixel), the image
    is scaled to the pixels of the cells it takes; without, it becomes half-blocks.
    """
    size = (frame.width, frame.height)
    c = center if center is not None else (size[0] / 2, size[1] / 2)
    box = view_box(size, zoom, c)
    img = to_image(frame)
    if box != (0, 0, size[0], size[1]):
        img = img.crop(box)
    cols, rows = max(1, room[0]), max(1, room[1])
    if cell_pixels is None:
        pw, ph = fit(img.size, (cols, rows * 2))
        small = img.resize((pw, ph), Image.Resampling.BOX)
        return Rendered(t, frame.time, size, (pw, (ph + 1) // 2), halfblocks(small), None, box)
    cw, ch = max(1, cell_pixels[0]), max(1, cell_pixels[1])
    pw, ph = fit(img.size, (cols * cw, rows * ch))
    cells = (max(1, round(pw / cw)), max(1, round(ph / ch)))
    scaled = img.resize((cells[0] * cw, cells[1] * ch), Image.Resampling.LANCZOS)
    return Rendered(t, frame.time, size, cells, None, scaled, box)


class Desktop:
    """The frames of one RDP session (thread-safe; blocking).

    Args:
        data_dir: the recorder's data directory (``frames/`` is there).
        session_id: the session.
        builder: draws missing frames (from the entry point), or None.
    """

    def __init__(self, data_dir: Path, session_id: str, builder: FrameBuilder | None) -> None:
        self.data_dir = Path(data_dir)
        self.session_id = session_id
        self.builder = builder
        self.cache: fc.FrameCache | None = None
        self.built_size = -1
        self._lock = threading.Lock()

    def load(self, source_size: int, *, live: bool, build: bool = True) -> fc.FrameCache:
        """The frame cache, drawn first when missing or stale (DesktopUnavailable when
        it cannot be)."""
        with self._lock:
            cache = open_cache(self.data_dir, self.session_id, source_size, live=live)
            fresh = cache is not None and cache.source_size == source_size
            if not fresh and build and self.builder is not None and \
                    self.built_size != source_size:
                self.built_size = source_size
                try:
                    self.builder(self.session_id)
                except RuntimeError as exc:
                    if cache is None:
                        raise DesktopUnavailable(str(exc)) from exc
                else:
                    if cache is not None:
                        cache.close()
                    cache = open_cache(self.data_dir, self.session_id, source_size, live=live)
            if cache is None:
                if self.builder is None:
                    raise DesktopUnavailable(
                        "the desktop of this session has not been drawn yet: run `bastille "
                        f"rdp-screens {self.session_id}` (or open it with `bastille player`)")
                raise DesktopUnavailable("the desktop of this session could not be drawn")
            old, self.cache = self.cache, cache
            if old is not None and old is not cache:
                old.close()
            return cache

    def close(self) -> None:
        with self._lock:
            if self.cache is not None:
                self.cache.close()
                self.cache = None
