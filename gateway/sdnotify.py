"""systemd's notify protocol, without a library: one datagram to ``$NOTIFY_SOCKET``.

``bastille serve`` under a ``Type=notify`` unit says ``READY=1`` once it listens,
``RELOADING=1`` and ``READY=1`` around a reload, ``STOPPING=1`` when it starts to drain,
``STATUS=...`` lines for ``systemctl status``, and ``WATCHDOG=1`` every half
``WatchdogSec`` from the event loop (:func:`watchdog_interval`): a loop that hangs stops
the pings and systemd restarts the service.

Without ``NOTIFY_SOCKET`` (not under systemd) every call does nothing. The socket is a
path or, starting with ``@``, an abstract socket (Linux).
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("bastille.systemd")


def notify(*lines: str) -> bool:
    """Send ``lines`` (``KEY=VALUE``) to systemd; False when there is nobody to tell."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or not lines:
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    elif address[0] != "/":
        return False  # vsock and other forms are not used by the service manager here
    message = "\n".join(lines).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message)
    except OSError as exc:
        log.warning("cannot notify systemd (%s): %s", lines[0], exc.strerror or exc)
        return False
    return True


def ready(status: str = "") -> bool:
    return notify("READY=1", *([f"STATUS={status}"] if status else []))


def reloading() -> bool:
    """Before re-reading the configuration (``MONOTONIC_USEC``: systemd 253's reload
    protocol; older systemd ignores it)."""
    now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={now}")


def stopping(status: str = "") -> bool:
    return notify("STOPPING=1", *([f"STATUS={status}"] if status else []))


def status(text: str) -> bool:
    return notify(f"STATUS={text}")


def watchdog() -> bool:
    return notify("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WatchdogSec``), or None when the
    service has no watchdog (or it is meant for another process)."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1e6 / 2
