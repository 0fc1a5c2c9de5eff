"""Routing, authentication, credential injection and recording of RDP connections.

This is the bastion's side of an RDP connection, written without pyrdp so that it can
be read and tested on its own; :mod:`gateway.rdp.mitm` calls it from pyrdp's callbacks:

1. :meth:`RdpGate.route` at the X.224 Connection Request (first packet): which target,
   from a one-time routing token, the ``mstshash`` cookie ``alice#web1``, or the port.
2. :meth:`RdpConnection.login` at the Client Info PDU: the user's bastion password (or
   a one-time PIN) is checked in constant time, the user's access to the target is
   checked by the one access check (:class:`gateway.core.access.Access`: users, groups,
   IdP groups of an SSO PIN, just-in-time grants), the recording is opened (fail
   closed, by the session's :class:`gateway.core.session.SessionCore`), and the
   target's vaulted credentials are returned to replace the user's.
3. ``on_*`` calls while the session runs: the pyrdp replay stream, typed text, clipboard.
   Back-pressure: while the recording cannot take more (the writer lags, or storage is
   full: spool cap, disk low-water mark), reading from both sides stops
   (:attr:`RdpConnection.pause_reading`, set by the MITM) until it can; the session
   pauses instead of failing its recording.
4. :meth:`RdpConnection.closed` at the end.

The user's password is only ever held in a local variable of :meth:`RdpConnection.login`;
it is never logged, audited, recorded or put into an error message.

:class:`RdpGate` is also the RDP worker's :class:`gateway.core.services.SessionServices`.
Known limit: RDP has no text channel to the user, so the bastion's messages (a kill
reason, a shutdown) are recorded as markers and audited, not shown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.audit import AuditEvent, AuditLog, Kind
from gateway.auth.passwords import dummy_hash, verify_password
from gateway.config import Config, TargetConfig
from gateway.core.access import Access, Principal, principal_for
from gateway.core.live import LiveSessions
from gateway.core.session import SessionCore
from gateway.core.vault import target_password as vaulted_password
from gateway.errors import SessionRefused, TargetError, VaultError
from gateway.rdp.keys import KeyDecoder
from gateway.rdp.routing import RouteRequest, client_user
from recorder.service import Recorder
from state.approvals import GrantStore
from state.paths import DataDir
from state.ratelimit import FailureCounter, FailureLimiter
from state.registry import SessionRegistry
from state.tokens import Tokens
from state.usage import RecordingUsage, UsageStore

if TYPE_CHECKING:
    from recorder.service import SessionRecording

log = logging.getLogger("bastille.rdp")

#: pyrdp replay bytes kept while the recording is not open yet (before login)
EARLY_CAP = 4 * 1024 * 1024


#: The connection is refused; the message is safe to log (no secret).
Refused = SessionRefused


@dataclass(frozen=True)
class TargetLogin:
    """What replaces the user's credentials in the Client Info PDU."""

    user: str
    password: str = field(repr=False)
    domain: str


def target_password(target: TargetConfig) -> str:
    """The vaulted password of an RDP target (from its file or environment variable)."""
    try:
        password = vaulted_password(target)
    except VaultError as exc:
        raise Refused(f"target {target.name}: {exc.why}") from None
    if password is None:
        raise Refused(f"target {target.name}: no password configured")
    return password


