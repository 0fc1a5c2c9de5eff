"""The user-facing SSH listener of a :class:`gateway.app.GatewayApp`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncssh

from gateway.errors import BastilleError
from gateway.ssh.algorithms import SERVER_ALGORITHMS
from gateway.ssh.server import BastionServer

if TYPE_CHECKING:
    from gateway.app import GatewayApp

Listener = asyncssh.SSHAcceptor


async def start_listener(app: GatewayApp) -> Listener:
    """Listen on ``gateway.listen``; raises BastilleError with a message for the operator."""
    gw = app.config.gateway
    try:
        return await asyncssh.create_server(
            lambda: BastionServer(app), gw.listen_host, gw.listen_port,
            server_host_keys=[str(p) for p in gw.host_keys],
            login_timeout=gw.login_timeout, encoding=None,
            agent_forwarding=True, x11_forwarding=True, x11_auth_path=str(app.x11_auth_path),
            allow_scp=False,
            keepalive_interval=60, keepalive_count_max=3,
            server_version=f"bastille_{app.version}",
            **SERVER_ALGORITHMS,
        )
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
        raise BastilleError(f"cannot load the gateway host keys: {exc}") from None
    except OSError as exc:
        raise BastilleError(f"cannot listen on {gw.listen_host}:{gw.listen_port}: "
                            f"{exc.strerror or exc}") from None
