"""Who may use which target: the one access check of the bastion.

Every path that grants or lists targets goes through :class:`Access`: SSH sessions and
forwarding, the SSH menu and ``help``, RDP logins (``rdp/gate.py``), ``ssh USER@BASTION
rdp``, ``bastille rdp-file`` and ``request``. A :class:`Principal` may use a target when

* the target names the user (``targets.NAME.users``), or
* the target names one of the principal's groups (``targets.NAME.groups``): the groups
  of ``[users.NAME]``, plus, after a single sign-on, the groups the IdP gave, or
* an approved just-in-time access request (a grant, :mod:`state.approvals`) for that
  user and target is still running.

Known limit: a grant is read when access is checked (a session start, a menu, an RDP
login); a grant that ends does not end sessions it let start.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import Config, TargetConfig
from gateway.errors import TargetDenied, UnknownTarget
from state.approvals import GrantStore, Request
from state.errors import StateError

PROTOCOLS = ("ssh", "rdp")


@dataclass(frozen=True)
class Principal:
    """An authenticated user as the access check sees it."""

    name: str
    groups: frozenset[str] = frozenset()
    sso: bool = False  # identity and (some) groups came from an IdP login


def principal_for(config: Config, name: str, *,
                  idp_groups: frozenset[str] | None = None) -> Principal | None:
    """The principal of user ``name``: a ``[users]`` entry, and/or an IdP identity with
    its mapped groups (``idp_groups``, for single sign-on). None: nobody known."""
    known = config.users.get(name)
    if idp_groups is None:
        return Principal(name, known.groups) if known is not None else None
    return Principal(name, (known.groups if known is not None else frozenset()) | idp_groups,
                     sso=True)


class Access:
    """The access check over a config and the grants store."""

    def __init__(self, config: Config, grants: GrantStore) -> None:
        self.config = config
        self.grants = grants

    def permits(self, principal: Principal, target: TargetConfig) -> bool:
        """True if ``principal`` may use ``target`` now (config or a running grant)."""
        if principal.name in target.users or target.groups & principal.groups:
            return True
        try:
            return self.grants.active_grant(principal.name, target.name) is not None
        except StateError as exc:  # the shared database is away: no grant can be seen
            raise TargetDenied(f"cannot check the access grants of {principal.name} for "
                               f"{target.name!r} now: {exc}; try again shortly") from exc

    def revoked_grant(self, principal: Principal, target: str) -> Request | None:
        """The revoked grant a running session of ``principal`` on ``target`` depended on:
        not allowed by the config, no active grant, and the latest grant revoked."""
        config = self.config.targets.get(target)
        if config is not None and self.by_config(principal, config):
            return None
        if self.grants.active_grant(principal.name, target) is not None:
            return None
        latest = self.grants.latest_grant(principal.name, target)
        return latest if latest is not None and latest.status == "revoked" else None

    def by_config(self, principal: Principal, target: TargetConfig) -> bool:
        """True if the config alone lets ``principal`` use ``target`` (no grant needed)."""
        return principal.name in target.users or bool(target.groups & principal.groups)

    def authorize(self, principal: Principal | None, name: str, *,
                  protocol: str = "ssh") -> TargetConfig:
        """The target ``name`` if ``principal`` may use it over ``protocol``.

        Raises:
            UnknownTarget: no such target, or one of the other protocol (``audit_reason``
                says which).
            TargetDenied: the principal may not use it.
        """
        target = self.config.targets.get(name)
        if target is None or principal is None:
            if protocol == "ssh":
                raise UnknownTarget(f"unknown target {name!r}; 'ssh USER@BASTION help' "
                                    "lists yours")
            raise UnknownTarget(f"unknown RDP target {name!r}")
        if target.protocol != protocol:
            if protocol == "ssh":
                raise UnknownTarget(f"{name!r} is an RDP target: connect to it with an RDP "
                                    "client (docs/rdp.md)", "rdp target over ssh")
            raise UnknownTarget(f"unknown RDP target {name!r}", "not an rdp target")
        if not self.permits(principal, target):
            hint = (f" (ask for access: ssh USER@BASTION request {name} 1h REASON)"
                    if protocol == "ssh" else "")
            raise TargetDenied(f"{principal.name} is not allowed to use target {name!r}{hint}")
        return target

    def targets_for(self, principal: Principal | None, protocol: str = "ssh"
                    ) -> list[TargetConfig]:
        """The targets of ``protocol`` that ``principal`` may use now, in config order."""
        if principal is None:
            return []
        return [t for t in self.config.targets.values()
                if t.protocol == protocol and self._permits_quietly(principal, t)]

    def _permits_quietly(self, principal: Principal, target: TargetConfig) -> bool:
        """:meth:`permits`, a target reached only by a grant left out while grants
        cannot be read (lists: the menu, ``help``)."""
        try:
            return self.permits(principal, target)
        except TargetDenied:
            return False
