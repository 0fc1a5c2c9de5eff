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

from gateway.config import Config
from gateway.core.worker_pool import WorkerCommand, WorkerPool
from gateway.errors import BastilleError

log = logging.getLogger("bastille.rdp")


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


class RdpSupervisor(WorkerPool):
    """Starts, watches and stops the RDP workers.

    Args:
        config: the gateway's configuration.
        audit: the audit log (or its ``emit``).
        verbose: workers log at debug level.
        on_worker_exit: awaited after a worker exited unexpectedly, before it is
            replaced: the gateway finishes the recordings it left (crash recovery).
    """

    kind = "rdp worker"

    def __init__(self, config: Config, audit: object, verbose: bool = False, *,
                 on_worker_exit: Callable[[], Awaitable[None]] | None = None) -> None:
        super().__init__(audit, on_worker_exit)
        self.config = config
        self._verbose = verbose
        self._retiring: dict[int, asyncio.subprocess.Process] = {}  # pid -> replaced worker

    async def start(self) -> None:
        from gateway.rdp.tls import ensure_certificate

        assert self.config.rdp is not None
        loop = asyncio.get_running_loop()
        check_ports_free(self.config)
        await loop.run_in_executor(None, ensure_certificate, self.config)
        for slot in range(self.config.rdp.workers):
            await self._spawn(slot)

    def _command(self, slot: int) -> WorkerCommand:
        cmd = [sys.executable, "-m", "gateway.rdp.worker", "-c", str(self.config.path),
               "--parent", str(os.getpid())]
        if self._verbose:
            cmd.append("-v")
        return WorkerCommand(cmd, {**os.environ, "PYTHONUNBUFFERED": "1"})

    def _start_failed(self, slot: int, code: int) -> BastilleError:
        hint = " (pyrdp is not installed: pip install 'bastille[rdp]')" if code == 3 else ""
        return RdpUnavailable(f"the RDP worker did not start (exit {code}){hint}")

    async def _exited(self, slot: int, proc: asyncio.subprocess.Process, code: int) -> bool:
        retired = self._retiring.pop(proc.pid, None) is not None  # replaced by a reload
        if retired and not self._stopping and code != 0:
            await self._finish_recordings(proc.pid)  # it did not drain cleanly
        return retired

    def _running(self) -> list[asyncio.subprocess.Process]:
        return [*self._procs.values(), *self._retiring.values()]

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
