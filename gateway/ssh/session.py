"""One user session channel relayed to one target session channel.

Data path (per chunk, no per-byte Python work beyond what recording and taps need)::

    user --data_received--> [recorder.input] [sftp tap] --write--> target
    target --data_received--> [recorder.output] [sftp tap] --write--> user

Flow control is end to end: when one side's write buffer fills, the other side's reading
is paused (asyncssh ``pause_writing``/``resume_writing`` callbacks); when the recording
backlog passes its bound, reading from the target pauses until the writer catches up.
A recording failure under ``on_failure = "terminate"`` ends the session with a message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import asyncssh

from gateway.audit import AuditEvent, Kind
from gateway.errors import BastilleError, TargetError
from gateway.limits import MAX_TERM_TYPE, clamp_term_size
from gateway.routing import Route, route_request
from gateway.ssh.menu import QUIT, MenuEntry, TargetMenu
from gateway.ssh.policy_relay import ExecMasker, InteractivePolicy, exec_decision
from gateway.transfers import FileOp, Hold, ScpTap, SftpTap, Transfer
from recorder.errors import RecorderError

if TYPE_CHECKING:
    from gateway.ssh.server import ConnContext
    from recorder.service import SessionRecording

log = logging.getLogger("bastille.session")

_FORWARD_ENV = ("LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "LC_NUMERIC", "LC_TIME",
                "LC_COLLATE", "LC_MONETARY", "TZ")


def _say(text: str, tty: bool = True) -> bytes:
    return f"bastille: {text}{chr(13) if tty else ''}\n".encode()


class UpstreamSession(asyncssh.SSHClientSession[bytes]):
    """Target side of a relay: hands everything to the owning :class:`GatewaySession`."""

    def __init__(self, relay: GatewaySession) -> None:
        self._relay = relay

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._relay.from_target(data, datatype)

    def eof_received(self) -> bool:
        self._relay.target_eof()
        return True

    def exit_status_received(self, status: int) -> None:
        self._relay.exit_status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self._relay.exit_signal = (signal, core_dumped, msg, lang)

    def pause_writing(self) -> None:
        self._relay.user_reading(False)

    def resume_writing(self) -> None:
        self._relay.user_reading(True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._relay.target_closed()


class GatewaySession(asyncssh.SSHServerSession[bytes]):
    """User side of a relay; also runs the menu when no target was named."""

    def __init__(self, ctx: ConnContext) -> None:
        self.ctx = ctx
        self.app = ctx.app
        self.chan: asyncssh.SSHServerChannel[bytes] | None = None
        self.kind = "shell"
        self.command: str | None = None
        self.subsystem: str | None = None
        self.term_type = ""
        self.term_size: tuple[int, int, int, int] = (80, 24, 0, 0)
        self.term_modes: Any = {}
        self.has_pty = False
        self.exit_status: int | None = None
        self.exit_signal: tuple[str, bool, str, str] | None = None
        self.session_id = ""
        self.target_name = ""
        self._upstream: asyncssh.SSHClientChannel[bytes] | None = None
        self._rec: SessionRecording | None = None
        self._menu: TargetMenu | None = None
        self._menu_done: asyncio.Future[str | None] | None = None
        self._sftp: SftpTap | None = None
        self._sftp_holding = False  # a request waits for approval: the user is not read
        self._sftp_decision: Any = None
        self._scp: ScpTap | None = None
        self._user_closed = asyncio.Event()
        self._target_done = asyncio.Event()
        self._user_eof = False
        self._user_read_ok = True  # target window has room
        self._target_read_ok = True  # user window has room
        self._rec_ok = True  # recording backlog under its bound
        self._last_activity = time.monotonic()
        self._ending: str | None = None
        self._bytes_in = 0
        self._bytes_out = 0
        self._early: list[tuple[bytes, asyncssh.DataType]] = []
        self._discard_input = False
        self._ipolicy: InteractivePolicy | None = None
        self._exec_decision: Any = None  # the exec command's decision (PTY exec: committed)
        self._x11_allowed = False
        # exec output, or file transfers (both directions): masked for the recording only
        self._rec_masker: ExecMasker | None = None

    # ------------------------------------------------------------ channel requests
    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self.chan = chan
        chan.pause_reading()  # nothing reaches a target before it is chosen and recorded

    def pty_requested(self, term_type: str, term_size: tuple[int, int, int, int],
                      term_modes: Any) -> bool:
        self.has_pty = True
        self.term_type, self.term_modes = term_type[:MAX_TERM_TYPE], term_modes
        self.term_size = clamp_term_size(*term_size)
        return True

    def shell_requested(self) -> bool:
        self.kind = "shell"
        return True

    def exec_requested(self, command: str) -> bool:
        self.kind, self.command = "exec", command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        if subsystem != "sftp":
            self.app.audit(AuditEvent(Kind.REFUSED, "denied", user=self.ctx.user.name,
                                      source=self.ctx.source,
                                      detail={"channel": f"subsystem:{subsystem}"}))
            return False
        self.kind, self.subsystem = "sftp", subsystem
        return True

    def session_started(self) -> None:
        self.app.spawn(self._run(), f"session {self.ctx.user.name}")

    # ------------------------------------------------------------ user -> target
    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._last_activity = time.monotonic()
        if self._discard_input:
            return
        if self._menu is not None:
            self._menu_input(data)
            return
        up = self._upstream
        if up is None:
            # early bytes (sent with the request); bounded by the SSH channel window
            self._early.append((data, datatype))
            return
        rec = self._rec
        if self._ipolicy is not None:
            self._bytes_in += len(data)
            self._ipolicy.user_input(data)  # recorded per line (echo-off lines hidden)
            return
        if self._rec_masker is not None and self._rec_masker.masks_input:
            self._rec_masker.output(data, 0)
            self._check_congestion()  # uploads: pause the user when the recorder lags
        elif rec is not None:
            rec.input(data)
            self._check_congestion()  # uploads: pause the user when the recorder lags
        if self._sftp is not None:
            try:
                data, replies = self._sftp.filter_client(data)
            except ValueError:
                self._end_user("unreadable SFTP stream; the session was closed")
                return
            if replies:
                self._to_user(replies)
            if self._sftp.held is not None:
                self._sftp_held_check()
            if not data:
                return
        elif self._scp is not None and self._scp.direction == "upload":
            self._scp.feed(data)
        self._bytes_in += len(data)
        up.write(data, datatype)

    def eof_received(self) -> bool:
        self._user_eof = True
        if self._upstream is not None:
            self._upstream.write_eof()
        elif self._menu_done is not None and not self._menu_done.done():
            self._menu_done.set_result(None)
        return True

    def terminal_size_changed(self, width: int, height: int, pixwidth: int,
                              pixheight: int) -> None:
        self.term_size = clamp_term_size(width, height, pixwidth, pixheight)
        width, height, pixwidth, pixheight = self.term_size
        if self._rec is not None:
            self._rec.resize(width, height)
        if self._ipolicy is not None:
            self._ipolicy.resize(width, height)
        if self._upstream is not None:
            self._upstream.change_terminal_size(width, height, pixwidth, pixheight)

    def signal_received(self, signal: str) -> None:
        if self._upstream is not None:
            self._upstream.send_signal(signal)

    def break_received(self, msec: int) -> bool:
        if self._upstream is not None:
            self._upstream.send_break(msec)
            return True
        return False

    def pause_writing(self) -> None:  # user window full: stop reading the target
        self._target_read_ok = False
        self._update_target_reading()

    def resume_writing(self) -> None:
        self._target_read_ok = True
        self._update_target_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._user_closed.set()
        if self._menu_done is not None and not self._menu_done.done():
            self._menu_done.set_result(None)

    # ------------------------------------------------------------ target -> user
    def from_target(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._last_activity = time.monotonic()
        self._bytes_out += len(data)
        if self._ipolicy is not None:
            self._ipolicy.output(data)
            self._check_congestion()
            return
        rec = self._rec
        stream = 2 if datatype == asyncssh.EXTENDED_DATA_STDERR else 1
        if self._rec_masker is not None:
            self._rec_masker.output(data, stream)
            self._check_congestion()
        elif rec is not None:
            rec.output(data, stream)
            self._check_congestion()
        if self._sftp is not None:
            self._sftp.from_server(data)
        elif self._scp is not None and self._scp.direction == "download":
            self._scp.feed(data)
        chan = self.chan
        if chan is not None and not self._user_closed.is_set():
            try:
                chan.write(data, datatype)
            except (BrokenPipeError, ConnectionError):
                self._user_closed.set()

    def _check_congestion(self) -> None:
        rec = self._rec
        if rec is not None and rec.congested and self._rec_ok:
            self._rec_ok = False
            self._update_target_reading()
            self.app.spawn(self._await_recorder(rec), "recorder backpressure")

    def _to_user(self, data: bytes) -> None:
        chan = self.chan
        if data and chan is not None and not self._user_closed.is_set():
            try:
                chan.write(data)
            except (BrokenPipeError, ConnectionError):
                self._user_closed.set()

    def _to_target(self, data: bytes) -> None:
        if self._upstream is not None and data:
            self._upstream.write(data)

    def _record_stream(self, data: bytes, stream: int) -> None:
        """Record masked bytes: stream 0 is the user's input, 1/2 stdout/stderr."""
        if self._rec is not None and data:
            if stream == 0:
                self._rec.input(data)
            else:
                self._rec.output(data, stream)

    def _record_input(self, data: bytes) -> None:
        if self._rec is not None and data:
            self._rec.input(data)

    def _record_output(self, data: bytes) -> None:
        if self._rec is not None and data:
            self._rec.output(data, 1)

    async def _await_recorder(self, rec: SessionRecording) -> None:
        await rec.wait_writable()
        self._rec_ok = True
        self._update_target_reading()

    def target_eof(self) -> None:
        if self.chan is not None and not self._user_closed.is_set():
            try:
                self.chan.write_eof()
            except (BrokenPipeError, ConnectionError):
                pass

    def target_closed(self) -> None:
        self._target_done.set()

    def user_reading(self, ok: bool) -> None:
        if self.chan is None or self._user_closed.is_set():
            return
        self._user_read_ok = ok
        if ok and self._rec_ok and not self._sftp_holding:
            self.chan.resume_reading()
        elif not self._discard_input:
            self.chan.pause_reading()

    def _update_target_reading(self) -> None:
        up = self._upstream
        if up is None:
            return
        if self._target_read_ok and self._rec_ok:
            up.resume_reading()
        else:
            up.pause_reading()
        chan = self.chan
        if chan is not None and not self._user_closed.is_set() and not self._discard_input:
            if self._user_read_ok and self._rec_ok and not self._sftp_holding:
                chan.resume_reading()
            else:
                chan.pause_reading()

    # ------------------------------------------------------------ lifecycle
    def _write_user(self, data: bytes, stderr: bool = False) -> None:
        if self.chan is None or self._user_closed.is_set():
            return
        try:
            self.chan.write(data, asyncssh.EXTENDED_DATA_STDERR if stderr and not self.has_pty
                            else None)
        except (BrokenPipeError, ConnectionError):
            pass

    def _fail(self, message: str, status: int = 1) -> None:
        self._write_user(_say(message, self.has_pty), stderr=True)
        self._exit_user(status)

    def _exit_user(self, status: int) -> None:
        chan = self.chan
        if chan is None or self._user_closed.is_set():
            return
        self._menu = None
        # a paused channel holds its close until buffered input is delivered: drain it
        # (input after the end is dropped, since no target is attached any more)
        self._discard_input = True
        chan.resume_reading()
        try:
            chan.exit(status)
        except (BrokenPipeError, ConnectionError, OSError):
            pass

    async def _run(self) -> None:
        try:
            await self._run_inner()
        except asyncio.CancelledError:
            self._end_user("the bastion is shutting down")
            raise
        except Exception:
            log.exception("session of %s failed", self.ctx.user.name)
            self._fail("internal error; the session was closed")
        finally:
            await self._finish()

    async def _run_inner(self) -> None:
        assert self.chan is not None
        route = route_request(self.ctx.login, self.command if self.kind == "exec" else None)
        if route.builtin == "player":
            target_or_none = self._player_route()
            if target_or_none is None:
                return
            player_target, route = target_or_none
        elif route.builtin is not None:
            text = self.app.builtin(route, self.ctx)
            eol = "\r\n" if self.has_pty else "\n"
            self._write_user((text.replace("\n", eol) + eol).encode())
            self._exit_user(1 if text.startswith("bastille:") else 0)
            return
        if route.target is None:
            if self.kind != "shell" or not self.has_pty:
                self._fail("name a target: ssh -t USER@BASTION TARGET "
                           "(or USER+TARGET@BASTION); 'ssh USER@BASTION help' lists them", 2)
                return
            chosen = await self._run_menu()
            if chosen is None:
                self._exit_user(0)
                return
            route = Route(target=chosen, command=None)
        try:
            target = player_target if route.builtin == "player" else \
                self.app.authorize(self.ctx, route.target or "")
        except BastilleError as exc:
            self._fail(str(exc), 1)
            return
        self.target_name = target.name
        if route.builtin == "player":
            pass
        elif route.command is None and self.kind == "exec":
            self.kind = "shell"  # `ssh -t alice@bastion web1`: the exec string named the target
        if route.command is not None:
            self.kind = "exec"
            if self.command is not None and self.ctx.login.target is not None:
                if route.command.startswith("scp "):
                    self.kind = "scp"
                    self._scp = ScpTap(route.command, self._on_transfer)
        if self.subsystem == "sftp":
            gate = self._sftp_gate if self.app.policy_engine is not None else None
            self._sftp = SftpTap(self._on_transfer, self._on_file_op, gate)
        if not await self._start_recording(route):
            return
        if route.command is not None and not await self._exec_allowed(route.command):
            return
        self._x11_allowed = target.allow_x11_forwarding.allows(self.ctx.user.name,
                                                               self.ctx.user.groups)
        agent = self.chan.get_agent_path()
        if agent is not None and not target.allow_agent_forwarding.allows(
                self.ctx.user.name, self.ctx.user.groups):
            self.app.audit(self.audit_event(Kind.REFUSED, "denied",
                                            {"channel": "agent-forwarding"}))
            self._write_user(_say(f"agent forwarding is not allowed on {target.name}; "
                                  "continuing without it", self.has_pty), stderr=True)
            agent = None
        elif agent is not None:
            self.app.audit(self.audit_event(Kind.FORWARD, "ok", {"channel": "agent-forwarding"}))
        try:
            conn = await self.app.upstream(self.ctx, target, agent)
        except TargetError as exc:
            if self._rec is not None:
                self._rec.marker(f"target connection failed: {exc}")
            self._fail(str(exc), 1)
            return
        await self._open_upstream(conn, route)
        if self._upstream is None:
            return
        transfer = (route.command or "").startswith(("rsync --server", "scp "))
        if self.has_pty and self.kind == "shell":
            self._ipolicy = InteractivePolicy(
                self, self.app.masker_for(target), self._to_target, self._to_user,
                self._record_output, decide=self.app.policy_engine is not None,
                record_input=self._record_input)
        elif self.has_pty and self.kind == "exec" and not transfer:
            # `ssh -t host -- sudo x`: the command was decided above; keys are recorded
            # per line like a shell's, so a password typed without echo is stored as `*`
            masker = self.app.masker_for(target) if self.app.config.policy.mask_exec else None
            self._ipolicy = InteractivePolicy(
                self, masker, self._to_target, self._to_user, self._record_output,
                decide=self.app.policy_engine is not None, record_input=self._record_input)
            if self._ipolicy.policy is not None and self._exec_decision is not None:
                # the keys that follow go to what the command started (a REPL, an editor)
                self._ipolicy.policy.commit(self._exec_decision, approved=True)
        elif self.kind == "exec" and not transfer and self.app.config.policy.mask_exec:
            # no PTY: secrets are masked in what is recorded; the user gets exact bytes
            self._rec_masker = ExecMasker(lambda: self.app.masker_for(target),
                                          self._record_stream)
        elif self.app.config.policy.mask_transfers and self._rec is not None and (
                self.kind == "sftp" or transfer):
            # file contents: masked in the recording (same length), exact for the user
            self._rec_masker = ExecMasker(
                lambda: self.app.masker_for(target, binary=True), self._record_stream,
                streams=(0, 1, 2))
        # keys typed ahead (before the target was ready) take the same policy path
        early, self._early = self._early, []
        for data, datatype in early:
            self.data_received(data, datatype)
        if self._user_eof:
            self._upstream.write_eof()
        self.chan.resume_reading()
        async with asyncio.TaskGroup() as tg:
            watchdog = tg.create_task(self._watchdog())
            waiter = tg.create_task(self._wait_end())
            await waiter
            watchdog.cancel()

    def _player_route(self) -> tuple[Any, Route] | None:
        """`ssh -t auditor@bastion player`: the player TUI, for approvers/auditors only."""
        user = self.ctx.user
        if not self.app.config.approvals.approvers.allows(user.name, user.groups):
            self._fail(f"{user.name} may not use the player (auditors are the configured "
                       "approvers)", 1)
            return None
        if not self.has_pty:
            self._fail("the player needs a terminal: ssh -t USER@BASTION player", 2)
            return None
        target, command = self.app.player_target(user.name)
        self.kind = "player"
        return target, Route(target=target.name, command=command, builtin="player")

    async def _exec_allowed(self, command: str) -> bool:
        engine = self.app.policy_engine
        if engine is None:
            return True
        decision = exec_decision(engine, command, user=self.ctx.user.name,
                                 groups=self.ctx.user.groups, target=self.target_name,
                                 pty=self.has_pty)
        self._exec_decision = decision
        self.record_decision(command, decision, source="exec", record_command=False)
        if decision.action == "allow":
            return True
        if decision.action == "deny":
            self._fail(f"denied by policy: {decision.reason}", 1)
            return False
        result = await self._await_approval(command, decision)
        if result is None:
            return False
        if result.status == "approved":
            return True
        self._fail(f"request #{result.id} {result.status}; the command was not run", 1)
        return False

    async def _await_approval(self, command: str, decision: Any) -> Any:
        """Ask the approvers about ``command``; the final request, or None when the user
        went away first (the request is then cancelled)."""
        store = self.app.approvals
        request = store.create(user=self.ctx.user.name, target=self.target_name,
                               session=self.session_id, command=command, rule=decision.rule,
                               reason=decision.reason, timeout=self.app.config.approvals.timeout)
        self.app.notify_approvers(request)
        minutes = max(1, round(self.app.config.approvals.timeout / 60))
        self._write_user(_say(f"{decision.reason}", self.has_pty) + _say(
            f"waiting for approval #{request.id} (expires in {minutes}m)", self.has_pty),
            stderr=True)
        waiter = asyncio.ensure_future(store.wait(request.id))
        closed = asyncio.ensure_future(self._user_closed.wait())
        gone = True
        try:
            await asyncio.wait({waiter, closed}, return_when=asyncio.FIRST_COMPLETED)
            gone = not waiter.done()
        finally:
            closed.cancel()
            if not waiter.done():  # cancelled() stays False until the loop runs again
                waiter.cancel()
                store.cancel(request.id, "the user disconnected")
        if gone or waiter.cancelled():
            return None
        result = waiter.result()
        self.record_approval(result)
        if result.status == "approved":
            self._write_user(_say(f"approved by {result.decided_by}", self.has_pty),
                             stderr=True)
        return result

    async def _sftp_approval(self, hold: Hold, decision: Any) -> None:
        """A held SFTP request: wait for the approvers, then forward or refuse it."""
        assert self._sftp is not None
        result = await self._await_approval(f"sftp-{hold.op} {hold.path}", decision)
        if result is None:
            return
        if result.status == "approved":
            refusal = None
        else:
            refusal = f"bastille: request #{result.id} {result.status}"
            self._write_user(_say(f"{refusal}; the file operation was not run", False),
                             stderr=True)
        try:
            forward, replies = self._sftp.release(refusal)
        except ValueError:
            self._end_user("unreadable SFTP stream; the session was closed")
            return
        self._to_user(replies)
        if forward:
            self._bytes_in += len(forward)
            self._to_target(forward)
        self._sftp_held_check()

    def _sftp_held_check(self) -> None:
        """Start waiting for approval if the SFTP tap holds a request; read from the user
        only while it holds none."""
        tap = self._sftp
        held = tap is not None and tap.held is not None
        if held and not self._sftp_holding:
            assert tap is not None and tap.held is not None
            self.app.spawn(self._sftp_approval(tap.held, self._sftp_decision),
                           "sftp approval")
        if held != self._sftp_holding:
            self._sftp_holding = held
            self._update_target_reading()

    def _sftp_gate(self, op: str, path: str) -> str | Hold | None:
        engine = self.app.policy_engine
        assert engine is not None
        decision = engine.decide_path(op, path, user=self.ctx.user.name,
                                      groups=sorted(self.ctx.user.groups),
                                      target=self.target_name)
        if decision.action == "allow":
            return None
        self.record_decision(f"sftp-{op} {path}", decision, source="sftp", record_command=False)
        if decision.action == "approve":
            self._sftp_decision = decision
            return Hold(op, path)
        return f"bastille: denied by policy: {decision.reason}"

    def record_decision(self, text: str, decision: Any, *, source: str,
                        record_command: bool = True) -> None:
        """Record and audit one decided command line."""
        rec = self._rec
        if rec is not None and record_command:
            rec.command(text, source=source)
        action = str(decision.action)
        if rec is not None and (action != "allow" or decision.rule):
            rec.policy(command=text, action=action, rule=decision.rule, reason=decision.reason)
        if action == "allow":
            if source == "interactive":
                self.app.audit(self.audit_event(Kind.COMMAND, "ok", {"command": text}))
        else:
            self.app.audit(self.audit_event(Kind.POLICY, action, {
                "command": text, "rule": decision.rule, "reason": decision.reason,
                "source": source}))

    def record_approval(self, request: Any) -> None:
        if self._rec is not None:
            self._rec.approval(request_id=str(request.id), command=request.command,
                               decision=request.status, approver=request.decided_by,
                               reason=request.decision_reason or "")
        self.app.audit(self.audit_event(Kind.APPROVAL, request.status, {
            "request": request.id, "command": request.command,
            "approver": request.decided_by, "reason": request.decision_reason}))

    async def _run_menu(self) -> str | None:
        assert self.chan is not None
        entries = [MenuEntry(t.name, t.description)
                   for t in self.app.config.targets_for(self.ctx.user)]
        self._menu = TargetMenu(self.ctx.user.name, entries)
        self._menu_done = asyncio.get_running_loop().create_future()
        self._write_user(self._menu.intro())
        if self._menu.result is QUIT:
            self._menu = None
            return None
        self.chan.resume_reading()
        try:
            return await asyncio.wait_for(self._menu_done, self.app.config.gateway.login_timeout)
        except TimeoutError:
            self._write_user(b"\r\n" + _say("no choice made; bye"))
            return None
        finally:
            self._menu = None
            if not self._user_closed.is_set():
                self.chan.pause_reading()

    def _menu_input(self, data: bytes) -> None:
        assert self._menu is not None and self._menu_done is not None
        self._write_user(self._menu.feed(data))
        result = self._menu.result
        if result is not None and not self._menu_done.done():
            self._menu_done.set_result(None if result is QUIT else str(result))

    async def _start_recording(self, route: Route) -> bool:
        """Open the recording; False if the session must not run (fail closed)."""
        from recorder.service import SessionHeader

        self.session_id = self.app.recorder.new_session_id()
        header = SessionHeader(
            session_id=self.session_id, user=self.ctx.user.name, target=self.target_name,
            protocol="ssh", kind=self.kind, client_addr=self.ctx.source,
            start_time=time.time(), cols=self.term_size[0], rows=self.term_size[1],
            term=self.term_type, command=route.command if self.kind != "sftp" else "sftp",
            gateway_version=self.app.version,
        )
        try:
            self._rec = await self.app.recorder.open_session(header)
        except RecorderError as exc:
            log.error("recording cannot start for %s: %s", self.ctx.user.name, exc)
            self.app.audit(self.audit_event(Kind.RECORDING, "failed", {"error": str(exc)}))
            self._rec = None
            if self.app.config.recording.on_failure == "terminate":
                self._fail("this session cannot be recorded, so it was not started; "
                           "tell an administrator", 1)
                return False
            self.app.audit(self.audit_event(Kind.SESSION_START, "unrecorded", {
                "kind": self.kind, **({"command": route.command} if route.command else {})}))
            return True
        self._rec.add_failure_callback(self._on_recording_failed)
        self.app.sessions[self.session_id] = self
        self.app.audit(self.audit_event(Kind.SESSION_START, "ok", {
            "kind": self.kind, **({"command": route.command} if route.command else {}),
            **({"term": self.term_type} if self.has_pty else {})}))
        if route.command is not None:
            self._rec.command(route.command, source="exec")
            self.app.audit(self.audit_event(Kind.EXEC, "ok", {"command": route.command}))
        return True

    async def _open_upstream(self, conn: asyncssh.SSHClientConnection, route: Route) -> None:
        assert self.chan is not None
        env = {k: v for k, v in self.chan.get_environment().items() if k in _FORWARD_ENV}
        kwargs: dict[str, Any] = {"encoding": None, "env": env}
        display = self.chan.get_x11_display()
        if display is not None:
            if self._x11_allowed:
                kwargs.update(x11_forwarding=True, x11_display=display,
                              x11_auth_path=str(self.app.x11_auth_path))
                self.app.audit(self.audit_event(Kind.FORWARD, "ok", {"channel": "x11"}))
            else:
                self.app.audit(self.audit_event(Kind.REFUSED, "denied", {"channel": "x11"}))
                self._write_user(_say(f"X11 forwarding is not allowed on {self.target_name}; "
                                      "continuing without it", self.has_pty), stderr=True)
        if self.has_pty:
            kwargs.update(request_pty="force", term_type=self.term_type or "xterm",
                          term_size=self.term_size, term_modes=self.term_modes)
        else:
            kwargs["request_pty"] = False
        try:
            if self.subsystem is not None:
                chan, _ = await conn.create_session(lambda: UpstreamSession(self),
                                                    subsystem=self.subsystem, **kwargs)
            else:
                chan, _ = await conn.create_session(lambda: UpstreamSession(self),
                                                    route.command, **kwargs)
        except (asyncssh.ChannelOpenError, asyncssh.Error, OSError) as exc:
            reason = getattr(exc, "reason", "") or str(exc) or type(exc).__name__
            self._fail(f"target {self.target_name} refused the session: {reason}", 1)
            return
        self._upstream = chan
        self.app.audit(self.audit_event(Kind.TARGET_CONNECT, "ok", {}))

    async def _wait_end(self) -> None:
        user = asyncio.ensure_future(self._user_closed.wait())
        target = asyncio.ensure_future(self._target_done.wait())
        try:
            await asyncio.wait({user, target}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            user.cancel()
            target.cancel()
        if self._target_done.is_set():
            self._end_user(None)
        elif self._upstream is not None:
            self._upstream.close()

    async def _watchdog(self) -> None:
        gw = self.app.config.gateway
        started = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            if self._ending is not None:
                self._end_user(self._ending)
                return
            if gw.max_session and now - started > gw.max_session:
                self._end_user("maximum session length reached")
                return
            if gw.idle_timeout and now - self._last_activity > gw.idle_timeout:
                self._end_user("idle timeout")
                return

    def _on_recording_failed(self, exc: RecorderError) -> None:
        self.app.audit(self.audit_event(Kind.RECORDING, "failed", {"error": str(exc)}))
        if self.app.config.recording.on_failure == "terminate":
            self._end_user("recording failed, so the session was terminated")

    def terminate(self, reason: str) -> None:
        """End the session from outside (shutdown, an auditor's kill)."""
        self._end_user(reason)

    def _end_user(self, reason: str | None) -> None:
        if reason is not None:
            self._ending = reason
            self._write_user((b"\r\n" if self.has_pty else b"") + _say(reason, self.has_pty),
                             stderr=True)
            if self._rec is not None:
                self._rec.marker(f"session ended: {reason}")
        if self._upstream is not None and reason is not None:
            self._upstream.close()
        chan = self.chan
        if chan is None or self._user_closed.is_set():
            return
        if reason is None and self.exit_signal is not None:
            sig, core, msg, lang = self.exit_signal
            self._discard_input = True
            chan.resume_reading()
            try:
                chan.exit_with_signal(sig, core, msg, lang)
            except (BrokenPipeError, ConnectionError, OSError):
                pass
        elif reason is None and self.exit_status is None:
            self._write_user(_say(f"target {self.target_name} closed the session without an "
                                  "exit status", self.has_pty), stderr=True)
            self._exit_user(255)
        elif reason is None:
            self._exit_user(self.exit_status if self.exit_status is not None else 0)
        else:
            self._exit_user(255)

    async def _finish(self) -> None:
        self.app.sessions.pop(self.session_id, None)
        if self._ipolicy is not None:
            await self._ipolicy.aclose()
        if self._rec_masker is not None:
            self._rec_masker.close()
        if self._sftp is not None:
            self._sftp.close()
        if self._upstream is not None:
            self._upstream.close()
        if self._rec is not None:
            signal = self.exit_signal[0] if self.exit_signal else None
            try:
                await self._rec.close(exit_status=self.exit_status, exit_signal=signal)
            except RecorderError as exc:
                self.app.audit(self.audit_event(Kind.RECORDING, "failed", {"error": str(exc)}))
            self.app.audit(self.audit_event(Kind.SESSION_END, "ok", {
                "exit_status": self.exit_status, "exit_signal": signal,
                "bytes_in": self._bytes_in, "bytes_out": self._bytes_out,
                **({"reason": self._ending} if self._ending else {})}))

    # ------------------------------------------------------------ transfers
    def _on_transfer(self, t: Transfer) -> None:
        if self._rec is not None:
            self._rec.file_transfer(path=t.path, direction=t.direction, size=t.size,
                                    sha256=t.sha256, protocol=t.protocol)
        self.app.audit(self.audit_event(Kind.FILE_TRANSFER, "ok", {
            "path": t.path, "direction": t.direction, "size": t.size, "sha256": t.sha256,
            "protocol": t.protocol}))

    def _on_file_op(self, op: FileOp) -> None:
        if self._rec is not None:
            self._rec.event("file_op", {"op": op.op, "path": op.path, "new_path": op.new_path})
        self.app.audit(self.audit_event(Kind.FILE_TRANSFER, "ok", {
            "op": op.op, "path": op.path, **({"new_path": op.new_path} if op.new_path else {})}))

    def audit_event(self, kind: Kind, outcome: str, detail: dict[str, Any]) -> AuditEvent:
        return AuditEvent(kind, outcome, user=self.ctx.user.name, source=self.ctx.source,
                          target=self.target_name, session=self.session_id, detail=detail)
