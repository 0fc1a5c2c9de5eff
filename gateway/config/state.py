"""``[state]`` (where the appliance's shared state lives) and ``gateway.proxy_protocol``
(the trusted load balancers), read and checked.

``[state] url = "postgresql://USER@HOST:PORT/DB"`` puts every store in one PostgreSQL
database shared by several gateways (docs/scale-out.md); the password comes from
``password_file`` or ``password_env``, never from the URL. Without ``url``: SQLite files
in ``gateway.data_dir`` (one gateway).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
from collections.abc import Mapping
from typing import Any

from gateway.config.reader import Reader, join
from gateway.config.sections import _secret_from
from recorder.settings import RecorderSettings
from state.settings import StateSettings, check_url

STATE_KEYS = {"url", "password_file", "password_env", "node", "lease", "heartbeat",
              "poll_interval", "pool_size", "connect_timeout"}
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def read_state(r: Reader, data: Mapping[str, Any]) -> StateSettings:
    """The ``[state]`` table (defaults: SQLite in the data directory)."""
    t = r.table(data, "state", "state")
    r.check_keys(t, "state", STATE_KEYS)
    url = r.get(t, "url", "state", str, "")
    node = r.get(t, "node", "state", str, "") or socket.gethostname()
    if not node.replace("-", "").replace(".", "").replace("_", "").isalnum() or len(node) > 63:
        r.problem("state.node", "node names use letters, digits, '.', '_' and '-' (at most "
                  "63)")
    lease = r.duration(t, "lease", "state", 15.0)
    heartbeat = r.duration(t, "heartbeat", "state", 3.0)
    if url and not 0 < heartbeat * 2 <= lease:
        r.problem("state.heartbeat", f"must be positive and at most half of state.lease "
                  f"({lease:g}s), got {heartbeat:g}s")
    settings = StateSettings(
        url=url, node=node, lease=lease, heartbeat=heartbeat,
        poll_interval=r.duration(t, "poll_interval", "state", 0.5),
        pool_size=r.int_range(t, "pool_size", "state", 1, 100, 4),
        connect_timeout=r.duration(t, "connect_timeout", "state", 2.0))
    if not url:
        for key in STATE_KEYS - {"url", "node"}:
            if key in t:
                r.problem(join("state", key), "only used with state.url (PostgreSQL)")
        return settings
    problem = check_url(url)
    if problem is not None:
        r.problem("state.url", problem)
        return settings
    if settings.poll_interval > 1.0:
        r.problem("state.poll_interval", "at most 1s (decisions and kills must reach "
                  "their node within a second)")
    # read even without target secrets: the player and the CLI need the database too
    password = _secret_from(r, t, "state", "password_env", "password_file")
    return dataclasses.replace(settings, password=password)


def with_shared_index(recording: RecorderSettings, state: StateSettings,
                      data_dir: Any) -> RecorderSettings:
    """The recorder settings with the shared index when ``[state] url`` is set."""
    if not state.shared:
        return recording
    from state.backend import StateBackend

    return dataclasses.replace(recording,
                               index_opener=StateBackend(state, data_dir).index_opener())


def read_proxy_sources(r: Reader, gateway: Mapping[str, Any]) -> tuple[Network, ...]:
    """``gateway.proxy_protocol``: addresses/networks allowed to send a PROXY header."""
    out: list[Network] = []
    for i, value in enumerate(r.str_list(gateway, "proxy_protocol", "gateway")):
        try:
            out.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            r.problem("gateway.proxy_protocol", f"entry [{i}] {value!r} is not an address "
                      "or network (e.g. \"10.0.0.5\", \"10.0.0.0/24\")")
    return tuple(out)
