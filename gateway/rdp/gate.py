"""Routing, authentication, credential injection and recording of RDP connections.

This is the bastion's side of an RDP connection, written without pyrdp so that it can
be read and tested on its own; :mod:`gateway.rdp.mitm` calls it from pyrdp's callbacks:

1. :meth:`RdpGate.route` at the X.224 Connection Request (first packet): which target,
   from a one-time routing token, the ``mstshash`` cookie ``alice#web1``, or the port.
2. :meth:`RdpConnection.login` at the Client Info PDU: the user's bastion password (or
   a one-time PIN) is checked in constant time, the recording is opened (fail closed),
   and the target's vaulted credentials are returned to replace the user's.
3. ``on_*`` calls while the session runs: the pyrdp replay stream, typed text, clipboard.
4. :meth:`RdpConnection.closed` at the end.

The user's password is only ever held in a local variable of :meth:`RdpConnection.login`;
it is never logged, audited, recorded or put into an error message.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.audit import AuditEvent, AuditLog, Kind
from gateway.auth.passwords import hash_password, verify_password
from gateway.config import Config, TargetConfig, UserConfig
from gateway.rdp.keys import KeyDecoder
from gateway.rdp.routing import RouteRequest, client_user
from recorder.errors import RecorderError
from recorder.service import Recorder, SessionHeader
from state.ratelimit import FailureLimiter
from state.tokens import TokenStore

if TYPE_CHECKING:
    from recorder.service import SessionRecording

log = logging.getLogger("bastille.rdp")

#: pyrdp replay bytes kept while the recording is not open yet (before login)
EARLY_CAP = 4 * 1024 * 1024


class Refused(Exception):
    """The connection is refused; the message is safe to log (no secret)."""


@dataclass(frozen=True)
class TargetLogin:
    """What replaces the user's credentials in the Client Info PDU."""

    user: str
    password: str = field(repr=False)
    domain: str


def target_password(target: TargetConfig) -> str:
    """The vaulted password of an RDP target (from its file or environment variable)."""
    if target.password_env:
        value = os.environ.get(target.password_env)
        if value is None:
            raise Refused(f"target {target.name}: its password variable is not set")
        return value
    if target.password_file is not None:
        try:
            return target.password_file.read_text().rstrip("\r\n")
        except OSError as exc:
            raise Refused(f"target {target.name}: cannot read its password file: "
                          f"{exc.strerror}") from exc
    raise Refused(f"target {target.name}: no password configured")


class RdpGate:
    """Per-process services shared by every RDP connection of a worker."""

    def __init__(self, config: Config, recorder: Recorder, audit: AuditLog,
                 tokens: TokenStore, version: str = "") -> None:
        self.config = config
        self.recorder = recorder
        self.audit_log = audit
        self.tokens = tokens
        self.version = version
        gw = config.gateway
        self.limiter = FailureLimiter(gw.max_auth_failures, gw.auth_failure_window)
        self.dummy_hash = hash_password("not-a-password")
        self.connections: set[RdpConnection] = set()

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
        if user and self.limiter.blocked(source, f"user:{user}"):
            raise self.refuse(source, "too many failed logins", user=user, target=name)
        return RdpConnection(self, target, source, user, via)


