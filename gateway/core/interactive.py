"""The interactive policy driver: policy in the data path of one terminal session (a
PTY shell, or a PTY exec), talking to its adapter only through :class:`Ports`.

* Output: fed to the :class:`LineTracker` (cheap tail bookkeeping) and the
  :class:`StreamMasker`; the masked bytes go to the recording always and to the user when
  ``policy.mask_live`` is on. A held partial match is flushed by a timer at its deadline.
* Input is recorded per line, at its Enter: a line typed with echo off (a password
  prompt) is recorded with its printable keys replaced by ``*``. Keystroke timing inside
  a line is therefore not kept in recordings.
* Input: split by the tracker; the Enter key (and every other key that can run a line,
  see ``gateway.policy.keys``) is held while the line is reconstructed (pyte, in a
  worker thread) and decided by the session's :class:`PolicySession` (the shell model,
  the program in the foreground), in a worker thread too. Keys typed meanwhile are
  queued (bounded) and replayed after an allow; discarded while an approval is pending.
* A line that runs (allowed, or approved) is committed to the :class:`PolicySession`
  before its key is released: its effects on the shell (aliases, variables, cwd, files
  written...) and on the foreground (a REPL, an editor started) apply to the next line.
  A PTY exec starts with its exec decision committed, so the keys typed into the
  program it started (``ssh -t host -- python3``) are decided as that program's lines.
* Deny: the line is cancelled on the target (Ctrl-C: the shell drops the whole line,
  continuation lines included) and the user sees the rule; keys typed right after wait
  for the shell's new prompt (at most ``INTERRUPT_WAIT``), or the shell would drop them
  with the line. Approve: the user sees
  ``waiting for approval #ID (expires in 5m; Ctrl-C cancels)``; Ctrl-C cancels; on
  approval the held Enter is released, so what runs is exactly the line that was
  approved. Decisions go through the session's :class:`Enforcer`.

Limits are documented in docs/policy.md: non-PTY exec and file transfers are decided on
their command line (and SFTP requests on their paths); what they send the user stays
byte-exact, only their recordings are masked (:class:`gateway.core.masking.RecordMasker`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from gateway.audit import Kind
from gateway.core.enforce import Allow, Deny, Enforcer, Gone, too_long
from gateway.core.session import SessionCore
from gateway.policy import (
    Decision,
    LineSnapshot,
    LineTracker,
    PolicyEngine,
    PolicySession,
    StreamMasker,
)

log = logging.getLogger("bastille.policy")

MAX_QUEUED_INPUT = 64 * 1024  # keys typed while a decision is pending (bounded)
MAX_LINE_INPUT = 4096  # input kept until its Enter; longer lines are recorded as they go
ECHO_WAIT = 0.3  # seconds to wait for the echo of pasted keys before deciding
ECHO_RETRY = 0.02  # while a line looks typed without echo, read it again this often
INTERRUPT_WAIT = 0.5  # after the Ctrl-C of a refused line: at most this long for the shell


@dataclass(frozen=True)
class Ports:
    """How the driver reaches the adapter's channels and the recording.

    Attributes:
        to_target: keys for the target.
        to_user: (masked) output for the user.
        record_output: masked output for the recording.
        record_input: typed lines for the recording (None: keys are not recorded).
    """

    to_target: Callable[[bytes], None]
    to_user: Callable[[bytes], None]
    record_output: Callable[[bytes], None]
    record_input: Callable[[bytes], None] | None = None


class InteractivePolicy:
    """Drives one terminal session's keys and output through the policy.

    Args:
        session: the session's core (audit, messages).
        enforcer: carries out decisions (approval waits); its services spawn tasks.
        ports: the adapter's side.
        masker: masks secrets in the output (None: nothing is masked).
        engine: decides each line; None records lines without deciding them.
        size: the terminal's (columns, rows).
        started: a PTY exec's decision of its command (committed at once: the keys
            that follow go to the program it started).
    """

    def __init__(self, session: SessionCore, enforcer: Enforcer, ports: Ports,
                 masker: StreamMasker | None, engine: PolicyEngine | None,
                 size: tuple[int, int], *, started: Decision | None = None) -> None:
        self.session = session
        self.enforcer = enforcer
        self.ports = ports
        self.masker = masker
        self.engine = engine
        self.mask_live = enforcer.services.config.policy.mask_live
        cols, rows = size[0] or 80, size[1] or 24
        # one policy session per terminal: the shell model, the foreground, the held keys
        self.policy: PolicySession | None = None
        if engine is not None:
            principal = session.principal
            self.policy = PolicySession(engine, user=principal.name,
                                        groups=sorted(principal.groups),
                                        target=session.target, cols=cols, rows=rows)
            if started is not None:
                self.policy.commit(started, approved=True)
            self.tracker = self.policy.tracker
        else:
            self.tracker = LineTracker(cols, rows)
        self._deciding = False
        self._queued = bytearray()
        self._flush_handle: asyncio.TimerHandle | None = None
        self._line_input = bytearray()  # typed since the last Enter, recorded at the Enter
        self._recording: set[asyncio.Task[Any]] = set()  # lines still being classified
        self._last_output = 0.0
        self._outputs = 0  # output chunks from the target so far

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[Any]:
        return self.enforcer.services.spawn(coro, name)

    # ------------------------------------------------------------ output
    def output(self, data: bytes) -> None:
        """Bytes from the target."""
        self._last_output = time.monotonic()
        self._outputs += 1
        self.tracker.feed_output(data)
        if self.masker is None:
            self.ports.record_output(data)
            self.ports.to_user(data)
            return
        masked = self.masker.feed(data, time.monotonic())
        if masked:
            self.ports.record_output(masked)
        self.ports.to_user(masked if self.mask_live else data)
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
            self.ports.record_output(out)
            if self.mask_live:
                self.ports.to_user(out)
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

    # ------------------------------------------------------------ input recording
    def _keys(self, data: bytes) -> None:
        """Collect the keys of the current line for its recording (bounded)."""
        if self.ports.record_input is None:
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
        if data and self.ports.record_input is not None:
            self.ports.record_input(_hide_printable(data) if echo_off else data)

    async def _record_line(self, line_id: int, keys: bytes) -> None:
        """Without rules: still find out whether the line was typed without echo."""
        loop = asyncio.get_running_loop()
        try:
            await self._await_echo()
            snapshot = await loop.run_in_executor(None, self.tracker.current_line, line_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - fail closed: hide what cannot be classified
            self._store_input(keys, echo_off=True)
            return
        self.tracker.end_line()
        self._store_input(keys, echo_off=_unechoed(snapshot))

    # ------------------------------------------------------------ input
    def input(self, data: bytes) -> None:
        """Keys from the user -> policy -> target (recorded per line, see the module doc)."""
        if self.engine is None:
            self._pass_through(data)
            return
        if self.enforcer.waiting:
            if b"\x03" in data:
                self.enforcer.cancel_pending()
            return  # keys typed while waiting are discarded
        if self._deciding:
            if len(self._queued) + len(data) <= MAX_QUEUED_INPUT:
                self._queued += data
            return
        events = self.tracker.feed_input(data)
        for i, event in enumerate(events):
            if event.data:
                self.ports.to_target(event.data)
                self._keys(event.data)
            if event.kind == "enter":
                self._deciding = True
                self._queued += b"".join(e.data + e.enter for e in events[i + 1:])
                keys = self._end_keys(event.enter)
                self._spawn(self._decide(event.enter, event.line_id, keys), "policy decision")
                return

    def _pass_through(self, data: bytes) -> None:
        """No rules: keys go straight to the target; lines are still recorded."""
        self.ports.to_target(data)
        if self.ports.record_input is None:
            return
        for event in self.tracker.feed_input(data):
            self._keys(event.data)
            if event.kind == "enter":
                keys = self._end_keys(event.enter)
                task = self._spawn(self._record_line(event.line_id, keys), "input record")
                self._recording.add(task)
                task.add_done_callback(self._recording.discard)

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

    async def _read_line(self, line_id: int) -> LineSnapshot:
        """The line of a held key (pyte, off the loop). While it looks typed without echo,
        it is read again for up to ECHO_WAIT: other output may have come first (keys
        typed ahead of the next prompt) and the echo a little later."""
        loop = asyncio.get_running_loop()
        snapshot = await loop.run_in_executor(None, self.tracker.current_line, line_id)
        deadline = time.monotonic() + ECHO_WAIT
        while snapshot.echo_off and time.monotonic() < deadline:
            await asyncio.sleep(ECHO_RETRY)
            snapshot = await loop.run_in_executor(None, self.tracker.current_line, line_id)
        return snapshot

    async def _decide(self, enter: bytes, line_id: int, keys: bytes = b"") -> None:
        policy = self.policy
        assert policy is not None
        session = self.session
        loop = asyncio.get_running_loop()
        try:
            await self._await_echo()
            snapshot = await self._read_line(line_id)
            self._store_input(keys, echo_off=_unechoed(snapshot))
            shell_line = not (snapshot.alternate_screen or snapshot.echo_off)
            decision = too_long(policy.engine, snapshot.text, snapshot.raw, snapshot.typed) \
                if shell_line else None
            if decision is None:  # off the loop: analysis is bounded but costs CPU
                decision = await loop.run_in_executor(None, policy.decide, snapshot)
            for kind, detail in self.tracker.take_signals():
                session.audit(Kind.EVASION, "flagged", {"signal": kind, "detail": detail})
            text = policy.describe(snapshot)  # never the keys of a line typed without echo
            now = self.enforcer.immediate(decision)
            if decision.incomplete and isinstance(now, Allow):
                self.tracker.continue_line(snapshot.text)  # the shell asks for more
                # the keys that follow wait for its continuation prompt (at most
                # INTERRUPT_WAIT): sent while bash is out of readline, the tty echoes
                # them and readline again, and the screen shows a line bash never reads
                answered = self._outputs
                self.ports.to_target(enter)
                await self._await_answer(answered)
                self._resume()
                return
            if now is None:
                self._queued.clear()  # keys typed before an approval wait are dropped
            verdict = await self.enforcer.enforce(text, decision, source="interactive",
                                                  cancel_hint=True)
            self.tracker.end_line()
            match verdict:
                case Allow():  # the line runs: its effects apply to the next one
                    policy.commit(decision, approved=now is None)
                    self._release(enter)
                case Deny(message):
                    await self._refuse(message)
                case Gone():
                    self._queued.clear()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("policy decision failed")
            self.tracker.end_line()
            await self._refuse("the policy could not decide this command; it was not run")

    def _release(self, enter: bytes) -> None:
        self.ports.to_target(enter)
        self._resume()

    def _resume(self) -> None:
        self._deciding = False
        queued, self._queued = bytes(self._queued), bytearray()
        if queued:
            self.input(queued)

    async def _refuse(self, message: str) -> None:
        self.session.say(message, fresh_line=True)
        self._queued.clear()
        answered = self._outputs
        self.ports.to_target(b"\x03")  # the shell drops the whole line and prompts again
        await self._await_answer(answered)
        self._resume()

    async def _await_answer(self, outputs: int) -> None:
        """Keys typed after a refusal (or an unfinished line) wait until the shell has
        answered its Ctrl-C (its Enter): output after the ``outputs``-th chunk, then ~10 ms
        of quiet, at most INTERRUPT_WAIT. Bash drops the keys it read before it handled
        the interrupt, with the line."""
        deadline = time.monotonic() + INTERRUPT_WAIT
        while time.monotonic() < deadline:
            if self._outputs > outputs and time.monotonic() - self._last_output >= 0.01:
                return
            await asyncio.sleep(0.005)


def _hide_printable(data: bytes) -> bytes:
    """Printable ASCII and UTF-8 bytes become ``*``; control keys (Enter...) stay."""
    return bytes(0x2A if b >= 0x20 and b != 0x7F else b for b in data)


def _unechoed(snapshot: LineSnapshot) -> bool:
    """The keys of this line did not show up on screen (a password prompt, or keys the
    shell did not echo as typed): their recording is hidden (fail closed)."""
    if snapshot.echo_off:
        return True
    typed = snapshot.typed or ""
    return bool(typed) and typed not in (snapshot.raw or "") and typed not in snapshot.text
