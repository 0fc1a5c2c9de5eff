"""Failed-login rate limiting per source address and per user name.

After ``limit`` failures within ``window`` seconds from one address (or for one user
name), further attempts are refused until the oldest failure leaves the window. Memory is
bounded: at most ``max_keys`` addresses/names are tracked (oldest evicted).

Interface: :class:`FailureCounter`. :class:`FailureLimiter` keeps the counts in the
memory of one process (the SSH gateway and each RDP worker count separately; they reset
when the process restarts); a shared store (issue #20) implements the same interface.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Protocol


class FailureCounter(Protocol):
    """Failed logins per key (``ADDRESS`` or ``user:NAME``) within a sliding window."""

    def blocked(self, *keys: str) -> bool: ...

    def record_failure(self, *keys: str) -> None: ...

    def reset(self, *keys: str) -> None: ...


class FailureLimiter:
    """:class:`FailureCounter` in this process's memory; ``clock`` injectable."""

    def __init__(self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._max_keys = max_keys  # bounds memory under a scan from many addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str) -> deque[float]:
        now = self._clock()
        q = self._failures.get(key)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._failures[key]
        return q

    def blocked(self, *keys: str) -> bool:
        return any(len(self._recent(k)) >= self.limit for k in keys)

    def record_failure(self, *keys: str) -> None:
        now = self._clock()
        for key in keys:
            q = self._failures.setdefault(key, deque(maxlen=self.limit))
            q.append(now)
            self._failures.move_to_end(key)
        while len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)

    def reset(self, *keys: str) -> None:
        for key in keys:
            self._failures.pop(key, None)
