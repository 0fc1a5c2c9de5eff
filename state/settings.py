"""Where an appliance keeps its shared state: ``[state]`` of the config file.

SQLite files in the data directory are the default (one gateway). With ``url =
"postgresql://USER@HOST:PORT/DB"`` every store lives in one PostgreSQL database shared by
several gateways (docs/scale-out.md). The password never appears in the URL: it comes
from ``password_file`` or ``password_env`` (or from libpq's own ``~/.pgpass``).

This module only describes the settings and checks the URL; :mod:`state.backend` opens
the stores.
"""

from __future__ import annotations

import socket
import urllib.parse
from dataclasses import dataclass, field

SCHEMES = ("postgresql", "postgres")
#: query parameters that would put a secret into the URL
_SECRET_PARAMS = {"password", "passfile", "sslpassword"}


@dataclass(frozen=True)
class StateSettings:
    """``[state]``: the backend of approvals, grants, kills, tokens, bindings, rate
    limits, reviews, the session index and the live-session registry."""

    url: str = ""  # "" = SQLite files in the data directory
    password: str | None = field(default=None, repr=False)  # read from file/env, never inline
    node: str = field(default_factory=socket.gethostname)  # this gateway's name
    lease: float = 15.0  # a node silent this long is dead: its live sessions are ended
    heartbeat: float = 3.0  # how often a node renews its lease
    poll_interval: float = 0.5  # fallback bound when a notification is missed
    pool_size: int = 4  # connections per process
    connect_timeout: float = 2.0  # seconds to reach the database before a call fails

    @property
    def shared(self) -> bool:
        """True when the state is in PostgreSQL (several nodes may share it)."""
        return bool(self.url)

    def redacted_url(self) -> str:
        """The URL as it may be shown (it never holds a password, see :func:`check_url`)."""
        return self.url


def check_url(url: str) -> str | None:
    """Why ``url`` is not a usable PostgreSQL URL for ``[state] url``, or None.

    A password inline (``postgresql://u:secret@host/db`` or ``?password=``) is refused: it
    would end up in process listings, logs and backups of the config file.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        return f"not a URL: {exc}"
    if parts.scheme not in SCHEMES:
        return "expected postgresql://USER@HOST[:PORT]/DATABASE"
    if parts.password is not None or ":" in (parts.netloc.rpartition("@")[0]):
        return ("the password may not be written in the URL: use state.password_file or "
                "state.password_env")
    query = urllib.parse.parse_qs(parts.query)
    bad = sorted(k for k in query if k.lower() in _SECRET_PARAMS)
    if bad:
        return (f"the URL may not carry {', '.join(bad)}: use state.password_file or "
                "state.password_env")
    if not parts.path.strip("/"):
        return "the URL names no database (postgresql://USER@HOST:PORT/DATABASE)"
    try:
        _ = parts.port
    except ValueError:
        return "the port is not a number"
    if not parts.hostname and "host" not in query:
        return "the URL names no host"
    return None
