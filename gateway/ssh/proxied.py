"""The SSH listener behind a load balancer (``gateway.proxy_protocol``): accepts TCP
connections itself, takes the PROXY v2 header of trusted balancers
(:mod:`gateway.ssh.proxyproto`), then runs asyncssh on the socket.

The client address found in the header is given to :class:`gateway.ssh.server.
BastionServer` through ``SshContext.proxied`` (keyed by the socket's peer address,
which is unique while the connection is open), so the audit trail and the rate limits
see the real client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Sequence
from typing import Any

import asyncssh

from gateway.audit import AuditEvent, Kind
from gateway.ssh.context import SshContext
from gateway.ssh.proxyproto import Network, ProxyError, handshake
from gateway.ssh.server import BastionServer

log = logging.getLogger("bastille.ssh")

BACKLOG = 512
MAX_HANDSHAKES = 256  # connections reading their first bytes at once (slowloris bound)


class ProxiedListener:
    """Accept loop + PROXY header + asyncssh per connection."""

    def __init__(self, ctx: SshContext, networks: Sequence[Network],
                 options: dict[str, Any]) -> None:
        self.ctx = ctx
        self.networks = tuple(networks)
        self.options = asyncssh.SSHServerConnectionOptions(
            server_factory=lambda: BastionServer(ctx), **options)
        self._sock: socket.socket | None = None
        self._accept: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_HANDSHAKES)

    async def start(self, host: str, port: int) -> int:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        family, kind, proto, _name, addr = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(BACKLOG)
        sock.setblocking(False)
        self._sock = sock
        self._accept = asyncio.get_running_loop().create_task(self._run(), name="ssh accept")
        return int(sock.getsockname()[1])

    async def _run(self) -> None:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(self._sock)
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            conn.setblocking(False)
            task = loop.create_task(self._serve(conn, (str(peer[0]), int(peer[1]))))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        async with self._slots:
            try:
                client = await handshake(conn, peer, self.networks)
            except (ProxyError, OSError, TimeoutError) as exc:
                self._refuse(conn, peer, str(exc) or type(exc).__name__)
                return
        if client != peer:
            self.ctx.proxied[peer] = client
        try:
            await asyncssh.run_server(conn, options=self.options)
        except (asyncssh.Error, OSError, ConnectionError) as exc:
            log.debug("connection from %s:%d ended before login: %s", *client, exc)
        finally:
            self.ctx.proxied.pop(peer, None)

    def _refuse(self, conn: socket.socket, peer: tuple[str, int], why: str) -> None:
        self.ctx.services.audit(AuditEvent(Kind.REFUSED, "denied", source=f"{peer[0]}:{peer[1]}",
                                           detail={"reason": why}))
        log.warning("refused %s:%d: %s", peer[0], peer[1], why)
        with contextlib.suppress(OSError):
            conn.close()

    def close(self) -> None:
        if self._accept is not None:
            self._accept.cancel()
            self._accept = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for task in list(self._tasks):
            task.cancel()
