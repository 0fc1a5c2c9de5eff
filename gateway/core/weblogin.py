"""Browser sign-ins for SSH logins (SAML through the web endpoint, ``gateway/web``), as the
SSH adapter sees them: a protocol, so that ``gateway.ssh`` never imports ``gateway.web``
(both are adapters; the app wires one to the other through :class:`Services`)."""

from __future__ import annotations

from typing import Any, Protocol


class WebIdentityLike(Protocol):
    """Who signed in at the identity provider, with bastille groups already mapped."""

    @property
    def user(self) -> str: ...

    @property
    def groups(self) -> frozenset[str]: ...

    @property
    def subject(self) -> str: ...

    @property
    def issuer(self) -> str: ...


class WebLogins(Protocol):
    """Starts, waits for and cancels browser sign-ins (raises ``WebLoginError``)."""

    def begin_ssh_login(self, ssh_user: str, source: str) -> Any:
        """A pending login (opaque) whose ``code`` makes its one-time URL."""

    def login_url(self, code: str) -> str:
        """The one-time URL the user opens."""

    async def wait_ssh_login(self, pending: Any) -> WebIdentityLike:
        """The identity once the browser sign-in validated."""

    def cancel_ssh_login(self, pending: Any) -> None:
        """Forget a pending login (its link stops working)."""
