"""Draw an RDP recording's desktop offscreen and sample it (pyrdp + Qt + numpy).

:func:`samples` replays pyrdp's replay stream into a ``QImage`` (Qt's offscreen
platform, pyrdp's own drawing code: bitmap updates and drawing orders) and yields a
:class:`Sample` whenever the desktop has changed, at most one per ``interval`` seconds
of session time: the pixels, the time of the last update drawn into them, and which
16x16 tiles changed since the previous sample. ``gateway.rdp.screens`` writes them into
the frame cache (:mod:`recorder.frames`) and OCRs some of them.

Needs the ``bastille[rdp-video]`` extra (PySide6, qimage2ndarray, numpy); raises
:class:`gateway.errors.RenderUnavailable` without it. Runs in the screen-pass process
(or ``bastille rdp-screens``), never in an RDP worker or the gateway.

Known limits: a sample is labelled with the time of the last screen update drawn into
it; updates closer together than ``interval`` are seen together. The mouse pointer is
not drawn (the replay stream has its moves, pyrdp's renderer does not draw it).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from gateway.errors import RenderUnavailable
from gateway.rdp.render import _qt, _replay, blank

FRAME_INTERVAL = 0.2  # seconds of session time between samples (5 per second at most)
TILE = 16  # pixels: the grid on which changes are tracked
_PDU_HEAD = struct.Struct("<QHQ")  # pyrdp player PDU: length, type, capture time (ms)
_SCREEN_PDUS = frozenset({"FAST_PATH_OUTPUT", "SLOW_PATH_PDU"})


@dataclass
class Sample:
    """The desktop at ``time``.

    Attributes:
        time: session time (s) of the last screen update drawn into ``rgb``.
        rgb: H x W x 3 uint8 array (a copy the caller may keep).
        tiles: bool array (ceil(H/16), ceil(W/16)): tiles changed since the previous
            sample (all True for the first sample and after a resize).
        box: (x, y, w, h) bounding the changed pixels (the whole desktop when ``key``).
        key: first sample, or the desktop size changed.
        mask: bool array of ``box``'s size: the pixels that changed (None when ``key``).
    """

    time: float
    rgb: Any
    tiles: Any
    box: tuple[int, int, int, int]
    key: bool
    mask: Any = None


def rects(sample: Sample) -> list[tuple[int, int, int, int]]:
    """The changed parts of a sample as rectangles (x, y, w, h): one per run of changed
    tile rows, as wide as the changes in it (a clock in a corner and a line typed
    elsewhere are two small rectangles, not one large one)."""
    if sample.key or sample.mask is None:
        return [sample.box]
    bx, by, _bw, bh = sample.box
    mask = sample.mask
    out: list[tuple[int, int, int, int]] = []
    rows = mask.any(axis=1)
    y = 0
    while y < bh:
        if not rows[y]:
            y += 1
            continue
        end = y
        while end < bh and rows[end:min(end + TILE, bh)].any():
            end = min(end + TILE, bh)
        band = mask[y:end]
        used = band.any(axis=1)
        last = int(used.nonzero()[0][-1]) + 1
        cols = band.any(axis=0).nonzero()[0]
        x0, x1 = int(cols[0]), int(cols[-1]) + 1
        out.append((bx + x0, by + y, x1 - x0, last))
        y = end
    return out


def _modules() -> tuple[Any, Any, Any, Any]:
    _qt()
    try:
        import numpy
        import qimage2ndarray
        from pyrdp.convert.MP4EventHandler import MP4Image
        from pyrdp.enum import CapabilityType
        from pyrdp.player.RenderingEventHandler import RenderingEventHandler
    except ImportError as exc:
        raise RenderUnavailable(f"drawing RDP screens needs the bastille[rdp-video] extra "
                                f"(PySide6, qimage2ndarray, numpy): {exc}") from exc

    class Handler(RenderingEventHandler):
        """pyrdp's renderer, remembering that something was drawn."""

        dirty = False

        def onCapabilities(self, caps: Any) -> None:
            bmp = caps[CapabilityType.CAPSTYPE_BITMAP]
            self.imageHandler.resize(bmp.desktopWidth, bmp.desktopHeight)
            blank(self.imageHandler.screen)
            self.dirty = True
            super().onCapabilities(caps)

        def onFinishRender(self) -> None:
            self.dirty = True

    return numpy, qimage2ndarray, MP4Image, Handler


