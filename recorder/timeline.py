"""A session's events as an auditor reads them: the timeline model (no UI here).

Every command with its time and, where known, its exit status; the policy decision
(rule and reason); approval requests (the reason given, the rule), their outcome
(approver or denier and their reason); file transfers (direction, path, size, sha256)
and file operations; port, agent and X11 forwards; resizes; a kill (who and why);
evasion signals; recorder gaps; markers; the exit.

The recording is the primary source. What the appliance knows outside the recording is
passed in as plain data (:class:`Context`): the approval queue (requester's reason, the
times of the request and the decision), the kill queue (who ended the session and why)
and audit records (forwards and evasion signals, which older gateways only audited).
This module reads nothing itself, so the player, the CLI and the evidence bundle build
the same timeline from the same inputs.

Entry kinds (``KINDS``) and what they mean:

* ``command``: a command line with no recorded decision (allowed without a rule);
* ``allowed`` / ``denied`` / ``held``: a command line decided by a rule (``held`` = sent
  for approval); ``policy``: a decision with an action this version does not know;
* ``approved`` / ``rejected`` (denied by an approver) / ``expired`` (expired or
  cancelled): the outcome of an approval request;
* ``transfer``, ``file_op``, ``forward``, ``resize``, ``kill``, ``evasion``, ``gap``,
  ``marker``, ``rdp`` (clipboard), ``logon`` (an RDP logon: who, how, as whom), ``exit``.

Known limits: a decision is attached to the most recent undecided command with the same
text (the gateway records the command, then its decision); a decision without one is
its own entry. Interactive commands have no exit status (the shell does not report it);
exec sessions get the session's exit status. At most ``MAX_ENTRIES`` entries are kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from recorder import events as ev

MAX_ENTRIES = 50_000  # a timeline longer than this ends with a "truncated" marker
RESIZE_MERGE = 1.0  # seconds: a burst of resizes (a window being dragged) is one entry
_LOOKBACK = 16  # entries searched back for the command a decision belongs to
_KILL_MARKER = re.compile(r"^session ended: session terminated by (?P<by>[^:]*): (?P<why>.*)$",
                          re.S)

KINDS: dict[str, str] = {
    "command": "command",
    "allowed": "allowed",
    "denied": "denied",
    "held": "held for approval",
    "policy": "policy decision",
    "approved": "approved",
    "rejected": "denied by approver",
    "expired": "approval expired",
    "transfer": "file transfer",
    "file_op": "file operation",
    "forward": "forward",
    "resize": "resize",
    "kill": "killed",
    "evasion": "evasion signal",
    "gap": "recorder gap",
    "marker": "marker",
    "rdp": "rdp",
    "logon": "logon",
    "exit": "exit",
}
_DECISION_KIND = {"allow": "allowed", "deny": "denied", "approve": "held"}
_OUTCOME_KIND = {"approved": "approved", "denied": "rejected"}
_GENERIC_KIND = {"file_op": "file_op", "forward": "forward", "evasion": "evasion",
                 "kill": "kill", "rdp.clipboard": "rdp", "rdp.logon": "logon"}
_GENERIC_SKIP = frozenset({"rdp.keys", "rdp.mouse"})  # also recorded as commands / noise


@dataclass(frozen=True)
class ApprovalInfo:
    """An approval request as the approval queue knows it."""

    request_id: str
    user: str
    command: str
    rule: str | None
    reason: str
    status: str
    created: float
    decided_by: str | None = None
    decided_at: float | None = None
    decision_reason: str | None = None


@dataclass(frozen=True)
class KillInfo:
    """A kill request from the kill queue: who asked and why."""

    by: str
    reason: str
    requested: float
    done: float | None = None


@dataclass(frozen=True)
class AuditInfo:
    """An audit record about the session (``kind``: ``forward``, ``evasion``...)."""

    time: float  # unix time
    kind: str
    outcome: str
    fields: dict[str, Any]


@dataclass
class Context:
    """What the appliance knows about a session outside its recording."""

    approvals: dict[str, ApprovalInfo] = field(default_factory=dict)
    kill: KillInfo | None = None
    audit: list[AuditInfo] = field(default_factory=list)


@dataclass
class Entry:
    """One timeline entry.

    Attributes:
        time: seconds since the session start.
        kind: one of ``KINDS``.
        key: stable identifier within the session (``e<N>``: the N-th event of the
            recording; ``a<N>``: the N-th audit record); reviews flag entries by key.
        fields: the details (command, rule, reason, approver, path, size, sha256...).
        exit_status: the command's exit status, when known.
    """

    time: float
    kind: str
    key: str
    fields: dict[str, Any] = field(default_factory=dict)
    exit_status: int | None = None

    @property
    def label(self) -> str:
        return KINDS.get(self.kind, self.kind)

    @property
    def text(self) -> str:
        """One-line summary (not sanitised: callers show it through ``visible``)."""
        return summary(self)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"time": round(self.time, 6), "kind": self.kind,
                               "key": self.key, "summary": self.text}
        if self.exit_status is not None:
            out["exit_status"] = self.exit_status
        out["fields"] = dict(self.fields)
        return out


def _s(value: object) -> str:
    return "" if value is None else str(value)


def _rule(f: dict[str, Any]) -> str:
    rule, reason = _s(f.get("rule")), _s(f.get("reason"))
    if rule and reason:
        return f"rule {rule}: {reason}"
    return f"rule {rule}" if rule else reason


def summary(e: Entry) -> str:
    """The one-line text of an entry."""
    f = e.fields
    k = e.kind
    if k in ("command", "allowed", "denied", "held", "policy"):
        text = "$ " + _s(f.get("command"))
        if k == "allowed":
            text += f"  allowed by {_rule(f)}" if f.get("rule") else "  allowed"
        elif k == "denied":
            why = _s(f.get("reason"))
            text += f"  denied by {_rule(f)}" if f.get("rule") else f"  denied: {why}"
        elif k == "held":
            rid = f" #{f['request_id']}" if f.get("request_id") else ""
            text += f"  held for approval{rid} ({_rule(f)})" if _rule(f) else \
                f"  held for approval{rid}"
            if f.get("outcome"):
                text += f" -> {f['outcome']}"
        elif k == "policy":
            text += f"  {_s(f.get('action'))} ({_rule(f)})"
        if e.exit_status is not None:
            text += f"  exit {e.exit_status}"
        return text
    if k in ("approved", "rejected", "expired"):
        rid = f"#{f.get('request_id')}" if f.get("request_id") else "request"
        who = _s(f.get("approver"))
        why = _s(f.get("approver_reason"))
        if k == "approved":
            head = f"approved by {who}" if who else "approved"
        elif k == "rejected":
            head = f"denied by {who}" if who else "denied"
        else:
            head = _s(f.get("status")) or "expired"
        if why:
            head += f": {why}"
        return f"{head}  ({rid} $ {_s(f.get('command'))})"
    if k == "transfer":
        sha = _s(f.get("sha256"))
        size = f.get("size")
        return (f"{_s(f.get('direction'))} {_s(f.get('path'))}  "
                f"{size if isinstance(size, int) else '?'} bytes  "
                f"sha256 {sha or '(not in order)'}  ({_s(f.get('protocol'))})")
    if k == "file_op":
        new = f"  -> {_s(f.get('new_path'))}" if f.get("new_path") else ""
        return f"{_s(f.get('op'))} {_s(f.get('path'))}{new}"
    if k == "forward":
        what = ", ".join(f"{a}={_s(b)}" for a, b in sorted(f.items()) if a != "outcome")
        return f"forward {what}".rstrip()
    if k == "resize":
        return f"resize to {_s(f.get('cols'))}x{_s(f.get('rows'))}"
    if k == "kill":
        who = _s(f.get("by"))
        return f"session terminated by {who or '?'}: {_s(f.get('reason'))}"
    if k == "evasion":
        return f"evasion signal {_s(f.get('signal'))}: {_s(f.get('detail'))}"
    if k == "gap":
        return f"recorder gap: {_s(f.get('reason'))} ({_s(f.get('dropped_bytes'))} bytes lost)"
    if k == "rdp":
        return f"clipboard {_s(f.get('direction'))}: {_s(f.get('text'))[:200]}"
    if k == "logon":
        how = ", ".join(_s(f.get(a)) for a in ("method", "route") if f.get(a))
        text = f"logon {_s(f.get('user'))}" + (f" ({how})" if how else "")
        if f.get("target_user"):
            text += f" as {_s(f.get('target_user'))}"
        if f.get("desktop"):
            text += f", desktop {_s(f.get('desktop'))}"
        return text
    if k == "exit":
        if f.get("signal"):
            return f"session ended by signal {_s(f.get('signal'))}"
        return f"session ended, exit status {_s(f.get('status'))}"
    return _s(f.get("text"))


class Builder:
    """Builds a timeline incrementally, one recording event at a time.

    Args:
        header: the recording's header (kind and command of exec sessions).
        start_time: unix time of the session start (to place audit records).
    """

    def __init__(self, header: dict[str, Any] | None = None, start_time: float = 0.0) -> None:
        self.header = header or {}
        self.start_time = start_time
        self.entries: list[Entry] = []
        self._n = 0
        self.truncated = False
        self._generic_kinds: set[str] = set()

    def _add(self, entry: Entry) -> Entry | None:
        if len(self.entries) >= MAX_ENTRIES:
            if not self.truncated:
                self.truncated = True
                self.entries.append(Entry(entry.time, "marker", "truncated", {
                    "text": f"timeline truncated after {MAX_ENTRIES} entries"}))
            return None
        self.entries.append(entry)
        return entry

    def _find(self, kinds: tuple[str, ...], command: str) -> Entry | None:
        for e in reversed(self.entries[-_LOOKBACK:]):
            if e.kind in kinds and e.fields.get("command") == command:
                return e
        return None

    def add(self, e: ev.Event) -> None:
        """Take the next event of the recording (in order)."""
        key = f"e{self._n}"
        self._n += 1
        if e.type in (ev.OUTPUT, ev.STDERR, ev.INPUT, ev.RDP):
            return
        f = e.fields()
        t = e.time
        if e.type == ev.COMMAND:
            fields = {"command": _s(f.get("text")), "source": _s(f.get("source"))}
            self._add(Entry(t, "command", key, fields))
        elif e.type == ev.POLICY:
            self._policy(t, key, f)
        elif e.type == ev.APPROVAL:
            self._approval(t, key, f)
        elif e.type == ev.FILE_TRANSFER:
            self._add(Entry(t, "transfer", key, {
                k: f.get(k) for k in ("direction", "path", "size", "sha256", "protocol")}))
        elif e.type == ev.RESIZE:
            last = self.entries[-1] if self.entries else None
            if last is not None and last.kind == "resize" and t - last.time <= RESIZE_MERGE:
                last.fields.update(f)
                last.time = t
            else:
                self._add(Entry(t, "resize", key, dict(f)))
        elif e.type == ev.MARKER:
            text = _s(f.get("text"))
            m = _KILL_MARKER.match(text)
            if m:
                self._add(Entry(t, "kill", key, {"by": m["by"], "reason": m["why"],
                                                 "text": text}))
            else:
                self._add(Entry(t, "marker", key, {"text": text}))
        elif e.type == ev.GAP:
            self._add(Entry(t, "gap", key, dict(f)))
        elif e.type == ev.EXIT:
            self._exit(t, key, f)
        elif e.type == ev.GENERIC:
            self._generic(t, key, f)

    def _policy(self, t: float, key: str, f: dict[str, Any]) -> None:
        action = _s(f.get("action"))
        kind = _DECISION_KIND.get(action, "policy")
        command = _s(f.get("command"))
        info = {"action": action, "rule": f.get("rule"), "reason": _s(f.get("reason"))}
        target = self._find(("command",), command)
        if target is not None and t - target.time < 5.0:
            target.kind = kind
            target.fields.update(info)
            return
        self._add(Entry(t, kind, key, {"command": command, **info}))

    def _approval(self, t: float, key: str, f: dict[str, Any]) -> None:
        status = _s(f.get("decision"))
        command = _s(f.get("command"))
        fields: dict[str, Any] = {
            "request_id": _s(f.get("request_id")), "command": command, "status": status,
            "approver": f.get("approver"), "approver_reason": _s(f.get("reason"))}
        held = None
        for e in reversed(self.entries):
            if e.kind == "held" and e.fields.get("command") == command and \
                    not e.fields.get("outcome"):
                held = e
                break
        if held is not None:
            held.fields["request_id"] = fields["request_id"]
            held.fields["outcome"] = status
            fields["held_at"] = round(held.time, 6)
            fields["rule"] = held.fields.get("rule")
        self._add(Entry(t, _OUTCOME_KIND.get(status, "expired"), key, fields))

    def _exit(self, t: float, key: str, f: dict[str, Any]) -> None:
        status = f.get("status")
        code = status if isinstance(status, int) and not isinstance(status, bool) else None
        if self.header.get("kind") == "exec":
            for e in self.entries:
                if e.fields.get("source") == "exec" and e.exit_status is None:
                    e.exit_status = code
                    break
        self._add(Entry(t, "exit", key, {"status": code, "signal": f.get("signal")},
                        exit_status=code))

    def _generic(self, t: float, key: str, f: dict[str, Any]) -> None:
        name = _s(f.get("kind"))
        if name in _GENERIC_SKIP:
            return
        raw = f.get("fields")
        fields = dict(raw) if isinstance(raw, dict) else {}
        kind = _GENERIC_KIND.get(name)
        if kind is None:
            fields = {"text": f"{name}: " + ", ".join(
                f"{a}={_s(b)}" for a, b in sorted(fields.items()))}
            kind = "marker"
        self._generic_kinds.add(kind)
        self._add(Entry(t, kind, key, fields))

    def finish(self, context: Context | None = None, duration: float | None = None,
               ) -> list[Entry]:
        """Apply what the appliance knows outside the recording; the sorted timeline."""
        ctx = context or Context()
        self._match_requests(ctx)
        for e in self.entries:
            rid = _s(e.fields.get("request_id"))
            info = ctx.approvals.get(rid) if rid else None
            if info is None:
                continue
            e.fields["requester"] = info.user
            e.fields["request_reason"] = info.reason
            if e.kind == "held":
                e.fields.setdefault("rule", info.rule)
            else:
                e.fields["requested_at"] = info.created
                e.fields["decided_at"] = info.decided_at
                if not e.fields.get("approver"):
                    e.fields["approver"] = info.decided_by
                if not e.fields.get("approver_reason") and info.decision_reason:
                    e.fields["approver_reason"] = info.decision_reason
        for e in self.entries:  # a held command whose outcome never reached the recording
            if e.kind == "held" and not e.fields.get("outcome"):
                e.fields["outcome"] = "pending or unknown"
        if ctx.kill is not None:
            self._kill(ctx.kill, duration)
        end = duration if duration is not None else max(
            (e.time for e in self.entries), default=0.0)
        for i, a in enumerate(ctx.audit):
            kind = {"forward": "forward", "evasion": "evasion"}.get(a.kind)
            if kind is None or kind in self._generic_kinds:
                continue  # the recording has these itself
            t = min(max(a.time - self.start_time, 0.0), max(end, 0.0))
            fields = dict(a.fields)
            if a.outcome and a.outcome not in ("ok", "flagged"):
                fields["outcome"] = a.outcome
            self._add(Entry(t, kind, f"a{i}", fields))
        self.entries.sort(key=lambda e: e.time)
        return self.entries

    def _match_requests(self, ctx: Context) -> None:
        """A held command whose outcome is not recorded (still pending, or the session
        ended first) gets its request from the queue: same command, closest in time."""
        used = {_s(e.fields.get("request_id")) for e in self.entries}
        for e in self.entries:
            if e.kind != "held" or e.fields.get("request_id"):
                continue
            when = self.start_time + e.time
            best = min((i for i in ctx.approvals.values()
                        if i.request_id not in used and i.command == e.fields.get("command")
                        and abs(i.created - when) < 60),
                       key=lambda i: abs(i.created - when), default=None)
            if best is not None:
                used.add(best.request_id)
                e.fields["request_id"] = best.request_id
                if best.status != "pending":
                    e.fields["outcome"] = best.status
                else:
                    e.fields["outcome"] = "pending"

    def _kill(self, kill: KillInfo, duration: float | None) -> None:
        for e in self.entries:
            if e.kind == "kill":
                e.fields["by"] = kill.by
                e.fields["reason"] = kill.reason
                return
        if kill.done is None:
            return  # requested, never carried out (the session had already ended)
        for e in reversed(self.entries):
            if e.kind == "marker" and _s(e.fields.get("text")).startswith("session ended:"):
                e.kind = "kill"
                e.fields.update(by=kill.by, reason=kill.reason)
                return
        t = max(kill.done - self.start_time, 0.0)  # carried out; no marker was recorded
        if duration is not None:
            t = min(t, duration)
        self._add(Entry(t, "kill", "k0", {"by": kill.by, "reason": kill.reason}))


def build(events: Iterable[ev.Event], *, header: dict[str, Any] | None = None,
          start_time: float = 0.0, duration: float | None = None,
          context: Context | None = None) -> list[Entry]:
    """The timeline of a recording's events (see :class:`Builder`)."""
    b = Builder(header, start_time)
    for e in events:
        b.add(e)
    return b.finish(context, duration)
