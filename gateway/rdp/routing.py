"""Where an RDP connection goes, decided from its first packet (pure, stdlib only).

The X.224 Connection Request carries one line before the negotiation request: either
``Cookie: mstshash=NAME`` (the user name the client was given, ``alice#web1``) or a
routing token (the ``.rdp`` file's ``loadbalanceinfo``, ``bst1.…``). The bastion must
connect to the target at that moment, before TLS and before any credentials, so routing
only says *where*; who the user is gets checked later, at the Client Info PDU.

Known limit: mstsc truncates ``mstshash`` to 9 characters; use ``.rdp`` files with a
routing token (``bastille rdp-file``) for mstsc, or a per-target port.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from state.tokens import TOKEN_PREFIX

_TOKEN = re.compile(re.escape(TOKEN_PREFIX).encode() + rb"[A-Za-z0-9_-]{16,128}")
_COOKIE = re.compile(rb"^Cookie: mstshash=(.{1,256})$", re.DOTALL)
SEPARATOR = "#"


@dataclass(frozen=True)
class RouteRequest:
    """What the first packet asked for: a token, or a user name and a target name."""

    token: str | None = None
    user: str = ""
    target: str = ""


def parse_cookie(cookie: bytes | None) -> RouteRequest:
    """The route asked for by the X.224 cookie / routing token line (without CRLF)."""
    if not cookie:
        return RouteRequest()
    m = _TOKEN.search(cookie)
    if m:
        return RouteRequest(token=m.group(0).decode())
    c = _COOKIE.match(cookie)
    if not c:
        return RouteRequest()
    name = c.group(1).decode("utf-8", "replace")
    user, sep, target = name.partition(SEPARATOR)
    return RouteRequest(user=split_domain(user), target=target if sep else "")


def split_domain(name: str) -> str:
    r"""``DOMAIN\alice`` or ``alice@domain`` -> ``alice`` (bastion users have no domain)."""
    name = name.rsplit("\\", 1)[-1]
    return name


def client_user(username: str) -> tuple[str, str]:
    """(user, target) from the Client Info user name: ``alice#web1`` -> ("alice", "web1")."""
    user, _, target = username.partition(SEPARATOR)
    return split_domain(user.strip()), target.strip()
