"""Start the screen pass of each RDP session that ended (in the RDP worker, asyncio side).

:class:`ScreenPasses` runs ``python -m gateway.rdp.screens -c CONFIG SESSION`` for each
session the worker finished, one at a time, as a child process: the pass draws the
desktop and reads its text with pyrdp, Qt and Tesseract, which must never run on the
worker's event loop. The child lowers its own priority and bounds its own CPU
(``[rdp] ocr_budget``); it dies with the worker (``PR_SET_PDEATHSIG``).

The queue holds at most ``QUEUE_CAP`` sessions; a session that does not fit, that is
still queued when the worker stops, or whose pass is cut short (the worker stops, the
pass runs past ``timeout``) is audited as skipped (kind ``recording``, event ``rdp
screen pass``); ``bastille rdp-screens`` catches up later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from gateway.audit import AuditEvent, Kind

log = logging.getLogger("bastille.rdp")

QUEUE_CAP = 32  # ended sessions waiting for their pass (one runs at a time per worker)
GRACE = 60.0  # seconds a pass may run past its CPU budget (waiting for storage, niced)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PDEATHSIG


class ScreenPasses:
    """The screen passes of one RDP worker.

    Args:
        config: the gateway's config file (the child reads it).
        audit: writes an audit event (the worker's audit log).
        budget: ``[rdp] ocr_budget``: the child's CPU budget; it may run ``budget`` x 3
            + ``GRACE`` seconds of wall time (it is niced) before it is stopped.
    """

    def __init__(self, config: Path, audit: Callable[[AuditEvent], None], budget: float) -> None:
        self.config = config
        self.audit = audit
        self.timeout = budget * 3 + GRACE
        self._queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue(QUEUE_CAP)
        self._task: asyncio.Task[None] | None = None
        self._current: tuple[str, str, str] | None = None
        self._proc: asyncio.subprocess.Process | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(),
                                                            name="rdp screen passes")

    def submit(self, session_id: str, user: str, target: str) -> None:
        """Queue the pass of a session that ended (never blocks)."""
        try:
            self._queue.put_nowait((session_id, user, target))
        except asyncio.QueueFull:
            self._skipped((session_id, user, target), f"{QUEUE_CAP} sessions are already "
                          "waiting for their screen pass (run `bastille rdp-screens`)")

    def _skipped(self, item: tuple[str, str, str], reason: str) -> None:
        session, user, target = item
        self.audit(AuditEvent(Kind.RECORDING, "skipped", user=user, target=target,
                              session=session, detail={"event": "rdp screen pass",
                                                       "reason": reason}))

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            self._current = item
            try:
                await self._one(item)
            except OSError as exc:
                self._skipped(item, f"cannot start the screen pass: {exc}")
            finally:
                self._current = None

    async def _one(self, item: tuple[str, str, str]) -> None:
        cmd = [sys.executable, "-m", "gateway.rdp.screens", "-c", str(self.config), "--",
               item[0]]
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, preexec_fn=_die_with_parent)
        self._proc = proc
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            self._skipped(item, f"the screen pass ran longer than {self.timeout:.0f} s")
            return
        finally:
            self._proc = None
        text = out.decode(errors="replace").strip()
        if proc.returncode and proc.returncode < 0:
            self._skipped(item, f"the screen pass died (signal {-proc.returncode})")
        elif text:
            log.info("rdp screen pass: %s", text.splitlines()[-1])

    async def stop(self) -> None:
        """Stop the running pass and audit the ones that will not run."""
        proc, current = self._proc, self._current
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            if current is not None:
                self._skipped(current, "the RDP worker stopped during the screen pass")
        while not self._queue.empty():
            self._skipped(self._queue.get_nowait(), "the RDP worker stopped before the "
                          "screen pass")
