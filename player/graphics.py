"""Which picture protocol the player's terminal gets for RDP desktops.

:func:`detect` runs once, before the Textual app starts (``run_player``): the
``textual-image`` package asks the terminal whether it speaks Sixel or Kitty's graphics
protocol (and its cell size in pixels), which only works before Textual reads the
terminal's input. Terminals that answer get the desktop at their full pixel
resolution; every other terminal (and tmux, and the tests) gets Unicode half-blocks.

``BASTILLE_PLAYER_GRAPHICS`` overrides the choice: ``halfblock`` (never ask the
terminal), ``kitty``, ``sixel``, or ``auto`` (the default).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

log = logging.getLogger(__name__)

HALFBLOCK, KITTY, SIXEL = "halfblock", "kitty", "sixel"
_state: dict[str, Any] = {"mode": HALFBLOCK, "widget": None, "cell": None}


def detect() -> str:
    """Choose the protocol (see the module docstring); returns it."""
    wanted = os.environ.get("BASTILLE_PLAYER_GRAPHICS", "auto").strip().lower()
    out = sys.__stdout__
    if wanted == HALFBLOCK or out is None or not out.isatty():
        return mode()
    try:
        from textual_image import widget as tiw
        from textual_image._terminal import get_cell_size
        from textual_image.renderable import Image as AutoRenderable
        from textual_image.renderable.sixel import Image as SixelRenderable
        from textual_image.renderable.tgp import Image as TGPRenderable
    except Exception as exc:  # noqa: BLE001 - any failure of the optional probe: half-blocks
        log.debug("textual-image unavailable: %s", exc)
        return mode()
    if wanted == KITTY or (wanted == "auto" and AutoRenderable is TGPRenderable):
        _set(KITTY, tiw.TGPImage, get_cell_size())
    elif wanted == SIXEL or (wanted == "auto" and AutoRenderable is SixelRenderable):
        _set(SIXEL, tiw.SixelImage, get_cell_size())
    return mode()


def _set(name: str, widget: Any, cell: Any) -> None:
    _state.update(mode=name, widget=widget, cell=(int(cell.width), int(cell.height)))


def mode() -> str:
    """``kitty``, ``sixel`` or ``halfblock``."""
    return str(_state["mode"])


def image_widget() -> Any:
    """The textual-image widget class for the chosen protocol (None for half-blocks)."""
    return _state["widget"]


def cell_pixels() -> tuple[int, int] | None:
    """A terminal cell's size in pixels (None for half-blocks)."""
    cell = _state["cell"]
    return (int(cell[0]), int(cell[1])) if cell else None


def reset() -> None:
    """Back to half-blocks (tests)."""
    _state.update(mode=HALFBLOCK, widget=None, cell=None)