class RdpGate:
    """Per-process services shared by every RDP connection of a worker (its
    :class:`gateway.core.services.SessionServices`)."""

    def __init__(self, config: Config, recorder: Recorder, audit: AuditLog,
                 tokens: Tokens, grants: GrantStore, version: str = "", *,
                 failures: FailureCounter | None = None,
                 registry: SessionRegistry | None = None,
                 usage: RecordingUsage | None = None) -> None:
        self.config = config
        self.recorder = recorder
        self.audit_log = audit
        self.tokens = tokens
        self.access = Access(config, grants)
        self.version = version
        self.live = LiveSessions(registry)
        gw = config.gateway
        self.limiter: FailureCounter = failures if failures is not None else \
            FailureLimiter(gw.max_auth_failures, gw.auth_failure_window,
                           source_limit=gw.max_source_failures or None)
        self.connections: set[RdpConnection] = set()
        # daily recording budgets, counted with the SSH gateway's (given by the worker:
        # the same SQLite file, WAL, or the shared database)
        self.usage: RecordingUsage | None = usage
        if usage is None and config.budget.user_day_bytes:
            self.usage = UsageStore(DataDir(config.data_dir).recording_usage)
        #: called with (session id, user, target) when a recorded session has ended
        #: (the worker starts its screen pass: gateway.rdp.passes)
        self.on_session_end: Callable[[str, str, str], None] | None = None

    def audit(self, event: AuditEvent) -> None:
        self.audit_log.emit(event)

    def refuse(self, source: str, reason: str, *, user: str = "", target: str = "") -> Refused:
        self.audit(AuditEvent(Kind.REFUSED, "denied", user=user, source=source, target=target,
                              detail={"protocol": "rdp", "reason": reason}))
        return Refused(reason)

    def route(self, req: RouteRequest, source: str, fixed_target: str | None) -> RdpConnection:
        """The connection for a first packet, or raise :class:`Refused` (audited)."""
        user = req.user
        name = fixed_target or req.target
        via = "port" if fixed_target else "cookie"
        if req.token is not None:
            grant = self.tokens.consume_token(req.token)
            if grant is None:
                raise self.refuse(source, "invalid, expired or already used routing token")
            if fixed_target and grant.target != fixed_target:
                raise self.refuse(source, "routing token for another target", user=grant.user)
            user, name, via = grant.user, grant.target, "token"
        if not name:
            raise self.refuse(source, "no target: use USER#TARGET as the user name, "
                              "an .rdp file from `bastille rdp-file`, or a target's port",
                              user=user)
        target = self.config.targets.get(name)
        if target is None or target.protocol != "rdp":
            raise self.refuse(source, f"unknown RDP target {name!r}", user=user, target=name)
        if user and self.limiter.blocked(source, user):
            raise self.refuse(source, "too many failed logins", user=user, target=name)
        return RdpConnection(self, target, source, user, via)


