"""Opening the session channel on the target: what the user's channel asked for (a pty,
a command or subsystem, locale variables, X11) requested again on the bastion's own
connection to the target."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from gateway.errors import TargetRefused
from gateway.ssh.relay import Relay, UpstreamSession

#: the user's environment variables passed on to the target (locale and time zone)
FORWARD_ENV = ("LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "LC_NUMERIC", "LC_TIME",
               "LC_COLLATE", "LC_MONETARY", "TZ")


@dataclass(frozen=True)
class ChannelRequest:
    """What to ask the target for."""

    command: str | None
    subsystem: str | None
    env: Mapping[Any, Any]
    x11_display: str | None  # forward X11 (the caller checked it is allowed)
    x11_auth: Path
    pty: tuple[str, tuple[int, int, int, int], Any] | None  # (term, size, modes)


async def open_target_channel(conn: asyncssh.SSHClientConnection, relay: Relay,
                              request: ChannelRequest) -> asyncssh.SSHClientChannel[bytes]:
    """The target's session channel, relayed by ``relay``.

    Raises:
        TargetRefused: the target refused it (its reason as the message).
    """
    env = {k: v for k, v in request.env.items() if k in FORWARD_ENV}
    kwargs: dict[str, Any] = {"encoding": None, "env": env}
    if request.x11_display is not None:
        kwargs.update(x11_forwarding=True, x11_display=request.x11_display,
                      x11_auth_path=str(request.x11_auth))
    if request.pty is not None:
        term, size, modes = request.pty
        kwargs.update(request_pty="force", term_type=term or "xterm", term_size=size,
                      term_modes=modes)
    else:
        kwargs["request_pty"] = False
    what: dict[str, Any] = {"subsystem": request.subsystem} if request.subsystem else \
        {"command": request.command}
    try:
        chan, _ = await conn.create_session(lambda: UpstreamSession(relay), **what, **kwargs)
    except (asyncssh.ChannelOpenError, asyncssh.Error, OSError) as exc:
        reason = getattr(exc, "reason", "") or str(exc) or type(exc).__name__
        raise TargetRefused(reason) from None
    return chan
