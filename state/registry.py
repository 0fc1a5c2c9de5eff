"""The live-session registry: which gateway (node) holds which live session, and which
nodes are alive.

With one gateway (SQLite, the default) the registry is this process's memory
(:class:`LocalRegistry`): there is no other node to tell. With a shared database
(:class:`state.pg.registry.PgRegistry`) each node renews a lease (``heartbeat``
seconds, ``lease`` to expire); a node that finds another one silent for longer than the
lease marks that node's live sessions ended in the index (``reaped_by``), expires the
requests it had pending and forgets its registrations; the lost node's own recordings
are finished and uploaded from its spool when it starts again.

Interface: :class:`SessionRegistry`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class LiveEntry:
    """One live session and the node holding it."""

    session: str
    node: str
    user: str
    target: str
    started: float


@dataclass(frozen=True)
class NodeInfo:
    """One gateway as the registry sees it."""

    node: str
    pid: int
    started: float
    age: float  # seconds since its last heartbeat


#: (lost node, [(session, user, target)]) -> None: called by the node that noticed
OnLost = Callable[[str, list[tuple[str, str, str]]], None]


class SessionRegistry(Protocol):
    """Live sessions by node, and node leases."""

    node: str

    def started(self, session: str, user: str, target: str) -> None:
        """Register a live session of this node (never blocks on the database)."""
        ...

    def ended(self, session: str) -> None:
        """Forget a session of this node (never blocks on the database)."""
        ...

    def where(self, session: str) -> str | None:
        """The node holding live ``session``, or None."""
        ...

    def entries(self) -> list[LiveEntry]:
        """Every live session of every node."""
        ...

    def nodes(self) -> list[NodeInfo]:
        """The nodes holding a lease."""
        ...

    async def keep_alive(self, on_lost: OnLost) -> None:
        """Forever: renew this node's lease, and end the sessions of lost nodes."""
        ...

    def close(self) -> None: ...


class LocalRegistry:
    """:class:`SessionRegistry` of a single gateway (in memory)."""

    def __init__(self, node: str = "local") -> None:
        self.node = node
        self._live: dict[str, LiveEntry] = {}
        self._started = time.time()

    def started(self, session: str, user: str, target: str) -> None:
        self._live[session] = LiveEntry(session, self.node, user, target, time.time())

    def ended(self, session: str) -> None:
        self._live.pop(session, None)

    def where(self, session: str) -> str | None:
        return self.node if session in self._live else None

    def entries(self) -> list[LiveEntry]:
        return list(self._live.values())

    def nodes(self) -> list[NodeInfo]:
        import os

        return [NodeInfo(self.node, os.getpid(), self._started, 0.0)]

    async def keep_alive(self, on_lost: OnLost) -> None:
        await asyncio.Event().wait()  # nothing to renew, nobody to lose

    def close(self) -> None:
        self._live.clear()