class RdpConnection:
    """One RDP connection after routing: login, recording and end."""

    #: set by the MITM: drops the connection (a kill, a limit, a recording failure)
    on_terminate: Callable[[], None] | None = None
    #: set by the MITM: stop (True) or resume (False) reading from client and target
    pause_reading: Callable[[bool], None] | None = None

    def __init__(self, gate: RdpGate, target: TargetConfig, source: str, user: str,
                 via: str) -> None:
        self.gate = gate
        self.target = target
        self.source = source
        self.routed_user = user  # from the token or cookie ("" when routed by port)
        self.via = via
        self.user = ""
        self.core: SessionCore | None = None  # once logged in
        self.keys = KeyDecoder(self._line)
        self._early: list[bytes] = []
        self._early_bytes = 0
        self._denied_early: list[str] = []
        self._start = time.time()
        self.last_input = time.monotonic()
        self._closed = False
        self.end_reason = ""
        self._held: asyncio.Task[None] | None = None  # waiting for the recorder to catch up

    @property
    def session_id(self) -> str:
        return self.core.session_id if self.core is not None else ""

    @property
    def rec(self) -> SessionRecording | None:
        return self.core.rec if self.core is not None else None

    # ------------------------------------------------------------------ login
    async def _check_password(self, name: str, password: str) -> tuple[Principal | None, str]:
        """(the principal, the method) if ``password`` is the user's bastion password or
        a one-time PIN (an SSO PIN carries the IdP's groups); (None, ...) if not."""
        gate = self.gate
        cfg = gate.config
        user = cfg.users.get(name)
        encoded = user.password_hash.reveal() if user and user.password_hash else dummy_hash()
        loop = asyncio.get_running_loop()
        if await loop.run_in_executor(None, verify_password, password, encoded):
            return (principal_for(cfg, name) if user and user.password_hash else None,
                    "password")
        if user is not None:
            ok = await loop.run_in_executor(None, gate.tokens.consume_pin, name, password)
            return (principal_for(cfg, name) if ok else None), "pin"
        if cfg.oidc is not None:
            # a user known only to the IdP: a one-time PIN issued after their SSO login
            # (`ssh USER@BASTION rdp`) carries the groups the IdP gave them
            groups = await loop.run_in_executor(None, gate.tokens.consume_sso_pin, name,
                                                password)
            if groups is not None:
                return Principal(name, groups, sso=True), "sso-pin"
        return None, "password"

    async def login(self, username: str, password: str, domain: str) -> TargetLogin:
        """Check the user at the Client Info PDU; open the recording; the target login.

        Raises:
            Refused: wrong credentials, not allowed, or the session cannot be recorded.
        """
        gate = self.gate
        name, named_target = client_user(username)
        name = name or self.routed_user
        target, src = self.target, self.source
        if self.routed_user and name != self.routed_user:
            raise gate.refuse(src, "the Client Info user name differs from the routed user",
                              user=name, target=target.name)
        if named_target and named_target != target.name:
            raise gate.refuse(src, "the Client Info target differs from the routed target",
                              user=name, target=target.name)
        if gate.limiter.blocked(src, name):
            gate.audit(AuditEvent(Kind.LOGIN_RATE_LIMITED, "denied", user=name, source=src,
                                  target=target.name, detail={"protocol": "rdp"}))
            raise Refused("too many failed logins")
        principal, method = await self._check_password(name, password)
        password = ""
        if principal is None:
            gate.limiter.record_failure(src, name)
            gate.audit(AuditEvent(Kind.LOGIN, "failed", user=name, source=src,
                                  target=target.name,
                                  detail={"protocol": "rdp", "method": "password"}))
            raise Refused("wrong user name or password")
        try:
            gate.access.authorize(principal, target.name, protocol="rdp")
        except TargetError as exc:
            raise gate.refuse(src, str(exc), user=name, target=target.name) from None
        gate.limiter.reset(src, name)
        self.user = name
        gate.audit(AuditEvent(Kind.LOGIN, "ok", user=name, source=src, target=target.name,
                              detail={"protocol": "rdp", "method": method, "route": self.via}))
        creds = TargetLogin(user=target.user, password=target_password(target),
                            domain=target.rdp_domain)
        if self._closed:
            raise Refused("the client went away during login")
        await self._open_recording(principal, method)
        if self._closed:  # the client left while the recording was being opened
            self._closed = False
            await self.closed("the client went away during login")
            raise Refused("the client went away during login")
        return creds

    async def _open_recording(self, principal: Principal, method: str = "") -> None:
        core = SessionCore(self.gate, principal, self.source, protocol="rdp")
        core.target = self.target.name
        core.mask_for(self.target)  # typed and pasted text is kept masked
        core.on_terminate(self._terminate)
        self.core = core
        if not await core.start(kind="desktop", start_time=self._start, detail={
                "kind": "desktop", "protocol": "rdp", "clipboard": self.target.allow_clipboard,
                "drive_redirection": self.target.allow_drive_redirection}):
            raise Refused("this session cannot be recorded, so it was not started")
        if core.rec is not None:
            core.rec.event("rdp.logon", {
                "user": principal.name, "method": method, "route": self.via,
                "target_user": self.target.user, "client": self.source})
            for chunk in self._early:
                core.rec.rdp(chunk)
        self._early.clear()
        self._early_bytes = 0
        self.gate.connections.add(self)
        for channel in self._denied_early:
            self.channel_denied(channel)
        self._denied_early.clear()

    def _terminate(self, reason: str) -> None:
        """End the connection from the bastion's side (kill, limits, recording failure)."""
        self.end_reason = reason
        if self.core is not None:
            self.core.say(reason)  # RDP shows no text: a marker in the recording
        if self.on_terminate is not None:
            self.on_terminate()

    def terminate(self, reason: str) -> None:
        """End this session with ``reason`` (audited at the end)."""
        self._terminate(reason)

    def age(self) -> float:
        """Seconds since the connection was routed."""
        return time.time() - self._start

    def touch(self) -> None:
        """The user did something (key, mouse): for ``gateway.idle_timeout``."""
        self.last_input = time.monotonic()

    def event(self, kind: Kind, outcome: str, detail: dict[str, object]) -> AuditEvent:
        if self.core is not None:
            return self.core.event(kind, outcome, detail)
        return AuditEvent(kind, outcome, user=self.user, source=self.source,
                          target=self.target.name, detail=detail)

    # ------------------------------------------------------------------ session data
    def on_replay(self, data: bytes) -> None:
        """Bytes of pyrdp's replay stream (one player PDU at a time)."""
        rec = self.rec
        if rec is not None:
            rec.rdp(data)
            if self.core is not None:
                self.core.meter()  # past a recording budget: ended (RDP cannot be slowed)
            if rec.congested and self._held is None:
                self._hold(rec)
        elif self.core is None and self._early_bytes + len(data) <= EARLY_CAP:
            self._early.append(bytes(data))
            self._early_bytes += len(data)

    def _hold(self, rec: SessionRecording) -> None:
        """Back-pressure: stop reading both sides until the recording catches up."""
        pause = self.pause_reading
        if pause is None:
            return
        pause(True)
        self._held = asyncio.get_running_loop().create_task(self._release(rec, pause),
                                                            name="rdp recorder backpressure")

    async def _release(self, rec: SessionRecording, pause: Callable[[bool], None]) -> None:
        try:
            await rec.wait_writable()
        finally:
            self._held = None
            if not self._closed:
                pause(False)

    def _line(self, text: str) -> None:
        rec = self.rec
        if rec is not None and self.core is not None:
            text = self.core.mask(text)
            rec.command(text, source="rdp-keys")
            rec.event("rdp.keys", {"text": text})

    def on_clipboard(self, direction: str, text: str) -> None:
        """Text copied through the clipboard (``direction``: upload to / download from)."""
        rec = self.rec
        if rec is not None and self.core is not None:
            text = self.core.mask(text[:65536])
            rec.event("rdp.clipboard", {"direction": direction, "text": text[:65536]})
            rec.command(text[:4096], source=f"rdp-clipboard-{direction}")
        self.gate.audit(self.event(Kind.FILE_TRANSFER, "ok", {
            "protocol": "rdp-clipboard", "direction": direction, "size": len(text)}))

    def channel_denied(self, channel: str) -> None:
        """A channel the target does not allow was used (reported once per channel)."""
        if self.core is None:  # before login: reported when the session starts
            self._denied_early.append(channel)
            return
        rec = self.rec
        if rec is not None:
            rec.policy(command=f"rdp-channel {channel}", action="deny",
                       rule="target policy", reason=f"{channel} is not allowed")
        self.gate.audit(self.event(Kind.REFUSED, "denied", {
            "protocol": "rdp", "channel": channel, "reason": "not allowed by the target"}))

    def on_mouse_click(self, x: int, y: int, button: str) -> None:
        rec = self.rec
        if rec is not None:
            rec.event("rdp.mouse", {"x": x, "y": y, "button": button})

    async def closed(self, reason: str = "") -> None:
        """The connection ended (either side). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.gate.connections.discard(self)
        if self._held is not None:
            self._held.cancel()
        self.keys.flush()
        core = self.core
        if core is None:
            return
        why = self.end_reason or reason
        if why:
            core.ending = why
        await core.finish({"protocol": "rdp", "keys": self.keys.keys})
        ended = self.gate.on_session_end
        if ended is not None and core.started and core.session_id:
            ended(core.session_id, self.user, self.target.name)
