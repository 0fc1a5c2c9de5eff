"""SessionCore without sshd: the recording opened fail-closed, the bastion's messages
shown and recorded as the user saw them, decisions and approvals recorded, kills, and
the end-of-session audit. Real config, recorder, stores and audit; fake channels."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from core_harness import Rig, audit, close_app, make_app, recorded_output, recording, until

from gateway.core.access import Principal
from gateway.core.live import carry_out_kills
from gateway.core.session import SessionCore
from gateway.policy import Action, Decision
from recorder import events as ev


def test_messages_are_shown_and_recorded_as_seen(tmp_path: Path) -> None:
    async def main() -> None:
        app = make_app(tmp_path)
        await app.recorder.start()
        pty = Rig(app, pty=True)
        await pty.start()
        pty.core.say("denied by policy: rule no-root-wipe", fresh_line=True)
        pty.core.say("evil \x1b]0;title\x07 \u202e text")  # controls never reach the user
        await pty.core.finish({"exit_status": 0})
        await close_app(app)
        return pty.chan.out

    shown = asyncio.run(main())
    assert shown.startswith(b"\r\nbastille: denied by policy: rule no-root-wipe\r\n")
    assert b"\x1b" not in shown and "\u202e".encode() not in shown
    assert b"evil \\x1b]0;title\\x07 \\u202e text" in shown
    assert recorded_output(recording(tmp_path)) == bytes(shown)


def test_messages_without_a_terminal_go_to_stderr_and_are_recorded_there(tmp_path: Path) -> None:
    async def main() -> bytes:
        app = make_app(tmp_path)
        await app.recorder.start()
        rig = Rig(app, pty=False)
        await rig.start(kind="exec", command="rm -rf /")
        rig.core.say("denied by policy: rule no-root-wipe")
        await rig.core.finish()
        await close_app(app)
        assert rig.chan.out == b""
        return bytes(rig.chan.err)

    err = asyncio.run(main())
    assert err == b"bastille: denied by policy: rule no-root-wipe\n"
    events = list(recording(tmp_path).events([ev.STDERR]))
    assert [e.data for e in events] == [err]


def test_start_audits_and_finish_closes_with_the_reason(tmp_path: Path) -> None:
    async def main() -> None:
        app = make_app(tmp_path)
        await app.recorder.start()
        rig = Rig(app)
        await rig.start()
        assert app.live.get(rig.core.session_id) is rig.core
        decision = Decision(Action.DENY, "no-root-wipe", "rule no-root-wipe", ("rm -r -f /",))
        rig.core.record_decision("rm -rf /", decision, source="interactive")
        rig.core.ending = "idle timeout"
        await rig.core.finish({"bytes_in": 3})
        await rig.core.finish({"bytes_in": 99})  # idempotent
        assert app.live.get(rig.core.session_id) is None
        await close_app(app)

    asyncio.run(main())
    records = audit(tmp_path)
    kinds = [r["kind"] for r in records]
    assert kinds == ["session.start", "policy", "session.end"]
    assert records[-1]["detail"] == {"bytes_in": 3, "reason": "idle timeout"}
    assert {r["user"] for r in records} == {"alice"} and {r["target"] for r in records} == \
        {"web1"}
    rec = recording(tmp_path)
    assert rec.finished
    policy = [e.fields() for e in rec.events([ev.POLICY])]
    assert policy == [{"command": "rm -rf /", "action": "deny", "rule": "no-root-wipe",
                       "reason": "rule no-root-wipe"}]


def test_a_session_that_cannot_be_recorded_does_not_start(tmp_path: Path) -> None:
    async def main(on_failure: str) -> tuple[bool, SessionCore]:
        root = tmp_path / on_failure
        root.mkdir()
        app = make_app(root, recording=f'on_failure = "{on_failure}"')
        await app.recorder.start()
        shutil.rmtree(root / "data" / "recordings")  # the storage breaks under the gateway
        (root / "data" / "recordings").write_text("not a directory")
        core = SessionCore(app, Principal("alice", frozenset({"ops"})), "192.0.2.7:1",
                           protocol="ssh")
        core.target = "web1"
        ok = await core.start(kind="shell", detail={"kind": "shell"})
        await core.finish()
        await close_app(app)
        return ok, core

    ok, core = asyncio.run(main("terminate"))
    assert not ok and core.rec is None
    kinds = [(r["kind"], r["outcome"]) for r in audit(tmp_path / "terminate")]
    assert kinds == [("recording", "failed")]  # no session.start, no session.end
    ok, core = asyncio.run(main("continue"))
    assert ok and core.rec is None
    kinds = [(r["kind"], r["outcome"]) for r in audit(tmp_path / "continue")]
    assert kinds == [("recording", "failed"), ("session.start", "unrecorded"),
                     ("session.end", "ok")]


def test_kill_request_ends_the_live_session_with_its_reason(tmp_path: Path) -> None:
    async def main() -> list[str | None]:
        app = make_app(tmp_path)
        await app.recorder.start()
        rig = Rig(app)
        await rig.start()
        app.approvals.request_kill(rig.core.session_id, by="bob", reason="suspicious")
        watcher = asyncio.ensure_future(carry_out_kills(app.approvals, app.live,
                                                        interval=0.01))
        for _ in range(300):
            if rig.ended:
                break
            await asyncio.sleep(0.01)
        watcher.cancel()
        assert app.approvals.kill_status(rig.core.session_id) is not None
        await rig.core.finish()
        await close_app(app)
        return rig.ended

    assert asyncio.run(main()) == ["session terminated by bob: suspicious"]
    kills = [r for r in audit(tmp_path) if r["kind"] == "session.kill"]
    assert kills[0]["detail"] == {"by": "bob", "reason": "suspicious"}


def test_storage_pause_is_told_once_per_pause_and_audited(tmp_path: Path,
                                                          monkeypatch: Any) -> None:
    """Storage refuses the recording's data (disk at its low-water mark): after
    PAUSE_NOTICE_AFTER the user is told once, and the pause and its end are audited; a
    second pause is told again."""
    import gateway.core.session as session_mod

    monkeypatch.setattr(session_mod, "PAUSE_NOTICE_AFTER", 0.3)
    notice = b"bastille: recording storage is full; output is paused until it has room\n"

    async def main() -> bytes:
        app = make_app(tmp_path)
        await app.recorder.start()
        free = app.recorder.sink.free  # type: ignore[attr-defined]
        rig = Rig(app, pty=False)
        await rig.start(kind="exec", command="cat big")
        rec = rig.core.rec
        assert rec is not None
        for pause in range(2):
            free.min_free = 1 << 62  # "full"
            rec.output(b"x" * 200_000)
            await until(lambda: rec.paused is not None, 10)
            await until(lambda n=pause: rig.chan.err.count(notice) == n + 1, 10)
            await asyncio.sleep(0.5)  # once per pause, not repeated
            assert rig.chan.err.count(notice) == pause + 1
            free.min_free = 0
            await until(lambda: rec.paused is None, 10)
        await rig.core.finish()
        await close_app(app)
        return bytes(rig.chan.err)

    err = asyncio.run(main())
    assert err == notice * 2
    outcomes = [e["outcome"] for e in audit(tmp_path) if e["kind"] == "recording"]
    assert [o for o in outcomes if o != "state"] == ["paused", "resumed", "paused", "resumed"]
    assert "state" in outcomes  # the storage's own state change (failing), audited too
    assert [e.data for e in recording(tmp_path).events([ev.STDERR])] == [notice, notice]


def test_storage_dropping_in_continue_mode_is_audited(tmp_path: Path, monkeypatch: Any) -> None:
    """on_failure = "continue": past max_pause the session goes on unrecorded (audited
    "dropping"); when storage takes data again both resumes are audited, the second with
    the bytes the recording lost."""
    import gateway.core.session as session_mod

    monkeypatch.setattr(session_mod, "PAUSE_NOTICE_AFTER", 0.3)

    async def main() -> None:
        app = make_app(tmp_path, recording='on_failure = "continue"\nmax_pause = "1s"')
        await app.recorder.start()
        free = app.recorder.sink.free  # type: ignore[attr-defined]
        rig = Rig(app, pty=False)
        await rig.start(kind="exec", command="cat big")
        rec = rig.core.rec
        assert rec is not None
        free.min_free = 1 << 62
        rec.output(b"x" * 200_000)
        await until(lambda: not rec.congested and rec.paused is not None, 10)
        await until(lambda: any(e["outcome"] == "dropping" for e in audit(tmp_path)), 10)
        rec.output(b"y" * 1000)  # not recorded
        free.min_free = 0
        await until(lambda: rec.paused is None, 10)
        await rig.core.finish()
        await close_app(app)

    asyncio.run(main())
    events = [e for e in audit(tmp_path) if e["kind"] == "recording" and e["outcome"] != "state"]
    assert [e["outcome"] for e in events] == ["paused", "dropping", "resumed", "resumed"]
    assert "bytes were not recorded" in events[-1]["detail"]["reason"]  # (+ the notice)
