"""Recorded sessions running in this process, and carrying out ``sessions kill`` and grant
revocations.

``bastille sessions kill`` (or the player), on any node, writes a kill request into the
shared store (:class:`state.approvals.KillQueue`); the process that runs the session
finds it with :func:`carry_out_kills` and ends the session with the reason. With a
shared database the request also sends a notification that wakes this loop at once; it
polls every ``interval`` seconds anyway (0.5 s with PostgreSQL, 1 s with SQLite), the
bound when a notification is missed. The SSH gateway and each RDP worker run one each,
over their own :class:`LiveSessions`.

The same loop ends sessions that ran on a just-in-time grant which was then revoked
(``bastille approvals revoke ID``): a session whose user may not use its target by the
configuration alone, whose user has no active grant any more and whose latest grant
for that target is ``revoked``. A grant that simply runs out does not end a running
session (see README: a grant is checked when a session starts).

:class:`LiveSessions` also keeps the live-session registry
(:class:`state.registry.SessionRegistry`) told which sessions this node holds, and
:func:`publish_watched` relays the recordings of live sessions that someone on another
node watches (``state.pg.livetail``: a player elsewhere cannot read them from S3 yet).

Known limits: only recorded sessions are registered (a session running unrecorded under
``on_failure = "continue"`` cannot be killed this way); a request for a session that no
process runs stays pending (``bastille sessions kill`` says it was not confirmed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from recorder.errors import RecorderError
from state.approvals import KillQueue
from state.errors import StateError
from state.registry import SessionRegistry

if TYPE_CHECKING:
    from gateway.core.access import Access, Principal

log = logging.getLogger("bastille.live")

GRANT_CHECK = 2.0  # seconds between grant re-checks when no revocation was notified


class LiveSession(Protocol):
    """What the registry needs of a session (:class:`gateway.core.session.SessionCore`)."""

    @property
    def session_id(self) -> str: ...

    @property
    def principal(self) -> Principal: ...

    @property
    def target(self) -> str: ...

    def kill(self, by: str, reason: str) -> None: ...


class LiveSessions:
    """Live sessions by id (this process only); tells the registry."""

    def __init__(self, registry: SessionRegistry | None = None) -> None:
        self._by_id: dict[str, LiveSession] = {}
        self.registry = registry

    def add(self, session: LiveSession) -> None:
        self._by_id[session.session_id] = session
        if self.registry is not None:
            self.registry.started(session.session_id, session.principal.name, session.target)

    def discard(self, session: LiveSession) -> None:
        if self._by_id.get(session.session_id) is session:
            del self._by_id[session.session_id]
            if self.registry is not None:
                self.registry.ended(session.session_id)

    def get(self, session_id: str) -> LiveSession | None:
        return self._by_id.get(session_id)

    def __iter__(self) -> Iterator[LiveSession]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)


async def carry_out_kills(kills: KillQueue, live: LiveSessions, *, interval: float = 1.0,
                          access: Access | None = None) -> None:
    """Forever: end the live sessions of this process that have a kill request (and,
    given ``access``, those whose grant was revoked)."""
    loop = asyncio.get_running_loop()
    grants = asyncio.ensure_future(_revoked_grants(access, live)) if access else None
    try:
        while True:
            await kills.kill_signal(interval)
            if not len(live):
                continue
            try:
                pending = await loop.run_in_executor(None, kills.pending_kills)
            except StateError as exc:
                log.warning("cannot read kill requests: %s", exc)
                await asyncio.sleep(interval)
                continue
            for session_id, by, reason in pending:
                session = live.get(session_id)
                if session is None:
                    continue
                try:
                    await loop.run_in_executor(None, kills.kill_done, session_id)
                except StateError as exc:  # the kill is carried out all the same
                    log.warning("cannot confirm the kill of %s: %s", session_id, exc)
                session.kill(by, reason)
    finally:
        if grants is not None:
            grants.cancel()


class TailRelay(Protocol):
    """The relay of watched live sessions to other nodes (``state.pg.livetail``)."""

    poll_interval: float
    max_bytes: int  # relayed per session at most

    async def watch_signal(self, timeout: float) -> None: ...  # noqa: ASYNC109

    def watched(self, sessions: list[str]) -> list[str]: ...

    def append(self, session: str, offset: int, data: bytes) -> None: ...

    def forget(self, session: str) -> None: ...


async def publish_watched(tail: TailRelay, live: LiveSessions,
                          read: Callable[[str, int], bytes]) -> None:
    """Forever: relay what the recordings of watched live sessions of this process gained
    (``read(name, offset)`` reads the local recording); forget a session's relayed
    bytes when it ends. Woken when a watch starts; every ``tail.poll_interval`` else."""
    loop = asyncio.get_running_loop()
    sent: dict[str, int] = {}  # session -> bytes relayed so far
    cap = tail.max_bytes
    while True:
        await tail.watch_signal(tail.poll_interval)
        here = {s.session_id: s for s in live}
        try:
            for gone in [sid for sid in sent if sid not in here]:
                del sent[gone]
                await loop.run_in_executor(None, tail.forget, gone)
            watched = await loop.run_in_executor(None, tail.watched, list(here))
            for sid in watched:
                rec = getattr(here[sid], "rec", None)
                name = getattr(rec, "name", None)
                offset = sent.get(sid, 0)
                if not isinstance(name, str) or offset >= cap:
                    continue
                data = await loop.run_in_executor(None, read, name, offset)
                data = data[:cap - offset]
                if data:
                    await loop.run_in_executor(None, tail.append, sid, offset, data)
                    sent[sid] = offset + len(data)
        except (StateError, RecorderError) as exc:
            log.warning("cannot relay watched sessions: %s", exc)


async def _revoked_grants(access: Access, live: LiveSessions) -> None:
    """Forever: end sessions whose grant was revoked (woken by revocations)."""
    loop = asyncio.get_running_loop()
    while True:
        await access.grants.grant_signal(GRANT_CHECK)
        for session in live:
            try:
                revoked = await loop.run_in_executor(None, access.revoked_grant,
                                                     session.principal, session.target)
            except StateError as exc:
                log.warning("cannot check grants: %s", exc)
                break
            if revoked is not None:
                by, why = _revoker(revoked.decision_reason or "")
                session.kill(by, f"access grant #{revoked.id} revoked" + (f": {why}" if why
                                                                         else ""))


def _revoker(text: str) -> tuple[str, str]:
    """(who, why) of a grant's ``revoked by NAME[: REASON]``."""
    head, _, why = text.removeprefix("revoked by ").partition(": ")
    return (head or "an approver"), why
