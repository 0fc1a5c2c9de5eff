"""Audit records shaped as OCSF events (Open Cybersecurity Schema Framework 1.1) for a SIEM.

:func:`to_ocsf` maps one audit record (the JSON of :class:`gateway.audit.AuditEvent`) to
an OCSF-shaped object: logins are *Authentication* (3002), sessions *SSH Activity*
(4007), commands and exec requests *Process Activity* (1007), policy decisions and
approvals *Authorize Session* (3003), file transfers *File Hosting Activity* (6006), and
everything else a *Base Event* (0). The bastion's own fields that have no OCSF place are
kept under ``unmapped``. "Shaped": the required attributes of each class are filled with
what the bastion knows; it is not validated against the schema.
"""

from __future__ import annotations

import calendar
import time
from typing import Any

from gateway._version import __version__

OCSF_VERSION = "1.1.0"

#: kind -> (class_uid, class_name, category_uid, category_name)
_CLASSES: dict[str, tuple[int, str, int, str]] = {
    "login": (3002, "Authentication", 3, "Identity & Access Management"),
    "login.rate_limited": (3002, "Authentication", 3, "Identity & Access Management"),
    "session.start": (4007, "SSH Activity", 4, "Network Activity"),
    "session.end": (4007, "SSH Activity", 4, "Network Activity"),
    "session.kill": (4007, "SSH Activity", 4, "Network Activity"),
    "target.connect": (4007, "SSH Activity", 4, "Network Activity"),
    "target.host_key_mismatch": (4007, "SSH Activity", 4, "Network Activity"),
    "forward": (4007, "SSH Activity", 4, "Network Activity"),
    "exec": (1007, "Process Activity", 1, "System Activity"),
    "command": (1007, "Process Activity", 1, "System Activity"),
    "policy": (3003, "Authorize Session", 3, "Identity & Access Management"),
    "approval": (3003, "Authorize Session", 3, "Identity & Access Management"),
    "refused": (3003, "Authorize Session", 3, "Identity & Access Management"),
    "file_transfer": (6006, "File Hosting Activity", 6, "Application Activity"),
}
_BASE = (0, "Base Event", 0, "Uncategorized")

#: (class_uid, kind or kind:outcome) -> (activity_id, activity_name)
_ACTIVITIES: dict[tuple[int, str], tuple[int, str]] = {
    (3002, "login"): (1, "Logon"),
    (3002, "login.rate_limited"): (1, "Logon"),
    (4007, "session.start"): (1, "Open"),
    (4007, "session.end"): (2, "Close"),
    (4007, "session.kill"): (2, "Close"),
    (4007, "target.connect"): (1, "Open"),
    (4007, "target.host_key_mismatch"): (5, "Refuse"),
    (4007, "forward"): (6, "Traffic"),
    (1007, "exec"): (1, "Launch"),
    (1007, "command"): (1, "Launch"),
    (3003, "policy"): (1, "Assign Privileges"),
    (3003, "approval"): (1, "Assign Privileges"),
    (3003, "refused"): (1, "Assign Privileges"),
    (6006, "file_transfer"): (99, "Other"),
}

_FAILED = {"failed", "denied", "deny", "refused", "error", "expired", "cancelled", "mismatch"}
_SEVERITY = {"failed": (3, "Medium"), "error": (4, "High"), "denied": (2, "Low"),
             "deny": (2, "Low"), "refused": (2, "Low")}


def _status(outcome: str) -> tuple[int, str]:
    if outcome in _FAILED:
        return 2, "Failure"
    if outcome in ("ok", "approved", "allow", "unrecorded", "requested", "pending"):
        return 1, "Success"
    return 99, "Other"


def _millis(record: dict[str, Any]) -> int:
    ts = record.get("ts")
    if isinstance(ts, int | float):
        return int(ts * 1000)
    text = str(record.get("time", ""))
    try:
        parsed = time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return int(time.time() * 1000)
    return calendar.timegm(parsed) * 1000


def _endpoint(source: str) -> dict[str, Any]:
    host, _, port = source.rpartition(":")
    if not host:
        return {"ip": source} if source else {}
    out: dict[str, Any] = {"ip": host.strip("[]")}
    if port.isdigit():
        out["port"] = int(port)
    return out


def to_ocsf(record: dict[str, Any]) -> dict[str, Any]:
    """One audit record as an OCSF-shaped event (see the module docstring)."""
    kind = str(record.get("kind", ""))
    outcome = str(record.get("outcome", ""))
    class_uid, class_name, category_uid, category_name = _CLASSES.get(kind, _BASE)
    activity_id, activity = _ACTIVITIES.get((class_uid, kind), (99, "Other"))
    status_id, status = _status(outcome)
    severity_id, severity = _SEVERITY.get(outcome, (1, "Informational"))
    if kind in ("evasion", "target.host_key_mismatch"):
        severity_id, severity = 4, "High"
    detail = record.get("detail") or {}
    event: dict[str, Any] = {
        "class_uid": class_uid, "class_name": class_name,
        "category_uid": category_uid, "category_name": category_name,
        "activity_id": activity_id, "activity_name": activity,
        "type_uid": class_uid * 100 + activity_id,
        "severity_id": severity_id, "severity": severity,
        "status_id": status_id, "status": status, "status_detail": outcome,
        "time": _millis(record),
        "message": f"{kind} {outcome}".strip(),
        "metadata": {"version": OCSF_VERSION, "uid": record.get("id", ""),
                     "log_name": "bastille audit",
                     "product": {"name": "bastille", "vendor_name": "bastille",
                                 "version": __version__}},
        "unmapped": {"kind": kind, "detail": detail},
    }
    _people_and_places(event, record, class_uid)
    if isinstance(detail, dict):
        _what(event, detail, class_uid)
    return event


def _people_and_places(event: dict[str, Any], record: dict[str, Any], class_uid: int) -> None:
    user = record.get("user") or ""
    if user:
        event["actor"] = {"user": {"name": user}}
        if class_uid == 3002:
            event["user"] = {"name": user}
    source = str(record.get("source") or "")
    if source and source not in ("cli", "player"):
        event["src_endpoint"] = _endpoint(source)
    elif source:
        event["unmapped"]["source"] = source
    target = record.get("target") or ""
    if target:
        event["dst_endpoint"] = {"hostname": target}
    session = record.get("session") or ""
    if session:
        event["session"] = {"uid": session}


def _what(event: dict[str, Any], detail: dict[str, Any], class_uid: int) -> None:
    if detail.get("command") and class_uid in (1007, 3003):
        event["process"] = {"cmd_line": detail["command"]}
    if detail.get("rule"):
        event["policy"] = {"name": detail["rule"]}
    if class_uid == 6006:
        event["file"] = {"path": detail.get("path", ""), "size": detail.get("size")}
        if detail.get("sha256"):
            event["file"]["hashes"] = [{"algorithm_id": 3, "algorithm": "SHA-256",
                                        "value": detail["sha256"]}]
