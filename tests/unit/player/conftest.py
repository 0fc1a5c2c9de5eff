"""Fixtures for the player tests: one archive recorded by the real recorder per run."""

from __future__ import annotations

import asyncio
import functools
import shutil
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, ParamSpec

import pytest
from player_recordings import START, make_archive
from textual.pilot import Pilot

from player.replay import ReplayScreen
from recorder.settings import RecorderSettings

P = ParamSpec("P")
NOW = START + 7200 + 120  # the player's clock in tests: two minutes after carol's session


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Times are shown in local time: make it UTC; copies go to a private tmp dir."""
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("BASTILLE_PLAYER_COPY_DIR", str(tmp_path / "copies"))
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture(scope="session")
def archive_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_archive(tmp_path_factory.mktemp("player-archive") / "data")


@pytest.fixture
def settings(archive_template: Path, tmp_path: Path) -> RecorderSettings:
    """A private copy of the recorded archive (the player writes keyframe caches)."""
    data = tmp_path / "data"
    shutil.copytree(archive_template, data)
    return RecorderSettings(data_dir=data, signing_key=data / "recording.key")


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
        return
    raise AssertionError("the player did not settle")


def sync(fn: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Run an async test with asyncio.run (no pytest-asyncio here)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper
