"""The SSH side of the gateway: :class:`SshListener` (the user-facing listener, the
built-in targets, and the sessions it serves).

It is given the gateway's :class:`gateway.core.services.Services` by the composition
root and never reaches back into the application.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import asyncssh

from gateway.config import Config
from gateway.core.services import Services
from gateway.errors import BastilleError
from gateway.ssh.algorithms import SERVER_ALGORITHMS, prefer_gcm_for_clients
from gateway.ssh.context import SshContext
from gateway.ssh.demo_target import LocalShellTarget
from gateway.ssh.keys import public_key_blob
from gateway.ssh.player import PLAYER_TARGET, player_env_names
from gateway.ssh.proxied import ProxiedListener
from gateway.ssh.server import BastionServer
from gateway.ssh.upstream import TofuStore
from state.files import private_dir, private_file
from state.paths import DataDir
from state.tallies import LocalTallies, Tallies

log = logging.getLogger("bastille.ssh")


class SshListener:
    """Listens on ``gateway.listen``; serves sessions until closed."""

    def __init__(self, services: Services, *, tallies: Tallies | None = None) -> None:
        """``tallies``: where open connections and sessions are counted for their bounds
        (default: this process's memory; SSH workers share theirs)."""
        config = services.config
        data = DataDir(config.data_dir)
        oidc = None
        if config.oidc is not None:
            from gateway.auth.oidc import OidcClient

            oidc = OidcClient(config.oidc)
        self.ctx = SshContext(
            services=services, tofu=TofuStore(data.known_targets), x11_auth=data.x11_auth,
            user_keys=_user_keys(config), oidc=oidc,
            tallies=tallies if tallies is not None else LocalTallies())
        self._server: asyncssh.SSHAcceptor | None = None
        self._proxied: ProxiedListener | None = None
        self.port = 0

    async def start(self, *, sock: socket.socket | None = None) -> int:
        """Start the built-in targets and listen; the port. Raises BastilleError with a
        message for the operator.

        Args:
            sock: accept on this listening socket instead of opening ``gateway.listen``
                (an SSH worker: the gateway process opened it).
        """
        services = self.ctx.services
        config = services.config
        for t in config.targets.values():
            if t.builtin == "local-shell":
                await self._builtin(t.name, LocalShellTarget())
        if config.approvals.readers.allows_anyone():
            # serves `ssh -t auditor@bastion player`: the player's command line, no shell
            extra = (*player_env_names(config), "PYTHONPATH")
            await self._builtin(PLAYER_TARGET, LocalShellTarget(env=extra, use_shell=False))
        private_dir(self.ctx.x11_auth.parent)
        private_file(self.ctx.x11_auth)
        gw = config.gateway
        prefer_gcm_for_clients()
        options = dict(
            server_host_keys=[str(p) for p in gw.host_keys],
            login_timeout=gw.login_timeout, encoding=None, line_editor=False,
            agent_forwarding=True, x11_forwarding=True,
            x11_auth_path=str(self.ctx.x11_auth), allow_scp=False,
            keepalive_interval=60, keepalive_count_max=3,
            server_version=f"bastille_{services.version}",
            **SERVER_ALGORITHMS,
        )
        try:
            if gw.proxy_protocol:  # behind a load balancer: read its PROXY headers first
                self._proxied = ProxiedListener(self.ctx, gw.proxy_protocol, options)
                self.port = await self._proxied.start(gw.listen_host, gw.listen_port, sock=sock)
                return self.port
            self._server = await asyncssh.create_server(
                lambda: BastionServer(self.ctx), None if sock else gw.listen_host,
                None if sock else gw.listen_port, sock=sock, **options)
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
            raise BastilleError(f"cannot load the gateway host keys: {exc}") from None
        except OSError as exc:
            raise BastilleError(f"cannot listen on {gw.listen_host}:{gw.listen_port}: "
                                f"{exc.strerror or exc}") from None
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def reload(self, config: Config) -> None:
        """A reloaded configuration: the users' keys now; built-in targets that are new
        start in the background (sessions to them fail until they listen)."""
        self.ctx.user_keys = _user_keys(config)
        for t in config.targets.values():
            if t.builtin == "local-shell" and t.name not in self.ctx.builtin:
                self.ctx.services.spawn(self._builtin(t.name, LocalShellTarget()),
                                        f"built-in target {t.name}")

    async def _builtin(self, name: str, target: LocalShellTarget) -> None:
        await target.start()
        self.ctx.builtin[name] = target

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._proxied is not None:
            self._proxied.close()
            self._proxied = None

    def terminate_all(self, reason: str) -> None:
        """Tell every running session ``reason`` and end it."""
        for server in list(self.ctx.connections):
            for session in list(server.conn_ctx.sessions if server.conn_ctx else ()):
                session.terminate(reason)

    async def let_clients_leave(self, timeout: float) -> None:  # noqa: ASYNC109 - a budget
        """Wait up to ``timeout`` for the users' connections to close by themselves (an
        ssh client closes its connection when its last channel has ended)."""
        closing = [asyncio.ensure_future(server.conn_ctx.conn.wait_closed())
                   for server in self.ctx.connections if server.conn_ctx is not None]
        if closing:
            _, pending = await asyncio.wait(closing, timeout=timeout)
            for waiter in pending:
                waiter.cancel()

    async def aclose(self) -> None:
        """Close every user connection and the built-in targets (their processes end)."""
        for server in list(self.ctx.connections):
            if server.conn_ctx is not None:
                server.conn_ctx.conn.close()
        for target in self.ctx.builtin.values():
            await target.close()
        self.ctx.builtin.clear()




def _user_keys(config: Config) -> dict[str, list[bytes]]:
    return {name: [public_key_blob(k) for k in user.keys] for name, user in config.users.items()}
