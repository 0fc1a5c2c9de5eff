"""Environment requests of a user channel, bounded where they enter."""

from __future__ import annotations

from typing import Any

import asyncssh

from gateway.limits import MAX_ENV_BYTES, MAX_ENV_VARS


def bound_environment(chan: asyncssh.SSHServerChannel[bytes]) -> None:
    """At most MAX_ENV_VARS variables of MAX_ENV_BYTES together on this channel: asyncssh
    keeps every ``env`` request a client sends (any number, each up to a packet), and has
    no hook for it, so its handler is wrapped on this channel. A request beyond the bound
    is answered with a failure (OpenSSH clients go on) and not kept."""
    chan = getattr(chan, "_orig_chan", chan)  # the channel under asyncssh's line editor
    env: dict[bytes, bytes] = chan._env  # asyncssh keeps env requests here
    used = [0]

    def process(packet: Any) -> bool:
        key = packet.get_string()
        value = packet.get_string()
        packet.check_end()
        size = len(key) + len(value)
        if key not in env and (len(env) >= MAX_ENV_VARS or used[0] + size > MAX_ENV_BYTES):
            return False
        if key in env:
            used[0] -= len(key) + len(env[key])
        env[key] = value
        used[0] += size
        return True

    chan._process_env_request = process  # type: ignore[method-assign]
