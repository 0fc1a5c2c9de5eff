"""SVG snapshots of the player's screens (``--snapshot-update`` to refresh).

The archive is recorded with a fixed clock and times are shown in UTC, so the screens
are deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from player_testing import NOW, settle
from textual.pilot import Pilot

from player.app import PlayerApp
from recorder.settings import RecorderSettings

SnapCompare = Callable[..., bool]


def test_find_screen(snap_compare: SnapCompare, settings: RecorderSettings) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)

    app = PlayerApp(settings, clock=lambda: NOW)
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_find_screen_text_search(snap_compare: SnapCompare, settings: RecorderSettings) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("slash", *"secret", "enter")
        await settle(pilot)

    app = PlayerApp(settings, clock=lambda: NOW)
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_replay_screen_colours(snap_compare: SnapCompare, settings: RecorderSettings) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("n", "n", "n", "n")  # the denied rm -rf / at 9.5 s
        await settle(pilot)

    app = PlayerApp(settings, session_id="play-alice-0001", clock=lambda: NOW)
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_replay_screen_full_screen_program(
    snap_compare: SnapCompare, settings: RecorderSettings
) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("slash", *"secret", "enter")  # vim's screen, match highlighted
        await settle(pilot)

    app = PlayerApp(settings, session_id="play-alice-0001", clock=lambda: NOW)
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_timeline_panel(snap_compare: SnapCompare, audit_settings: RecorderSettings) -> None:
    """The timeline panel beside the replay: every kind of mark, the details of the
    approval denied by carol, and the screen as erin saw it then."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("tab", "down", "down", "down", "down", "enter")
        await settle(pilot)

    app = PlayerApp(audit_settings, session_id="audit-erin-0005", clock=lambda: NOW)
    assert snap_compare(app, terminal_size=(130, 36), run_before=run_before)


def test_transfer_view(snap_compare: SnapCompare, audit_settings: RecorderSettings) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)

    app = PlayerApp(audit_settings, session_id="audit-frank-0006", clock=lambda: NOW)
    assert snap_compare(app, terminal_size=(100, 24), run_before=run_before)


def test_layout_80x24(snap_compare: SnapCompare, audit_settings: RecorderSettings) -> None:
    """80x24 with a 121x40 recording and the panel on: the terminal is panned (the status
    line says which part is shown), the panel keeps its width, the footer shows k."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("g", *"20", "enter", "t")
        await settle(pilot)

    app = PlayerApp(audit_settings, session_id="audit-erin-0005", clock=lambda: NOW)
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
