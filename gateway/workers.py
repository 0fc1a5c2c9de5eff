"""One SSH worker process: ``python -m gateway.workers -c CONFIG --parent PID --port P``.

Started by the gateway (:mod:`gateway.ssh.supervisor`) when ``[gateway] workers > 1``.
It builds the same :class:`gateway.app.GatewayApp` as a single-process gateway, in its
worker role: the SSH listener on the shared port with ``SO_REUSEPORT``, its own
recorder thread writing into the shared storage and index (crash recovery and the
status file stay with the gateway process), the shared ``state/`` stores, its own
kill-request carrier. No RDP, no web endpoint (the gateway process runs those).

Protocol with the supervisor: one line ``ready`` on stdout once listening. It stops
(drains its sessions, finalizes recordings) on SIGTERM, and when the gateway that
started it is gone (``PR_SET_PDEATHSIG``, plus a parent check every second).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from gateway import eventloop
from gateway.app import GatewayApp
from gateway.config import load_config
from gateway.errors import ConfigError

log = logging.getLogger("bastille.workers")

EXIT_ORPHANED = 71


async def serve(config_path: str, port: int, parent: int | None) -> None:
    from gateway.ssh.keys import check_private_key

    config = load_config(config_path, check_key=check_private_key)
    app = GatewayApp(config, worker_port=port)
    await app.start()
    print("ready", flush=True)
    check = asyncio.get_running_loop().create_task(_parent_check(app, parent),
                                                   name="parent check")
    try:
        await app.run_started()
    finally:
        check.cancel()


async def _parent_check(app: GatewayApp, parent: int | None) -> None:
    """Stop as on SIGTERM when the gateway is gone and the death signal was lost."""
    if parent is None:
        return
    while os.getppid() == parent:  # noqa: ASYNC110 - polls the kernel, no event to await
        await asyncio.sleep(1.0)
    log.error("the gateway that started this worker is gone; stopping")
    app.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.workers")
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--parent", type=int, default=None)
    parser.add_argument("--slot", type=int, default=0)
    parser.add_argument("--log-level", type=int, default=logging.WARNING)
    args = parser.parse_args(argv)
    if args.parent is not None:
        from gateway.rdp.worker import die_with_parent

        die_with_parent(args.parent)
    logging.basicConfig(
        level=args.log_level,
        format=f"%(asctime)s bastille-ssh[{args.slot}:%(process)d] %(levelname)s %(name)s: "
               "%(message)s")
    logging.getLogger("asyncssh").setLevel(max(logging.WARNING, args.log_level))
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"bastille-ssh: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    try:
        eventloop.run(serve(args.config, args.port, args.parent), config.gateway.event_loop)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # noqa: BLE001 - one line for the supervisor's log, exit 1
        print(f"bastille-ssh: cannot serve: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
