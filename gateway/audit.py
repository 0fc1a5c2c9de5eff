"""Typed audit events written as JSON lines (and optionally to syslog for a SIEM).

Every login attempt, session start/end, target connection, exec command, reconstructed
command, policy decision, approval, file transfer and refusal is one :class:`AuditEvent`.
Events carry no secret: callers pass user names, addresses, targets, commands (already
masked by the policy layer) and outcomes only. Lines are appended with one ``write`` each
and flushed, so a crash loses at most the line being written.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
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
        }
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


class AuditLog:
    """Appends audit events to a JSON-lines file and, optionally, syslog."""

    def __init__(self, file: Path, *, syslog: bool = False, syslog_address: str = "/dev/log",
                 syslog_facility: str = "auth") -> None:
        self.file = file
        private_file(file)  # 0600 in a 0700 directory, whatever the umask
        self._fh = open(file, "a", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()
        self._syslog: logging.Handler | None = None
        if syslog:
            address: str | tuple[str, int] = syslog_address
            if ":" in syslog_address and not syslog_address.startswith("/"):
                host, _, port = syslog_address.rpartition(":")
                address = (host, int(port))
            facility = logging.handlers.SysLogHandler.facility_names.get(
                syslog_facility, logging.handlers.SysLogHandler.LOG_AUTH)
            self._syslog = logging.handlers.SysLogHandler(address=address, facility=facility)
            self._syslog.setFormatter(logging.Formatter("bastille: %(message)s"))

    def emit(self, event: AuditEvent) -> None:
        line = event.to_json()
        with self._lock:
            try:
                self._fh.write(line + "\n")
            except OSError as exc:  # the audit trail failing is loud, never silent
                log.error("cannot write audit log %s: %s", self.file, exc.strerror)
        if self._syslog is not None:
            try:
                self._syslog.emit(logging.LogRecord("bastille.audit", logging.INFO, "", 0,
                                                    line, None, None))
            except Exception as exc:  # noqa: BLE001 - syslog down must not stop the trail
                log.warning("cannot send audit event to syslog: %s", exc)

    def close(self) -> None:
        with self._lock:
            self._fh.close()
        if self._syslog is not None:
            self._syslog.close()


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
