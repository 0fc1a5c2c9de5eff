"""One user session channel relayed to one target session channel: :class:`SshSession`.

The asyncssh side of a session: it takes the channel's requests (pty, shell, exec,
subsystem, window changes, signals), routes the session (a built-in command, the menu,
the player or a target), admits it (access check, recording opened fail-closed, the
exec command decided), connects to the target and then hands the bytes to one
:class:`gateway.ssh.pipes.Pipe`. The protocol-free half of the session (recording,
audit, messages, ``sessions kill``) is its :class:`gateway.core.session.SessionCore`;
the channels and flow control are its :class:`gateway.ssh.relay.Relay`.

Data path::

    user --data_received--> Relay --> Pipe (record, decide, tap) --> target
    target --UpstreamSession--> Relay --> Pipe (mask, record, tap) --> user
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import asyncssh

from gateway.audit import Kind
from gateway.config import TargetConfig
from gateway.core.enforce import Allow, Deny, Enforcer, Gone, too_long
from gateway.core.session import SessionCore
from gateway.errors import TargetError
from gateway.limits import (
    MAX_EXEC_COMMAND,
    MAX_SUBSYSTEM_NAME,
    MAX_TARGET_NAME,
    MAX_TERM_TYPE,
    clamp_term_size,
    cut,
)
from gateway.policy import Decision
from gateway.ssh.bounded_env import bound_environment
from gateway.ssh.context import ConnContext
from gateway.ssh.menu import MenuEntry, TargetMenu
from gateway.ssh.pipes import MenuPipe, choose_pipe, records_masked, run_menu
from gateway.ssh.player import player_refusal, player_route
from gateway.ssh.relay import Relay, watch_limits
from gateway.ssh.routing import Route, route_request, session_kind, valid_target_name
from gateway.ssh.target_leg import TargetLeg

log = logging.getLogger("bastille.session")


class SshSession(asyncssh.SSHServerSession[bytes]):
    """The user side of a relay; also runs the menu when no target was named."""

    def __init__(self, ctx: ConnContext) -> None:
        self.ctx = ctx
        self.services = ctx.services
        self.core = SessionCore(ctx.services, ctx.principal, ctx.source, protocol="ssh")
        self.core.can_throttle = True  # the relay pauses the target (recording budgets)
        self.enforcer = Enforcer(self.core, ctx.services)
        self.relay: Relay | None = None
        self.kind = "shell"
        self.command: str | None = None
        self.subsystem: str | None = None
        self.term_type = ""
        self.term_size: tuple[int, int, int, int] = (80, 24, 0, 0)
        self.term_modes: Any = {}
        self.has_pty = False
        self._early: list[bytes] = []
        self._user_eof = False
        self._refusal: str | None = None  # a request out of bounds: told, never run
        self._started = False
        self._counted = False  # counted in the user's running sessions
        self._exec_decision: Decision | None = None  # the exec command's, if decided

    # ------------------------------------------------------------ channel requests
    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        chan.pause_reading()  # nothing reaches a target before it is chosen and recorded
        bound_environment(chan)
        self.relay = Relay(chan, self.has_pty, clock=self.services.clock,
                           spawn=self.services.spawn)

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
        if len(command.encode("utf-8", "surrogateescape")) > MAX_EXEC_COMMAND:
            self.command = cut(command, 64)
            self._refusal = f"the command is longer than {MAX_EXEC_COMMAND} bytes; not run"
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        if subsystem != "sftp":
            name = cut(subsystem, MAX_SUBSYSTEM_NAME)
            self.ctx.audit(Kind.REFUSED, "denied", detail={"channel": f"subsystem:{name}"})
            return False
        self.kind, self.subsystem = "sftp", subsystem
        return True

    def session_started(self) -> None:
        assert self.relay is not None
        self.relay.has_pty = self.has_pty
        self.core.port = self.relay
        self.core.on_terminate(self.end)
        self._started = True
        self.services.spawn(self._run(), f"session {self.ctx.principal.name}")

    # ------------------------------------------------------------ channel events
    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        relay = self.relay
        assert relay is not None
        if relay.pipe is None and not relay.discarding:
            self._early.append(data)  # sent with the request; bounded by the SSH window
            return
        relay.from_user(data)

    def eof_received(self) -> bool:
        self._user_eof = True
        relay = self.relay
        if relay is not None and relay.upstream is not None:
            if relay.pipe is None or relay.pipe.user_eof():
                relay.upstream.write_eof()
        elif relay is not None and isinstance(relay.pipe, MenuPipe):
            relay.pipe.quit()
        return True

    def terminal_size_changed(self, width: int, height: int, pixwidth: int,
                              pixheight: int) -> None:
        self.term_size = clamp_term_size(width, height, pixwidth, pixheight)
        width, height, pixwidth, pixheight = self.term_size
        relay = self.relay
        if relay is not None and relay.pipe is not None:
            relay.pipe.resize(width, height)
        if relay is not None and relay.upstream is not None:
            relay.upstream.change_terminal_size(width, height, pixwidth, pixheight)

    def signal_received(self, signal: str) -> None:
        if self.relay is not None and self.relay.upstream is not None:
            self.relay.upstream.send_signal(signal)

    def break_received(self, msec: int) -> bool:
        if self.relay is not None and self.relay.upstream is not None:
            self.relay.upstream.send_break(msec)
            return True
        return False

    def pause_writing(self) -> None:  # the user's window is full: stop reading the target
        if self.relay is not None:
            self.relay.set_target_reading(False)

    def resume_writing(self) -> None:
        if self.relay is not None:
            self.relay.set_target_reading(True)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.relay is not None:
            self.relay.user_closed.set()
            if isinstance(self.relay.pipe, MenuPipe):
                self.relay.pipe.quit()
        self.core.gone.set()
        if not self._started:  # never started: nothing else forgets it
            self.ctx.sessions.discard(self)

    # ------------------------------------------------------------ the session
    def fail(self, message: str, status: int = 1) -> None:
        """Tell the user why and end the channel with ``status``."""
        assert self.relay is not None
        self.core.say(message)
        self.relay.exit_user(status)

    def end(self, reason: str | None) -> None:
        """End the session: the target's exit status (``reason`` None), or a reason the
        user is told (shutdown, kill, limits, recording failure)."""
        relay = self.relay
        if relay is None or relay.exited or self.core.ending is not None:
            return  # already ended
        if reason is not None:
            self.core.ending = reason
            self.core.say(reason, fresh_line=True)
            self.core.mark(f"session ended: {reason}")
        elif relay.exit_signal is None and relay.exit_status is None \
                and not relay.user_closed.is_set():
            self.core.say(f"target {self.core.target} closed the session without an exit "
                          "status")
        relay.end(reason)

    async def _run(self) -> None:
        try:
            await self._serve()
        except asyncio.CancelledError:
            self.end("the bastion is shutting down")
            raise
        except Exception:
            log.exception("session of %s failed", self.ctx.principal.name)
            self.fail("internal error; the session was closed")
        finally:
            await self._finish()

    async def _serve(self) -> None:
        relay = self.relay
        assert relay is not None
        if self._refusal is not None:
            self.ctx.audit(Kind.REFUSED, "denied", target=self.ctx.login.target or "",
                           detail={"reason": self._refusal,
                                   "command": self.core.mask(self.command or "")})
            self.fail(self._refusal, 1)
            return
        route = route_request(self.ctx.login, self.command if self.kind == "exec" else None)
        if route.builtin is not None and route.builtin != "player":
            text = self.services.commands.run(route.builtin, self.ctx.principal,
                                              route.builtin_args, self.ctx.source)
            relay.write_text(text)
            relay.exit_user(1 if text.startswith("bastille:") else 0)
            return
        found = await self._target(route)
        if found is None:
            return
        target, route = found
        if not await self._admit(target, route) or relay.user_closed.is_set():
            return  # refused, or the user left while the recording opened
        pty = (self.term_type, self.term_size, self.term_modes) if self.has_pty else None
        if not await TargetLeg(self.ctx, self.core, relay, self.fail).open(
                target, route, subsystem=self.subsystem, pty=pty):
            return
        relay.pipe = choose_pipe(relay, self.core, self.enforcer, target, kind=self.kind,
                                 command=route.command, has_pty=self.has_pty,
                                 size=self.term_size[:2], exec_decision=self._exec_decision)
        await self._relay()

    async def _target(self, route: Route) -> tuple[TargetConfig, Route] | None:
        """The target of this session (player, menu choice, or named) if the user may use
        it; else the user was told why."""
        if route.builtin == "player":
            return self._player()
        if route.target is None:
            if self.kind != "shell" or not self.has_pty:
                self.fail("name a target: ssh -t USER@BASTION TARGET "
                          "(or USER+TARGET@BASTION); 'ssh USER@BASTION help' lists them", 2)
                return None
            chosen = await self._menu()
            if chosen is None:
                assert self.relay is not None
                self.relay.exit_user(0)
                return None
            route = Route(target=chosen, command=None)
        name = route.target or ""
        if not valid_target_name(name):  # not a name any target can have: cut short
            name = cut(name, MAX_TARGET_NAME)
        try:
            target = self.services.access.authorize(self.ctx.principal, name)
        except TargetError as exc:
            self.ctx.audit(Kind.REFUSED, "denied", target=name,
                           detail={"reason": exc.audit_reason})
            self.fail(str(exc), 1)
            return None
        return target, route

    def _player(self) -> tuple[TargetConfig, Route] | None:
        """``ssh -t auditor@bastion player``: the player TUI, for approvers only."""
        config = self.services.config
        refusal = player_refusal(config, self.ctx.principal, has_pty=self.has_pty)
        if refusal is not None:
            self.fail(*refusal)
            return None
        return player_route(config, self.ctx.principal.name)

    async def _menu(self) -> str | None:
        relay = self.relay
        assert relay is not None
        entries = [MenuEntry(t.name, t.description)
                   for t in self.services.access.targets_for(self.ctx.principal)]
        menu = TargetMenu(self.ctx.principal.name, entries)
        early, self._early = self._early, []
        return await run_menu(relay, self.core, menu, early,
                              self.services.config.gateway.login_timeout)

    async def _admit(self, target: TargetConfig, route: Route) -> bool:
        """Open the recording (fail closed) and decide the exec command."""
        core = self.core
        core.target = target.name
        limit = self.services.config.gateway.max_sessions_per_user
        if not self.ctx.ssh.user_session(self.ctx.principal.name, limit):
            self.ctx.audit(Kind.REFUSED, "denied", target=target.name,
                           detail={"reason": "too many sessions", "limit": limit})
            self.fail(f"you have {limit} sessions running, the most allowed; "
                      "end one and try again", 1)
            return False
        self._counted = True
        core.mask_for(target)
        refusal = core.budget_refusal()
        if refusal is not None:
            self.fail(refusal, 1)
            return False
        self.kind = session_kind(route, command=self.command, subsystem=self.subsystem,
                                 login=self.ctx.login)
        detail = {"kind": self.kind, **({"command": route.command} if route.command else {})}
        if not await core.start(
                kind=self.kind, command=route.command if self.kind != "sftp" else "sftp",
                cols=self.term_size[0], rows=self.term_size[1], term=self.term_type,
                detail={**detail, **({"term": self.term_type} if self.has_pty else {})},
                unrecorded_detail=detail):
            self.fail("this session cannot be recorded, so it was not started; "
                      "tell an administrator", 1)
            return False
        if core.rec is not None and self.relay is not None and records_masked(
                self.services.config.policy, kind=self.kind, command=route.command,
                has_pty=self.has_pty):
            # the recording is masked: its trailer proves what the user received
            self.relay.delivered = core.rec.delivered
            core.rec.deliveries_follow()
        if route.command is None:
            return True
        core.record_command(route.command, source="exec")
        if route.builtin == "player":  # the bastion's own program, for approvers only
            return True
        return await self._exec_allowed(route.command)

    async def _exec_allowed(self, command: str) -> bool:
        engine = self.services.policy
        if engine is None:
            return True
        principal = self.ctx.principal
        decision = too_long(engine, command)
        if decision is None:  # analysis is bounded but costs CPU: off the loop
            # a non-interactive shell runs it; with a PTY, the keys that follow are
            # decided by the interactive driver (a REPL or an editor it starts too)
            decision = await asyncio.to_thread(
                functools.partial(engine.decide, command, user=principal.name,
                                  groups=sorted(principal.groups), target=self.core.target,
                                  interactive=False, tty=self.has_pty))
        self._exec_decision = decision
        verdict = await self.enforcer.enforce(command, decision, source="exec",
                                              record_command=False)
        match verdict:
            case Allow():
                return True
            case Deny(message):
                self.fail(message, 1)
                return False
            case Gone():
                return False

    async def _relay(self) -> None:
        """Relay until either side ends; keys typed ahead take the same path."""
        relay = self.relay
        assert relay is not None and relay.upstream is not None
        relay.rec = self.core.rec
        if self.core.budget is not None:
            relay.meter = self.core.meter
        early, self._early = self._early, []
        for data in early:
            relay.from_user(data)
        if self._user_eof and (relay.pipe is None or relay.pipe.user_eof()):
            relay.upstream.write_eof()
        relay.start_reading()
        gw = self.services.config.gateway
        async with asyncio.TaskGroup() as tg:
            watchdog = tg.create_task(watch_limits(relay, self.end,
                                                   max_session=gw.max_session,
                                                   idle_timeout=gw.idle_timeout))
            if await relay.wait_end():
                self.end(None)  # the target ended: its exit status or signal
            else:
                relay.close_target()  # the user went away
            watchdog.cancel()

    def terminate(self, reason: str) -> None:
        """End the session from outside (shutdown)."""
        self.end(reason)

    async def _finish(self) -> None:
        relay = self.relay
        assert relay is not None
        self.core.gone.set()
        if relay.pipe is not None:
            await relay.pipe.aclose()
        relay.close_target()
        await relay.target_stopped()  # a command the bastion ended is gone on the target
        signal = relay.exit_signal[0] if relay.exit_signal else None
        relay.flush_delivered()  # the recording's trailer hashes every byte sent
        await self.core.finish({"exit_status": relay.exit_status, "exit_signal": signal,
                                **relay.extra()},
                               exit_status=relay.exit_status, exit_signal=signal)
        self.ctx.sessions.discard(self)
        if self._counted:
            self._counted = False
            self.ctx.ssh.user_session_ended(self.ctx.principal.name)
