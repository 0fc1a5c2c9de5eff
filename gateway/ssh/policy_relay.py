"""Policy in the data path of one interactive session (a PTY shell or PTY exec).

* Output: fed to the :class:`LineTracker` (cheap tail bookkeeping) and the
  :class:`StreamMasker`; the masked bytes go to the recording always and to the user when
  ``policy.mask_live`` is on. A held partial match is flushed by a timer at its deadline.
* Input is recorded per line, at its Enter: a line typed with echo off (a password
  prompt) is recorded with its printable keys replaced by ``*``. Keystroke timing inside
  a line is therefore not kept in recordings.
* Input: split by the tracker; the Enter key is held while the line is reconstructed
  (pyte, in a worker thread) and decided. Keys typed meanwhile are queued (bounded) and
  replayed after an allow; discarded while an approval is pending.
* Deny: the line is cancelled on the target (Ctrl-C: the shell drops the whole line,
  continuation lines included) and the user sees the rule. Approve: the user sees
  ``waiting for approval #ID (expires in 5m)``; Ctrl-C cancels; on approval the held
  Enter is released, so what runs is exactly the line that was approved.

Limits are documented in docs/policy.md: non-PTY exec and file transfers are decided on
their command line (and SFTP requests on their paths); what they send the user stays
byte-exact, only their recordings are masked (:class:`ExecMasker`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway.audit import Kind
from gateway.policy import Action, Decision, LineTracker, PolicySession, StreamMasker

if TYPE_CHECKING:
    from gateway.ssh.session import GatewaySession

log = logging.getLogger("bastille.policy")

MAX_QUEUED_INPUT = 64 * 1024  # keys typed while a decision is pending (bounded)
MAX_LINE_INPUT = 4096  # input kept until its Enter; longer lines are recorded as they go
ECHO_WAIT = 0.3  # seconds to wait for the echo of pasted keys before deciding


class InteractivePolicy:
    def __init__(self, session: GatewaySession, masker: StreamMasker | None,
                 write_target: Callable[[bytes], None], write_user: Callable[[bytes], None],
                 record_output: Callable[[bytes], None], *, decide: bool = True,
                 record_input: Callable[[bytes], None] | None = None) -> None:
        self.s = session
        self.app = session.app
        cols, rows = session.term_size[:2]
        engine = self.app.policy_engine
        # one policy session per shell: the shell model, the foreground, the held keys
        self.policy: PolicySession | None = None
        if decide and engine is not None:
            self.policy = PolicySession(engine, user=session.ctx.user.name,
                                        groups=sorted(session.ctx.user.groups),
                                        target=session.target_name, cols=cols or 80,
                                        rows=rows or 24)
            self.tracker = self.policy.tracker
        else:
            self.tracker = LineTracker(cols or 80, rows or 24)
        self.masker = masker
        self._write_target = write_target
        self._write_user = write_user
        self._record_output = record_output
        self._deciding = False
        self._waiting_approval: int | None = None
        self._queued = bytearray()
        self._flush_handle: asyncio.TimerHandle | None = None
        self._decide_lines = decide
        self._record_input = record_input
        self._line_input = bytearray()  # typed since the last Enter, recorded at the Enter
        self._recording: set[asyncio.Task[None]] = set()  # lines still being classified
        self._last_output = 0.0

    # ------------------------------------------------------------ output
    def output(self, data: bytes) -> None:
        self._last_output = time.monotonic()
        self.tracker.feed_output(data)
        if self.masker is None:
            self._record_output(data)
            self._write_user(data)
            return
        masked = self.masker.feed(data, time.monotonic())
        if masked:
            self._record_output(masked)
        self._write_user(masked if self.app.config.policy.mask_live else data)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        assert self.masker is not None
        deadline = self.masker.next_deadline()
        if deadline is None or self._flush_handle is not None:
            return
        loop = asyncio.get_running_loop()
        self._flush_handle = loop.call_later(max(0.0, deadline - time.monotonic()) + 0.001,
                                             self._flush)

    def _flush(self, end: bool = False) -> None:
        self._flush_handle = None
        if self.masker is None:
            return
        out = self.masker.flush(time.monotonic(), end=end)
        if out:
            self._record_output(out)
            if self.app.config.policy.mask_live:
                self._write_user(out)
        if not end:
            self._schedule_flush()

    async def aclose(self) -> None:
        """End of session: finish classifying typed lines (bounded), flush everything."""
        if self._recording:
            await asyncio.wait(set(self._recording), timeout=2.0)
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush(end=True)
        self._store_input(self._end_keys(b""), echo_off=False)

    def resize(self, cols: int, rows: int) -> None:
        self.tracker.resize(cols, rows)

    # ------------------------------------------------------------ input
    def user_input(self, data: bytes) -> None:
        """Keys from the user -> policy -> target (recorded per line, see the module doc)."""
        self.input(data)

    def _keys(self, data: bytes) -> None:
        """Collect the keys of the current line for its recording (bounded)."""
        if self._record_input is None:
            return
        self._line_input += data
        if len(self._line_input) > MAX_LINE_INPUT:
            self._store_input(bytes(self._line_input), echo_off=False)
            self._line_input.clear()

    def _end_keys(self, enter: bytes) -> bytes:
        line = bytes(self._line_input) + enter
        self._line_input.clear()
        return line

    def _store_input(self, data: bytes, *, echo_off: bool) -> None:
        if data and self._record_input is not None:
            self._record_input(_hide_printable(data) if echo_off else data)

    async def _record_line(self, line_id: int, keys: bytes) -> None:
        """Without rules: still find out whether the line was typed without echo."""
        loop = asyncio.get_running_loop()
        try:
            await self._await_echo()
            snapshot = await loop.run_in_executor(None, self.tracker.current_line, line_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # fail closed: hide what cannot be classified
            self._store_input(keys, echo_off=True)
            return
        self.tracker.end_line()
        self._store_input(keys, echo_off=_unechoed(snapshot))

    def input(self, data: bytes) -> None:
        if not self._decide_lines:
            self._write_target(data)
            if self._record_input is not None:
                for event in self.tracker.feed_input(data):
                    self._keys(event.data)
                    if event.kind == "enter":
                        keys = self._end_keys(event.enter)
                        task = self.app.spawn(self._record_line(event.line_id, keys),
                                              "input record")
                        self._recording.add(task)
                        task.add_done_callback(self._recording.discard)
            return
        if self._waiting_approval is not None:
            if b"\x03" in data:
                self.app.spawn(self._cancel_approval(), "approval cancel")
            return  # keys typed while waiting are discarded
        if self._deciding:
            if len(self._queued) + len(data) <= MAX_QUEUED_INPUT:
                self._queued += data
            return
        events = self.tracker.feed_input(data)
        for i, event in enumerate(events):
            if event.data:
                self._write_target(event.data)
                self._keys(event.data)
            if event.kind == "enter":
                self._deciding = True
                rest = b"".join(e.data + e.enter for e in events[i + 1:])
                self._queued += rest
                keys = self._end_keys(event.enter)
                self.app.spawn(self._decide(event.enter, event.line_id, keys),
                               "policy decision")
                return

    async def _await_echo(self) -> None:
        """If the shell has not echoed the keys sent with this Enter yet (a paste), wait
        for the echo and ~10 ms of quiet, at most ECHO_WAIT; typed lines need no wait."""
        if self.tracker.output_since_input():
            return
        deadline = time.monotonic() + ECHO_WAIT
        while time.monotonic() < deadline:
            await asyncio.sleep(0.005)
            if self.tracker.output_since_input() and \
                    time.monotonic() - self._last_output >= 0.01:
                return

    async def _decide(self, enter: bytes, line_id: int, keys: bytes = b"") -> None:
        loop = asyncio.get_running_loop()
        try:
            await self._await_echo()
            snapshot = await loop.run_in_executor(None, self.tracker.current_line, line_id)
            deadline = time.monotonic() + ECHO_WAIT
            while snapshot.echo_off and time.monotonic() < deadline:
                # other output came first (keys typed ahead of the next prompt): give the
                # echo a little longer before reading the line as typed without echo
                await asyncio.sleep(0.02)
                snapshot = await loop.run_in_executor(None, self.tracker.current_line, line_id)
            self._store_input(keys, echo_off=_unechoed(snapshot))
            assert self.policy is not None
            decision = await loop.run_in_executor(None, self.policy.decide, snapshot)
            for kind, detail in self.tracker.take_signals():
                self.app.audit(self.s.audit_event(Kind.EVASION, "flagged",
                                                  {"signal": kind, "detail": detail}))
            text = self.policy.describe(snapshot)
            if decision.incomplete and decision.action is Action.ALLOW:
                self.tracker.continue_line(snapshot.text)
                self._release(enter)
                return
            self.s.record_decision(text, decision, source="interactive")
            if decision.action is Action.ALLOW:
                self.tracker.end_line()
                self.policy.commit(decision)
                self._release(enter)
            elif decision.action is Action.DENY:
                self.tracker.end_line()
                self._refuse(f"denied by policy: {decision.reason}")
            else:
                await self._approval(text, decision, enter)
        except asyncio.CancelledError:
            raise
        except Exception:  # fail closed: the Enter is not released
            log.exception("policy decision failed")
            self.tracker.end_line()
            self._refuse("the policy could not decide this command; it was not run")

    @property
    def engine(self):  # type: ignore[no-untyped-def]
        return self.app.policy_engine

    def _release(self, enter: bytes) -> None:
        self._write_target(enter)
        self._resume()

    def _resume(self) -> None:
        self._deciding = False
        self._waiting_approval = None
        queued, self._queued = bytes(self._queued), bytearray()
        if queued:
            self.input(queued)

    def _refuse(self, message: str) -> None:
        self._write_user(f"\r\nbastille: {message}\r\n".encode())
        self._queued.clear()
        self._write_target(b"\x03")  # the shell drops the whole line and prompts again
        self._resume()

    async def _approval(self, text: str, decision: Decision, enter: bytes) -> None:
        store = self.app.approvals
        cfg = self.app.config.approvals
        ctx = self.s.ctx
        request = store.create(user=ctx.user.name, target=self.s.target_name,
                               session=self.s.session_id, command=text, rule=decision.rule,
                               reason=decision.reason, timeout=cfg.timeout)
        self._waiting_approval = request.id
        self._queued.clear()
        self.app.notify_approvers(request)
        minutes = max(1, round(cfg.timeout / 60))
        self._write_user(
            f"\r\nbastille: {decision.reason}\r\nbastille: waiting for approval #{request.id} "
            f"(expires in {minutes}m; Ctrl-C cancels)\r\n".encode())
        result = await store.wait(request.id)
        self.s.record_approval(result)
        if result.status == "approved":
            self._write_user(f"bastille: approved by {result.decided_by}\r\n".encode())
            self.tracker.end_line()
            if self.policy is not None:
                self.policy.commit(decision, approved=True)
            self._release(enter)
        else:
            why = {"denied": f"denied by {result.decided_by}", "expired": "expired",
                   "cancelled": "cancelled"}.get(result.status, result.status)
            if result.decision_reason and result.status == "denied":
                why += f": {result.decision_reason}"
            self.tracker.end_line()
            self._refuse(f"request #{request.id} {why}; the command was not run")

    async def _cancel_approval(self) -> None:
        if self._waiting_approval is not None:
            self.app.approvals.cancel(self._waiting_approval, "cancelled by the user")


def exec_decision(engine: Any, command: str, *, user: str, groups: frozenset[str],
                  target: str, pty: bool = False) -> Decision:
    """Decide an exec request: the command string is exact; with a PTY the keys that
    follow are decided by ``InteractivePolicy`` (a REPL or an editor it starts too)."""
    decision: Decision = engine.decide(command, user=user, groups=sorted(groups), target=target,
                                       interactive=False, tty=pty)
    return decision


class ExecMasker:
    """Masks secrets in what is recorded of a session without a PTY, per stream.

    Exec output (streams 1, 2) and file transfers (``streams=(0, 1, 2)``: stream 0 is the
    user's input, i.e. uploads) reach the user byte-exact (scripts and files depend on
    them); only the recording is masked. Exec sessions with a PTY take the interactive
    path instead (masked live too). Held partial matches are flushed by a timer at their
    deadline.
    """

    def __init__(self, make_masker: Callable[[], StreamMasker],
                 record: Callable[[bytes, int], None],
                 streams: tuple[int, ...] = (1, 2)) -> None:
        self._maskers = {stream: make_masker() for stream in streams}
        self.masks_input = 0 in self._maskers
        self._record = record
        self._timer: asyncio.TimerHandle | None = None

    def output(self, data: bytes, stream: int) -> None:
        masked = self._maskers[stream].feed(data, time.monotonic())
        if masked:
            self._record(masked, stream)
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None:
            return
        deadlines = [d for m in self._maskers.values() if (d := m.next_deadline()) is not None]
        if deadlines:
            delay = max(0.0, min(deadlines) - time.monotonic()) + 0.001
            self._timer = asyncio.get_running_loop().call_later(delay, self._flush)

    def _flush(self, end: bool = False) -> None:
        self._timer = None
        for stream, masker in self._maskers.items():
            out = masker.flush(time.monotonic(), end=end)
            if out:
                self._record(out, stream)
        if not end:
            self._schedule()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._flush(end=True)


def _hide_printable(data: bytes) -> bytes:
    """Printable ASCII and UTF-8 bytes become ``*``; control keys (Enter...) stay."""
    return bytes(0x2A if b >= 0x20 and b != 0x7F else b for b in data)


def _unechoed(snapshot: Any) -> bool:
    """The keys of this line did not show up on screen (a password prompt, or keys the
    shell did not echo as typed): their recording is hidden (fail closed)."""
    if snapshot.echo_off:
        return True
    typed = snapshot.typed
    return bool(typed) and typed not in (snapshot.raw or "") and typed not in snapshot.text
