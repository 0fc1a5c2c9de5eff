"""The RDP worker process: ``python -m gateway.rdp.worker -c CONFIG``.

The gateway process starts ``[rdp] workers`` of these (:mod:`gateway.rdp.supervisor`);
each runs Twisted's asyncio reactor with pyrdp, listens on the RDP port(s) with
``SO_REUSEPORT`` (the kernel spreads connections over the workers), and records into the
same storage, index and audit log as the gateway. pyrdp parsing therefore never runs on
the SSH gateway's event loop, and a stuck parser stalls at most the sessions of one
worker: a watchdog thread ends a worker whose loop has not turned for
``WATCHDOG_SECONDS`` (exit 70), and the supervisor starts a new one.

On SIGTERM the worker stops listening, lets sessions run for ``gateway.drain_timeout``,
then closes them and finalizes their recordings.

Protocol with the supervisor: one line ``ready`` on stdout once listening; exit status
3 if pyrdp is not installed.

A worker never outlives its gateway: it asks the kernel for SIGTERM when its parent
dies (``PR_SET_PDEATHSIG``; it then drains and finalizes like on a normal stop), and
its watchdog thread also checks that the parent given by ``--parent`` is still its
parent, so a gateway killed with SIGKILL leaves no orphan listening on the RDP port.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.processes import pid_alive
from common.safefiles import private_dir
from gateway._version import __version__
from gateway.config import Config, load_config

if TYPE_CHECKING:
    from gateway.audit import AuditLog
    from gateway.rdp.gate import RdpGate
    from recorder.service import Recorder
    from state.approvals import Approvals

log = logging.getLogger("bastille.rdp")

WATCHDOG_SECONDS = 15.0
EXIT_NO_PYRDP = 3
EXIT_STUCK = 70
EXIT_ORPHANED = 71
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """SIGTERM this process when ``parent`` exits (Linux); exit now if it already has."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the watchdog's parent check remains
        pass
    if os.getppid() != parent:
        print("bastille-rdp: the gateway that started this worker is gone; exiting",
              file=sys.stderr, flush=True)
        os._exit(EXIT_ORPHANED)


