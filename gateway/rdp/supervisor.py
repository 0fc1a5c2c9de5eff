"""Runs the RDP worker processes for the gateway (asyncio side; no pyrdp import here).

:meth:`RdpSupervisor.start` creates the listener's TLS certificate if needed, starts
``[rdp] workers`` processes (:mod:`gateway.rdp.worker`) and waits until each is
listening; a worker that exits unexpectedly (a crash, or its watchdog after a stuck
parser) is audited and replaced. :meth:`RdpSupervisor.stop` sends SIGTERM (workers
drain their sessions and finalize recordings) and waits.

Workers listen with ``SO_REUSEPORT``, so a worker left over from a gateway that was
killed could silently share the port and serve an old configuration. Before starting
any worker, the supervisor binds each RDP port *without* ``SO_REUSEPORT``: if that
fails, something already listens there and the gateway refuses to start. Workers get
the gateway's pid and end themselves when it is gone (see :mod:`gateway.rdp.worker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable

from gateway.audit import AuditEvent, Kind
from gateway.config import Config
from gateway.errors import BastilleError

log = logging.getLogger("bastille.rdp")

START_TIMEOUT = 30.0
RESTART_DELAY = 1.0


class RdpUnavailable(BastilleError):
    """The RDP workers cannot start (pyrdp missing, port in use, ...)."""


def rdp_ports(config: Config) -> list[tuple[str, int]]:
    """Every address the RDP workers listen on."""
    assert config.rdp is not None
    host = config.rdp.listen_host
    ports = [config.rdp.listen_port]
    ports += [t.rdp_listen_port for t in config.targets.values()
              if t.protocol == "rdp" and t.rdp_listen_port]
    return [(host, p) for p in ports]


def check_ports_free(config: Config) -> None:
    """Refuse to start when an RDP port already has a listener (e.g. an orphaned worker
    of a killed gateway, which would share it through ``SO_REUSEPORT``)."""
    for host, port in rdp_ports(config):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
                probe.listen(1)
            except OSError as exc:
                raise RdpUnavailable(
                    f"RDP port {host}:{port} is already in use ({exc.strerror}); is an "
                    f"RDP worker of an earlier gateway still running? "
                    f"(ss -ltnp 'sport = :{port}')") from None


class RdpSupervisor:
    """Starts, watches and stops the RDP workers.

    Args:
        config: the gateway's configuration.
        audit: the audit log (or its ``emit``).
        verbose: workers log at debug level.
        on_worker_exit: awaited after a worker exited unexpectedly, before it is
            replaced: the gateway finishes the recordings it left (crash recovery).
    """

    def __init__(self, config: Config, audit: object, verbose: bool = False, *,
                 on_worker_exit: Callable[[], Awaitable[None]] | None = None) -> None:
        self.config = config
        self._audit = audit
        self._verbose = verbose
        self._on_worker_exit = on_worker_exit
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._retiring: dict[int, asyncio.subprocess.Process] = {}  # pid -> replaced worker
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    def audit(self, event: AuditEvent) -> None:
        emit = getattr(self._audit, "emit", None) or self._audit
        emit(event)  # type: ignore[operator]

    async def start(self) -> None:
        from gateway.rdp.tls import ensure_certificate

        assert self.config.rdp is not None
        loop = asyncio.get_running_loop()
        check_ports_free(self.config)
        await loop.run_in_executor(None, ensure_certificate, self.config)
        for slot in range(self.config.rdp.workers):
            await self._spawn(slot)

    async def _spawn(self, slot: int) -> None:
        cmd = [sys.executable, "-m", "gateway.rdp.worker", "-c", str(self.config.path),
               "--parent", str(os.getpid())]
        if self._verbose:
            cmd.append("-v")
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
            hint = " (pyrdp is not installed: pip install 'bastille[rdp]')" \
                if code == 3 else ""
            raise RdpUnavailable(f"the RDP worker did not start (exit {code}){hint}")
        self._procs[slot] = proc
        task = asyncio.get_running_loop().create_task(self._watch(slot, proc),
                                                      name=f"rdp worker {slot}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, slot: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while await proc.stdout.readline():
            pass
        code = await proc.wait()
        retired = self._retiring.pop(proc.pid, None) is not None  # replaced by a reload
        if self._stopping:
            return
        if retired:
            if code != 0:  # it did not drain cleanly: finish what it left
                await self._finish_recordings(proc.pid)
            return
        self.audit(AuditEvent(Kind.GATEWAY, "failed", detail={
            "event": "rdp worker exited", "pid": proc.pid, "status": code}))
        log.error("rdp worker %d exited with %s; starting a new one", proc.pid, code)
        await self._finish_recordings(proc.pid)
        await asyncio.sleep(RESTART_DELAY)
        if not self._stopping:
            try:
                await self._spawn(slot)
            except RdpUnavailable as exc:
                log.error("%s", exc)

    async def _finish_recordings(self, pid: int) -> None:
        if self._on_worker_exit is not None:
            try:
                await self._on_worker_exit()
            except Exception:  # the replacement worker must start anyway
                log.exception("finishing the recordings of rdp worker %d failed", pid)

    async def reload(self, config: Config) -> None:
        """A reloaded configuration: each worker is replaced by a new one (which reads
        the file again and listens beside it, ``SO_REUSEPORT``); the old one stops
        listening and ends when its sessions have (within ``drain_timeout``)."""
        self.config = config
        for slot, old in list(self._procs.items()):
            self._retiring[old.pid] = old
            try:
                await self._spawn(slot)
            except RdpUnavailable as exc:
                self._retiring.pop(old.pid, None)
                log.error("reload: %s; the running RDP worker %d is kept", exc, old.pid)
                continue
            with contextlib.suppress(ProcessLookupError):
                old.send_signal(signal.SIGTERM)

    def pids(self) -> list[int]:
        """The workers running now (with those a reload replaced, still draining)."""
        procs = [*self._procs.values(), *self._retiring.values()]
        return sorted(p.pid for p in procs if p.returncode is None)

    async def stop(self, timeout: float) -> None:  # noqa: ASYNC109 - drain budget
        self._stopping = True
        procs = list(self._procs.values()) + list(self._retiring.values())
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
