"""What a protocol adapter (``gateway/ssh``, ``gateway/rdp``, later ``gateway/web``) may
use of the gateway: the :class:`Services` protocol.

:class:`gateway.app.GatewayApp` implements it for the SSH gateway process; an RDP worker
process implements the part it needs. Adapters receive a ``Services``; they never import
``gateway.app`` and hold no pointer back to it beyond this interface, so the layers stay
``app -> adapters -> core`` (checked by import-linter, see pyproject.toml).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gateway.audit import AuditEvent
    from gateway.config import Config
    from gateway.core.access import Access
    from gateway.core.commands import Commands
    from gateway.core.live import LiveSessions
    from gateway.core.masking import Maskers
    from gateway.core.weblogin import WebLogins
    from gateway.policy import PolicyEngine
    from recorder.service import Recorder
    from state.approvals import Approvals, Request
    from state.bindings import Bindings
    from state.ratelimit import FailureCounter
    from state.usage import RecordingUsage


class SessionServices(Protocol):
    """What every session needs (:class:`gateway.core.session.SessionCore`); an RDP
    worker process provides this much."""

    @property
    def config(self) -> Config:
        """The validated configuration (frozen)."""

    @property
    def version(self) -> str:
        """bastille's version (recording headers, the SSH banner, ``help``)."""

    @property
    def recorder(self) -> Recorder:
        """Opens recordings."""

    @property
    def live(self) -> LiveSessions:
        """Recorded sessions running in this process (``sessions kill`` finds them)."""

    @property
    def usage(self) -> RecordingUsage | None:
        """Bytes recorded per user per day; None without a daily recording budget."""

    def audit(self, event: AuditEvent) -> None:
        """Append one event to the audit trail."""


class Services(SessionServices, Protocol):
    """The gateway's services, as the SSH adapter sees them."""

    @property
    def approvals(self) -> Approvals:
        """Approval requests, just-in-time grants and kill requests."""

    @property
    def access(self) -> Access:
        """The one access check."""

    @property
    def policy(self) -> PolicyEngine | None:
        """The command policy; None when ``[policy]`` has no rules and allows all."""

    @property
    def maskers(self) -> Maskers:
        """Makes each session's secret masker."""

    @property
    def commands(self) -> Commands:
        """Built-in commands (``help``, ``request``, ``approvals``, ``rdp``)."""

    @property
    def failures(self) -> FailureCounter:
        """Failed logins per address and user name."""

    @property
    def bindings(self) -> Bindings | None:
        """Single sign-on key bindings; None without ``[oidc]`` or ``[saml]``."""

    @property
    def web_logins(self) -> WebLogins | None:
        """Browser (SAML) sign-ins for SSH logins; None without ``[saml]``."""

    def clock(self) -> float:
        """Monotonic seconds (idle and session-length limits)."""

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` as a task the gateway waits for (and cancels) at shutdown."""

    def notify_approvers(self, request: Request) -> None:
        """Audit a new approval request and call the webhook."""
