"""The session player: a Textual app over the recorder's index and storage.

``run_player(settings)`` opens the Find screen (all sessions); with ``session_id`` it
opens that session directly (escape then quits): a wrong id is a one-line error and
exit status 1 before any screen is drawn. The player imports ``recorder`` and
``state``, never ``gateway``; it reads the index, the recordings (local files or S3,
as configured), the approval queue and the audit log, and writes the keyframe cache
and review records.

Screens talk through messages: the Find screen posts :class:`FindScreen.Open`, the
transfer view :class:`TransferScreen.OpenTrace` / ``OpenReplay``; this app decides
which screen shows them (sftp/scp/rsync sessions open as a transfer list).

``a`` opens the Approvals pane (:mod:`player.approvals`): the caller says who is using
the player and whether they may decide (``approver``).

The player ends when its terminal goes away: on SIGHUP or SIGTERM, on Ctrl-D (what an
SSH relay writes when the client disconnects), and when its parent process is gone; a
:class:`player.lifeline.Lifeline` thread ends the process if that clean exit blocks
(a terminal nobody reads) or the terminal is hung up.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from textual import on
from textual.app import App
from textual.binding import Binding

from player import graphics
from player.approvals import ApprovalsScreen, Approver
from player.archive import Archive, is_transfer_only
from player.desktop import FrameBuilder
from player.desktop_view import DesktopScreen
from player.find import FindScreen
from player.fmt import safe
from player.lifeline import Lifeline
from player.replay import ReplayScreen
from player.transfer_view import TraceScreen, TransferScreen
from recorder.errors import RecorderError
from recorder.settings import RecorderSettings
from state.backend import StateBackend

PARENT_CHECK = 1.0  # seconds between checks that the parent process is still there


class PlayerApp(App[int]):
    """The player application.

    Args:
        settings: recorder settings (where the index and the recordings are).
        session_id: open this session directly (id or unique prefix).
        clock: wall clock, for relative "since" filters (injected in tests).
        approver: who is using the player, and what they may do.
        audit_file: the gateway's audit log (forwards and evasion signals on the
            timeline); default ``data_dir/audit.jsonl``.
        frame_builder: draws the desktop frames of an RDP session that has none yet
            (registered by ``bastille player``; see :mod:`player.desktop`).
    """

    CSS_PATH = Path(__file__).with_name("player.tcss")
    TITLE = "bastille player"
    BINDINGS = [Binding("ctrl+d", "quit", "Quit", show=False, priority=True)]

    def __init__(
        self,
        settings: RecorderSettings,
        *,
        session_id: str | None = None,
        clock: Callable[[], float] = time.time,
        approver: Approver | None = None,
        audit_file: Path | None = None,
        state: StateBackend | None = None,
        frame_builder: FrameBuilder | None = None,
    ) -> None:
        super().__init__()
        self.frame_builder = frame_builder
        self.approver = approver or Approver(name="")
        self.settings = settings
        self.session_id = session_id
        self.clock = clock
        self.archive = Archive(settings, audit_file=audit_file, state=state)
        self._parent_pid = os.getppid()
        self._lifeline = Lifeline()

    def on_mount(self) -> None:
        self.push_screen(FindScreen(self.archive, self.clock))
        if self.session_id:
            transfer = False
            try:
                row = self.archive.resolve(self.session_id)
                transfer = is_transfer_only(row.kind, row.command)
            except RecorderError:
                pass  # the screen shows the error
            self._open(self.session_id, transfer_only=transfer, standalone=True)
        if not self.is_headless:
            self._handle_signals()
            self.set_interval(PARENT_CHECK, self._check_parent)
            self._lifeline.start()

    def _handle_signals(self) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGHUP, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._terminal_gone)
                # the C handler still wakes the loop; this Python-level one also runs
                # when the loop cannot (a write blocked on a terminal nobody reads)
                signal.signal(sig, self._signalled)
            except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover
                pass

    def _signalled(self, _signum: int, _frame: object) -> None:
        self._lifeline.leaving()

    def _terminal_gone(self) -> None:
        self._lifeline.leaving()  # a clean exit, or the lifeline ends the process
        self.exit(0)

    def _check_parent(self) -> None:
        if os.getppid() != self._parent_pid:  # the process that started us is gone
            self._terminal_gone()

    def on_unmount(self) -> None:
        self.archive.close()

    def _open(self, session_id: str, *, search: str = "", transfer_only: bool = False,
              standalone: bool = False) -> None:
        try:
            desktop = self.archive.resolve(session_id).protocol == "rdp"
        except RecorderError:
            desktop = False  # the replay screen shows the error
        if desktop:
            self.push_screen(DesktopScreen(self.archive, session_id, search=search,
                                           standalone=standalone,
                                           builder=self.frame_builder))
        elif transfer_only:
            self.push_screen(TransferScreen(self.archive, session_id, standalone=standalone))
        else:
            self.push_screen(ReplayScreen(self.archive, session_id, search=search,
                                          standalone=standalone))

    @on(FindScreen.Open)
    def _find_open(self, message: FindScreen.Open) -> None:
        self._open(message.session_id, search=message.search,
                   transfer_only=message.transfer_only)

    @on(TransferScreen.OpenTrace)
    def _open_trace(self, message: TransferScreen.OpenTrace) -> None:
        self.push_screen(TraceScreen(self.archive, message.session_id))

    @on(TransferScreen.OpenReplay)
    def _open_replay(self, message: TransferScreen.OpenReplay) -> None:
        self.push_screen(ReplayScreen(self.archive, message.session_id))

    def action_approvals(self) -> None:
        store = self.archive.approvals()
        self.push_screen(ApprovalsScreen(store, self.approver, self.clock))


def check_session(settings: RecorderSettings, session_id: str) -> str | None:
    """None when ``session_id`` names one session; else the one-line error."""
    try:
        archive = Archive(settings)
    except RecorderError as exc:
        return str(exc)
    try:
        archive.resolve(session_id)
    except RecorderError as exc:
        return str(exc)
    finally:
        archive.close()
    return None


def run_player(settings: RecorderSettings, *, session_id: str | None = None,
               approver: Approver | None = None, audit_file: Path | None = None,
               state: StateBackend | None = None,
               frame_builder: FrameBuilder | None = None) -> int:
    """Run the player in the current terminal; returns the exit code.

    1 with a one-line error on stderr when ``session_id`` names no session, or when
    there is no terminal to draw on. Before the app starts, the terminal is asked which
    picture protocol it speaks (:mod:`player.graphics`, for RDP desktops).
    """
    if session_id is not None:
        problem = check_session(settings, session_id)
        if problem is not None:
            print(f"bastille player: error: {safe(problem)}", file=sys.stderr)
            return 1
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("bastille player: error: the player needs a terminal (with ssh: ssh -t "
              "USER@BASTION player)", file=sys.stderr)
        return 1
    graphics.detect()
    app = PlayerApp(settings, session_id=session_id, approver=approver, audit_file=audit_file,
                    state=state, frame_builder=frame_builder)
    app.run()
    return app.return_code or 0