def _listen_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class _Watchdog:
    """Ends the process when the event loop stops turning (a stuck parser)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: float,
                 parent: int | None = None) -> None:
        self.loop = loop
        self.limit = limit
        self.parent = parent
        self.last = time.monotonic()
        self.stopped = False

    def tick(self) -> None:
        self.last = time.monotonic()
        if not self.stopped:
            self.loop.call_later(0.5, self.tick)

    def run(self) -> None:
        while not self.stopped:
            time.sleep(1.0)
            if self.parent is not None and os.getppid() != self.parent:
                # the gateway died and the death signal was lost: stop as on SIGTERM
                self.parent = None
                self.loop.call_soon_threadsafe(os.kill, os.getpid(), signal.SIGTERM)
            stalled = time.monotonic() - self.last
            if stalled > self.limit and not self.stopped:
                print(f"bastille-rdp: event loop stalled for {stalled:.0f} s (stuck RDP "
                      "parser?); exiting so that a fresh worker takes over",
                      file=sys.stderr, flush=True)
                os._exit(EXIT_STUCK)


def _open_gate(config: Config, recorder: Recorder, audit: AuditLog
               ) -> tuple[RdpGate, Approvals, Callable[[], None]]:
    """The worker's :class:`gateway.rdp.gate.RdpGate` over the stores of the configured
    backend (SQLite files or the shared database), its approval store (grants and kill
    requests), and the function that closes those stores."""
    from gateway.rdp.gate import RdpGate
    from state.backend import StateBackend

    backend = StateBackend(config.state, config.data_dir)
    tokens = backend.tokens()
    approvals = backend.approvals()
    gw = config.gateway
    registry = backend.registry() if backend.shared else None  # the gateway holds the lease
    failures = backend.failures(gw.max_auth_failures, gw.auth_failure_window,
                                source_limit=gw.max_source_failures or None)
    usage = backend.usage() if config.budget.user_day_bytes else None  # shared with SSH
    gate = RdpGate(config, recorder, audit, tokens, approvals, version=__version__,
                   failures=failures, registry=registry, usage=usage)

    def close() -> None:
        tokens.close()
        approvals.close()
        for store in (registry, usage, failures):
            closer = getattr(store, "close", None)
            if closer is not None:
                closer()

    return gate, approvals, close


def _scratch_dir(data_dir: Path) -> str:
    """This worker's directory for pyrdp (which insists on one; every pyrdp feature that
    would write there is off): ``DATA_DIR/rdp-scratch/PID``. The directories of workers
    that are gone (killed before they could remove theirs) are removed first, so that
    restarts never pile them up."""
    root = private_dir(data_dir / "rdp-scratch")
    for old in root.iterdir():
        if old.name.isdigit() and not pid_alive(int(old.name)):
            shutil.rmtree(old, ignore_errors=True)
    return str(private_dir(root / str(os.getpid())))


async def serve(config: Config, stop: asyncio.Event) -> None:
    """Listen and serve RDP until ``stop`` is set; then drain and finalize."""
    from pyrdp.logging.adapters import SessionLogger
    from twisted.internet import reactor as _reactor
    from twisted.internet.protocol import ServerFactory

    from gateway.audit import AuditEvent, AuditLog, Kind
    from gateway.core.live import carry_out_kills
    from gateway.rdp.mitm import BastilleRDPMITM, TLSContexts, mitm_config
    from gateway.rdp.passes import ScreenPasses
    from gateway.rdp.tls import ensure_certificate
    from recorder.service import Recorder

    assert config.rdp is not None
    reactor: Any = _reactor
    rdp = config.rdp
    recorder = Recorder(config.recording, recover=False)
    await recorder.start()
    audit = AuditLog(config.audit.file)  # exported (syslog, webhooks) by the gateway
    gate, approvals, close_state = _open_gate(config, recorder, audit)
    passes = ScreenPasses(config.path, audit.emit, rdp.ocr_budget)
    passes.start()
    gate.on_session_end = passes.submit
    cert, key = ensure_certificate(config)
    tls = TLSContexts(str(cert), str(key))
    scratch = _scratch_dir(config.data_dir)  # pyrdp insists on an output dir
    mitms: set[Any] = set()

    class Factory(ServerFactory):
        def __init__(self, fixed_target: str | None) -> None:
            self.fixed_target = fixed_target
            self.count = 0

        def buildProtocol(self, addr: Any) -> Any:
            self.count += 1
            sid = f"w{os.getpid()}-{self.count}"
            main_log = SessionLogger(logging.getLogger("pyrdp.mitm.connections"), sid)
            crawler_log = SessionLogger(logging.getLogger("crawler"), sid)
            mitm = BastilleRDPMITM(gate, tls, self.fixed_target, main_log, crawler_log,
                                   mitm_config(scratch))
            mitm.login_timeout = rdp.login_timeout
            mitms.add(mitm)
            mitm.on_gone = mitms.discard
            return mitm.getProtocol()

    ports = []
    binds: list[tuple[int, str | None]] = [(rdp.listen_port, None)]
    binds += [(t.rdp_listen_port, t.name) for t in config.targets.values()
              if t.protocol == "rdp" and t.rdp_listen_port]
    for port, fixed in binds:
        sock = _listen_socket(rdp.listen_host, port)
        family = sock.family
        ports.append(reactor.adoptStreamPort(sock.fileno(), family, Factory(fixed)))
        sock.close()
    log.info("rdp worker %d listening on %s:%d", os.getpid(), rdp.listen_host,
             rdp.listen_port)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    kills = loop.create_task(carry_out_kills(approvals, gate.live, access=gate.access),
                             name="rdp kill requests")
    limits = loop.create_task(_watch_limits(config, gate), name="rdp session limits")
    try:
        await stop.wait()
    finally:
        kills.cancel()
        limits.cancel()
        for p in ports:
            p.stopListening()
        deadline = time.monotonic() + config.gateway.drain_timeout
        while gate.connections and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        for mitm in list(mitms):
            conn = getattr(mitm.state, "bastille_conn", None)
            if conn is not None:
                conn.end_reason = "the bastion is shutting down"
            mitm.drop()
        for conn in list(gate.connections):
            await conn.closed("the bastion is shutting down")
        await passes.stop()
        await recorder.close(timeout=max(5.0, config.gateway.drain_timeout))
        close_state()
        shutil.rmtree(scratch, ignore_errors=True)
        audit.emit(AuditEvent(Kind.GATEWAY, "ok", detail={"event": "rdp worker stop",
                                                           "pid": os.getpid()}))
        audit.close()


async def _watch_limits(config: Config, gate: Any) -> None:
    """End sessions past ``gateway.max_session`` or without input for ``idle_timeout``
    (``sessions kill`` requests are carried out by ``gateway.core.live``)."""
    max_session = config.gateway.max_session
    idle = config.gateway.idle_timeout
    while True:
        await asyncio.sleep(1.0)
        for conn in list(gate.connections):
            if conn.on_terminate is None:
                continue
            if max_session and conn.age() > max_session:
                conn.terminate("maximum session time reached")
            elif idle and time.monotonic() - conn.last_input > idle:
                conn.terminate("idle timeout (no keyboard or mouse input)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.rdp.worker")
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--parent", type=int, default=None,
                        help="the gateway's pid: exit when it is gone")
    args = parser.parse_args(argv)
    if args.parent is not None:
        die_with_parent(args.parent)
    config = load_config(args.config)
    from gateway import logs

    logs.setup(logging.DEBUG if args.verbose else logging.INFO,
               os.environ.get(logs.ENV) or config.gateway.log_format)
    logs.bind(worker=f"rdp-{os.getpid()}")
    if config.rdp is None:
        print("bastille-rdp: the config has no [rdp] section", file=sys.stderr)
        return 2
    try:
        import pyrdp  # noqa: F401
        from twisted.internet import asyncioreactor
    except ImportError as exc:
        print(f"bastille-rdp: RDP needs the optional extra (pip install 'bastille[rdp]'; "
              f"see docs/rdp.md): {exc}", file=sys.stderr)
        return EXIT_NO_PYRDP
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)
    from twisted.internet import reactor as _reactor

    from gateway.rdp import fixes, mitm

    fixes.install()
    fixes.configure_logging(logging.DEBUG if args.verbose else logging.WARNING)
    mitm.install_components()
    stop = asyncio.Event()
    watchdog = _Watchdog(loop, WATCHDOG_SECONDS, args.parent)
    result: dict[str, BaseException] = {}

    def started() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        watchdog.tick()
        threading.Thread(target=watchdog.run, name="rdp-watchdog", daemon=True).start()
        task = loop.create_task(serve(config, stop))

        def done(t: asyncio.Task[None]) -> None:
            watchdog.stopped = True
            if not t.cancelled() and t.exception() is not None:
                result["error"] = t.exception()  # type: ignore[assignment]
            reactor.stop()

        task.add_done_callback(done)

    reactor: Any = _reactor
    reactor.callWhenRunning(started)
    reactor.run(installSignalHandlers=False)
    if "error" in result:
        err = result["error"]
        print(f"bastille-rdp: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
