"""Recording budgets: how much one session, and one user per UTC day, may record.

``[recording] max_recording_bytes`` bounds one session and
``max_recording_bytes_per_user_day`` all of a user's sessions in a day, both counted in
bytes handed to the recorder (before compression: what the user's terminal output and
uploads amount to; stored recordings are smaller, ~1/6 for text, ~3/4 for base64 of
random data). Past a budget, ``budget_action`` says what happens:

* ``terminate``: the session is ended with a message (and its command on the target is
  stopped); a user whose daily budget is used up cannot start a session until the next
  UTC day;
* ``throttle``: the session goes on, but the target is read at most ``throttle_rate``
  bytes per second from then on (the target's output waits in the SSH window; the user
  sees it slowly). RDP sessions cannot be slowed: they are terminated instead.

Either way it is audited once (``recording`` / ``budget_exceeded``) and marked in the
recording. The daily counts live in a :class:`state.usage.RecordingUsage` store, updated
every ``FLUSH_BYTES`` or ``FLUSH_SECONDS`` and when the session ends (so concurrent
sessions of one user may together pass the daily budget by about that much each).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.config import BudgetSettings
from state.usage import RecordingUsage, utc_day

FLUSH_BYTES = 4 << 20  # a session adds its bytes to the day's count at least this often
FLUSH_SECONDS = 2.0  # ... or after this long


def human(n: int) -> str:
    """``67108864`` -> ``64 MiB``."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.4g} {unit}"
    return f"{n} bytes"


@dataclass(frozen=True)
class Exceeded:
    """A budget was passed: which (``session`` or ``day``) and its limit."""

    scope: str
    limit: int

    def text(self) -> str:
        what = "this session's" if self.scope == "session" else "your daily"
        return f"{what} recording budget ({human(self.limit)}) is used up"


class Budget:
    """One session's budgets. ``check(recorded)`` is called with the session's bytes
    recorded so far after each chunk; it is cheap (a store write every FLUSH_BYTES)."""

    def __init__(self, settings: BudgetSettings, usage: RecordingUsage | None, user: str, *,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._usage = usage if settings.user_day_bytes else None
        self._user = user
        self._clock = clock
        self._wall = wall
        self._day = utc_day(wall())
        self._day_total = self._usage.used(user, self._day) if self._usage else 0
        self._flushed = 0  # bytes of this session already added to the day's count
        self._last_flush = clock()
        self.exceeded: Exceeded | None = None
        self._throttle_from: tuple[float, int] | None = None  # (time, bytes) when it began

    def used_up(self) -> Exceeded | None:
        """The daily budget is used up already (checked before a session starts)."""
        limit = self.settings.user_day_bytes
        if limit and self._day_total >= limit:
            return Exceeded("day", limit)
        return None

    def _flush(self, recorded: int) -> None:
        delta = recorded - self._flushed
        if self._usage is None or delta <= 0:
            return
        day = utc_day(self._wall())
        if day != self._day:  # a new day: this session's count starts again
            self._day = day
        self._day_total = self._usage.add(self._user, self._day, delta)
        self._flushed = recorded
        self._last_flush = self._clock()

    def check(self, recorded: int) -> Exceeded | None:
        """The budget this session has just passed (once), else None."""
        if self._usage is not None and (
                recorded - self._flushed >= FLUSH_BYTES
                or self._clock() - self._last_flush >= FLUSH_SECONDS):
            self._flush(recorded)
        if self.exceeded is not None:
            return None
        s = self.settings
        if s.session_bytes and recorded > s.session_bytes:
            self.exceeded = Exceeded("session", s.session_bytes)
        elif s.user_day_bytes and self._day_total + recorded - self._flushed > s.user_day_bytes:
            self.exceeded = Exceeded("day", s.user_day_bytes)
        if self.exceeded is not None:
            self._throttle_from = (self._clock(), recorded)
        return self.exceeded

    def pause(self, recorded: int) -> float:
        """Seconds to stop reading the target so that, since the budget was passed, no
        more than ``throttle_rate`` bytes per second are recorded (0: read on)."""
        if self._throttle_from is None:
            return 0.0
        since, base = self._throttle_from
        rate = self.settings.throttle_rate
        ahead = (recorded - base) - rate * (self._clock() - since)
        return max(0.0, ahead / rate)

    def close(self, recorded: int) -> None:
        """The session ended: its last bytes count for the day."""
        self._flush(recorded)
