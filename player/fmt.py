"""Formatting and parsing helpers shared by the player's screens (no Textual here).

Times on screen are local times; sizes are binary units. Every user- or
target-controlled string that a screen shows goes through :func:`safe` (one line,
control characters shown as visible escapes, see :mod:`common.safetext`).
"""

from __future__ import annotations

import datetime as dt
import re
import time

from rich.text import Text

from common.safetext import visible

_TIME = re.compile(r"^\s*([+-]?)\s*(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d+)?)\s*$")
_REL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def safe(value: object, limit: int = 0) -> str:
    """``value`` as one line that no terminal interprets (cut to ``limit`` characters)."""
    text = visible(value if value is not None else "")
    if limit and len(text) > limit:
        return text[: max(limit - 1, 0)] + "…"
    return text


def cell(value: object, limit: int = 0, style: str = "") -> Text:
    """A table cell or message of user- or target-controlled text: sanitised by
    :func:`safe` and never parsed as markup (a ``str`` would be, by Textual)."""
    return Text(safe(value, limit), style=style, no_wrap=True, end="")


def fmt_start(t: float, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Local time of a unix time ("-" when unknown, "?" when out of range)."""
    if not t:
        return "-"
    try:
        return dt.datetime.fromtimestamp(t).strftime(fmt)
    except (OverflowError, OSError, ValueError):
        return "?"


def fmt_duration(seconds: float | None) -> str:
    """``12m05s`` / ``1h02m``; "-" when unknown."""
    if seconds is None:
        return "-"
    s = int(max(seconds, 0))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s"


def fmt_clock(t: float) -> str:
    """Session time as ``H:MM:SS``."""
    s = int(max(t, 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def fmt_offset(t: float) -> str:
    """Session time for lists: ``M:SS.s`` (``H:MM:SS`` after an hour)."""
    t = max(t, 0.0)
    if t >= 3600:
        return fmt_clock(t)
    return f"{int(t // 60)}:{t % 60:04.1f}"


def fmt_size(n: object) -> str:
    """Bytes as ``512 B``, ``12.0 KiB``, ``3.4 MiB``; "?" when not a number."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - loop always returns


def parse_time(text: str, now: float) -> float | None:
    """``90``, ``1:30``, ``1:02:03``; a leading ``+``/``-`` is relative to ``now``."""
    m = _TIME.match(text)
    if not m:
        return None
    sign, a, b, sec = m.groups()
    parts = [int(x) for x in (a, b) if x is not None]
    value = float(sec)
    for i, p in enumerate(reversed(parts)):
        value += p * 60 ** (i + 1)
    if sign == "+":
        return now + value
    if sign == "-":
        return now - value
    return value


def parse_when(text: str, now: float | None = None) -> float:
    """``2h``/``30m``/``3d``/``1w``/``45s`` ago, or an ISO date/time (naive = local time).

    Raises:
        ValueError: with a message naming the accepted forms.
    """
    now = time.time() if now is None else now
    m = _REL.match(text)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"invalid time {text!r}: use an ISO date such as 2026-11-24 or 2026-11-24T10:00, "
            "or a relative age such as 30m, 2h, 3d, 1w"
        ) from None
    return value.timestamp()


def parse_range(text: str, now: float) -> tuple[float | None, float | None]:
    """``A``, ``A..B``, ``..B``: (since, until); ``B`` is exclusive. ValueError if bad."""
    first, sep, second = text.partition("..")
    since = parse_when(first.strip(), now) if first.strip() else None
    until = parse_when(second.strip(), now) if sep and second.strip() else None
    return since, until


def highlight(text: str, term: str) -> Text:
    """``text`` with every case-insensitive occurrence of ``term`` highlighted."""
    out = Text(text)
    if term:
        out.highlight_words([term], "bold black on yellow", case_sensitive=False)
    return out
