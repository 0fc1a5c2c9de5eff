"""Worker processes of a protocol adapter (SSH workers, RDP workers): one mechanism.

A :class:`WorkerPool` starts one process per slot and waits until it prints ``ready``;
one that exits unexpectedly is audited, the recordings it left are finished (the
``on_worker_exit`` callback: crash recovery), and it is replaced after
:data:`RESTART_DELAY`; :meth:`WorkerPool.stop` sends SIGTERM (each worker drains its
sessions) and kills what is still running after the drain budget. Adapters say how a
worker is started (:meth:`WorkerPool._command`) and may hook the lines it prints, its
exit and the end of the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from gateway.audit import AuditEvent, Kind
from gateway.errors import BastilleError

log = logging.getLogger("bastille.workers")

START_TIMEOUT = 30.0  # seconds for a worker to print "ready"
RESTART_DELAY = 1.0  # seconds between a worker's exit and its replacement


class WorkerCommand:
    """How to start one worker: its argv, environment and inherited descriptors."""

    def __init__(self, argv: Sequence[str], env: dict[str, str],
                 pass_fds: Sequence[int] = ()) -> None:
        self.argv = list(argv)
        self.env = env
        self.pass_fds = tuple(pass_fds)


class WorkerPool:
    """Starts, watches, replaces and stops worker processes, one per slot.

    Args:
        audit: the audit log (or its ``emit``): unexpected exits are reported there.
        on_worker_exit: awaited after a worker exited unexpectedly, before it is
            replaced (the gateway's recorder finishes the recordings it left).
    """

    #: how workers are named in logs, audit events and task names ("ssh worker")
    kind = "worker"

    def __init__(self, audit: object,
                 on_worker_exit: Callable[[], Awaitable[None]] | None = None) -> None:
        self._audit = audit
        self._on_worker_exit = on_worker_exit
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    def audit(self, event: AuditEvent) -> None:
        emit = getattr(self._audit, "emit", None) or self._audit
        emit(event)  # type: ignore[operator]

    # ------------------------------------------------------------ adapter hooks
    def _command(self, slot: int) -> WorkerCommand:
        raise NotImplementedError

    def _start_failed(self, slot: int, code: int) -> BastilleError:
        """The error raised when the worker of ``slot`` exited (``code``) before ready."""
        return BastilleError(f"{self.kind} {slot} did not start (exit {code})")

    def _line(self, slot: int, line: bytes) -> None:
        """A line the worker printed after ``ready``."""

    async def _exited(self, slot: int, proc: asyncio.subprocess.Process, code: int) -> bool:
        """The worker of ``slot`` ended; True if that was expected (not replaced)."""
        return False

    def _lost(self, slot: int) -> None:
        """An unexpected exit, before its recordings are finished: forget its state."""

    def _running(self) -> list[asyncio.subprocess.Process]:
        """Every process ``stop`` must end."""
        return list(self._procs.values())

    def _stopped(self) -> None:
        """Every worker has ended (``stop``)."""

    # ------------------------------------------------------------ the mechanism
    async def _spawn(self, slot: int) -> None:
        cmd = self._command(slot)
        proc = await asyncio.create_subprocess_exec(
            *cmd.argv, stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
            env=cmd.env, pass_fds=cmd.pass_fds)
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            code = await proc.wait()
            raise self._start_failed(slot, code)
        self._procs[slot] = proc
        task = asyncio.get_running_loop().create_task(self._watch(slot, proc),
                                                      name=f"{self.kind} {slot}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, slot: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            self._line(slot, line)
        code = await proc.wait()
        if await self._exited(slot, proc, code) or self._stopping:
            return
        self.audit(AuditEvent(Kind.GATEWAY, "failed", detail={
            "event": f"{self.kind} exited", "pid": proc.pid, "status": code}))
        log.error("%s %d exited with %s; starting a new one", self.kind, proc.pid, code)
        self._lost(slot)
        await self._finish_recordings(proc.pid)
        await asyncio.sleep(RESTART_DELAY)
        if not self._stopping:
            try:
                await self._spawn(slot)
            except BastilleError as exc:
                log.error("%s", exc)

    async def _finish_recordings(self, pid: int) -> None:
        if self._on_worker_exit is not None:
            try:
                await self._on_worker_exit()
            except Exception:  # the replacement worker must start all the same
                log.exception("finishing the recordings of %s %d failed", self.kind, pid)

    async def stop(self, timeout: float) -> None:  # noqa: ASYNC109 - drain budget
        """SIGTERM every worker (each drains its sessions), wait up to ``timeout``, then
        kill what is left."""
        self._stopping = True
        procs = self._running()
        for proc in procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for task in list(self._tasks):
            task.cancel()
        self._stopped()
