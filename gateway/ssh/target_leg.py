"""The bastion's leg to the target of one SSH session: :class:`TargetLeg`.

It connects as the target's configured identity (the user's forwarded agent only if
the target allows it), then opens the target channel with what the user asked for
(command or subsystem, environment, PTY, X11 when allowed). A forwarding the target
does not allow is refused, audited and told, and the session goes on without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncssh

from gateway.audit import Kind
from gateway.config import TargetConfig
from gateway.core.session import SessionCore
from gateway.errors import TargetError, TargetRefused
from gateway.ssh.channels import ChannelRequest, open_target_channel
from gateway.ssh.context import ConnContext
from gateway.ssh.relay import Relay
from gateway.ssh.routing import Route

Pty = tuple[str, tuple[int, int, int, int], Any]


class TargetLeg:
    """Connects ``relay`` to its target; ``fail(message, status)`` ends the session."""

    def __init__(self, ctx: ConnContext, core: SessionCore, relay: Relay,
                 fail: Callable[[str, int], None]) -> None:
        self.ctx = ctx
        self.core = core
        self.relay = relay
        self.fail = fail
        self._x11 = False  # the target allows X11 forwarding for this user

    async def open(self, target: TargetConfig, route: Route, *, subsystem: str | None,
                   pty: Pty | None) -> bool:
        """Connect and open the channel: True when the relay has its upstream."""
        conn = await self._connect(target)
        if conn is None or self.relay.user_closed.is_set():
            return False
        return await self._open_channel(conn, route, subsystem, pty)

    def _agent_path(self, target: TargetConfig) -> str | None:
        """The user's agent socket, if forwarded and the target allows it (else told)."""
        agent = self.relay.chan.get_agent_path()
        if agent is None:
            return None
        principal = self.ctx.principal
        if not target.allow_agent_forwarding.allows(principal.name, principal.groups):
            self.core.audit(Kind.REFUSED, "denied", {"channel": "agent-forwarding"})
            self.core.say(f"agent forwarding is not allowed on {target.name}; "
                          "continuing without it")
            return None
        self.core.audit(Kind.FORWARD, "ok", {"channel": "agent-forwarding"})
        return agent

    async def _connect(self, target: TargetConfig) -> asyncssh.SSHClientConnection | None:
        principal = self.ctx.principal
        self._x11 = target.allow_x11_forwarding.allows(principal.name, principal.groups)
        try:
            return await self.ctx.upstream(target, self._agent_path(target))
        except TargetError as exc:
            self.core.mark(f"target connection failed: {exc}")
            self.fail(str(exc), 1)
            return None

    def _x11_display(self) -> str | None:
        """The user's X11 display to forward, if any and the target allows it (else
        the user is told and the session goes on without it)."""
        display = self.relay.chan.get_x11_display()
        if display is None:
            return None
        if self._x11:
            self.core.audit(Kind.FORWARD, "ok", {"channel": "x11"})
            return display
        self.core.audit(Kind.REFUSED, "denied", {"channel": "x11"})
        self.core.say(f"X11 forwarding is not allowed on {self.core.target}; "
                      "continuing without it")
        return None

    async def _open_channel(self, conn: asyncssh.SSHClientConnection, route: Route,
                            subsystem: str | None, pty: Pty | None) -> bool:
        relay = self.relay
        request = ChannelRequest(
            command=route.command, subsystem=subsystem, env=relay.chan.get_environment(),
            x11_display=self._x11_display(), x11_auth=self.ctx.ssh.x11_auth, pty=pty)
        try:
            relay.upstream = await open_target_channel(conn, relay, request)
        except TargetRefused as exc:
            self.fail(f"target {self.core.target} refused the session: {exc}", 1)
            return False
        self.core.audit(Kind.TARGET_CONNECT, "ok", {})
        return True
