"""Actions on one session shared by the replay and transfer screens: review and kill.

* ``m`` marks the session reviewed, ``a`` adds a note at the current time, ``x`` flags
  the highlighted timeline event (or the current time), and withdraws the flag when it
  is already flagged. Records go to :mod:`state.reviews` (signed with the recording
  signing key) and are reported to the caller (``Approver.on_review``: the gateway's
  audit log).
* ``k`` terminates a live session (auditors only), with a reason shown to the user.

Screens derived from :class:`SessionScreen` compose an input with :meth:`kill_box`,
set ``data`` and ``position``, and override :meth:`_flag_target` and
:meth:`_reviews_changed`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Input, Label, Static

from player.approvals import Approver
from player.archive import Archive, SessionData, os_user
from player.details import active_flags
from player.fmt import fmt_clock, safe
from recorder.errors import RecorderError
from state.reviews import Review, ReviewError


class TextScreen(ModalScreen[str | None]):
    """Asks for one line of text (a note, a flag's reason, a kill reason)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, prompt: str, *, required: bool = False) -> None:
        super().__init__()
        self.prompt = prompt
        self.required = required

    def compose(self) -> ComposeResult:
        with Vertical(id="ask"):
            yield Label(self.prompt)
            yield Input(id="ask-input")
            yield Static("", id="ask-error")

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if self.required and not value:
            self.query_one("#ask-error", Static).update("required (escape cancels)")
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class SessionScreen(Screen[None]):
    """Base of the screens showing one session (see the module docstring).

    Args:
        archive: where the session is.
        session_id: its id (or a unique prefix).
    """

    REVIEW_BINDINGS = [
        Binding("m", "mark_reviewed", "Reviewed"),
        Binding("a", "note", "Note"),
        Binding("x", "flag", "Flag"),
        Binding("k", "kill", "Kill"),
    ]

    def __init__(self, archive: Archive, session_id: str) -> None:
        super().__init__()
        self.archive = archive
        self.session_id = session_id
        self.data: SessionData | None = None
        self.position = 0.0

    def _approver(self) -> Approver:
        approver = getattr(self.app, "approver", None)
        return approver if isinstance(approver, Approver) else Approver(name="")

    def _author(self) -> str:
        name = self._approver().name
        return name or f"{os_user()} (local)"

    def _flag_target(self) -> tuple[float, str | None]:
        """What ``x`` flags: (time, timeline entry key or None). Screens override."""
        return self.position, None

    # ------------------------------------------------------------------ reviews

    def action_mark_reviewed(self) -> None:
        if self.data is None:
            return
        if self.data.live:
            self.notify("a live session is reviewed once it has ended",
                        severity="warning")
            return
        self._ask("Mark reviewed: a note (optional, enter to confirm)",
                  lambda text: self._review("reviewed", text, None, None, None))

    def action_note(self) -> None:
        if self.data is None:
            return
        at = self.position
        self._ask(f"Note at {fmt_clock(at)}:", lambda text: self._review("note", text, at, None,
                                                                          None), required=True)

    def action_flag(self) -> None:
        data = self.data
        if data is None:
            return
        at, key = self._flag_target()
        if key is not None:  # a flagged event, or a flag itself: withdraw the flag
            for flag in active_flags(data.reviews).values():
                if flag.entry == key or f"r{flag.id}" == key:
                    self._review("unflag", "", flag.at, flag.entry, flag.digest)
                    return
            if key.startswith("r"):
                self.notify("choose a timeline event (or no row) to flag", severity="warning")
                return
        what = f"event at {fmt_clock(at)}" if key else f"time {fmt_clock(at)}"
        self._ask(f"Flag the {what}: why? (enter to confirm)",
                  lambda text: self._review("flag", text, at, key, None))

    def _ask(self, prompt: str, then: Callable[[str], None], *, required: bool = False) -> None:
        def done(value: str | None) -> None:
            if value is not None:
                then(value)

        self.app.push_screen(TextScreen(prompt, required=required), done)

    def _review(self, kind: str, text: str, at: float | None, entry: str | None,
                ref: str | None) -> None:
        self._store_review(kind, self._author(), text, at, entry, ref)

    @work(thread=True, exclusive=False, group="review")
    def _store_review(self, kind: str, author: str, text: str, at: float | None,
                      entry: str | None, ref: str | None) -> None:
        app = self.app
        data = self.data
        if data is None:
            return
        try:
            review = self.archive.add_review(data, kind, author, text=text, at=at, entry=entry,
                                             ref=ref)
        except ReviewError as exc:
            app.call_from_thread(self.notify, f"not stored: {exc}",
                                 severity="error")
            return
        app.call_from_thread(self._reviewed, review)

    def _reviewed(self, review: Review) -> None:
        approver = self._approver()
        if approver.on_review is not None:
            approver.on_review(review)
        words = {"reviewed": "marked reviewed", "note": "note added", "flag": "flagged",
                 "unflag": "flag withdrawn"}
        extra = "" if review.status == "signed" else f" ({review.status})"
        self.notify(f"{words.get(review.kind, review.kind)}{extra}")
        self._reviews_changed()

    def _reviews_changed(self) -> None:
        """Show the new review state (the screen overrides this)."""

    # ------------------------------------------------------------------ kill

    def action_kill(self) -> None:
        approver = self._approver()
        d = self.data
        if d is None or not d.live:
            self.notify("only a live session can be terminated",
                        severity="warning")
            return
        if not approver.may_decide:
            self.notify("only an auditor (a configured approver) may terminate "
                        "sessions", severity="warning")
            return
        box = self.query_one("#kill-reason", Input)
        box.value = ""
        box.display = True
        box.focus()

    @on(Input.Submitted, "#kill-reason")
    def _kill_submitted(self, event: Input.Submitted) -> None:
        from state.errors import StateError

        box = self.query_one("#kill-reason", Input)
        box.display = False
        self.set_focus(None)
        reason = event.value.strip()
        if not reason:
            self.notify("a reason is required (it is shown to the user)",
                        severity="warning")
            return
        approver = self._approver()
        d = self.data
        if d is None or d.row is None:
            return
        try:
            self.archive.approvals().request_kill(d.row.id, by=approver.name, reason=reason)
        except (RecorderError, OSError, sqlite3.Error, StateError) as exc:
            self.notify(f"cannot request the termination: {safe(exc)}",
                        severity="error")
            return
        if approver.on_kill is not None:
            approver.on_kill(d.row.id, reason)
        self.notify(f"termination of {d.row.id} requested: the gateway ends it "
                    "within ~1 s")

    def kill_box(self) -> Input:
        box = Input(placeholder="reason shown to the user (enter ends the session, escape "
                    "cancels)", id="kill-reason")
        box.display = False
        return box

    def close_kill_box(self) -> bool:
        """Hide the kill box if it is open (escape); True when it was."""
        box = self.query_one("#kill-reason", Input)
        if box.display:
            box.display = False
            self.set_focus(None)
            return True
        return False
