"""The one parser of durations and points in time used by the config, the CLI and the
player.

* A duration is seconds (``90``, ``1.5``) or a number with a unit: ``ms``, ``s``, ``m``,
  ``h``, ``d``, ``w`` (``"250ms"``, ``"30s"``, ``"5m"``, ``"8h"``, ``"1d"``, ``"2w"``).
* A point in time is an age with a unit (``"2h"``: two hours ago) or an ISO 8601 date or
  date-time (``2026-11-24``, ``2026-11-24T10:00``, ``...Z`` or with an offset; a naive one
  is local time).
"""

from __future__ import annotations

import datetime as dt
import re
import time

_AMOUNT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
UNITS: dict[str | None, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0,
                                  "d": 86400.0, "w": 604800.0, None: 1.0}
WHEN_HELP = ("use an ISO date such as 2026-11-24 or 2026-11-24T10:00, or a relative age "
             "such as 30m, 2h, 3d, 1w")


def parse_duration(value: object) -> float | None:
    """Seconds from a non-negative int/float or a string like ``'90'``, ``'30s'``,
    ``'5m'``, ``'8h'``, ``'1d'``; None if it is not a duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    if isinstance(value, str):
        m = _AMOUNT.match(value)
        if m:
            return float(m.group(1)) * UNITS[m.group(2)]
    return None


def parse_when(text: str, now: float | None = None) -> float:
    """Epoch seconds of an age (``'2h'`` ago) or an ISO date/time.

    Raises:
        ValueError: neither; the message says what is expected.
    """
    now = time.time() if now is None else now
    m = _AMOUNT.match(text)
    if m and m.group(2):
        return now - float(m.group(1)) * UNITS[m.group(2)]
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"invalid time {text!r}: {WHEN_HELP}") from None
    return value.timestamp()
