"""Typed audit events written as JSON lines: the audit trail every process appends to.

Every login attempt, session start/end, target connection, exec command, reconstructed
command, policy decision, approval, file transfer and refusal is one :class:`AuditEvent`.
Events carry no secret: callers pass user names, addresses, targets, commands (already
masked by the policy layer) and outcomes only. Lines are appended with one ``write`` each
and flushed, so a crash loses at most the line being written. Each event has an ``id``
(unique, sorts by time) so that a receiver can drop a duplicate.

The file is the one source: the gateway follows it (:mod:`gateway.audit.follow`) and
exports what every process wrote (the gateway, RDP workers, the CLI, the player) to
syslog (:mod:`gateway.audit.syslog`, RFC 5424 over UDP, TCP or TLS, JSON or OCSF) and
webhooks (:mod:`gateway.audit.webhooks`), and counts it for metrics. A writer notices
when the file was renamed by log rotation and reopens it (no copytruncate needed).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from state.files import private_file

log = logging.getLogger("bastille.audit")


class Kind(StrEnum):
    LOGIN = "login"
    LOGIN_RATE_LIMITED = "login.rate_limited"
    SESSION_START = "session.start"
    SESSION_END = "session.end"
    SESSION_KILL = "session.kill"
    SESSION_WATCH = "session.watch"
    SESSION_REVIEW = "session.review"
    TARGET_CONNECT = "target.connect"
    HOST_KEY_MISMATCH = "target.host_key_mismatch"
    EXEC = "exec"
    COMMAND = "command"
    POLICY = "policy"
    APPROVAL = "approval"
    FILE_TRANSFER = "file_transfer"
    REFUSED = "refused"
    FORWARD = "forward"
    RECORDING = "recording"
    EVASION = "evasion"
    GATEWAY = "gateway"
    RETENTION = "retention"
    LEGAL_HOLD = "legal_hold"


def new_event_id() -> str:
    """12 hex digits of milliseconds (sorts by time) and 12 random hex digits."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


@dataclass(frozen=True)
class AuditEvent:
    """One audit record. ``outcome`` is e.g. "ok", "denied", "failed", "error"."""

    kind: Kind
    outcome: str
    user: str = ""
    source: str = ""
    target: str = ""
    session: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)
    id: str = field(default_factory=new_event_id)

    def to_json(self) -> str:
        record = {
            "time": _iso(self.time),
            "ts": round(self.time, 6),
            "kind": str(self.kind),
            "outcome": self.outcome,
            "user": self.user,
            "source": self.source,
            "target": self.target,
            "session": self.session,
            **({"detail": self.detail} if self.detail else {}),
            "id": self.id,
        }
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


class AuditLog:
    """Appends audit events to a JSON-lines file (0600).

    Export to syslog and webhooks is done by the gateway from the file (see the module
    docstring), so every process writes the file only.
    """

    def __init__(self, file: Path) -> None:
        self.file = file
        self._lock = threading.Lock()
        self._fh = self._open()

    def _open(self) -> Any:
        private_file(self.file)  # 0600 in a 0700 directory, whatever the umask
        return open(self.file, "a", encoding="utf-8", buffering=1)

    def _rotated(self) -> bool:
        """The file at our path is not the one we hold (renamed by log rotation)."""
        try:
            return os.stat(self.file).st_ino != os.fstat(self._fh.fileno()).st_ino
        except OSError:
            return True

    def emit(self, event: AuditEvent) -> None:
        line = event.to_json()
        with self._lock:
            try:
                if self._rotated():
                    self._fh.close()
                    self._fh = self._open()
                self._fh.write(line + "\n")
            except (OSError, ValueError) as exc:  # the audit trail failing is loud
                log.error("cannot write audit log %s: %s", self.file,
                          getattr(exc, "strerror", None) or exc)

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def read_events(file: Path, *, since: float | None = None, user: str | None = None,
                kind: str | None = None) -> Iterator[dict[str, Any]]:
    """Yield audit records from ``file`` matching the filters; malformed lines are skipped
    with a warning naming the line."""
    with open(file, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d: not a JSON audit record, skipped", file, number)
                continue
            if since is not None and record.get("ts", 0) < since:
                continue
            if user is not None and record.get("user") != user:
                continue
            if kind is not None and not str(record.get("kind", "")).startswith(kind):
                continue
            yield record
