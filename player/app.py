"""The session player: a Textual app over the recorder's index and storage.

``run_player(settings)`` opens the Find screen (all sessions); with ``session_id`` it
opens that session's replay directly (escape then quits). The player imports
``recorder`` only, never ``gateway``; it reads the index and the recordings (local
files or S3, as configured) and writes nothing but the keyframe cache.

``a`` opens the Approvals pane (:mod:`player.approvals`): the caller says who is using
the player and whether they may decide (``approver``). Live sessions are followed in
the Replay screen; terminating one is ``bastille sessions kill`` (gateway CLI).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from textual.app import App

from player.approvals import ApprovalsScreen, Approver
from player.data import Archive
from player.find import FindScreen
from player.replay import ReplayScreen
from recorder.settings import RecorderSettings


class PlayerApp(App[int]):
    """The player application.

    Args:
        settings: recorder settings (where the index and the recordings are).
        session_id: open this session's replay directly (id or unique prefix).
        clock: wall clock, for relative "since" filters (injected in tests).
    """

    CSS_PATH = Path(__file__).with_name("player.tcss")
    TITLE = "bastille player"

    def __init__(
        self,
        settings: RecorderSettings,
        *,
        session_id: str | None = None,
        clock: Callable[[], float] = time.time,
        approver: Approver | None = None,
    ) -> None:
        super().__init__()
        self.approver = approver or Approver(name="")
        self.settings = settings
        self.session_id = session_id
        self.clock = clock
        self.archive = Archive(settings)

    def on_mount(self) -> None:
        self.push_screen(FindScreen(self.archive, self.clock))
        if self.session_id:
            self.push_screen(ReplayScreen(self.archive, self.session_id, standalone=True))

    def on_unmount(self) -> None:
        self.archive.close()

    def action_approvals(self) -> None:
        from state.approvals import ApprovalStore

        store = ApprovalStore(self.settings.data_dir / "approvals.sqlite3")
        self.push_screen(ApprovalsScreen(store, self.approver, self.clock),
                         lambda _: store.close())


def run_player(settings: RecorderSettings, *, session_id: str | None = None,
               approver: Approver | None = None) -> int:
    """Run the player in the current terminal; returns the exit code (0, or 1 on a crash)."""
    app = PlayerApp(settings, session_id=session_id, approver=approver)
    app.run()
    return app.return_code or 0
