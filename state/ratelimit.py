"""Failed-login rate limiting that cannot be turned against a real user.

Failures are counted in two kinds of buckets, never per user name alone (that would let
anyone who can reach the port lock any named user out):

* per **source** (the client's address; IPv6 addresses by their /64, which one client
  usually holds whole): every failure from it, whatever user name it tried. Limit
  ``source_limit``: a scanner or a guesser running through user names is stopped, a
  NAT full of honest users is not stopped by one of them guessing a little.
* per **(source, user)**: password (and keyboard-interactive) failures for that user
  name from that source. Limit ``limit``: guessing one user's password is stopped
  where it comes from; the same user logs in from anywhere else.

A failure with ``user=None`` counts only for the source: that is what the SSH gateway
records for a connection that offered public keys none of which matched (forged keys
cannot log in, so such offers cost the attacker nothing and must not cost the user
anything). A success resets the (source, user) bucket; the source bucket is not reset
by a success, or one valid account would let its owner guess other users' passwords
without limit from the same address.

After a bucket reaches its limit within ``window`` seconds, further attempts it covers
are refused until its oldest failure leaves the window. Memory is bounded: at most
``max_keys`` buckets are kept (oldest evicted).

Interface: :class:`FailureCounter`. :class:`FailureLimiter` keeps the counts in the
memory of one process (the SSH gateway and each RDP worker count separately; they reset
when the process restarts); a shared store (issue #20) implements the same interface.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Protocol

#: the source bucket's limit when a caller gives none: several users behind one address
SOURCE_LIMIT_FACTOR = 6


class FailureCounter(Protocol):
    """Failed logins per source and per (source, user) within a sliding window."""

    def blocked(self, source: str, user: str | None = None) -> bool:
        """Whether a login from ``source`` (as ``user``, if given) is refused now."""

    def record_failure(self, source: str, user: str | None = None) -> None:
        """One failure from ``source``: for ``user`` too, unless None (see module doc)."""

    def reset(self, source: str, user: str) -> None:
        """``user`` logged in from ``source``: its (source, user) failures are forgotten."""


def source_key(source: str) -> str:
    """The bucket of a client address: ``1.2.3.4`` (a port, ``:5000``, is dropped), an
    IPv6 address as its /64 (``2001:db8:1:2::/64``), IPv4-mapped IPv6 as IPv4. Anything
    else (a name, a Unix socket) is used as it is."""
    text = source.strip()
    if text.startswith("[") and "]" in text:
        text = text[1:text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    text = text.split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


class FailureLimiter:
    """:class:`FailureCounter` in this process's memory; ``clock`` injectable.

    Args:
        limit: failures per (source, user) within the window.
        window: seconds.
        source_limit: failures per source within the window (default
            ``SOURCE_LIMIT_FACTOR * limit``).
        clock: monotonic seconds.
        max_keys: buckets kept at most (bounds memory under a scan from many addresses).
    """

    def __init__(self, limit: int, window: float, *, source_limit: int | None = None,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000) -> None:
        self.limit = limit
        self.source_limit = source_limit if source_limit is not None \
            else SOURCE_LIMIT_FACTOR * limit
        self.window = window
        self._clock = clock
        self._max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    @staticmethod
    def _keys(source: str, user: str | None) -> tuple[str, str | None]:
        src = "src:" + source_key(source)
        return src, (f"{src}\x00user:{user}" if user is not None else None)

    def _count(self, key: str) -> int:
        now = self._clock()
        q = self._failures.get(key)
        if q is None:
            return 0
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._failures[key]
        return len(q)

    def blocked(self, source: str, user: str | None = None) -> bool:
        src, pair = self._keys(source, user)
        if self._count(src) >= self.source_limit:
            return True
        return pair is not None and self._count(pair) >= self.limit

    def _add(self, key: str, cap: int, now: float) -> None:
        q = self._failures.get(key)
        if q is None or q.maxlen != cap:
            q = self._failures[key] = deque(q or (), maxlen=cap)
        q.append(now)
        self._failures.move_to_end(key)

    def record_failure(self, source: str, user: str | None = None) -> None:
        now = self._clock()
        src, pair = self._keys(source, user)
        self._add(src, self.source_limit, now)
        if pair is not None:
            self._add(pair, self.limit, now)
        while len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)

    def reset(self, source: str, user: str) -> None:
        _src, pair = self._keys(source, user)
        if pair is not None:
            self._failures.pop(pair, None)
