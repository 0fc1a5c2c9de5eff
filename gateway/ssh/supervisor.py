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

Supervision is the RDP workers' too: each worker prints ``ready`` once listening; one
that exits unexpectedly is audited and replaced (:mod:`gateway.core.worker_pool`); on stop
each gets SIGTERM and drains its sessions (``gateway.drain_timeout``). A worker never
outlives the gateway (``PR_SET_PDEATHSIG`` and a parent check): killed with it, it leaves
what one process would (recordings that crash recovery finishes at the next start).

The gateway process opens the listening sockets itself, one per worker, all on the port
with ``SO_REUSEPORT``, and hands each to its worker (an inherited file descriptor). So
the port keeps answering while a worker is replaced (connections the kernel gave to its
socket wait in that socket's backlog for the new worker), and before opening them the
gateway makes sure nothing else listens there (a bind without ``SO_REUSEPORT``): the
workers of a gateway killed with SIGKILL, which die with it, are waited for up to
:data:`PORT_FREE_WAIT` seconds; anything else makes the gateway refuse to start rather
than share the port.

Known limits: browser (SAML) sign-ins for SSH are held in the gateway process's web
endpoint, so with ``[saml]`` the gateway serves SSH itself (one process). A connection
stays with the worker that accepted it: one busy session is served by one core.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable

from gateway.config import Config
from gateway.core.worker_pool import WorkerCommand, WorkerPool
from gateway.errors import BastilleError
from state.paths import DataDir
from state.tallies import SharedTallies

log = logging.getLogger("bastille.workers")

RELOAD_TIMEOUT = 10.0  # seconds for every worker to re-read the configuration
RELOAD_ANSWERS = (b"reloaded", b"refused")  # a worker's answer to SIGHUP (gateway.workers)
LISTEN_BACKLOG = 128  # connections the kernel queues per worker socket


class WorkersUnavailable(BastilleError):
    """The SSH worker processes cannot start (port in use, a worker did not start)."""


def serving_processes(config: Config) -> int:
    """How many SSH worker processes the gateway runs (1: it serves SSH itself)."""
    if config.saml is not None:
        return 1  # browser sign-ins live in this process's web endpoint
    return config.gateway.workers


PORT_FREE_WAIT = 5.0  # seconds to wait for listeners of a killed gateway's workers to go


def wait_port_free(host: str, port: int, timeout: float = PORT_FREE_WAIT) -> None:
    """Return once nothing listens on ``host:port`` (a bind without ``SO_REUSEPORT``
    succeeds). The workers of a gateway killed with SIGKILL die with it, a few
    milliseconds later: they are waited for. Raises WorkersUnavailable if something
    still listens after ``timeout`` seconds."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))  # not listen(): nobody may connect to the probe
                return
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise WorkersUnavailable(
                        f"cannot listen on {host}:{port}: {exc.strerror or exc}; is a "
                        f"worker of an earlier gateway still running? "
                        f"(ss -ltnp 'sport = :{port}')") from None
        time.sleep(0.05)


def listen_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on one port with ``SO_REUSEPORT`` (port 0: a free
    one), one per worker: the kernel spreads new connections over them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        for sock in socks:
            sock.close()
        raise WorkersUnavailable(f"cannot listen on {host}:{port}: "
                                 f"{exc.strerror or exc}") from None
    return socks


class SshWorkers(WorkerPool):
    """Starts, watches and stops the SSH worker processes (in the gateway process).

    Args:
        config: the gateway's configuration (its file is what workers load).
        audit: where worker exits are reported.
        count: number of workers.
        log_level: the workers' logging level (the gateway's own).
        on_worker_exit: awaited after a worker exited unexpectedly, before it is
            replaced (the gateway's recorder finishes the recordings it left).
    """

    kind = "ssh worker"

    def __init__(self, config: Config, audit: object, count: int,
                 log_level: int = logging.WARNING,
                 on_worker_exit: Callable[[], Awaitable[None]] | None = None) -> None:
        super().__init__(audit, on_worker_exit)
        self.config = config
        self.count = count
        self._log_level = log_level
        self.port = 0
        self._socks: list[socket.socket] = []  # one per slot, kept across restarts
        self._tallies: SharedTallies | None = None
        self._reloads: dict[int, asyncio.Future[bool]] = {}  # slot -> its answer to SIGHUP

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs.values() if p.returncode is None]

    async def start(self) -> int:
        """Start every worker and wait until each listens; returns the port."""
        gw = self.config.gateway
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, wait_port_free, gw.listen_host, gw.listen_port)
        self._socks = listen_sockets(gw.listen_host, gw.listen_port, self.count)
        # a new table of open connections and sessions, for the workers to share
        path = DataDir(self.config.data_dir).ssh_tallies
        SharedTallies.create(path)
        self._tallies = SharedTallies(path, 0)
        self.port = int(self._socks[0].getsockname()[1])
        results = await asyncio.gather(*(self._spawn(slot) for slot in range(self.count)),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                await self.stop(5.0)
                if isinstance(result, WorkersUnavailable | OSError):
                    raise WorkersUnavailable(str(result)) from None
                raise result
        return self.port

    def _command(self, slot: int) -> WorkerCommand:
        sock = self._socks[slot]
        return WorkerCommand(
            [sys.executable, "-m", "gateway.workers", "-c", str(self.config.path),
             "--parent", str(os.getpid()), "--fd", str(sock.fileno()), "--slot", str(slot),
             "--log-level", str(self._log_level)],
            _worker_env(), (sock.fileno(),))

    def _start_failed(self, slot: int, code: int) -> BastilleError:
        return WorkersUnavailable(f"SSH worker {slot} did not start (exit {code}); "
                                  "its error is in the gateway's log")

    def _line(self, slot: int, line: bytes) -> None:
        answer = self._reloads.get(slot)
        if answer is not None and not answer.done() and line.strip() in RELOAD_ANSWERS:
            answer.set_result(line.strip() == b"reloaded")

    async def _exited(self, slot: int, proc: asyncio.subprocess.Process, code: int) -> bool:
        answer = self._reloads.get(slot)
        if answer is not None and not answer.done():  # its replacement reads the file
            answer.set_result(True)
        return False

    def _lost(self, slot: int) -> None:
        if self._tallies is not None:  # its connections and sessions are gone with it
            self._tallies.forget_slot(slot)

    async def reload(self, config: Config, timeout: float = RELOAD_TIMEOUT) -> list[str]:  # noqa: ASYNC109 - a bound on the answers
        """The gateway process reloaded ``config``: each running worker re-reads the
        file (SIGHUP) for its new sessions and answers ``reloaded`` or ``refused`` on
        stdout; returns once all have (a worker started later reads the file anyway).
        Returns the problems: workers that refused (the file changed in between) or did
        not answer within ``timeout`` seconds."""
        self.config = config
        loop = asyncio.get_running_loop()
        asked: dict[int, tuple[int, asyncio.Future[bool]]] = {}
        for slot, proc in self._procs.items():
            if proc.returncode is not None:
                continue
            answer = self._reloads[slot] = loop.create_future()
            try:
                proc.send_signal(signal.SIGHUP)
            except ProcessLookupError:
                continue
            asked[slot] = (proc.pid, answer)
        try:
            if asked:
                await asyncio.wait([a for _, a in asked.values()], timeout=timeout)
        finally:
            for slot in asked:
                self._reloads.pop(slot, None)
        problems = []
        for pid, answer in asked.values():
            if not answer.done():
                answer.cancel()
                problems.append(f"ssh worker {pid} did not answer within {timeout:g} s")
            elif not answer.result():
                problems.append(f"ssh worker {pid} refused it and keeps its configuration "
                                "(see the log)")
        return problems

    def _stopped(self) -> None:
        for sock in self._socks:
            sock.close()
        self._socks = []


#: systemd talks to the gateway process only (readiness, reload, stop, watchdog)
_SYSTEMD_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def _worker_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SYSTEMD_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    return env
