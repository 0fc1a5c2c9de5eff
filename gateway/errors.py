"""Exceptions raised by the gateway.

Tree::

    BastilleError
    ├── ConfigError            a config file is invalid (carries every problem found)
    ├── AuthError              a user could not be authenticated or authorized
    │   ├── OidcError          single sign-on failed (gateway/auth/oidc.py: IdpUnavailable,
    │   │                      CodeExpired, AccessDenied, InvalidToken, IdentityMismatch,
    │   │                      NoGroups)
    │   └── WebLoginError      a browser (SAML) sign-in for an SSH login failed
    ├── TargetError            the bastion could not reach or log into a target
    │   ├── UnknownTarget      no target of that name (or not visible to the user)
    │   ├── TargetDenied       the user may not use this target
    │   ├── TargetUnreachable  connection refused / timed out / DNS failure
    │   ├── HostKeyMismatch    the target's host key is not the pinned one
    │   ├── TargetAuthFailed   the target refused the bastion's credentials
    │   ├── TargetRefused      the target would not open the session (its reason)
    │   └── VaultError         the bastion cannot load its own credential for the target
    ├── SessionRefused         a session is refused before it starts (RDP: wrong password,
    │                          not allowed, cannot be recorded); safe to log
    ├── ChannelDenied          a forwarding or channel type is refused by policy
    ├── RdpUnavailable         the RDP workers cannot start (gateway/rdp/supervisor.py)
    └── RenderUnavailable      RDP video/frame export needs the optional rdp-video extra

Every message of these exceptions is written to be shown to a user: short, no secret,
no stack trace. ``audit_reason`` (on access refusals) is the short reason written to the
audit trail.

Other packages have their own roots: ``recorder.errors.RecorderError`` (recording and
storage) and ``state.errors.StateError`` (the local state stores).
"""

from __future__ import annotations

from dataclasses import dataclass


class BastilleError(Exception):
    """Root of every gateway exception."""


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a config file: where it is and what is wrong."""

    file: str
    key: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(BastilleError):
    """A config file is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class AuthError(BastilleError):
    """Authentication or authorization failed."""


class WebLoginError(AuthError):
    """A browser sign-in for an SSH login failed; the message is for the user."""


class TargetError(BastilleError):
    """The bastion could not provide the requested target."""

    audit_reason = "target error"


class UnknownTarget(TargetError):
    """No such target (or not visible to this user, or of another protocol)."""

    def __init__(self, message: str, audit_reason: str = "unknown target") -> None:
        super().__init__(message)
        self.audit_reason = audit_reason


class TargetDenied(TargetError):
    """The user is not allowed to use this target."""

    audit_reason = "not allowed"


class TargetUnreachable(TargetError):
    """The target is down or refusing connections."""


class HostKeyMismatch(TargetError):
    """The target presented a host key that is not pinned."""


class TargetAuthFailed(TargetError):
    """The target rejected the bastion's credentials."""


class TargetRefused(TargetError):
    """The target would not open the session channel; the message is its reason."""


class VaultError(TargetError):
    """The bastion cannot load its credential for a target (file unreadable, variable
    unset). The message is the user's (generic); ``why`` is for logs and the audit trail
    (names the file or variable, never a secret)."""

    def __init__(self, target: str, why: str) -> None:
        super().__init__(f"target {target} is misconfigured on the bastion (its credential "
                         "cannot be loaded); tell an administrator")
        self.why = why


class SessionRefused(BastilleError):
    """A session is refused before it starts; the message is safe to log (no secret)."""


class ChannelDenied(BastilleError):
    """A channel type or forwarding request is refused."""


class RenderUnavailable(BastilleError):
    """Rendering an RDP recording needs the optional ``bastille[rdp-video]`` extra."""
