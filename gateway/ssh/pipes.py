"""What happens to one SSH session's bytes between the user and the target: pipes.

The session chooses one pipe, once, when it knows what was asked for:

============================  ===================================================
:class:`InteractivePipe`      a PTY shell, or a PTY exec: the interactive policy
                              driver (``gateway.core.interactive``) decides lines
                              (a PTY exec's: the lines typed into the program its
                              command started), masks output live and records
                              keys per line
:class:`ExecPipe`             exec without a PTY, rsync, the player: exact bytes to
                              the user; the recording masked (``mask_exec`` /
                              ``mask_transfers``) or raw
:class:`GatedExecPipe`        exec without a PTY whose program reads commands from the
                              user's input (``sudo -i``): an :class:`ExecPipe` whose
                              first byte of input waits for approval
:class:`ScpPipe`              legacy ``scp -t``/``-f`` (an :class:`ExecPipe` that also
                              reports each file transferred)
:class:`SftpPipe`             the SFTP subsystem: every file request decided by the
                              policy; one that needs approval holds the stream
:class:`MenuPipe`             ``ssh -t USER@BASTION`` before a target is chosen
============================  ===================================================

Per chunk a pipe does only its own work: there is no kind switch and no optional part
checked on every chunk. Pipes write through the :class:`gateway.ssh.relay.Relay` and
record through the session's :class:`gateway.core.session.SessionCore`.

Exec, scp and SFTP pipes send every chunk to the user (or target) at once, but record in
batches (:class:`RecordBatch`): what arrived during one event-loop turn, up to
:data:`BATCH_BYTES`, is masked and recorded in one call per stream, because the masker
and the recorder cost per call as much as per byte at SSH packet sizes (32 KiB). Events
a pipe records itself (a file transferred) flush the batch first, so the recording keeps
the order the user saw.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from gateway.audit import Kind
from gateway.config import PolicySettings, TargetConfig
from gateway.core.enforce import Allow, Deny, Enforcer, Gone
from gateway.core.interactive import InteractivePolicy, Ports
from gateway.core.masking import RecordMasker
from gateway.core.session import SessionCore
from gateway.policy import Action, Decision, PolicyEngine
from gateway.ssh.menu import QUIT, TargetMenu
from gateway.ssh.relay import STDERR, Relay
from gateway.ssh.transfers import FileOp, Hold, ScpTap, SftpTap, Transfer

BATCH_BYTES = 256 * 1024  # recorded in one piece at most (then at once, not next turn)
# ... while a recording budget meters the session: its throttle is decided per batch, so
# a batch is what the user may get beyond the throttle rate
METERED_BATCH_BYTES = 32 * 1024


def batch_cap(relay: Relay) -> int:
    """Bytes gathered at most before they are recorded (see the two bounds above)."""
    return METERED_BATCH_BYTES if relay.meter is not None else BATCH_BYTES


class RecordBatch:
    """Bytes to record, gathered until the end of this event-loop turn (or
    :data:`BATCH_BYTES`), then handed to ``record(data, stream)`` with consecutive chunks
    of one stream joined, in order.

    Args:
        record: masks and/or records one piece (stream 0: user input, 1/2: output).
        after: called after each flush (the relay's back-pressure check).
        cap: bytes gathered at most before a flush (:func:`batch_cap`).
    """

    def __init__(self, record: Callable[[bytes, int], None], after: Callable[[], None],
                 cap: Callable[[], int] = lambda: BATCH_BYTES) -> None:
        self._record = record
        self._after = after
        self._cap = cap
        self._parts: list[tuple[int, bytes]] = []
        self._size = 0
        self._scheduled = False

    def add(self, data: bytes, stream: int) -> None:
        if not data:
            return
        self._parts.append((stream, data))
        self._size += len(data)
        if self._size >= self._cap():
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._turn_end)

    def _turn_end(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        """Record everything gathered now."""
        if not self._parts:
            return
        parts, self._parts, self._size = self._parts, [], 0
        run_stream, run = parts[0][0], [parts[0][1]]
        for stream, data in parts[1:]:
            if stream == run_stream:
                run.append(data)
                continue
            self._record(b"".join(run) if len(run) > 1 else run[0], run_stream)
            run_stream, run = stream, [data]
        self._record(b"".join(run) if len(run) > 1 else run[0], run_stream)
        self._after()


class Pipe:
    """Base: the session's bytes in both directions (subclasses decide what happens)."""

    kind = ""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def flush(self) -> None:
        """Hand over what is gathered now, to the user and the recording: before an EOF,
        an exit status or a message of the bastion's."""

    def from_user(self, data: bytes) -> None:
        raise NotImplementedError

    def from_target(self, data: bytes, stream: int) -> None:
        raise NotImplementedError

    def resize(self, cols: int, rows: int) -> None:
        """The user's terminal changed size."""

    def user_eof(self) -> bool:
        """The user's input ended: may the target be told now (False: the pipe holds
        input that the EOF must follow, and sends it itself)?"""
        return True

    async def aclose(self) -> None:
        """The session ends: flush what is held."""


class ExecPipe(Pipe):
    """Exact bytes both ways; the recording gets them raw, or masked per stream."""

    kind = "exec"

    def __init__(self, relay: Relay, session: SessionCore,
                 masker: RecordMasker | None = None) -> None:
        super().__init__(relay)
        self.session = session
        self.masker = masker
        # uploads too: the relay pauses the user when the recorder lags
        self.batch = RecordBatch(self._record, relay.recorded, lambda: batch_cap(relay))

    def _record(self, data: bytes, stream: int) -> None:
        rec = self.session.rec
        if self.masker is not None and (stream or self.masker.masks_input):
            self.masker.feed(data, stream)
        elif rec is not None:
            if stream == 0:
                rec.input(data)
            else:
                rec.output(data, stream)

    def flush(self) -> None:
        self.batch.flush()

    def from_user(self, data: bytes) -> None:
        self.batch.add(data, 0)
        self.relay.bytes_in += len(data)
        self.relay.to_target(data)

    def from_target(self, data: bytes, stream: int) -> None:
        self.batch.add(data, stream)
        self.relay.to_user(data, STDERR if stream == 2 else None)

    def record_output(self, data: bytes, stream: int) -> None:
        self.batch.add(data, stream)

    def resize(self, cols: int, rows: int) -> None:
        self.batch.flush()
        if self.session.rec is not None:
            self.session.rec.resize(cols, rows)

    async def aclose(self) -> None:
        self.batch.flush()
        if self.masker is not None:
            self.masker.close()


class GatedExecPipe(ExecPipe):
    """An exec without a terminal whose command may run, but one of whose programs reads
    commands or keys from the user's input unchecked (``ssh host -- sudo -i``; the
    policy's ``Decision.input_gate``): the user's first byte of input waits for approval.
    Until an approver allows it, the user is not read and nothing reaches the target, not
    even an end of input that follows it; refused, the session ends. Without input (an
    EOF at once) the program runs and ends as it would.
    """

    kind = "exec"

    def __init__(self, relay: Relay, session: SessionCore, masker: RecordMasker | None,
                 enforcer: Enforcer, command: str, decision: Decision,
                 mask: Callable[[str], str]) -> None:
        super().__init__(relay, session, masker)
        self.enforcer = enforcer
        self.command = command
        self.decision = decision
        self.mask = mask  # the approvers see the input's first line masked
        self.state = "closed"  # -> "asking" at the first byte -> "open" or "refused"
        self._held: list[bytes] = []
        self._eof = False

    def from_user(self, data: bytes) -> None:
        if self.state == "open":
            super().from_user(data)
            return
        if not data or self.state == "refused":
            return
        self._held.append(data)  # bounded: the user is not read while a request waits
        if self.state == "closed":
            self.state = "asking"
            self.relay.hold_user(True)
            self.enforcer.services.spawn(self._approval(), "input approval")

    def user_eof(self) -> bool:
        if self.state in ("closed", "open"):
            return True  # nothing held: an end of input alone runs nothing
        self._eof = True  # it follows the held input, if that is approved
        return False

    async def _approval(self) -> None:
        first = b"".join(self._held)[:512].split(b"\n", 1)[0]
        preview = self.mask(first.decode("utf-8", "replace"))[:120]
        reason = self.decision.input_gate or "the program reads the user's input"
        decision = Decision(Action.APPROVE, None, reason, self.decision.commands,
                            uncertain=(reason,))
        verdict = await self.enforcer.approval(f"input to `{self.command}`: {preview}",
                                               decision, what="input")
        match verdict:
            case Gone():
                return
            case Allow():
                self.state = "open"
                held, self._held = self._held, []
                for data in held:
                    super().from_user(data)
                if self._eof and self.relay.upstream is not None:
                    self.relay.upstream.write_eof()
                self.relay.hold_user(False)
            case Deny(message):
                self.state = "refused"
                held, self._held = self._held, []
                for data in held:  # recorded as what the user sent; the target got none
                    self.batch.add(data, 0)
                self.session.terminate(message)


class ScpPipe(ExecPipe):
    """Legacy scp: an exec whose file contents are reported as transfers."""

    kind = "scp"

    def __init__(self, relay: Relay, session: SessionCore, command: str,
                 masker: RecordMasker | None = None) -> None:
        super().__init__(relay, session, masker)
        self.tap = ScpTap(command, self._transferred)

    def _transferred(self, t: Transfer) -> None:
        self.batch.flush()  # the file's bytes are recorded before its transfer event
        transfer_done(self.session, t)

    def from_user(self, data: bytes) -> None:
        if self.tap.direction == "upload":
            self.tap.feed(data)
        super().from_user(data)

    def from_target(self, data: bytes, stream: int) -> None:
        self.record_output(data, stream)
        if self.tap.direction == "download":
            self.tap.feed(data)
        self.relay.to_user(data, STDERR if stream == 2 else None)


class SftpPipe(Pipe):
    """The SFTP subsystem: transfers reported; with a policy, each request decided."""

    kind = "sftp"

    def __init__(self, relay: Relay, session: SessionCore, enforcer: Enforcer,
                 engine: PolicyEngine | None, masker: RecordMasker | None = None) -> None:
        super().__init__(relay)
        self.session = session
        self.enforcer = enforcer
        self.engine = engine
        self.masker = masker
        self.batch = RecordBatch(self._record, relay.recorded, lambda: batch_cap(relay))
        self.tap = SftpTap(self._transferred, self._file_op,
                           self._gate if engine is not None else None)
        self._holding = False  # a request waits for approval: the user is not read
        self._decision: Decision | None = None

    def _transferred(self, t: Transfer) -> None:
        self.batch.flush()  # the file's bytes are recorded before its transfer event
        transfer_done(self.session, t)

    def _file_op(self, op: FileOp) -> None:
        self.batch.flush()
        file_op(self.session, op)

    def flush(self) -> None:
        self.batch.flush()

    def _record(self, data: bytes, stream: int) -> None:
        rec = self.session.rec
        if self.masker is not None:
            self.masker.feed(data, stream)
        elif rec is not None:
            if stream == 0:
                rec.input(data)
            else:
                rec.output(data, stream)

    def from_user(self, data: bytes) -> None:
        self.batch.add(data, 0)
        try:
            data, replies = self.tap.filter_client(data)
        except ValueError:
            self.session.terminate("unreadable SFTP stream; the session was closed")
            return
        self.relay.to_user(replies)
        if self.tap.held is not None:
            self._held_check()
        if data:
            self.relay.bytes_in += len(data)
            self.relay.to_target(data)

    def from_target(self, data: bytes, stream: int) -> None:
        self.batch.add(data, stream)
        self.tap.from_server(data)
        self.relay.to_user(data, STDERR if stream == 2 else None)

    def _gate(self, op: str, path: str) -> str | Hold | None:
        """Decide one client request: None forwards it, a text refuses it, a Hold waits."""
        assert self.engine is not None
        principal = self.session.principal
        decision = self.engine.decide_path(op, path, user=principal.name,
                                           groups=sorted(principal.groups),
                                           target=self.session.target)
        verdict = self.enforcer.immediate(decision)
        if isinstance(verdict, Allow):
            return None
        self.session.record_decision(f"sftp-{op} {path}", decision, source="sftp",
                                     record_command=False)
        if isinstance(verdict, Deny):
            return f"bastille: {verdict.message}"
        self._decision = decision
        return Hold(op, path)

    def _held_check(self) -> None:
        """Start waiting for approval if the tap holds a request; read from the user
        only while it holds none."""
        hold = self.tap.held
        if hold is not None and not self._holding:
            assert self._decision is not None
            self.enforcer.services.spawn(self._approval(hold, self._decision),
                                         "sftp approval")
        held = hold is not None
        if held != self._holding:
            self._holding = held
            self.relay.hold_user(held)

    async def _approval(self, hold: Hold, decision: Decision) -> None:
        """A held request: wait for the approvers, then forward or refuse it."""
        verdict = await self.enforcer.approval(f"sftp-{hold.op} {hold.path}", decision,
                                               what="file operation")
        refusal: str | None
        match verdict:
            case Gone():
                return
            case Allow():
                refusal = None
            case Deny(message):
                self.session.say(message)
                refusal = f"bastille: {message}"
        try:
            forward, replies = self.tap.release(refusal)
        except ValueError:
            self.session.terminate("unreadable SFTP stream; the session was closed")
            return
        self.relay.to_user(replies)
        if forward:
            self.relay.bytes_in += len(forward)
            self.relay.to_target(forward)
        self._held_check()

    async def aclose(self) -> None:
        self.batch.flush()
        if self.masker is not None:
            self.masker.close()
        self.tap.close()


class InteractivePipe(Pipe):
    """A terminal session through the interactive policy driver.

    Target output is handed to the driver once per event-loop turn (what arrived in it,
    up to :data:`BATCH_BYTES`): a terminal's output comes in small packets (a pty gives
    ~4 KiB per read), and the driver's masking, line tracking and recording cost per
    call. The user sees it one loop turn later (microseconds), in fewer, fuller packets.
    User input first hands over what is gathered, so the driver always sees output and
    keys in the order they arrived.
    """

    kind = "shell"

    def __init__(self, relay: Relay, session: SessionCore, driver: InteractivePolicy) -> None:
        super().__init__(relay)
        self.session = session
        self.driver = driver
        self._out: list[bytes] = []
        self._out_len = 0
        self._scheduled = False

    def from_user(self, data: bytes) -> None:
        self._hand_over()
        self.relay.bytes_in += len(data)
        self.driver.input(data)  # recorded per line (echo-off lines hidden)

    def from_target(self, data: bytes, stream: int) -> None:
        self._out.append(data)
        self._out_len += len(data)
        if self._out_len >= batch_cap(self.relay):
            self._hand_over()
        elif not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._turn_end)

    def _turn_end(self) -> None:
        self._scheduled = False
        self._hand_over()

    def _hand_over(self) -> None:
        """Give the driver the output gathered so far."""
        if not self._out:
            return
        out = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out.clear()
        self._out_len = 0
        self.driver.output(out)
        self.relay.recorded()

    def flush(self) -> None:
        self._hand_over()

    def resize(self, cols: int, rows: int) -> None:
        self._hand_over()
        if self.session.rec is not None:
            self.session.rec.resize(cols, rows)
        self.driver.resize(cols, rows)

    async def aclose(self) -> None:
        self._hand_over()
        await self.driver.aclose()


