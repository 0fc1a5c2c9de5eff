"""How each kind of moment is drawn: one glyph, one colour, a priority (no Textual here).

Shared by the timeline bar and the timeline panel so that a mark looks the same in both.
The decision kinds are all distinct: allowed ``+`` (green), denied ``x`` (white on red),
held for approval ``?`` (black on yellow), approved ``A`` (black on green), denied by an
approver ``D`` (black on orange), file transfer ``f`` (black on magenta).
"""

from __future__ import annotations

from typing import NamedTuple


class Look(NamedTuple):
    glyph: str
    style: str
    priority: int  # when marks share a cell of the bar, the highest is drawn
    label: str


LOOKS: dict[str, Look] = {
    "kill": Look("K", "bold white on red", 9, "killed"),
    "denied": Look("x", "bold white on red", 8, "denied"),
    "gap": Look("#", "bold white on red", 8, "recorder gap"),
    "rejected": Look("D", "bold black on dark_orange", 7, "denied by approver"),
    "held": Look("?", "bold black on yellow", 7, "held for approval"),
    "policy": Look("p", "bold yellow", 7, "policy decision"),
    "flag": Look("F", "bold white on blue", 7, "flag"),
    "approved": Look("A", "bold black on green", 6, "approved"),
    "evasion": Look("!", "bold yellow", 6, "evasion signal"),
    "transfer": Look("f", "bold black on magenta", 5, "file transfer"),
    "file_op": Look("o", "magenta", 4, "file operation"),
    "forward": Look("w", "bold blue", 4, "forward"),
    "expired": Look("~", "grey70", 4, "approval expired"),
    "note": Look("n", "bold black on cyan", 4, "note"),
    "hit": Look("*", "bold black on bright_yellow", 3, "search hit"),
    "allowed": Look("+", "bold green", 2, "allowed"),
    "command": Look("|", "bold cyan", 2, "command"),
    "rdp": Look("c", "cyan", 2, "clipboard"),
    "resize": Look("r", "grey62", 1, "resize"),
    "exit": Look("E", "grey70", 1, "exit"),
    "marker": Look(".", "white", 1, "marker"),
}
UNKNOWN = Look(".", "white", 1, "event")


def look(kind: str) -> Look:
    return LOOKS.get(kind, UNKNOWN)
