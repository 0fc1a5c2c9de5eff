"""What the SSH adapter knows: for the whole listener (:class:`SshContext`) and for one
user connection (:class:`ConnContext`). Neither points back at the application; the
gateway's services come in as :class:`gateway.core.services.Services`."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh

from gateway.audit import AuditEvent, Kind
from gateway.config import TargetConfig
from gateway.core.access import Principal
from gateway.core.services import Services
from gateway.errors import HostKeyMismatch, TargetError
from gateway.ssh.demo_target import LocalShellTarget
from gateway.ssh.routing import Login
from gateway.ssh.upstream import Endpoint, TofuStore, connect, endpoint_for

if TYPE_CHECKING:
    from gateway.auth.oidc import OidcClient


@dataclass
class SshContext:
    """The SSH listener's shared parts."""

    services: Services
    tofu: TofuStore
    x11_auth: Path
    user_keys: dict[str, list[bytes]]
    builtin: dict[str, LocalShellTarget] = field(default_factory=dict)
    oidc: OidcClient | None = None
    connections: set[Any] = field(default_factory=set)  # live BastionServer objects
    #: socket peer -> the client address a trusted load balancer's PROXY header gave
    proxied: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    per_source: Counter[str] = field(default_factory=Counter)  # open connections by source
    per_user: Counter[str] = field(default_factory=Counter)  # running sessions by user

    def source_opened(self, source: str) -> int:
        """A connection from ``source`` opened: how many it has open now."""
        self.per_source[source] += 1
        return self.per_source[source]

    def source_closed(self, source: str) -> None:
        self.per_source[source] -= 1
        if self.per_source[source] <= 0:
            del self.per_source[source]

    def user_session(self, user: str, limit: int) -> bool:
        """Count one more running session of ``user``; False (not counted) at ``limit``."""
        if self.per_user[user] >= limit:
            return False
        self.per_user[user] += 1
        return True

    def user_session_ended(self, user: str) -> None:
        self.per_user[user] -= 1
        if self.per_user[user] <= 0:
            del self.per_user[user]

    def endpoint(self, target: TargetConfig) -> Endpoint:
        """Where and how the bastion logs into ``target``."""
        if target.builtin is not None:
            return self.builtin[target.name].endpoint()
        return endpoint_for(target, self.tofu)


@dataclass
class ConnContext:
    """What one user connection knows about itself."""

    ssh: SshContext
    conn: asyncssh.SSHServerConnection
    source: str
    login: Login
    principal: Principal = field(default_factory=lambda: Principal(""))
    # target name -> its connection, or the future of one being opened
    upstreams: dict[str, asyncssh.SSHClientConnection
                    | asyncio.Future[asyncssh.SSHClientConnection]] = \
        field(default_factory=dict)
    sessions: set[Any] = field(default_factory=set)  # live SshSession objects
    forwards: int = 0  # forwarding channels and remote listeners open

    @property
    def services(self) -> Services:
        return self.ssh.services

    def audit(self, kind: Kind, outcome: str, *, target: str = "",
              detail: dict[str, Any] | None = None) -> None:
        self.services.audit(AuditEvent(kind, outcome, user=self.principal.name,
                                       source=self.source, target=target,
                                       detail=detail or {}))

    async def upstream(self, target: TargetConfig,
                       agent_path: str | None = None) -> asyncssh.SSHClientConnection:
        """The connection to ``target`` for this user connection (opened once, shared by
        its channels). ``agent_path`` forwards the user's agent (the caller checked the
        target allows it). Failures are audited and raised as TargetError."""
        existing = self.upstreams.get(target.name)
        if isinstance(existing, asyncio.Future):
            return await asyncio.shield(existing)
        if existing is not None and not existing.is_closed():
            return existing
        future: asyncio.Future[asyncssh.SSHClientConnection] = \
            asyncio.get_running_loop().create_future()
        self.upstreams[target.name] = future
        try:
            conn = await connect(target.name, self.ssh.endpoint(target), self.ssh.tofu,
                                 agent_path=agent_path)
        except TargetError as exc:
            self.upstreams.pop(target.name, None)
            kind = Kind.HOST_KEY_MISMATCH if isinstance(exc, HostKeyMismatch) else \
                Kind.TARGET_CONNECT
            self.audit(kind, "failed", target=target.name, detail={"error": str(exc)})
            future.set_exception(exc)
            future.exception()  # mark retrieved
            raise
        self.upstreams[target.name] = conn
        future.set_result(conn)
        return conn

    def close_upstreams(self) -> None:
        for conn in self.upstreams.values():
            if not isinstance(conn, asyncio.Future):
                conn.close()
        self.upstreams.clear()