class MenuPipe(Pipe):
    """``ssh -t USER@BASTION``: the target menu, before any target is attached."""

    kind = "menu"

    def __init__(self, relay: Relay, menu: TargetMenu) -> None:
        super().__init__(relay)
        self.menu = menu
        self.choice: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

    async def choose(self, early: list[bytes], timeout: float) -> str | None:  # noqa: ASYNC109
        """Show the menu and wait for a choice (None: quit, or nothing to choose).

        Raises:
            TimeoutError: no choice within ``timeout`` seconds.
        """
        self.relay.to_user(self.menu.intro())
        if self.menu.result is QUIT:
            return None
        for data in early:  # keys typed ahead
            self.from_user(data)
        self.relay.start_reading()
        return await asyncio.wait_for(self.choice, timeout)

    def from_user(self, data: bytes) -> None:
        self.relay.to_user(self.menu.feed(data))
        result = self.menu.result
        if result is not None:
            self.quit(None if result is QUIT else str(result))

    def from_target(self, data: bytes, stream: int) -> None:
        raise AssertionError("the menu has no target")

    def quit(self, choice: str | None = None) -> None:
        if not self.choice.done():
            self.choice.set_result(choice)


def transfer_done(session: SessionCore, t: Transfer) -> None:
    """A file went through: recorded and audited."""
    if session.rec is not None:
        session.rec.file_transfer(path=t.path, direction=t.direction, size=t.size,
                                  sha256=t.sha256, protocol=t.protocol)
    session.audit(Kind.FILE_TRANSFER, "ok", {
        "path": t.path, "direction": t.direction, "size": t.size, "sha256": t.sha256,
        "protocol": t.protocol})


