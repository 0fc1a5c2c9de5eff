"""The Approvals pane: pending requests (who, target, command, rule, the reason given,
age), live updates, approve or deny with a reason.

The queue is :mod:`state.approvals` in the gateway's data directory; the running
gateway sees a decision within its poll interval. Who is deciding, and whether they may,
is told to the player by its caller (`bastille player --as NAME`, or the gateway for
`ssh -t auditor@bastion player`): :class:`Approver`. Self-approval is refused by the
store, whoever asks. Decisions are reported to ``on_decided`` (the gateway's audit log).
Every user-controlled string (command, reason, names) is shown through
``common.safetext.visible``: control characters appear as escapes, never act.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from player.fmt import cell, safe
from state.approvals import ApprovalError, Approvals, Request
from state.reviews import Review

REFRESH = 1.0  # seconds between reloads of the queue


@dataclass(frozen=True)
class Approver:
    """The person using the player and whether they may decide."""

    name: str
    groups: frozenset[str] = frozenset()
    may_decide: bool = False
    on_decided: Callable[[Request, str], None] | None = field(default=None, compare=False)
    on_kill: Callable[[str, str], None] | None = field(default=None, compare=False)
    on_watch: Callable[[str], None] | None = field(default=None, compare=False)
    on_review: Callable[[Review], None] | None = field(default=None, compare=False)

    def allows(self, user: str, groups: frozenset[str]) -> bool:
        return self.may_decide and user == self.name


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{int(seconds)}s"
    if seconds < 7200:
        return f"{int(seconds // 60)}m"
    return f"{int(seconds // 3600)}h"


class ApprovalsScreen(Screen[None]):
    BINDINGS = [
        Binding("y", "decide(True)", "Approve"),
        Binding("n", "decide(False)", "Deny"),
        Binding("escape,q", "back", "Back"),
    ]

    def __init__(self, store: Approvals, approver: Approver,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.store = store
        self.approver = approver
        self.clock = clock
        self.requests: list[Request] = []
        self._pending_decision: bool | None = None

    def compose(self) -> ComposeResult:
        who = self.approver.name or "nobody"
        role = "approver" if self.approver.may_decide else "read-only"
        yield Static(cell(f"approval requests — you are {who} ({role})"), id="approvals-title")
        table: DataTable[str | Text] = DataTable(id="approvals", cursor_type="row")
        table.add_columns("id", "age", "user", "target", "rule", "request", "reason")
        yield table
        yield Static("", id="approvals-detail")
        box = Input(placeholder="reason (enter to confirm, escape to cancel)",
                    id="approvals-reason")
        box.display = False
        yield box
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.set_interval(REFRESH, self._reload)
        self._reload()

    @work(thread=True, exclusive=True, group="approvals")
    def _reload(self) -> None:
        try:
            requests = self.store.list()
        except Exception as exc:
            self.app.call_from_thread(self.notify, f"cannot read approvals: {safe(exc)}",
                                      severity="error", markup=False)
            return
        self.app.call_from_thread(self._show, requests)

    def _show(self, requests: list[Request]) -> None:
        table = self.query_one("#approvals", DataTable)
        selected = self.selected()
        self.requests = requests
        table.clear()
        now = self.clock()
        for r in requests:
            table.add_row(str(r.id), _age(now - r.created), cell(r.user, 40),
                          cell(r.target, 40), cell(r.rule or "-", 40), cell(r.command, 200),
                          cell(r.reason, 200), key=str(r.id))
        if selected is not None:
            for i, r in enumerate(requests):
                if r.id == selected.id:
                    table.move_cursor(row=i)
        self._describe()
        if not requests:
            self.query_one("#approvals-title", Static).update(
                cell(f"no pending approval requests — you are {self.approver.name or 'nobody'}"))

    @on(DataTable.RowHighlighted, "#approvals")
    def _highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._describe()

    def _describe(self) -> None:
        r = self.selected()
        detail = self.query_one("#approvals-detail", Static)
        if r is None:
            detail.update("")
            return
        text = Text()
        text.append(f"#{r.id} ", "bold")
        text.append(safe(f"{r.user}@{r.target}: {r.command}", 2000))
        text.append("\nreason given: ", "bold")
        text.append(safe(r.reason or "-", 2000))
        if r.rule:
            text.append("   rule: ", "bold")
            text.append(safe(r.rule, 200))
        detail.update(text)

    def selected(self) -> Request | None:
        table = self.query_one("#approvals", DataTable)
        if not self.requests or table.cursor_row is None:
            return None
        row = table.cursor_row
        return self.requests[row] if 0 <= row < len(self.requests) else None

    def action_decide(self, approve: bool) -> None:
        if not self.approver.may_decide:
            self.notify(f"{safe(self.approver.name or 'you')} may not decide approvals",
                        severity="warning", markup=False)
            return
        if self.selected() is None:
            self.notify("no request selected", severity="warning")
            return
        self._pending_decision = bool(approve)
        box = self.query_one("#approvals-reason", Input)
        box.value = ""
        box.display = True
        box.focus()

    @on(Input.Submitted, "#approvals-reason")
    def _reason_given(self, event: Input.Submitted) -> None:
        box = self.query_one("#approvals-reason", Input)
        box.display = False
        self.set_focus(self.query_one("#approvals", DataTable))
        request, approve = self.selected(), self._pending_decision
        self._pending_decision = None
        if request is None or approve is None:
            return
        try:
            result = self.store.decide(request.id, approver=self.approver.name,
                                       approver_groups=self.approver.groups,
                                       approvers=self.approver, approve=approve,
                                       reason=event.value.strip())
        except ApprovalError as exc:
            self.notify(safe(exc), severity="error", markup=False)
            return
        if self.approver.on_decided is not None:
            self.approver.on_decided(result, event.value.strip())
        self.notify(f"request #{result.id} {result.status}")
        self._reload()

    def action_back(self) -> None:
        box = self.query_one("#approvals-reason", Input)
        if box.display:
            box.display = False
            self._pending_decision = None
            self.set_focus(self.query_one("#approvals", DataTable))
            return
        self.app.pop_screen()
