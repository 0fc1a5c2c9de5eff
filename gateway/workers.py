"""One SSH worker process: ``python -m gateway.workers -c CONFIG --parent PID --fd N``.

Started by the gateway (:mod:`gateway.ssh.supervisor`) when ``[gateway] workers > 1``.
It builds the same :class:`gateway.app.GatewayApp` as a single-process gateway, in its
worker role: the SSH listener on the socket the gateway opened for it (file descriptor
``N``, one of the port's ``SO_REUSEPORT`` sockets), its own
recorder thread writing into the shared storage and index (crash recovery and the
status file stay with the gateway process), the shared ``state/`` stores, its own
kill-request carrier. No RDP, no web endpoint (the gateway process runs those).

Protocol with the supervisor: one line ``ready`` on stdout once listening; SIGHUP
re-reads the configuration (the gateway process reloaded it), answered by one line
``reloaded`` or ``refused``. It stops
(drains its sessions, finalizes recordings) on SIGTERM; it is killed with the gateway
(``PR_SET_PDEATHSIG`` SIGKILL, plus a parent check every second), so a gateway killed
with SIGKILL leaves what one process would: unfinished recordings, which crash recovery
finishes at the next start.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys

from gateway import eventloop
from gateway.app import GatewayApp
from gateway.config import load_config
from gateway.errors import ConfigError

log = logging.getLogger("bastille.workers")

EXIT_ORPHANED = 71
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when the gateway exits (Linux), as if it were part of it: a
    gateway killed with SIGKILL takes its sessions along, and their recordings are
    finished by crash recovery at the next start, exactly as with one process."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent check below remains
        pass
    if os.getppid() != parent:
        print("bastille-ssh: the gateway that started this worker is gone; exiting",
              file=sys.stderr, flush=True)
        os._exit(EXIT_ORPHANED)


async def serve(config_path: str, fd: int, parent: int | None, slot: int = 0) -> None:
    from gateway.ssh.keys import check_private_key

    config = load_config(config_path, check_key=check_private_key)
    app = GatewayApp(config, worker_socket=socket.socket(fileno=fd), worker_slot=slot)
    app.on_worker_reload = _answer_reload
    await app.start()
    print("ready", flush=True)
    check = asyncio.get_running_loop().create_task(_parent_check(app, parent),
                                                   name="parent check")
    try:
        await app.run_started()
    finally:
        check.cancel()


def _answer_reload(ok: bool) -> None:
    """The answer to the gateway's SIGHUP (``gateway.ssh.supervisor.RELOAD_ANSWERS``)."""
    print("reloaded" if ok else "refused", flush=True)


async def _parent_check(app: GatewayApp, parent: int | None) -> None:
    """Exit when the gateway is gone and the death signal was lost."""
    if parent is None:
        return
    while os.getppid() == parent:  # noqa: ASYNC110 - polls the kernel, no event to await
        await asyncio.sleep(1.0)
    log.error("the gateway that started this worker is gone; exiting")
    os._exit(EXIT_ORPHANED)  # as its death signal would have: crash recovery finishes up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.workers")
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--fd", type=int, required=True,
                        help="the listening socket the gateway opened for this worker")
    parser.add_argument("--parent", type=int, default=None)
    parser.add_argument("--slot", type=int, default=0)
    parser.add_argument("--log-level", type=int, default=logging.WARNING)
    args = parser.parse_args(argv)
    if args.parent is not None:
        die_with_parent(args.parent)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"bastille-ssh: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    from gateway import logs

    # the gateway's format (text or JSON) and secret redaction, each line naming the worker
    logs.setup(args.log_level, os.environ.get(logs.ENV) or config.gateway.log_format)
    logs.bind(worker=f"ssh-{args.slot}")
    logging.getLogger("asyncssh").setLevel(max(logging.WARNING, args.log_level))
    try:
        eventloop.run(serve(args.config, args.fd, args.parent, args.slot),
                      config.gateway.event_loop)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # noqa: BLE001 - one line for the supervisor's log, exit 1
        print(f"bastille-ssh: cannot serve: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