def file_op(session: SessionCore, op: FileOp) -> None:
    """An SFTP remove/mkdir/rmdir/rename: recorded and audited."""
    detail: dict[str, Any] = {"op": op.op, "path": op.path}
    if session.rec is not None:
        session.rec.event("file_op", {**detail, "new_path": op.new_path})
    if op.new_path:
        detail["new_path"] = op.new_path
    session.audit(Kind.FILE_TRANSFER, "ok", detail)


def is_transfer(command: str | None) -> bool:
    """rsync and legacy scp: file contents, masked as binary (``mask_transfers``)."""
    return (command or "").startswith(("rsync --server", "scp "))


def records_masked(policy: PolicySettings, *, kind: str, command: str | None,
                   has_pty: bool) -> bool:
    """Will :func:`choose_pipe` mask what is recorded of this session (so that the
    recorded output may differ from what the user receives)?"""
    if has_pty and (kind == "shell" or (kind == "exec" and not is_transfer(command))):
        return kind == "shell" or policy.mask_exec
    if kind == "sftp" or is_transfer(command):
        return policy.mask_transfers
    return policy.mask_exec


def choose_pipe(relay: Relay, session: SessionCore, enforcer: Enforcer,
                target: TargetConfig, *, kind: str, command: str | None, has_pty: bool,
                size: tuple[int, int], exec_decision: Decision | None = None) -> Pipe:
    """The one pipe of a session, from what it asked for and the policy settings.

    ``exec_decision``: the policy's decision of the exec command (None: not decided, as
    for the player, or no policy); a PTY exec with one decides the keys that follow.
    The policy engine is the one of this moment: the pipe keeps it for the session.
    """
    services = enforcer.services
    policy = services.config.policy
    maskers = services.maskers
    transfer = is_transfer(command)
    if has_pty and (kind == "shell" or (kind == "exec" and not transfer)):
        # a shell is decided line by line; a PTY exec (`ssh -t host -- python3`) was
        # decided as a whole, and the keys typed into what it started are decided as that
        # program's lines; the player's keys are only recorded per line like a shell's
        shell = kind == "shell"
        engine = services.policy if shell or exec_decision is not None else None
        live = maskers.for_target(target) if shell or policy.mask_exec else None
        rec = session.rec
        mask_keys = maskers.keys_for(target)  # typed secrets are masked in the recording
        ports = Ports(to_target=relay.to_target, to_user=relay.to_user,
                      record_output=(lambda d: rec.output(d, 1)) if rec else _drop,
                      record_input=(lambda keys: rec.input(mask_keys(keys))) if rec else None)
        driver = InteractivePolicy(session, enforcer, ports, live, engine, size,
                                   started=None if shell else exec_decision)
        return InteractivePipe(relay, session, driver)
    record = _recorder_of(session)
    if kind == "sftp":
        masker = RecordMasker(lambda: maskers.for_target(target, binary=True), record,
                              streams=(0, 1, 2)) \
            if policy.mask_transfers and session.rec is not None else None
        return SftpPipe(relay, session, enforcer, services.policy, masker)
    if transfer:
        masker = RecordMasker(lambda: maskers.for_target(target, binary=True), record,
                              streams=(0, 1, 2)) \
            if policy.mask_transfers and session.rec is not None else None
    else:  # stdin too: what a script pipes in is kept masked like what it prints
        masker = RecordMasker(lambda: maskers.for_target(target), record,
                              streams=(0, 1, 2)) if policy.mask_exec else None
    if kind == "scp" and command is not None:
        return ScpPipe(relay, session, command, masker)
    if exec_decision is not None and exec_decision.input_gate and command is not None:
        return GatedExecPipe(relay, session, masker, enforcer, command, exec_decision,
                             maskers.text_for(target))
    return ExecPipe(relay, session, masker)


def _drop(data: bytes) -> None:
    """Nothing records this session (``on_failure = "continue"``)."""


def _recorder_of(session: SessionCore) -> Callable[[bytes, int], None]:
    """Record masked bytes: stream 0 is the user's input, 1/2 stdout/stderr."""
    def record(data: bytes, stream: int) -> None:
        rec = session.rec
        if rec is not None and data:
            if stream == 0:
                rec.input(data)
            else:
                rec.output(data, stream)
    return record


async def run_menu(relay: Relay, core: SessionCore, menu: TargetMenu, early: list[bytes],
                   timeout: float) -> str | None:  # noqa: ASYNC109 - the login timeout
    """Show ``menu`` on ``relay`` until the user chooses (``early``: keys typed before
    it was shown); None when no choice came in ``timeout`` seconds (the user is told)
    or the user quit."""
    relay.pipe = pipe = MenuPipe(relay, menu)
    try:
        return await pipe.choose(early, timeout)
    except TimeoutError:
        core.say("no choice made; bye", fresh_line=True)
        return None
    finally:
        relay.pipe = None
        relay.stop_reading()
