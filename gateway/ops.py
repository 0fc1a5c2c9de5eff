"""What a gateway does for its operators, beside serving sessions: audit export, metrics,
the admin endpoint, health, the systemd watchdog, and what a reload may change.

:class:`Operations` belongs to one :class:`gateway.app.GatewayApp` (its ``ops``):

* the audit exporters (:mod:`gateway.audit.syslog`, :mod:`gateway.audit.webhooks`) and
  the metrics counter (:mod:`gateway.admin.metrics`), threads that follow the audit file;
* the ``[admin]`` listener (:mod:`gateway.admin.server`) and the health facts it serves,
  which are also what ``bastille status`` prints (the recorder's status file carries the
  gateway's part under ``gateway``);
* the secrets of the configuration, registered so that no log line shows them
  (:func:`gateway.logs.register_secret`);
* ``WATCHDOG=1`` pings from the event loop (:mod:`gateway.sdnotify`).

:func:`merge_reload` decides what a reloaded configuration changes now and what needs a
restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any, Protocol

from gateway import logs, sdnotify
from gateway.admin.metrics import Metrics
from gateway.audit.export import Exporter
from gateway.audit.syslog import SyslogExporter
from gateway.audit.webhooks import Texts, WebhookExporter
from gateway.config import Config, WebhookSettings
from gateway.core.vault import target_key_text, target_password
from gateway.errors import VaultError
from recorder.status import RecorderStatus, add_worker_status
from state.paths import DataDir

if TYPE_CHECKING:
    from gateway.admin.server import AdminServer
    from gateway.core.storage import StorageEvents
    from gateway.web.server import WebService
    from recorder.service import Recorder
    from state.approvals import Approvals

log = logging.getLogger("bastille.app")

#: sections and [gateway] keys a reload cannot change (a restart is needed)
RESTART_SECTIONS = ("audit", "recording", "rdp", "web", "saml", "oidc", "admin", "state")
RESTART_GATEWAY_KEYS = ("listen", "host_keys", "data_dir", "log_format", "proxy_protocol",
                        "max_auth_failures", "auth_failure_window", "max_source_failures",
                        "workers", "event_loop")
#: [recording] keys a reload applies (the recording budgets, gateway.config.BudgetSettings)
RELOADED_RECORDING_KEYS = frozenset({"max_recording_bytes", "max_recording_bytes_per_user_day",
                                     "budget_action", "throttle_rate"})


def _storage_part(raw: Any) -> dict[str, Any]:
    """``[recording]`` without the budget keys (what needs a restart)."""
    table = raw if isinstance(raw, dict) else {}
    return {k: v for k, v in table.items() if k not in RELOADED_RECORDING_KEYS}


def merge_reload(old: Config, new: Config) -> tuple[Config, list[str], list[str]]:
    """The configuration to run after a reload, the sections that changed, and the
    changes that wait for a restart (the running value is kept for those)."""
    sections = sorted(set(old.raw) | set(new.raw))
    changed = [s for s in sections if old.raw.get(s) != new.raw.get(s)]
    restart = [s for s in changed if s in RESTART_SECTIONS and s != "recording"]
    if _storage_part(old.raw.get("recording")) != _storage_part(new.raw.get("recording")):
        restart.append("recording")  # the budgets alone apply now
    old_gw, new_gw = old.raw.get("gateway") or {}, new.raw.get("gateway") or {}
    restart += [f"gateway.{k}" for k in RESTART_GATEWAY_KEYS if old_gw.get(k) != new_gw.get(k)]
    gateway = dataclasses.replace(
        new.gateway, listen_host=old.gateway.listen_host, listen_port=old.gateway.listen_port,
        host_keys=old.gateway.host_keys, log_format=old.gateway.log_format,
        proxy_protocol=old.gateway.proxy_protocol,
        max_auth_failures=old.gateway.max_auth_failures,
        auth_failure_window=old.gateway.auth_failure_window,
        max_source_failures=old.gateway.max_source_failures,
        workers=old.gateway.workers, event_loop=old.gateway.event_loop)
    merged = dataclasses.replace(
        new, gateway=gateway, data_dir=old.data_dir, audit=old.audit,
        recording=old.recording, rdp=old.rdp, web=old.web, saml=old.saml, oidc=old.oidc,
        admin=old.admin, state=old.state)
    return merged, sorted(changed), sorted(restart)


def config_secrets(config: Config) -> list[str]:
    """Every secret value the configuration gives the gateway (never to be logged)."""
    values: list[str | None] = []
    for target in config.targets.values():
        with contextlib.suppress(VaultError):
            values += [target_password(target), target_key_text(target)]
    if config.oidc is not None and config.oidc.client_secret is not None:
        values.append(config.oidc.client_secret.reveal())
    storage = config.recording.storage
    for attr in ("secret_access_key", "read_secret_access_key"):
        values.append(getattr(storage, attr, None))
    if config.admin is not None and config.admin.token is not None:
        values.append(config.admin.token.reveal())
    values.append(config.state.password)  # the shared database's ([state] password_*)
    for hook in config.webhooks:
        values.append(hook.url.reveal())
        if hook.secret is not None:
            values.append(hook.secret.reveal())
    return [v for v in values if v]


def ssh_host(config: Config) -> str:
    """``[-p PORT ]HOST`` of the bastion as users reach it (texts that show commands)."""
    gw = config.gateway
    address = gw.public_address
    port = gw.listen_port
    if address:
        host, _, p = address.rpartition(":")
        if host and p.isdigit() and "]" not in p:
            address, port = host, int(p)
    else:
        wildcard = gw.listen_host in ("0.0.0.0", "::", "")
        address = socket.getfqdn() if wildcard else gw.listen_host
    return address if port == 22 else f"-p {port} {address}"


class Gateway(Protocol):
    """What :class:`Operations` reads of its gateway (``gateway.app.GatewayApp``)."""

    config: Config
    recorder: Recorder
    approvals: Approvals
    web: WebService | None
    port: int
    version: str
    storage_events: StorageEvents
    accepting: bool
    draining: bool


class Operations:
    """The operator-facing parts of one gateway (see the module docstring)."""

    def __init__(self, app: Gateway) -> None:
        self.app = app
        self.metrics = Metrics(app.config.audit.file, self.sample)
        self.counter = self.metrics.counter
        self.exporters: list[Exporter] = []
        self.admin: AdminServer | None = None
        self.started = time.time()
        self.reloaded: float | None = None
        self.last_reload = "never"
        self.config_secrets(app.config)

    # ------------------------------------------------------------ secrets
    def config_secrets(self, config: Config) -> None:
        logs.register_secrets(config_secrets(config))

    # ------------------------------------------------------------ exporters
    def _state_dir(self) -> Any:
        return DataDir(self.app.config.data_dir).export

    def _webhook(self, hook: WebhookSettings, config: Config) -> WebhookExporter:
        app = self.app

        def link(rid: int) -> str:
            return app.web.approval_url(rid) if app.web is not None else ""

        def lookup(rid: int) -> dict[str, Any] | None:
            request = app.approvals.get(rid)
            return request.to_json() if request is not None else None

        texts = Texts(ssh_host(config), link if config.web is not None else None)
        return WebhookExporter(hook, config.audit.file, self._state_dir(), config.data_dir,
                               texts, lookup)

    def start_exports(self) -> None:
        """Start following the audit file (before the gateway's first event)."""
        config = self.app.config
        self.counter.start()
        exporters: list[Exporter] = []
        if config.audit.syslog is not None:
            exporters.append(SyslogExporter(config.audit.syslog, config.audit.file,
                                            self._state_dir()))
        exporters += [self._webhook(h, config) for h in config.webhooks]
        for e in exporters:
            e.start()
        self.exporters = exporters

    async def reload_webhooks(self, config: Config) -> None:
        """Replace the webhook exporters (each resumes from where its namesake stopped)."""
        old = [e for e in self.exporters if isinstance(e, WebhookExporter)]
        if [e.settings for e in old] == list(config.webhooks):
            return
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, e.stop) for e in old))
        fresh = [self._webhook(h, config) for h in config.webhooks]
        for e in fresh:
            e.start()
        self.exporters = [e for e in self.exporters if e not in old] + list(fresh)

    async def stop(self) -> None:
        """Stop the admin endpoint, then let the exporters send the last events."""
        if self.admin is not None:
            await self.admin.stop()
            self.admin = None
        loop = asyncio.get_running_loop()
        everything = [*self.exporters, self.counter]
        await asyncio.gather(*(loop.run_in_executor(None, e.stop) for e in everything))

    # ------------------------------------------------------------ admin endpoint
    async def start_admin(self) -> None:
        settings = self.app.config.admin
        self.app.recorder.set_status_extra(self.status_extra)
        if settings is None:
            return
        from gateway.admin.server import AdminServer

        self.admin = AdminServer(settings, self.metrics.registry, self.health)
        await self.admin.start()

    def reload_result(self, ok: bool, problems: list[str],
                      restart: list[str] | None = None) -> None:
        when = time.strftime("%Y-%m-%d %H:%M:%S")
        if ok:
            self.reloaded = time.time()
            wait = f"; needs a restart: {', '.join(restart)}" if restart else ""
            self.last_reload = f"ok at {when}{wait}"
        else:
            self.last_reload = f"REFUSED at {when} ({len(problems)} problem(s)): " + \
                "; ".join(problems[:3])

    def sample(self) -> dict[str, Any]:
        """The facts the metrics publish at a scrape (runs on the scrape's thread)."""
        app = self.app
        status = self.recorder_status().to_json()
        pending = [r.created for r in app.approvals.list(status="pending", limit=100000)]
        return {"status": status, "pending": pending, "version": app.version,
                "exports": [e.snapshot() for e in self.exporters],
                "ready": self.ready(status["state"]), "draining": app.draining,
                "started": self.started, "reloaded": self.reloaded}

    def recorder_status(self) -> RecorderStatus:
        """The recorder's status, with the sessions and recordings of the SSH worker
        processes added (each writes its own status file), as ``bastille status``."""
        status = self.app.recorder.status()
        add_worker_status(self.app.recorder.settings.data_dir, status)
        return status

    def ready(self, state: str) -> bool:
        return self.app.accepting and state != "failing"

    def health(self) -> tuple[str, bool, dict[str, Any]]:
        """``/healthz``, ``/readyz``: the body of ``bastille status --json`` plus
        ``ready`` (runs off the event loop)."""
        status = self.recorder_status()
        body = status.to_json()
        state = str(body["state"])
        ready = self.ready(state)
        body.update({"problem": None, "local": None, "ready": ready,
                     "draining": self.app.draining})
        return state, ready, body

    def status_extra(self) -> dict[str, Any]:
        """The gateway's part of ``status.json``: its sessions and RDP workers
        (:class:`gateway.core.storage.StorageEvents`), then :meth:`status_lines`."""
        return {**self.app.storage_events.status_extra(), **self.status_lines()}

    def status_lines(self) -> dict[str, str]:
        """The gateway's part of ``status.json`` (``bastille status`` prints it)."""
        app = self.app
        gw = app.config.gateway
        listening = [f"ssh {gw.listen_host}:{app.port}"]
        if self.admin is not None:
            listening.append(f"admin http://{app.config.admin.listen_host}:"  # type: ignore[union-attr]
                             f"{self.admin.port}")
        out = {"version": app.version, "listening": ", ".join(listening),
               "config": f"{app.config.path} (reload: {self.last_reload})"}
        exports = []
        for e in self.exporters:
            st = e.snapshot()
            state = "up" if st.connected else "DOWN"
            dead = f", {st.dead_letters} dead-lettered" if st.dead_letters else ""
            exports.append(f"{st.destination} {state}, {st.lag_bytes} B behind{dead}")
        if exports:
            out["audit export"] = "; ".join(exports)
        if app.draining:
            out["draining"] = "yes: not accepting new sessions"
        return out

    # ------------------------------------------------------------ systemd
    def start_watchdog(self) -> asyncio.Task[None] | None:
        interval = sdnotify.watchdog_interval()
        if interval is None:
            return None

        async def ping() -> None:
            while True:
                sdnotify.watchdog()
                await asyncio.sleep(interval)

        log.info("systemd watchdog: pinging every %.1f s (pid %d)", interval, os.getpid())
        return asyncio.get_running_loop().create_task(ping(), name="systemd watchdog")
