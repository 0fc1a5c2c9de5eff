"""The player over recordings stored in S3 (a real moto_server), not on local disk."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from player_recordings import START, Clock, header
from player_testing import settle, sync
from textual.widgets import DataTable

from player.app import PlayerApp
from player.replay import ReplayScreen
from player.terminal_view import TerminalView
from recorder.service import Recorder
from recorder.settings import RecorderSettings
from tests.integration.conftest import (  # noqa: F401 - fixtures used by name
    bucket,
    make_s3_settings,
    moto_server,
    s3_client,
)

pytestmark = pytest.mark.s3


async def _record(settings: RecorderSettings) -> None:
    clock = Clock()
    r = Recorder(settings, clock=clock)
    await r.start()
    s = await r.open_session(header("s3-erin-0001", "erin", "web2", START))
    s.output(b"\x1b[35merin@web2\x1b[0m$ ")
    clock.now += 2.0
    s.command("df -h", source="interactive")
    s.output(b"df -h\r\n/dev/sda1  20G  5G  15G  25% /\r\nerin@web2$ ")
    clock.now += 1.0
    await s.close(exit_status=0)
    for _ in range(200):  # the screen pass (keyframes, screen text) runs after close
        if all(x.screen_indexed for x in r.index.list_sessions()):
            break
        await asyncio.sleep(0.02)
    await r.close()


@sync
async def test_find_and_replay_from_s3(
    moto_server: str,  # noqa: F811
    bucket: str,  # noqa: F811
    s3_client: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    settings = RecorderSettings(data_dir=data, s3=make_s3_settings(moto_server, bucket))
    await _record(settings)
    deadline = time.monotonic() + 20
    keys: list[str] = []
    while time.monotonic() < deadline:
        keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])]
        if keys:
            break
        await asyncio.sleep(0.05)
    assert keys == ["rec/2025/11/23/s3-erin-0001.bstl"]
    shutil.rmtree(data / "spool")  # nothing local: the player must read the bucket
    shutil.rmtree(data / "keyframes", ignore_errors=True)
    app = PlayerApp(settings, clock=lambda: START + 60)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(DataTable)
        row = [str(c) for c in table.get_row_at(0)]
        assert row[1:3] == ["erin", "web2"] and "unsigned" in row and "ended" in row
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ReplayScreen)
        await pilot.press("n")
        await settle(pilot)
        text = app.screen.query_one(TerminalView).screen_text()
        assert "/dev/sda1  20G  5G  15G  25% /" in text
        spans = app.screen.query_one(TerminalView)._text.spans
        assert any(str(s.style) == "magenta" for s in spans)
