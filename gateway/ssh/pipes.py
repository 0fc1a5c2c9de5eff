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
:class:`ScpPipe`              legacy ``scp -t``/``-f`` (an :class:`ExecPipe` that also
                              reports each file transferred)
:class:`SftpPipe`             the SFTP subsystem: every file request decided by the
                              policy; one that needs approval holds the stream
:class:`MenuPipe`             ``ssh -t USER@BASTION`` before a target is chosen
============================  ===================================================

Per chunk a pipe does only its own work: there is no kind switch and no optional part
checked on every chunk. Pipes write through the :class:`gateway.ssh.relay.Relay` and
record through the session's :class:`gateway.core.session.SessionCore`.
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
from gateway.policy import Decision, PolicyEngine
from gateway.ssh.menu import QUIT, TargetMenu
from gateway.ssh.relay import STDERR, Relay
from gateway.ssh.transfers import FileOp, Hold, ScpTap, SftpTap, Transfer


class Pipe:
    """Base: the session's bytes in both directions (subclasses decide what happens)."""

    kind = ""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def from_user(self, data: bytes) -> None:
        raise NotImplementedError

    def from_target(self, data: bytes, stream: int) -> None:
        raise NotImplementedError

    def resize(self, cols: int, rows: int) -> None:
        """The user's terminal changed size."""

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

    def from_user(self, data: bytes) -> None:
        rec = self.session.rec
        if self.masker is not None and self.masker.masks_input:
            self.masker.feed(data, 0)
        elif rec is not None:
            rec.input(data)
        self.relay.recorded()  # uploads: pause the user when the recorder lags
        self.relay.bytes_in += len(data)
        self.relay.to_target(data)

    def from_target(self, data: bytes, stream: int) -> None:
        self.record_output(data, stream)
        self.relay.to_user(data, STDERR if stream == 2 else None)

    def record_output(self, data: bytes, stream: int) -> None:
        rec = self.session.rec
        if self.masker is not None:
            self.masker.feed(data, stream)
        elif rec is not None:
            rec.output(data, stream)
        self.relay.recorded()

    def resize(self, cols: int, rows: int) -> None:
        if self.session.rec is not None:
            self.session.rec.resize(cols, rows)

    async def aclose(self) -> None:
        if self.masker is not None:
            self.masker.close()


class ScpPipe(ExecPipe):
    """Legacy scp: an exec whose file contents are reported as transfers."""

    kind = "scp"

    def __init__(self, relay: Relay, session: SessionCore, command: str,
                 masker: RecordMasker | None = None) -> None:
        super().__init__(relay, session, masker)
        self.tap = ScpTap(command, lambda t: transfer_done(session, t))

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
        self.tap = SftpTap(lambda t: transfer_done(session, t), lambda op: file_op(session, op),
                           self._gate if engine is not None else None)
        self._holding = False  # a request waits for approval: the user is not read
        self._decision: Decision | None = None

    def _record(self, data: bytes, stream: int) -> None:
        rec = self.session.rec
        if self.masker is not None:
            self.masker.feed(data, stream)
        elif rec is not None:
            if stream == 0:
                rec.input(data)
            else:
                rec.output(data, stream)
        self.relay.recorded()

    def from_user(self, data: bytes) -> None:
        self._record(data, 0)
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
        self._record(data, stream)
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
        if self.masker is not None:
            self.masker.close()
        self.tap.close()


class InteractivePipe(Pipe):
    """A terminal session through the interactive policy driver."""

    kind = "shell"

    def __init__(self, relay: Relay, session: SessionCore, driver: InteractivePolicy) -> None:
        super().__init__(relay)
        self.session = session
        self.driver = driver

    def from_user(self, data: bytes) -> None:
        self.relay.bytes_in += len(data)
        self.driver.input(data)  # recorded per line (echo-off lines hidden)

    def from_target(self, data: bytes, stream: int) -> None:
        self.driver.output(data)
        self.relay.recorded()

    def resize(self, cols: int, rows: int) -> None:
        if self.session.rec is not None:
            self.session.rec.resize(cols, rows)
        self.driver.resize(cols, rows)

    async def aclose(self) -> None:
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
