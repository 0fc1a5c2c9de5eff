"""How each kind of moment is drawn: one glyph, one colour, a priority (no Textual here).

Shared by the timeline bar and the timeline panel so that a mark looks the same in both.
The decision kinds are all distinct: allowed ``+`` (green), denied ``x`` (white on red),
held for approval ``?`` (black on yellow), approved ``A`` (black on green), denied by an
approver ``D`` (black on orange), file transfer ``f`` (white on purple). Colours are
given as RGB so that every terminal theme shows the same ones (Textual maps them down
on 256- and 16-colour terminals).
"""

from __future__ import annotations

from typing import NamedTuple


class Look(NamedTuple):
    glyph: str
    style: str
    priority: int  # when marks share a cell of the bar, the highest is drawn
    label: str


LOOKS: dict[str, Look] = {
    "kill": Look("K", "bold white on #870000", 9, "killed"),
    "denied": Look("x", "bold white on #d70000", 8, "denied"),
    "gap": Look("#", "bold white on #d70000", 8, "recorder gap"),
    "rejected": Look("D", "bold black on #ff8700", 7, "denied by approver"),
    "held": Look("?", "bold black on #ffd700", 7, "held for approval"),
    "policy": Look("p", "bold #ffd700", 7, "policy decision"),
    "flag": Look("F", "bold white on #005fd7", 7, "flag"),
    "approved": Look("A", "bold black on #5fd75f", 6, "approved"),
    "evasion": Look("!", "bold #ffaf00", 6, "evasion signal"),
    "transfer": Look("f", "bold white on #8700d7", 5, "file transfer"),
    "file_op": Look("o", "bold #af87ff", 4, "file operation"),
    "forward": Look("w", "bold #5f87ff", 4, "forward"),
    "expired": Look("~", "#9e9e9e", 4, "approval expired"),
    "note": Look("n", "bold black on #5fd7d7", 4, "note"),
    "hit": Look("*", "bold black on #ffff5f", 3, "search hit"),
    "allowed": Look("+", "bold #5fd75f", 2, "allowed"),
    "command": Look("|", "bold #00afd7", 2, "command"),
    "rdp": Look("c", "#00afd7", 2, "clipboard"),
    "logon": Look("L", "bold #5fd7ff", 2, "logon"),
    "resize": Look("r", "#8a8a8a", 1, "resize"),
    "exit": Look("E", "#9e9e9e", 1, "exit"),
    "marker": Look(".", "white", 1, "marker"),
}
UNKNOWN = Look(".", "white", 1, "event")


def look(kind: str) -> Look:
    return LOOKS.get(kind, UNKNOWN)
