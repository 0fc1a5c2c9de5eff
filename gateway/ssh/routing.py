"""Where a session goes: parsing ``user+target`` logins and ``target -- command`` requests.

Forms (all with a stock OpenSSH client):

* ``ssh -t alice@bastion web1``            -> target web1, interactive shell
* ``ssh alice@bastion web1 -- uptime``     -> target web1, exec "uptime"
* ``ssh alice@bastion web1 uptime``        -> target web1, exec "uptime"
* ``ssh -t alice@bastion``                 -> menu of alice's targets
* ``ssh alice+web1@bastion [cmd]``         -> target web1; the whole command goes to the
  target (this is the form scp, sftp and rsync use)
* ``ssh alice@bastion approvals ...`` / ``request TARGET [DURATION] [REASON]`` -> built-in
  commands of the appliance
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BUILTIN_COMMANDS = ("approvals", "request", "player", "rdp", "help")
_TARGET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Login:
    user: str
    target: str | None


@dataclass(frozen=True)
class Route:
    """What a session channel asked for, once the target is known."""

    target: str | None  # None: menu (shell) or builtin
    command: str | None  # exec command for the target (None: shell or subsystem)
    builtin: str | None = None  # name of a built-in command
    builtin_args: str = ""


def parse_login(username: str) -> Login:
    """``alice`` -> (alice, None); ``alice+web1`` -> (alice, web1)."""
    user, sep, target = username.partition("+")
    return Login(user=user, target=target if sep and target else None)


def route_request(login: Login, command: str | None) -> Route:
    """Decide the target and the command to run there from the login and exec string."""
    if login.target is not None:
        return Route(target=login.target, command=command)
    if command is None or not command.strip():
        return Route(target=None, command=None)
    head, _, rest = command.strip().partition(" ")
    rest = rest.lstrip()
    if head in BUILTIN_COMMANDS:
        return Route(target=None, command=None, builtin=head, builtin_args=rest)
    if rest == "--" or rest.startswith("-- "):
        rest = rest[2:].lstrip()
    return Route(target=head, command=rest or None)


def valid_target_name(name: str) -> bool:
    return bool(_TARGET.match(name))


def session_kind(route: Route, *, command: str | None, subsystem: str | None,
                 login: Login) -> str:
    """What the recording calls a session: ``sftp``, ``shell`` (also ``ssh -t alice@bastion
    web1``, whose exec string only named the target), legacy ``scp`` (the
    ``USER+TARGET`` form scp uses), or ``exec``."""
    if subsystem == "sftp":
        return "sftp"
    if route.command is None:
        return "shell"
    if command is not None and login.target is not None and route.command.startswith("scp "):
        return "scp"
    return "exec"
