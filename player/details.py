"""Rows and detail lines for the timeline panel and the transfer list (no Textual here).

Every value that came from a user, a target or a recording passes through
:func:`player.fmt.safe` before it becomes text on screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text

from player.fmt import fmt_offset, fmt_size, fmt_start, safe
from player.marks import look
from recorder.timeline import Entry
from state.reviews import Review

_LABELS = {
    "command": "command", "source": "source", "action": "decision", "rule": "rule",
    "reason": "reason", "request_id": "request", "requester": "requested by",
    "request_reason": "reason given", "outcome": "outcome", "status": "status",
    "approver": "decided by", "approver_reason": "their reason", "held_at": "held at",
    "requested_at": "requested", "decided_at": "decided", "direction": "direction",
    "path": "path", "new_path": "new path", "size": "size", "sha256": "sha256",
    "protocol": "protocol", "op": "operation", "by": "by", "signal": "signal",
    "detail": "detail", "dropped_bytes": "bytes lost", "cols": "columns", "rows": "rows",
    "text": "text", "user": "user", "method": "method", "route": "route",
    "target_user": "as (target account)", "client": "client", "desktop": "desktop",
}
_ORDER = list(_LABELS)
_WALL = {"requested_at", "decided_at"}


@dataclass(frozen=True)
class PanelRow:
    """One row of the timeline panel.

    ``key`` is the entry's key (``e12``) or ``r<id>`` for a review record.
    """

    time: float
    kind: str
    key: str
    text: str
    flagged: bool = False
    problem: str = ""  # a review record that fails its checks


def active_flags(reviews: list[Review]) -> dict[str, Review]:
    """Flags not withdrawn, by digest."""
    good = [r for r in reviews if r.ok]
    withdrawn = {r.ref for r in good if r.kind == "unflag"}
    return {r.digest: r for r in good if r.kind == "flag" and r.digest not in withdrawn}


def panel_rows(entries: list[Entry], reviews: list[Review]) -> list[PanelRow]:
    """The timeline entries and the review notes and flags, in time order."""
    flags = active_flags(reviews)
    flagged = {r.entry for r in flags.values() if r.entry}
    rows = [PanelRow(e.time, e.kind, e.key, safe(e.text, 300), e.key in flagged)
            for e in entries]
    for r in reviews:
        if r.kind not in ("note", "flag") or r.at is None:
            continue
        if r.kind == "flag" and (r.digest not in flags and r.ok):
            continue  # withdrawn
        what = "note" if r.kind == "note" else "flag"
        text = f"{what} by {safe(r.author, 40)}: {safe(r.text, 300)}"
        rows.append(PanelRow(r.at, r.kind, f"r{r.id}", text, False,
                             "" if r.ok else r.status))
    rows.sort(key=lambda row: row.time)
    return rows


def row_text(row: PanelRow) -> Text:
    """The panel's third column: flag mark, text, problem."""
    out = Text(no_wrap=True, overflow="ellipsis")
    if row.flagged:
        out.append("F ", look("flag").style)
    out.append(row.text)
    if row.problem:
        out.append(f"  [{row.problem}]", "bold red")
    return out


def glyph(kind: str) -> Text:
    lk = look(kind)
    return Text(lk.glyph, lk.style)


def _value(name: str, value: Any) -> str:
    if name == "size" and isinstance(value, int):
        return f"{fmt_size(value)} ({value} bytes)"
    if name in _WALL and isinstance(value, int | float):
        return fmt_start(float(value), "%Y-%m-%d %H:%M:%S")
    if name == "held_at" and isinstance(value, int | float):
        return fmt_offset(float(value))
    return safe(value, 2000)


def entry_details(entry: Entry) -> list[tuple[str, str]]:
    """(label, value) lines describing an entry completely."""
    out = [("when", fmt_offset(entry.time)), ("what", look(entry.kind).label)]
    fields = {k: v for k, v in entry.fields.items() if v not in (None, "")}
    for name in sorted(fields, key=lambda k: (_ORDER.index(k) if k in _ORDER else 99, k)):
        out.append((_LABELS.get(name, safe(name, 40)), _value(name, fields[name])))
    if entry.exit_status is not None:
        out.append(("exit status", str(entry.exit_status)))
    return out


def review_details(review: Review) -> list[tuple[str, str]]:
    out = [("when", fmt_offset(review.at or 0.0)), ("what", review.kind),
           ("by", safe(review.author, 200)),
           ("written", fmt_start(review.created, "%Y-%m-%d %H:%M:%S")),
           ("text", safe(review.text, 4000))]
    if review.entry:
        out.append(("event", safe(review.entry, 40)))
    key = review.key_id
    out.append(("check", review.status + (f" (key {key})" if key else "")))
    return out


def details_text(lines: list[tuple[str, str]]) -> Text:
    out = Text()
    for i, (label, value) in enumerate(lines):
        if i:
            out.append("\n")
        out.append(f"{label}: ", "bold")
        out.append(value)
    return out
