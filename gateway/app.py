"""Composition root: config -> audit, recorder, built-in targets -> SSH listener.

Lifecycle: ``run()`` starts everything, serves until SIGTERM/SIGINT (or ``stop()``),
then stops accepting, lets existing sessions drain for ``gateway.drain_timeout`` seconds,
tells the ones still running that the bastion is shutting down, and finalizes every
recording before returning.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from gateway._version import __version__
from gateway.approvals import ApprovalStore, Request, notify_webhook
from gateway.audit import AuditEvent, AuditLog, Kind
from gateway.auth.passwords import hash_password
from gateway.auth.ratelimit import FailureLimiter
from gateway.config import NOBODY, Config, TargetConfig
from gateway.errors import HostKeyMismatch, TargetDenied, TargetError, UnknownTarget
from gateway.policy import BUILTIN_PATTERNS, Action, MaskPattern, PolicyEngine, Rule, StreamMasker
from gateway.routing import Route
from gateway.ssh.demo_target import LocalShellTarget
from gateway.ssh.keys import public_key_blob
from gateway.ssh.upstream import Endpoint, TofuStore, connect, endpoint_for
from recorder.service import Recorder

if TYPE_CHECKING:
    from asyncssh import SSHClientConnection

    from gateway.rdp.supervisor import RdpSupervisor
    from gateway.ssh.listener import Listener
    from gateway.ssh.server import BastionServer, ConnContext
    from gateway.ssh.session import GatewaySession

log = logging.getLogger("bastille.app")


class GatewayApp:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.version = __version__
        self.recorder = Recorder(config.recording)
        self.audit_log = AuditLog(config.audit.file, syslog=config.audit.syslog,
                                  syslog_address=config.audit.syslog_address,
                                  syslog_facility=config.audit.syslog_facility)
        self.limiter = FailureLimiter(config.gateway.max_auth_failures,
                                      config.gateway.auth_failure_window)
        self.tofu = TofuStore(config.data_dir / "known_targets")
        self.dummy_hash = hash_password("not-a-password")  # equalizes timing for unknown users
        self.connections: set[BastionServer] = set()
        self.sessions: dict[str, GatewaySession] = {}  # live recorded sessions by id
        self._kill_task: asyncio.Task[Any] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._builtin_targets: dict[str, LocalShellTarget] = {}
        self._keys: dict[str, list[bytes]] = {
            name: [public_key_blob(k) for k in user.keys]
            for name, user in config.users.items()
        }
        self._server: Listener | None = None
        self._rdp: RdpSupervisor | None = None
        self._stopping = asyncio.Event()
        self.policy_engine = build_engine(config)
        self._mask_patterns = (*BUILTIN_PATTERNS, *(
            MaskPattern.from_config(f"custom-{i}", rx, prefix)
            for i, (rx, prefix) in enumerate(config.policy.mask_patterns)))
        self.approvals = ApprovalStore(config.data_dir / "approvals.sqlite3")
        # xauth file shared by the X11 listener asyncssh opens for users and the
        # bastion's own X11 client side toward targets
        self.x11_auth_path = config.data_dir / "x11" / "Xauthority"
        self.x11_auth_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.port = 0

    # ------------------------------------------------------------ services for sessions
    def audit(self, event: AuditEvent) -> None:
        self.audit_log.emit(event)

    def user_keys(self, user: str) -> list[bytes]:
        return self._keys.get(user, [])

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %r failed", task.get_name(), exc_info=task.exception())

    def authorize(self, ctx: ConnContext, name: str) -> TargetConfig:
        target = self.config.targets.get(name)
        # an SSO login carries its IdP-mapped groups on the connection
        user = ctx.user if ctx.sso else self.config.users.get(ctx.user.name)
        if target is None or user is None:
            self.audit(AuditEvent(Kind.REFUSED, "denied", user=ctx.user.name, source=ctx.source,
                                  target=name, detail={"reason": "unknown target"}))
            raise UnknownTarget(f"unknown target {name!r}; "
                                "'ssh USER@BASTION help' lists yours")
        if target.protocol == "rdp":
            self.audit(AuditEvent(Kind.REFUSED, "denied", user=ctx.user.name, source=ctx.source,
                                  target=name, detail={"reason": "rdp target over ssh"}))
            raise UnknownTarget(f"{name!r} is an RDP target: connect to it with an RDP client "
                                "(docs/rdp.md)")
        if not target.permits(user):
            grant = self.approvals.active_grant(user.name, name)
            if grant is not None:
                return target
            self.audit(AuditEvent(Kind.REFUSED, "denied", user=ctx.user.name, source=ctx.source,
                                  target=name, detail={"reason": "not allowed"}))
            raise TargetDenied(f"{ctx.user.name} is not allowed to use target {name!r} "
                               f"(ask for access: ssh USER@BASTION request {name} 1h REASON)")
        return target

    async def upstream(self, ctx: ConnContext, target: TargetConfig,
                       agent_path: str | None = None) -> SSHClientConnection:
        """The connection to ``target`` for this user connection (opened once, shared by
        its channels). ``agent_path`` forwards the user's agent (caller checked policy)."""
        existing = ctx.upstreams.get(target.name)
        if isinstance(existing, asyncio.Future):
            return await asyncio.shield(existing)
        if existing is not None and not existing.is_closed():
            return existing
        future: asyncio.Future[SSHClientConnection] = \
            asyncio.get_running_loop().create_future()
        ctx.upstreams[target.name] = future
        try:
            conn = await connect(target.name, self._endpoint(target), self.tofu,
                                 agent_path=agent_path)
        except TargetError as exc:
            ctx.upstreams.pop(target.name, None)
            kind = Kind.HOST_KEY_MISMATCH if isinstance(exc, HostKeyMismatch) else \
                Kind.TARGET_CONNECT
            self.audit(AuditEvent(kind, "failed", user=ctx.user.name, source=ctx.source,
                                  target=target.name, detail={"error": str(exc)}))
            future.set_exception(exc)
            future.exception()  # mark retrieved
            raise
        ctx.upstreams[target.name] = conn
        future.set_result(conn)
        return conn

    def _endpoint(self, target: TargetConfig) -> Endpoint:
        if target.builtin is not None:
            return self._builtin_targets[target.name].endpoint()
        return endpoint_for(target, self.tofu)

    def masker_for(self, target: TargetConfig, *, binary: bool = False) -> StreamMasker:
        """A masker for one session: built-in and configured patterns, plus the target's
        vaulted password (so it is masked if it is ever echoed)."""
        secrets: list[str] = []
        if target.builtin is None:
            try:
                password = endpoint_for(target, self.tofu).password
            except TargetError:
                password = None
            if password:
                secrets.append(password)
        return StreamMasker(self._mask_patterns, secrets=secrets, binary=binary)

    def player_target(self, user: str) -> tuple[TargetConfig, str]:
        """The built-in target that serves the player TUI over SSH, and its command
        (run as the authenticated ``user``, for the approvals pane)."""
        import shlex
        import sys

        command = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "gateway", "player",
                                                    "-c", str(self.config.path),
                                                    "--as", user))
        return TargetConfig(name="player", builtin="local-shell",
                            description="the session player"), command

    def notify_approvers(self, request: Request) -> None:
        cfg = self.config.approvals
        self.audit(AuditEvent(Kind.APPROVAL, "requested", user=request.user,
                              target=request.target, session=request.session,
                              detail={"request": request.id, "command": request.command,
                                      "rule": request.rule}))
        if cfg.webhook_url:
            asyncio.get_running_loop().run_in_executor(
                None, notify_webhook, cfg.webhook_url, cfg.webhook_format, request)

    def builtin(self, route: Route, ctx: ConnContext) -> str:
        """Run a built-in command and return its text (shown to the user)."""
        if route.builtin == "request":
            from gateway.approvals_cli import request_access

            return request_access(self, ctx.user.name, route.builtin_args, source=ctx.source)
        if route.builtin == "rdp":
            from gateway.rdp.cli import rdp_login_text

            user = ctx.user if ctx.sso else self.config.users.get(ctx.user.name)
            if user is None:
                return "bastille: no RDP access for this login"
            return rdp_login_text(self.config, user, ctx.sso, route.builtin_args,
                                  ctx.source, self.audit)
        if route.builtin == "approvals":
            from gateway.approvals_cli import run_approvals

            return run_approvals(self, ctx.user.name, ctx.user.groups, route.builtin_args,
                                 source=ctx.source)
        user = ctx.user if ctx.sso else self.config.users.get(ctx.user.name)
        targets = self.config.targets_for(user) if user else []
        lines = [f"bastille {self.version}. Targets available to {ctx.user.name}:"]
        lines += [f"  {t.name:<16} {t.description}".rstrip() for t in targets] or ["  (none)"]
        lines += ["", "Connect:   ssh -t USER@BASTION TARGET",
                  "Run:       ssh USER@BASTION TARGET -- COMMAND",
                  "Transfer:  scp FILE USER+TARGET@BASTION:PATH   (also sftp, rsync -e ssh)"]
        rdp = [t for t in self.config.targets.values()
               if user is not None and t.protocol == "rdp" and t.permits(user)]
        if rdp and self.config.rdp is not None:
            lines += ["", "RDP targets (an RDP client, user name USER#TARGET):"]
            lines += [f"  {t.name:<16} {t.description}".rstrip() for t in rdp]
            lines += ["One-time RDP password (also for single sign-on users): "
                      "ssh USER@BASTION rdp [TARGET]"]
        return "\n".join(lines)

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        expired = self.approvals.expire_all_pending()
        if expired:
            log.warning("%d approval request(s) left pending by a previous run expired", expired)
        await self.recorder.start()
        builtins = [t.name for t in self.config.targets.values() if t.builtin == "local-shell"]
        if self.config.approvals.approvers != NOBODY:
            builtins.append("player")  # serves `ssh -t auditor@bastion player`
        for name in builtins:
            local = LocalShellTarget()
            await local.start()
            self._builtin_targets[name] = local
        from gateway.ssh.listener import start_listener

        gw = self.config.gateway
        if self.config.rdp is not None:  # RDP runs in worker processes (gateway/rdp/)
            from gateway.rdp.supervisor import RdpSupervisor

            self._rdp = RdpSupervisor(self.config, self.audit_log,
                                      verbose=log.isEnabledFor(logging.DEBUG))
            await self._rdp.start()
        self._server = await start_listener(self)
        self.port = self._server.sockets[0].getsockname()[1]
        self._kill_task = self.spawn(self._watch_kills(), "kill requests")
        self.audit(AuditEvent(Kind.GATEWAY, "ok", detail={
            "event": "start", "listen": f"{gw.listen_host}:{self.port}",
            "version": self.version}))
        log.info("bastille %s listening on %s:%d", self.version, gw.listen_host, self.port)

    async def _watch_kills(self) -> None:
        """Carry out `bastille sessions kill` requests for sessions of this process."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            try:
                pending = await loop.run_in_executor(None, self.approvals.pending_kills)
            except Exception:
                log.exception("cannot read kill requests")
                continue
            for session_id, by, reason in pending:
                session = self.sessions.get(session_id)
                if session is None:
                    continue
                self.approvals.kill_done(session_id)
                self.audit(session.audit_event(Kind.SESSION_KILL, "ok",
                                               {"by": by, "reason": reason}))
                session.terminate(f"session terminated by {by}: {reason}")

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Start, serve until a stop signal, then drain and finalize."""
        await self.start()
        await self.run_started()

    async def run_started(self) -> None:
        """Serve (after ``start()``) until a stop signal, then drain and finalize."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stop)
            except (NotImplementedError, RuntimeError):
                pass
        try:
            await self._stopping.wait()
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        gw = self.config.gateway
        if self._server is not None:
            self._server.close()
            self._server = None
        rdp_stop = None
        if self._rdp is not None:  # RDP workers drain in parallel with SSH sessions
            rdp_stop = asyncio.get_running_loop().create_task(
                self._rdp.stop(gw.drain_timeout + 15))
        if self._kill_task is not None:
            self._kill_task.cancel()
        sessions = len([t for t in self._tasks if t is not self._kill_task])
        log.info("draining %d task(s) of sessions for up to %.0f s", sessions, gw.drain_timeout)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=gw.drain_timeout)
        for conn in list(self.connections):
            if conn.ctx is not None:
                for session in list(conn.ctx.sessions):
                    session.terminate("the bastion is shutting down")
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        for conn in list(self.connections):
            if conn.ctx is not None:
                conn.ctx.conn.close()
        if rdp_stop is not None:
            await rdp_stop
        await self.recorder.close(timeout=max(5.0, gw.drain_timeout))
        for local in self._builtin_targets.values():
            await local.close()
        self.approvals.close()
        self.audit(AuditEvent(Kind.GATEWAY, "ok", detail={"event": "stop"}))
        self.audit_log.close()


def build_engine(config: Config) -> PolicyEngine | None:
    """The policy engine of ``[policy]``; None when there is no policy at all."""
    import re

    policy = config.policy
    if not policy.enabled:
        return None
    rules = [Rule(name=r.name, match=re.compile(r.match) if r.match else None,
                  action=Action(r.action), targets=r.targets, users=r.users, groups=r.groups,
                  writes=r.writes, deletes=r.deletes) for r in policy.rules]
    return PolicyEngine(rules, default=Action(policy.default),
                        on_uncertain=Action(policy.on_uncertain),
                        escapes=Action(policy.escapes), programs=policy.programs)