class RdpConnection:
    """One RDP connection after routing: login, recording and end."""

    def __init__(self, gate: RdpGate, target: TargetConfig, source: str, user: str,
                 via: str) -> None:
        self.gate = gate
        self.target = target
        self.source = source
        self.routed_user = user  # from the token or cookie ("" when routed by port)
        self.via = via
        self.user = ""
        self.session_id = ""
        self.rec: SessionRecording | None = None
        self.keys = KeyDecoder(self._line)
        self._early: list[bytes] = []
        self._early_bytes = 0
        self._denied_early: list[str] = []
        self._start = time.time()
        self.last_input = time.monotonic()
        self._closed = False
        self.end_reason = ""

    # ------------------------------------------------------------------ login
    async def login(self, username: str, password: str, domain: str) -> TargetLogin:
        """Check the user at the Client Info PDU; open the recording; the target login.

        Raises:
            Refused: wrong credentials, not allowed, or the session cannot be recorded.
        """
        gate = self.gate
        cfg = gate.config
        name, named_target = client_user(username)
        if not name:
            name = self.routed_user
        target = self.target
        src = self.source
        if self.routed_user and name != self.routed_user:
            raise gate.refuse(src, "the Client Info user name differs from the routed user",
                              user=name, target=target.name)
        if named_target and named_target != target.name:
            raise gate.refuse(src, "the Client Info target differs from the routed target",
                              user=name, target=target.name)
        if gate.limiter.blocked(src, f"user:{name}"):
            gate.audit(AuditEvent(Kind.LOGIN_RATE_LIMITED, "denied", user=name, source=src,
                                  target=target.name, detail={"protocol": "rdp"}))
            raise Refused("too many failed logins")
        user = cfg.users.get(name)
        encoded = user.password_hash.reveal() if user and user.password_hash else \
            gate.dummy_hash
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(None, verify_password, password, encoded)
        method = "password"
        if not ok and user is not None:
            ok = await loop.run_in_executor(None, gate.tokens.consume_pin, name, password)
            method = "pin"
        elif not ok and user is None and cfg.oidc is not None:
            # a user known only to the IdP: a one-time PIN issued after their SSO login
            # (`ssh USER@BASTION rdp`) carries the groups the IdP gave them
            groups = await loop.run_in_executor(None, gate.tokens.consume_sso_pin, name,
                                                password)
            if groups is not None:
                user = UserConfig(name=name, groups=groups)
                ok, method = True, "sso-pin"
        password = ""
        if not ok or user is None or (user.password_hash is None and method == "password"):
            gate.limiter.record_failure(src, f"user:{name}")
            gate.audit(AuditEvent(Kind.LOGIN, "failed", user=name, source=src,
                                  target=target.name,
                                  detail={"protocol": "rdp", "method": "password"}))
            raise Refused("wrong user name or password")
        if not target.permits(user):
            raise gate.refuse(src, f"{name} is not allowed to use target {target.name!r}",
                              user=name, target=target.name)
        gate.limiter.reset(f"user:{name}")
        self.user = name
        gate.audit(AuditEvent(Kind.LOGIN, "ok", user=name, source=src, target=target.name,
                              detail={"protocol": "rdp", "method": method, "route": self.via}))
        creds = TargetLogin(user=target.user, password=target_password(target),
                            domain=target.rdp_domain)
        if self._closed:
            raise Refused("the client went away during login")
        await self._open_recording()
        if self._closed:  # the client left while the recording was being opened
            self._closed = False
            await self.closed("the client went away during login")
            raise Refused("the client went away during login")
        return creds

    async def _open_recording(self) -> None:
        gate = self.gate
        self.session_id = gate.recorder.new_session_id()
        header = SessionHeader(
            session_id=self.session_id, user=self.user, target=self.target.name,
            protocol="rdp", kind="desktop", client_addr=self.source, start_time=self._start,
            cols=0, rows=0, term="", command=None, gateway_version=gate.version)
        try:
            self.rec = await gate.recorder.open_session(header)
        except RecorderError as exc:
            gate.audit(self.event(Kind.RECORDING, "failed", {"error": str(exc)}))
            if gate.config.recording.on_failure == "terminate":
                raise Refused("this session cannot be recorded, so it was not started") from exc
            self.rec = None
        else:
            for chunk in self._early:
                self.rec.rdp(chunk)
            self.rec.add_failure_callback(self._recording_failed)
        self._early.clear()
        self._early_bytes = 0
        gate.connections.add(self)
        gate.audit(self.event(Kind.SESSION_START, "ok" if self.rec else "unrecorded", {
            "kind": "desktop", "protocol": "rdp",
            "clipboard": self.target.allow_clipboard,
            "drive_redirection": self.target.allow_drive_redirection}))
        for channel in self._denied_early:
            self.channel_denied(channel)
        self._denied_early.clear()

    def age(self) -> float:
        """Seconds since the connection was routed."""
        return time.time() - self._start

    def touch(self) -> None:
        """The user did something (key, mouse): for ``gateway.idle_timeout``."""
        self.last_input = time.monotonic()

    def _recording_failed(self, err: RecorderError) -> None:
        self.gate.audit(self.event(Kind.RECORDING, "failed", {"error": str(err)}))
        if self.gate.config.recording.on_failure == "terminate" and self.on_terminate:
            self.end_reason = "recording failed"
            self.on_terminate()

    #: set by the MITM: drops the connection (recording failure under "terminate")
    on_terminate: Callable[[], None] | None = None

    def event(self, kind: Kind, outcome: str, detail: dict[str, object]) -> AuditEvent:
        return AuditEvent(kind, outcome, user=self.user, source=self.source,
                          target=self.target.name, session=self.session_id, detail=detail)

    # ------------------------------------------------------------------ session data
    def on_replay(self, data: bytes) -> None:
        """Bytes of pyrdp's replay stream (one player PDU at a time)."""
        if self.rec is not None:
            self.rec.rdp(data)
        elif not self.session_id and self._early_bytes + len(data) <= EARLY_CAP:
            self._early.append(bytes(data))
            self._early_bytes += len(data)

    def _line(self, text: str) -> None:
        if self.rec is not None:
            self.rec.command(text, source="rdp-keys")
            self.rec.event("rdp.keys", {"text": text})

    def on_clipboard(self, direction: str, text: str) -> None:
        """Text copied through the clipboard (``direction``: upload to / download from)."""
        if self.rec is not None:
            self.rec.event("rdp.clipboard", {"direction": direction, "text": text[:65536]})
            self.rec.command(text[:4096], source=f"rdp-clipboard-{direction}")
        self.gate.audit(self.event(Kind.FILE_TRANSFER, "ok", {
            "protocol": "rdp-clipboard", "direction": direction, "size": len(text)}))

    def channel_denied(self, channel: str) -> None:
        """A channel the target does not allow was used (reported once per channel)."""
        if not self.session_id:  # before login: reported when the session starts
            self._denied_early.append(channel)
            return
        if self.rec is not None:
            self.rec.policy(command=f"rdp-channel {channel}", action="deny",
                            rule="target policy", reason=f"{channel} is not allowed")
        self.gate.audit(self.event(Kind.REFUSED, "denied", {
            "protocol": "rdp", "channel": channel, "reason": "not allowed by the target"}))

    def on_mouse_click(self, x: int, y: int, button: str) -> None:
        if self.rec is not None:
            self.rec.event("rdp.mouse", {"x": x, "y": y, "button": button})

    async def closed(self, reason: str = "") -> None:
        """The connection ended (either side). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.gate.connections.discard(self)
        self.keys.flush()
        if not self.session_id:
            return
        rec, self.rec = self.rec, None
        if rec is not None:
            try:
                await rec.close(exit_status=None)
            except RecorderError as exc:
                self.gate.audit(self.event(Kind.RECORDING, "failed", {"error": str(exc)}))
        self.gate.audit(self.event(Kind.SESSION_END, "ok", {
            "protocol": "rdp", "keys": self.keys.keys,
            **({"reason": self.end_reason or reason} if (self.end_reason or reason) else {})}))