class _Sampler:
    def __init__(self, numpy: Any) -> None:
        self.np = numpy
        self.prev: Any = None

    def take(self, t: float, view: Any) -> Sample | None:
        np = self.np
        rgb = np.array(view, dtype=np.uint8, copy=True)
        h, w = rgb.shape[:2]
        rows, cols = -(-h // TILE), -(-w // TILE)
        prev = self.prev
        self.prev = rgb
        if prev is None or prev.shape != rgb.shape:
            return Sample(t, rgb, np.ones((rows, cols), dtype=bool), (0, 0, w, h), True)
        changed = np.any(rgb != prev, axis=2)
        ys = np.flatnonzero(changed.any(axis=1))
        if not len(ys):
            return None
        xs = np.flatnonzero(changed.any(axis=0))
        pad = np.zeros((rows * TILE, cols * TILE), dtype=bool)
        pad[:h, :w] = changed
        tiles = pad.reshape(rows, TILE, cols, TILE).any(axis=(1, 3))
        x0, x1, y0, y1 = int(xs[0]), int(xs[-1]) + 1, int(ys[0]), int(ys[-1]) + 1
        return Sample(t, rgb, tiles, (x0, y0, x1 - x0, y1 - y0), False,
                      changed[y0:y1, x0:x1].copy())


def clock_base(events: Iterable[tuple[float, bytes]]) -> float | None:
    """The wall-clock time (epoch seconds) of session time 0, from the recording's
    ``rdp`` events as (session time, data) pairs.

    Each event holds pyrdp player PDUs (a u64 length, a u16 type, then the u64 capture
    time in epoch milliseconds). The recording's clock starts when the recording opens,
    after the login, and the PDUs captured before it are written then: the largest
    (capture time - recording time) is when the recording's clock started.
    """
    base: float | None = None
    for t, data in events:
        if len(data) >= _PDU_HEAD.size:
            _length, _kind, stamp = _PDU_HEAD.unpack_from(data)
            guess = stamp / 1000.0 - t
            base = guess if base is None else max(base, guess)
    return base


def samples(data: bytes, *, base: float | None = None, interval: float = FRAME_INTERVAL,
            stop: Callable[[float], bool] | None = None) -> Iterator[Sample]:
    """The desktop of a pyrdp replay stream, sampled (see the module docstring).

    Args:
        data: the replay stream (the recording's ``rdp`` events, concatenated).
        base: epoch time of session time 0 (:func:`clock_base`); default the first PDU.
        interval: at most one sample per this many seconds of session time.
        stop: called with the session time before each replay event; True stops early
            (a CPU budget).

    Raises:
        RenderUnavailable: PySide6/qimage2ndarray/numpy or pyrdp are not installed.
    """
    numpy, qimage2ndarray, image_cls, handler_cls = _modules()
    replay = _replay(data)
    image = image_cls()
    handler = handler_cls(image)
    sampler = _Sampler(numpy)
    first: float | None = None
    changed_at = 0.0  # time of the last screen update not yet sampled
    last = -interval
    for pdu, _ in replay:
        if first is None:
            first = pdu.timestamp / 1000.0 if base is None else base
        t = max(0.0, pdu.timestamp / 1000.0 - first)
        if stop is not None and stop(t):
            break
        if handler.dirty and image.screen is not None and t - last >= interval and \
                t > changed_at:
            handler.dirty = False
            last = changed_at
            s = sampler.take(changed_at, qimage2ndarray.rgb_view(image.screen))
            if s is not None:
                yield s
        handler.onPDUReceived(pdu)
        if handler.dirty and getattr(pdu.header, "name", "") in _SCREEN_PDUS | {"CLIENT_DATA"}:
            changed_at = t
    if handler.dirty and image.screen is not None:
        s = sampler.take(changed_at, qimage2ndarray.rgb_view(image.screen))
        if s is not None:
            yield s
