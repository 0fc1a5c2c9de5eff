"""Recorded sessions running in this process, and carrying out ``sessions kill``.

``bastille sessions kill`` (or the player) writes a kill request into the shared store
(:class:`state.approvals.KillQueue`); the process that runs the session finds it with
:func:`carry_out_kills` within ``interval`` seconds and ends the session with the reason.
The SSH gateway and each RDP worker run one each, over their own :class:`LiveSessions`.

Known limits: only recorded sessions are registered (a session running unrecorded under
``on_failure = "continue"`` cannot be killed this way); a request for a session that no
process runs stays pending (``bastille sessions kill`` says it was not confirmed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Protocol

from state.approvals import KillQueue

log = logging.getLogger("bastille.live")


class LiveSession(Protocol):
    """What the registry needs of a session (:class:`gateway.core.session.SessionCore`)."""

    @property
    def session_id(self) -> str: ...

    def kill(self, by: str, reason: str) -> None: ...


class LiveSessions:
    """Live sessions by id (this process only)."""

    def __init__(self) -> None:
        self._by_id: dict[str, LiveSession] = {}

    def add(self, session: LiveSession) -> None:
        self._by_id[session.session_id] = session

    def discard(self, session: LiveSession) -> None:
        if self._by_id.get(session.session_id) is session:
            del self._by_id[session.session_id]

    def get(self, session_id: str) -> LiveSession | None:
        return self._by_id.get(session_id)

    def __iter__(self) -> Iterator[LiveSession]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)


async def carry_out_kills(kills: KillQueue, live: LiveSessions, *,
                          interval: float = 1.0) -> None:
    """Forever: end the live sessions of this process that have a kill request."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval)
        if not len(live):
            continue
        try:
            pending = await loop.run_in_executor(None, kills.pending_kills)
        except Exception:
            log.exception("cannot read kill requests")
            continue
        for session_id, by, reason in pending:
            session = live.get(session_id)
            if session is None:
                continue
            kills.kill_done(session_id)
            session.kill(by, reason)
