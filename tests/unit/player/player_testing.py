"""Helpers shared by the player tests (imported by name: this directory is on sys.path)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec

from player_recordings import START
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import DataTable

from player.find import FindScreen
from player.replay import ReplayScreen

P = ParamSpec("P")
NOW = START + 10800 + 120  # the player's clock in tests: two minutes after dave's start


async def settle(pilot: Pilot[object]) -> None:
    """Wait until workers are done and the replay screen shows the requested position."""
    for _ in range(200):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        scr = pilot.app.screen
        if isinstance(scr, ReplayScreen) and (
            scr._busy or scr._want is not None or (scr.data is None and not scr.error)
        ):
            await asyncio.sleep(0.01)
            continue
        if any(not w.is_finished for w in pilot.app.workers):
            await asyncio.sleep(0.01)
            continue
        if not _tables_drawn(scr):
            await asyncio.sleep(0.01)
            continue
        return
    raise AssertionError("the player did not settle")


def _tables_drawn(scr: object) -> bool:
    """Whether every table on the screen has applied its new column widths (a table
    computes them when idle: a screenshot taken before would show the old ones) and the
    Find screen's integrity column is filled in."""
    if not isinstance(scr, Screen):
        return True
    for table in scr.query(DataTable):
        if table._require_update_dimensions:
            return False
    if isinstance(scr, FindScreen):
        table = scr.query_one(DataTable)
        if "integrity" in table.columns:  # type: ignore[comparison-overlap]
            cells = table.get_column("integrity")
            if any(str(c) == "..." for c in cells):
                return False
    return True


def sync(fn: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Run an async test with asyncio.run (no pytest-asyncio here)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper
