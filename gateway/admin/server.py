"""The admin listener (``[admin]``): Prometheus ``/metrics``, ``/healthz`` and ``/readyz``.

Plain HTTP on loopback by default (``listen = "127.0.0.1:9322"``); listening anywhere
else needs a bearer token (``token_env``/``token_file``), compared in constant time.
It only reads: no endpoint changes anything.

* ``/metrics``: the Prometheus text format (:mod:`gateway.admin.metrics`).
* ``/healthz``: the facts of ``bastille status --json`` (storage state, spool, paused
  sessions, last error) and the gateway's own (listeners, draining, config reloads,
  audit export); 200 while the state is ``ok`` or ``degraded``, 503 when ``failing``.
* ``/readyz``: the same body; 200 only when the gateway accepts sessions (started, not
  draining) and storage is not failing, else 503 (a load balancer's check).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway.config import AdminSettings
from gateway.errors import BastilleError

log = logging.getLogger("bastille.admin")

#: () -> (state, ready, body): the gateway's health, computed off the event loop
Health = Callable[[], "tuple[str, bool, dict[str, Any]]"]


class AdminServer:
    """Serves the admin endpoints until :meth:`stop`."""

    def __init__(self, settings: AdminSettings, registry: CollectorRegistry,
                 health: Health) -> None:
        self.settings = settings
        self.registry = registry
        self.health = health
        self.port = 0
        self._runner: web.AppRunner | None = None

    def _authorized(self, request: web.Request) -> bool:
        token = self.settings.token
        if token is None:
            return True
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {token.reveal()}"
        return hmac.compare_digest(given.encode(), expected.encode())

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not self._authorized(request):
            return web.Response(status=401, text="bearer token required\n",
                                headers={"WWW-Authenticate": "Bearer"})
        response: web.StreamResponse = await handler(request)
        response.headers["Cache-Control"] = "no-store"
        return response

    async def _metrics(self, request: web.Request) -> web.Response:
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(None, generate_latest, self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _facts(self) -> tuple[str, bool, dict[str, Any]]:
        return await asyncio.get_running_loop().run_in_executor(None, self.health)

    async def _healthz(self, request: web.Request) -> web.Response:
        state, _, body = await self._facts()
        return _json(body, 503 if state == "failing" else 200)

    async def _readyz(self, request: web.Request) -> web.Response:
        _, ready, body = await self._facts()
        return _json(body, 200 if ready else 503)

    async def start(self) -> int:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.listen_host, self.settings.listen_port,
                           reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise BastilleError(f"cannot listen on {self.settings.listen_host}:"
                                f"{self.settings.listen_port} ([admin]): "
                                f"{exc.strerror or exc}") from None
        self._runner = runner
        server = site._server  # the asyncio server: the port actually bound
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else self.settings.listen_port
        log.info("admin endpoint on http://%s:%d (/metrics, /healthz, /readyz)",
                 self.settings.listen_host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _json(body: dict[str, Any], status: int) -> web.Response:
    return web.Response(text=json.dumps(body, indent=1, default=str) + "\n", status=status,
                        content_type="application/json")
