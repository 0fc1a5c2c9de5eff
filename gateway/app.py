"""Composition root: config -> stores -> core services -> listeners.

:class:`GatewayApp` builds the audit log, the recorder, the state stores (approvals and
grants, SSO bindings), the access check, the policy engine and the built-in commands,
and hands them to the protocol adapters as :class:`gateway.core.services.Services`: the
SSH listener in this process (``[gateway] workers = 1``) or in SSH worker processes that
build the same app in their worker role (``gateway/workers.py``,
``gateway/ssh/supervisor.py``), RDP in worker processes (``gateway/rdp``). Only
``gateway.cli`` and ``gateway.workers`` import this module.

Lifecycle: ``run()`` starts everything, serves until SIGTERM/SIGINT (or ``stop()``),
then stops accepting, lets existing sessions drain for ``gateway.drain_timeout``
seconds, tells the ones still running that the bastion is shutting down, and finalizes
every recording before returning. Under systemd (``Type=notify``) it says when it is
ready, reloading and stopping, and pings the watchdog from the event loop
(:mod:`gateway.sdnotify`).

Reload (SIGHUP, ``bastille reload``, ``systemctl reload``): :meth:`GatewayApp.reload`
re-reads the file; an invalid one is refused (audited and logged with every problem)
and the running configuration stays. Users, targets, policy, masking, approvals and
webhooks take effect for what starts after the reload: a running session keeps the
policy and masking it started with. Listeners, keys, the data directory, recording
storage, ``[audit]``, ``[rdp]``, ``[web]``, ``[saml]``, ``[oidc]`` and ``[admin]`` need a
restart (the reload says which changed), and so do ``[gateway] workers`` and
``event_loop``. RDP workers are replaced one by one: their running sessions end on their
own, under the configuration they started with. SSH worker processes are told (SIGHUP)
after the gateway process reloaded, and each re-reads the file for its new sessions.

Operations (:meth:`GatewayApp.start`): the audit exporters (syslog, webhooks) follow the
audit file, metrics count it, and ``[admin]`` serves ``/metrics``, ``/healthz``,
``/readyz`` (see docs/operations.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from gateway import sdnotify
from gateway._version import __version__
from gateway.audit import AuditEvent, AuditLog, Kind
from gateway.audit.export import Exporter
from gateway.config import Config
from gateway.core.access import Access, Principal
from gateway.core.commands import Commands
from gateway.core.live import LiveSessions, carry_out_kills, publish_watched
from gateway.core.masking import maskers_for
from gateway.core.storage import StorageEvents
from gateway.errors import ConfigError
from gateway.ops import Operations, merge_reload
from gateway.policy import Action, PolicyEngine, Rule
from gateway.rdp.supervisor import RdpSupervisor
from gateway.ssh.listener import SshListener
from gateway.ssh.supervisor import SshWorkers, serving_processes
from recorder.service import Recorder
from recorder.status import worker_status_name
from state.approvals import Request
from state.backend import StateBackend
from state.errors import StateError
from state.paths import DataDir
from state.tallies import SharedTallies

if TYPE_CHECKING:
    from gateway.core.weblogin import WebLogins
    from gateway.web.server import WebService
    from state.pg.livetail import LiveTail

log = logging.getLogger("bastille.app")

#: at the end of a stop, how long clients whose sessions ended get to close by themselves
CLIENTS_LEAVE_S = 2.0


class GatewayApp:
    """The gateway process; implements :class:`gateway.core.services.Services`.

    Args:
        config: the validated configuration.
        worker_socket: set in an SSH worker process (``gateway.workers``): serve SSH on
            this listening socket (one of the port's, opened by the gateway process),
            and nothing else.
        worker_slot: that worker's slot (its share of the counts of open connections
            and sessions, :class:`state.tallies.SharedTallies`).
    """

    def __init__(self, config: Config, *, worker_socket: socket.socket | None = None,
                 worker_slot: int = 0) -> None:
        self.config = config
        self.version = __version__
        self.worker_socket = worker_socket
        worker = worker_socket is not None
        self.ssh_workers = serving_processes(config)  # 1: this process serves SSH itself
        # SQLite or PostgreSQL; with SQLite and SSH workers, failed logins in a shared file
        self.state = StateBackend(config.state, config.data_dir, workers=self.ssh_workers)
        self.audit_log = AuditLog(config.audit.file)  # exported by self.ops (syslog, webhooks)
        # exporters, metrics, admin endpoint, health: started by the gateway process only
        self.ops = Operations(self)
        # crash recovery and the status file: the gateway process; a worker writes its own
        self.recorder = Recorder(config.recording, recover=not worker,
                                 status_name=worker_status_name(os.getpid()))
        self.approvals = self.state.approvals()
        self.usage = self.state.usage() if config.budget.user_day_bytes else None
        self.bindings = self.state.bindings() \
            if config.oidc is not None or config.saml is not None else None
        self.access = Access(config, self.approvals)
        self.policy = build_engine(config)
        self.maskers = maskers_for(config.policy)
        self.registry = self.state.registry()  # which node holds which live session
        self.live = LiveSessions(self.registry)
        # crash recoveries and storage state -> audit; sessions and workers -> status
        self.storage_events = StorageEvents(
            self.recorder, self.audit, sessions=self.live,
            workers=(lambda: self._rdp.pids() if self._rdp is not None else [])
            if config.rdp is not None and not worker else None,
            ssh_workers=(lambda: self._ssh_workers.pids if self._ssh_workers else [])
            if self.ssh_workers > 1 and not worker else None)
        self.failures = self.state.failures(
            config.gateway.max_auth_failures, config.gateway.auth_failure_window,
            source_limit=config.gateway.max_source_failures or None)
        self.commands = Commands(config, self.access, self.approvals, self.audit,
                                 self.notify_approvers, self.version)
        if config.rdp is not None:
            self.commands.register("rdp", self._rdp_command)
        # open connections per source, sessions per user: counted for every SSH worker
        self.ssh = SshListener(self, tallies=SharedTallies(
            DataDir(config.data_dir).ssh_tallies, worker_slot) if worker else None)
        self.port = 0
        self._rdp: RdpSupervisor | None = None
        self._ssh_workers: SshWorkers | None = None
        #: an SSH worker: tells the gateway process how a reload went (gateway.workers)
        self.on_worker_reload: Callable[[bool], None] | None = None
        self.web: WebService | None = None  # the HTTPS endpoint ([web]: SAML, approvals)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._kills: asyncio.Task[Any] | None = None
        self._lease: asyncio.Task[Any] | None = None
        self._relay: asyncio.Task[Any] | None = None
        self._tail: LiveTail | None = None
        self._stopping = asyncio.Event()
        self._starting = False  # in start(): a SIGHUP waits for it to finish
        self._reload_requested = False
        self._reload_lock = asyncio.Lock()
        self.accepting = False  # listening, not draining
        self.draining = False

    # ------------------------------------------------------------ Services
    def clock(self) -> float:
        return time.monotonic()

    def audit(self, event: AuditEvent) -> None:
        self.audit_log.emit(event)

    @property
    def web_logins(self) -> WebLogins | None:
        """The web endpoint when it signs SSH users in (``[saml]``)."""
        return self.web if self.config.saml is not None else None

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %r failed", task.get_name(), exc_info=task.exception())

    def notify_approvers(self, request: Request) -> None:
        """Audit the new request; the webhooks that select ``approval:requested`` (and
        ``[approvals] webhook_url``) are sent from the audit trail (gateway.audit)."""
        self.audit(AuditEvent(Kind.APPROVAL, "requested", user=request.user,
                              target=request.target, session=request.session,
                              detail={"request": request.id, "command": request.command,
                                      "rule": request.rule, "kind": request.kind}))

    def _rdp_command(self, principal: Principal, args: str, source: str) -> str:
        """``ssh USER@BASTION rdp [TARGET]``: a one-time RDP password."""
        from gateway.rdp.cli import rdp_login_text

        return rdp_login_text(self.config, self.access, principal, args, source, self.audit)

    # ------------------------------------------------------------ lifecycle
    def _install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop, SIGHUP reloads. Installed before anything listens: a stop
        signal that arrives while the gateway is still starting (its listener may already
        serve sessions) is a graceful stop once the start is done, not a kill."""
        loop = asyncio.get_running_loop()
        for sig, handler in ((signal.SIGTERM, self.stop), (signal.SIGINT, self.stop),
                             (signal.SIGHUP, self.request_reload)):
            try:
                loop.add_signal_handler(sig, handler)
            except (NotImplementedError, RuntimeError):
                pass

    async def start(self) -> None:
        """Start the recorder, RDP workers and the SSH listener (or SSH workers)."""
        self._install_signal_handlers()
        self._starting = True
        try:
            await self._start()
        finally:
            self._starting = False
        if self._reload_requested and not self._stopping.is_set():
            self._reload_requested = False
            log.info("reloading the configuration, as requested (SIGHUP) while starting")
            self.spawn(self.reload(), "reload")

    async def _start(self) -> None:
        if self.worker_socket is not None:
            await self._start_worker(self.worker_socket)
            return
        self.ops.start_exports()
        try:
            expired = self.approvals.expire_all_pending()
        except StateError as exc:  # the database is down: its requests expire on their own
            log.warning("cannot expire this node's old approval requests: %s", exc)
            expired = 0
        if expired:
            log.warning("%d approval request(s) left pending by a previous run expired", expired)
        await self.recorder.start()
        if self.config.rdp is not None:  # RDP runs in worker processes (gateway/rdp/)
            self._rdp = RdpSupervisor(self.config, self.audit_log,
                                      verbose=log.isEnabledFor(logging.DEBUG),
                                      on_worker_exit=self.recorder.adopt_orphans)
            await self._rdp.start()
        if self.config.web is not None:  # before SSH: keyboard-interactive SAML needs it
            from gateway.web.server import WebService

            self.web = WebService(self.config, audit=self.audit, approvals=self.approvals)
            await self.web.start()
        # the lease first: its first renewal forgets what a previous run registered
        self._lease = self.spawn(self.registry.keep_alive(self._node_lost), "node lease")
        workers = self.ssh_workers
        if workers > 1:
            self._ssh_workers = SshWorkers(self.config, self.audit_log, workers,
                                           log_level=logging.getLogger().getEffectiveLevel(),
                                           on_worker_exit=self.recorder.adopt_orphans)
            self.port = await self._ssh_workers.start()
        else:
            self.port = await self.ssh.start()
            self._serve_sessions()
        await self.ops.start_admin()
        gw = self.config.gateway
        self.accepting = True
        self.audit(AuditEvent(Kind.GATEWAY, "ok", detail={
            "event": "start", "listen": f"{gw.listen_host}:{self.port}",
            "version": self.version, "ssh_workers": workers}))
        log.info("bastille %s listening on %s:%d (%s)", self.version, gw.listen_host, self.port,
                 f"{workers} SSH worker processes" if workers > 1 else "one process")
        sdnotify.ready(f"listening on {gw.listen_host}:{self.port}")

    async def _start_worker(self, sock: socket.socket) -> None:
        """An SSH worker process: the recorder (no recovery), the listener on its
        socket, what its own sessions need (kill requests, revoked grants, watchers on
        other nodes). The node's lease, the audit exporters, metrics, the admin endpoint
        and systemd notifications stay with the gateway process."""
        await self.recorder.start()
        self.port = await self.ssh.start(sock=sock)
        self._serve_sessions()
        self.accepting = True
        log.info("ssh worker %d serving %s:%d", os.getpid(), self.config.gateway.listen_host,
                 self.port)

    def _serve_sessions(self) -> None:
        """The tasks that act on this process's live sessions."""
        self._kills = self.spawn(carry_out_kills(
            self.approvals, self.live, access=self.access,
            interval=min(1.0, self.config.state.poll_interval) if self.state.shared else 1.0),
            "kill requests")
        self._tail = self.state.live_tail()  # watched live sessions, for other nodes
        if self._tail is not None:
            self._relay = self.spawn(publish_watched(self._tail, self.live,
                                                     self.recorder.sink.read), "watch relay")

    async def _close_state(self) -> None:
        if self.worker_socket is None:  # the lease is the gateway process's
            await _leave(self.registry)
        if self._tail is not None:
            self._tail.close()
        self.registry.close()
        self.approvals.close()
        if self.usage is not None:
            self.usage.close()
        if self.bindings is not None:
            self.bindings.close()
        close = getattr(self.failures, "close", None)
        if close is not None:
            close()

    def _node_lost(self, node: str, sessions: list[tuple[str, str, str]]) -> None:
        """Another gateway missed its lease: its live sessions were marked ended."""
        self.audit(AuditEvent(Kind.GATEWAY, "ok", detail={
            "event": "node lost", "node": node, "sessions": len(sessions)}))
        for session, user, target in sessions:
            self.audit(AuditEvent(Kind.SESSION_END, "node lost", user=user, target=target,
                                  session=session, detail={"node": node,
                                                           "noticed_by": self.registry.node}))

    def stop(self) -> None:
        self._stopping.set()

    # ------------------------------------------------------------ reload
    def request_reload(self) -> None:
        """SIGHUP: reload in a task (one at a time); while starting, once started."""
        if self._starting:
            self._reload_requested = True
        elif not self._stopping.is_set():
            self.spawn(self.reload(), "reload")

    async def reload(self) -> bool:
        """Re-read the configuration file (see the module docstring); False if refused."""
        async with self._reload_lock:
            if self.worker_socket is not None:  # told by the gateway process
                return await self._reload_worker()
            sdnotify.reloading()
            try:
                return await self._reload()
            finally:
                sdnotify.ready()

    async def _reload(self) -> bool:
        from gateway.config import load_config
        from gateway.ssh.keys import check_private_key

        path = self.config.path
        loop = asyncio.get_running_loop()
        try:
            new = await loop.run_in_executor(
                None, lambda: load_config(path, check_key=check_private_key))
        except ConfigError as exc:
            problems = [str(p) for p in exc.problems]
            log.error("reload of %s refused, the running configuration is kept: %s", path,
                      "; ".join(problems))
            self.audit(AuditEvent(Kind.GATEWAY, "failed", detail={
                "event": "reload", "config": str(path), "problems": problems[:100]}))
            self.ops.reload_result(False, problems)
            return False
        config, changed, restart = merge_reload(self.config, new)
        self._apply(config)
        self.ops.config_secrets(config)
        await self.ops.reload_webhooks(config)
        if self._rdp is not None and set(changed) - {"webhooks"}:
            await self._rdp.reload(config)
        workers: list[str] = []  # SSH workers that did not take it
        if self._ssh_workers is not None and set(changed) - {"webhooks"}:
            workers = await self._ssh_workers.reload(config)  # each re-reads the file
            for problem in workers:
                log.error("reload: %s", problem)
        self.audit(AuditEvent(Kind.GATEWAY, "ok", detail={
            "event": "reload", "config": str(path), "changed": changed,
            "needs_restart": restart, **({"ssh_workers": workers} if workers else {})}))
        log.info("configuration reloaded from %s (changed: %s)%s", path,
                 ", ".join(changed) or "nothing",
                 f"; these need a restart to take effect: {', '.join(restart)}"
                 if restart else "")
        self.ops.reload_result(True, [], restart)
        return True

    async def _reload_worker(self) -> bool:
        """An SSH worker (SIGHUP from the gateway process, which reloaded first): the
        same file, applied to what this worker's new sessions and logins use. Audit
        export, webhooks and what needs a restart are the gateway process's; a refusal
        here (the file changed in between) is audited, the worker keeps its config."""
        from gateway.config import load_config
        from gateway.ssh.keys import check_private_key

        path = self.config.path
        try:
            new = await asyncio.get_running_loop().run_in_executor(
                None, lambda: load_config(path, check_key=check_private_key))
        except ConfigError as exc:
            problems = [str(p) for p in exc.problems]
            log.error("ssh worker %d: reload of %s refused, the running configuration is "
                      "kept: %s", os.getpid(), path, "; ".join(problems))
            self.audit(AuditEvent(Kind.GATEWAY, "failed", detail={
                "event": "ssh worker reload", "pid": os.getpid(), "config": str(path),
                "problems": problems[:100]}))
            self._answer_reload(False)
            return False
        config, changed, _ = merge_reload(self.config, new)
        self._apply(config)
        self.ops.config_secrets(config)
        log.info("ssh worker %d: configuration reloaded from %s (changed: %s)", os.getpid(),
                 path, ", ".join(changed) or "nothing")
        self._answer_reload(True)
        return True

    def _answer_reload(self, ok: bool) -> None:
        if self.on_worker_reload is not None:
            self.on_worker_reload(ok)

    def _apply(self, config: Config) -> None:
        """Swap in a reloaded configuration: what new sessions and logins use."""
        self.config = config
        self.access.config = config  # in place: the kill task's grant checks see it too
        if config.budget.user_day_bytes and self.usage is None:  # a daily budget set now
            self.usage = self.state.usage()
        self.policy = build_engine(config)
        self.maskers = maskers_for(config.policy)
        self.commands = Commands(config, self.access, self.approvals, self.audit,
                                 self.notify_approvers, self.version)
        if config.rdp is not None:
            self.commands.register("rdp", self._rdp_command)
        if self._ssh_workers is None:  # this process serves SSH (else its workers do)
            self.ssh.reload(config)
        if self.web is not None:
            self.web.config = config

    @property
    def exporters(self) -> list[Exporter]:
        return self.ops.exporters

    async def run(self) -> None:
        """Start, serve until a stop signal, then drain and finalize."""
        await self.start()
        await self.run_started()

    async def run_started(self) -> None:
        """Serve (after ``start()``, which handles the signals) until a stop signal, then
        drain and finalize."""
        watchdog = self.ops.start_watchdog()
        try:
            await self._stopping.wait()
        finally:
            try:
                await self.shutdown()
            finally:
                if watchdog is not None:
                    watchdog.cancel()

    async def _wait_tasks(self, timeout: float) -> None:  # noqa: ASYNC109 - a drain budget
        """Wait up to ``timeout`` for every task, those spawned meanwhile too (a session
        whose login was under way when the drain began starts after it)."""
        deadline = self.clock() + timeout
        while self._tasks and (left := deadline - self.clock()) > 0:
            await asyncio.wait(set(self._tasks), timeout=left)

    async def shutdown(self) -> None:
        """Stop accepting, drain, tell and end the rest, finalize every recording."""
        gw = self.config.gateway
        self.accepting, self.draining = False, True
        sdnotify.stopping(f"draining sessions for up to {gw.drain_timeout:.0f} s")
        self.ssh.stop_accepting()
        if self.web is not None:  # no new browser sign-ins; waiting SSH logins fail
            await self.web.stop()
            self.web = None
        rdp_stop = None
        if self._rdp is not None:  # RDP workers drain in parallel with SSH sessions
            rdp_stop = asyncio.get_running_loop().create_task(
                self._rdp.stop(gw.drain_timeout + 15))
        ssh_stop = None
        if self._ssh_workers is not None:  # each SSH worker drains its own sessions
            ssh_stop = asyncio.get_running_loop().create_task(
                self._ssh_workers.stop(gw.drain_timeout + 15))
        if self._kills is not None:
            self._kills.cancel()
        for task in (self._lease, self._relay):
            if task is not None:
                task.cancel()
        log.info("draining %d task(s) of sessions for up to %.0f s",
                 len([t for t in self._tasks
                      if t not in (self._kills, self._lease, self._relay)]),
                 gw.drain_timeout)
        await self._wait_tasks(gw.drain_timeout)
        self.ssh.terminate_all("the bastion is shutting down")
        await self._wait_tasks(5)
        for task in list(self._tasks):
            task.cancel()
        await self._wait_tasks(5)
        # a client leaves once its exit status came; cutting the connection first can reach
        # it in the same read and turn that status into ssh's 255 "Disconnected"
        await self.ssh.let_clients_leave(CLIENTS_LEAVE_S)
        await self.ssh.aclose()
        if rdp_stop is not None:
            await rdp_stop
        if ssh_stop is not None:
            await ssh_stop
        await self.recorder.close(timeout=max(5.0, gw.drain_timeout))
        await self._close_state()
        self.audit(AuditEvent(Kind.GATEWAY, "ok", detail={
            "event": "stop" if self.worker_socket is None else "ssh worker stop",
            **({"pid": os.getpid()} if self.worker_socket is not None else {})}))
        await self.ops.stop()
        self.audit_log.close()


async def _leave(registry: object) -> None:
    """At a clean stop: give this node's lease back (nothing for another node to take)."""
    leave = getattr(registry, "leave", None)
    if leave is None:
        return
    try:
        await asyncio.get_running_loop().run_in_executor(None, leave)
    except StateError as exc:
        log.warning("cannot give this node's lease back: %s", exc)


def build_engine(config: Config) -> PolicyEngine | None:
    """The policy engine of ``[policy]``; None when there is no policy at all."""
    policy = config.policy
    if not policy.enabled:
        return None
    rules = [Rule(name=r.name, match=re.compile(r.match) if r.match else None,
                  action=Action(r.action), targets=r.targets, users=r.users, groups=r.groups,
                  writes=r.writes, deletes=r.deletes) for r in policy.rules]
    return PolicyEngine(rules, default=Action(policy.default),
                        on_uncertain=Action(policy.on_uncertain),
                        escapes=Action(policy.escapes), programs=policy.programs)
