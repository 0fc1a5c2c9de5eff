"""Event types of a recording and the decoded event value.

The numeric codes are part of the on-disk format (see ``docs/recording-format.md``):
never renumber them. A reader skips codes it does not know (minor-version additions).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

OUTPUT = 1  # target -> user, stdout (payload: raw bytes)
STDERR = 2  # target -> user, stderr (payload: raw bytes)
INPUT = 3  # user -> target (payload: raw bytes)
RESIZE = 4  # payload: struct "<HH" cols, rows
COMMAND = 16  # JSON {"text", "source"}
POLICY = 17  # JSON {"command", "action", "rule", "reason"}
APPROVAL = 18  # JSON {"request_id", "command", "decision", "approver", "reason"}
FILE_TRANSFER = 19  # JSON {"path", "direction", "size", "sha256", "protocol"}
MARKER = 20  # JSON {"text"}
GENERIC = 21  # JSON {"kind", "fields"}
EXIT = 22  # JSON {"status", "signal"}
GAP = 23  # JSON {"reason", "dropped_bytes"}: the recorder lost data (written by the recorder)
RDP = 24  # one pyrdp replay PDU (binary; see docs/rdp.md): screen, input, clipboard, ...

BINARY_TYPES = frozenset({OUTPUT, STDERR, INPUT, RESIZE, RDP})
JSON_TYPES = frozenset({COMMAND, POLICY, APPROVAL, FILE_TRANSFER, MARKER, GENERIC, EXIT, GAP})

NAMES = {
    OUTPUT: "output",
    STDERR: "stderr",
    INPUT: "input",
    RESIZE: "resize",
    COMMAND: "command",
    POLICY: "policy",
    APPROVAL: "approval",
    FILE_TRANSFER: "file_transfer",
    MARKER: "marker",
    GENERIC: "event",
    EXIT: "exit",
    GAP: "gap",
    RDP: "rdp",
}


def dumps(fields: dict[str, Any]) -> bytes:
    """Canonical JSON encoding used for every JSON payload (sorted keys, no spaces)."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class Event:
    """One decoded event.

    Attributes:
        type: numeric event code (see module constants).
        time: seconds since the session start (float, microsecond resolution).
        data: the raw payload (bytes for output/input, encoded JSON for JSON events).
        part: the zstd frame (part) this event was read from.
    """

    type: int
    time: float
    data: bytes
    part: int = 0

    @property
    def name(self) -> str:
        return NAMES.get(self.type, f"unknown-{self.type}")

    @property
    def is_output(self) -> bool:
        return self.type in (OUTPUT, STDERR)

    def fields(self) -> dict[str, Any]:
        """The JSON payload as a dict ({} for binary events or malformed JSON)."""
        if self.type == RESIZE and len(self.data) == 4:
            cols = int.from_bytes(self.data[:2], "little")
            rows = int.from_bytes(self.data[2:], "little")
            return {"cols": cols, "rows": rows}
        if self.type not in JSON_TYPES:
            return {}
        try:
            value = json.loads(self.data)
        except (ValueError, UnicodeDecodeError):
            return {}
        return value if isinstance(value, dict) else {}
