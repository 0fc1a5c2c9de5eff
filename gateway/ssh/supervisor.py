"""SSH worker processes: ``[gateway] workers = N`` (default: one per core).

With ``workers > 1`` the gateway process does not serve SSH itself: it starts N
processes (``python -m gateway.workers``, see :mod:`gateway.workers`) that each run the
SSH listener on the same port with ``SO_REUSEPORT`` (the kernel spreads new connections
over them) and serve whole connections, recording into the same storage, index and
audit log. The gateway process keeps what there is one of: recording recovery and the
status file, the RDP workers, the web endpoint. What sessions share across processes
goes through the ``state/`` stores (approvals and grants, kill requests: every worker
carries out the kill requests of its own sessions) and the recordings themselves
(watching a live session reads its recording).

Supervision, as for the RDP workers: each worker prints ``ready`` once listening; one
that exits unexpectedly is audited and replaced after :data:`RESTART_DELAY`; on stop
each gets SIGTERM and drains its sessions (``gateway.drain_timeout``). A worker never
outlives the gateway (``PR_SET_PDEATHSIG`` and a parent check).

Before starting workers the gateway binds the port *without* ``SO_REUSEPORT``: if that
fails, something already listens there (say, a worker of a gateway killed with SIGKILL
whose parent check has not fired yet) and the gateway refuses to start instead of
silently sharing the port with it.

Known limits: failed-login counts (``max_auth_failures``) are kept per process, so a
client spread over N workers by the kernel gets up to N times the attempts before it is
refused; browser (SAML) sign-ins for SSH are held in the gateway process's web
endpoint, so with ``[saml]`` the gateway serves SSH itself (one process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys

from gateway.audit import AuditEvent, Kind
from gateway.config import Config
from gateway.errors import BastilleError

log = logging.getLogger("bastille.workers")

START_TIMEOUT = 30.0
RESTART_DELAY = 1.0


class WorkersUnavailable(BastilleError):
    """The SSH worker processes cannot start (port in use, a worker did not start)."""


def serving_processes(config: Config) -> int:
    """How many SSH worker processes the gateway runs (1: it serves SSH itself)."""
    if config.saml is not None:
        return 1  # browser sign-ins live in this process's web endpoint
    return config.gateway.workers


def reserve_port(host: str, port: int) -> int:
    """The port the workers will share: ``port``, or a free one for 0. Raises
    WorkersUnavailable if something already listens there."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            probe.listen(1)
        except OSError as exc:
            raise WorkersUnavailable(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}; is a worker of an "
                f"earlier gateway still running? (ss -ltnp 'sport = :{port}')") from None
        return int(probe.getsockname()[1])


class SshWorkers:
    """Starts, watches and stops the SSH worker processes (in the gateway process).

    Args:
        config: the gateway's configuration (its file is what workers load).
        audit: where worker exits are reported.
        count: number of workers.
        log_level: the workers' logging level (the gateway's own).
    """

    def __init__(self, config: Config, audit: object, count: int,
                 log_level: int = logging.WARNING) -> None:
        self.config = config
        self._audit = audit
        self.count = count
        self._log_level = log_level
        self.port = 0
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs.values() if p.returncode is None]

    def audit(self, event: AuditEvent) -> None:
        emit = getattr(self._audit, "emit", None) or self._audit
        emit(event)  # type: ignore[operator]

    async def start(self) -> int:
        """Start every worker and wait until each listens; returns the port."""
        gw = self.config.gateway
        self.port = reserve_port(gw.listen_host, gw.listen_port)
        results = await asyncio.gather(*(self._spawn(slot) for slot in range(self.count)),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                await self.stop(5.0)
                if isinstance(result, WorkersUnavailable | OSError):
                    raise WorkersUnavailable(str(result)) from None
                raise result
        return self.port

    async def _spawn(self, slot: int) -> None:
        cmd = [sys.executable, "-m", "gateway.workers", "-c", str(self.config.path),
               "--parent", str(os.getpid()), "--port", str(self.port), "--slot", str(slot),
               "--log-level", str(self._log_level)]
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            code = await proc.wait()
            raise WorkersUnavailable(f"SSH worker {slot} did not start (exit {code}); "
                                     "its error is in the gateway's log")
        self._procs[slot] = proc
        task = asyncio.get_running_loop().create_task(self._watch(slot, proc),
                                                      name=f"ssh worker {slot}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, slot: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while await proc.stdout.readline():
            pass
        code = await proc.wait()
        if self._stopping:
            return
        self.audit(AuditEvent(Kind.GATEWAY, "failed", detail={
            "event": "ssh worker exited", "pid": proc.pid, "status": code}))
        log.error("ssh worker %d exited with %s; starting a new one", proc.pid, code)
        await asyncio.sleep(RESTART_DELAY)
        if not self._stopping:
            try:
                await self._spawn(slot)
            except WorkersUnavailable as exc:
                log.error("%s", exc)

    async def stop(self, timeout: float) -> None:  # noqa: ASYNC109 - drain budget
        """SIGTERM every worker (each drains its sessions), wait up to ``timeout``."""
        self._stopping = True
        procs = list(self._procs.values())
        for proc in procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for task in list(self._tasks):
            task.cancel()
