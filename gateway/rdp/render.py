"""Render an RDP session's replay stream to MP4 video or a PNG frame, offscreen.

Uses pyrdp's player (``RenderingEventHandler``, ``MP4EventHandler``) with Qt's offscreen
platform; needs the optional ``bastille[rdp-video]`` extra (PySide6, av,
qimage2ndarray). Only ``bastille rdp-replay --format mp4|png`` calls this: never the
gateway.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Any

from gateway.errors import RenderUnavailable

__all__ = ["RenderUnavailable", "render_mp4", "render_png"]


def _qt() -> Any:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    try:
        from PySide6.QtGui import QGuiApplication
    except ImportError as exc:
        raise RenderUnavailable(
            f"video/frame export needs PySide6 and av (pip install 'bastille[rdp-video]'): "
            f"{exc}") from exc
    app = QGuiApplication.instance() or QGuiApplication([])
    return app


def blank(image: Any) -> None:
    """Paint a new ``QImage`` black: Qt leaves its memory uninitialised, and the first
    frames would otherwise show whatever the process had there before."""
    if image is not None:
        image.fill(0xFF000000)


class _BalancedRle:
    """pyrdp's bitmap decompressor (its C extension ``rle``, 2.1.0) loses one reference
    to ``None`` per call. On Python 3.11 ``None`` is an ordinary object: after some
    minutes of a busy desktop its count reaches zero and the process dies ("Fatal
    Python error: none_dealloc"). This stand-in gives the reference back."""

    def __init__(self, rle: Any) -> None:
        import ctypes

        self._rle = rle
        self._incref = ctypes.pythonapi.Py_IncRef
        self._incref.argtypes = [ctypes.py_object]
        self._incref.restype = None
        self.bitmap_decompress_v1 = getattr(rle, "bitmap_decompress_v1", None)

    def bitmap_decompress(self, *args: Any) -> Any:
        try:
            return self._rle.bitmap_decompress(*args)
        finally:
            self._incref(None)


def balance_rle() -> None:
    """Put :class:`_BalancedRle` where pyrdp's renderer calls ``rle`` (idempotent)."""
    import pyrdp.ui.qt as qt

    if sys.version_info < (3, 12) and not isinstance(qt.rle, _BalancedRle):
        qt.rle = _BalancedRle(qt.rle)


def _replay(data: bytes) -> Any:
    try:
        from pyrdp.player.Replay import Replay
    except ImportError as exc:
        raise RenderUnavailable(f"pyrdp is not installed: {exc}") from exc
    from gateway.rdp import fixes

    fixes.install()
    balance_rle()
    return Replay(io.BytesIO(data))


def render_mp4(data: bytes, out: Path, fps: int = 30) -> int:
    """Write the session as H.264 MP4; returns the number of replay events rendered."""
    _qt()
    replay = _replay(data)
    try:
        from pyrdp.convert.MP4EventHandler import MP4EventHandler
    except ImportError as exc:
        raise RenderUnavailable(f"video export needs av and qimage2ndarray: {exc}") from exc
    class BlankMP4(MP4EventHandler):
        def onCapabilities(self, caps: Any) -> None:
            super().onCapabilities(caps)
            blank(self.imageHandler.screen)

    handler = BlankMP4(str(out), fps=fps)
    count = 0
    for pdu, _ in replay:
        handler.onPDUReceived(pdu)
        count += 1
    handler.cleanup()
    return count


def render_png(data: bytes, out: Path, at: float | None = None) -> float:
    """Write the screen as it was ``at`` seconds into the session (default: the end)
    as PNG; returns the time of the last event drawn."""
    _qt()
    replay = _replay(data)
    try:
        from pyrdp.convert.MP4EventHandler import MP4Image
        from pyrdp.enum import CapabilityType
        from pyrdp.player.RenderingEventHandler import RenderingEventHandler
    except ImportError as exc:
        raise RenderUnavailable(f"frame export needs PySide6: {exc}") from exc

    class FrameHandler(RenderingEventHandler):
        def onCapabilities(self, caps: Any) -> None:
            bmp = caps[CapabilityType.CAPSTYPE_BITMAP]
            self.imageHandler.resize(bmp.desktopWidth, bmp.desktopHeight)
            blank(self.imageHandler.screen)
            super().onCapabilities(caps)

    image = MP4Image()
    handler = FrameHandler(image)
    first: int | None = None
    shown = 0.0
    for pdu, _ in replay:
        first = pdu.timestamp if first is None else first
        t = (pdu.timestamp - first) / 1000.0
        if at is not None and t > at:
            break
        handler.onPDUReceived(pdu)
        shown = t
    if image.screen is None:
        raise ValueError("the recording has no screen data")
    if not image.screen.save(str(out), "PNG"):
        raise OSError(f"cannot write {out}")
    return shown
