"""The SSH pipes without sshd: each session kind's bytes between fake channels, through
the real policy engine, masker, recorder and approval store."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

from core_harness import TARGET_PW, Rig, audit, close_app, make_app, recording, until

from gateway.ssh.menu import MenuEntry, TargetMenu
from gateway.ssh.pipes import (
    ExecPipe,
    InteractivePipe,
    MenuPipe,
    ScpPipe,
    SftpPipe,
    choose_pipe,
)
from gateway.ssh.relay import STDERR
from recorder import events as ev

AWS_KEY = b"AKIAIOSFODNN7EXAMPLE"


def _pipe(rig: Rig, kind: str, command: str | None = None, pty: bool = False):  # type: ignore[no-untyped-def]
    target = rig.app.config.targets[rig.core.target]
    pipe = choose_pipe(rig.relay, rig.core, rig.enforcer, target, kind=kind, command=command,
                       has_pty=pty, size=(80, 24))
    rig.relay.pipe = pipe
    return pipe


def test_the_pipe_is_chosen_once_from_what_the_session_asked(tmp_path: Path) -> None:
    async def main() -> list[type]:
        app = make_app(tmp_path)
        await app.recorder.start()
        rig = Rig(app)
        await rig.start()
        kinds = [type(_pipe(rig, "shell", pty=True)),
                 type(_pipe(rig, "exec", "sudo -i", pty=True)),
                 type(_pipe(rig, "exec", "uptime")),
                 type(_pipe(rig, "exec", "rsync --server -e . /tmp")),
                 type(_pipe(rig, "scp", "scp -t /tmp")),
                 type(_pipe(rig, "sftp"))]
        rig.relay.pipe = None
        await rig.core.finish()
        await close_app(app)
        return kinds

    assert asyncio.run(main()) == [InteractivePipe, InteractivePipe, ExecPipe, ExecPipe,
                                   ScpPipe, SftpPipe]


def test_exec_bytes_are_exact_for_the_user_and_masked_in_the_recording(tmp_path: Path) -> None:
    async def main() -> tuple[bytes, bytes, bytes]:
        app = make_app(tmp_path)
        await app.recorder.start()
        rig = Rig(app)
        await rig.start(kind="exec", command="cat creds")
        pipe = _pipe(rig, "exec", "cat creds")
        pipe.from_user(b"stdin \x00\xff bytes")
        rig.relay.from_target(b"key=" + AWS_KEY + b"\n", None)
        rig.relay.from_target(b"password: " + TARGET_PW.encode() + b"\n", STDERR)
        await pipe.aclose()
        await rig.core.finish()
        await close_app(app)
        return bytes(rig.target.got), bytes(rig.chan.out), bytes(rig.chan.err)

    got, out, err = asyncio.run(main())
    assert got == b"stdin \x00\xff bytes"
    assert out == b"key=" + AWS_KEY + b"\n"  # the user's bytes are exact
    assert err == b"password: " + TARGET_PW.encode() + b"\n"
    rec = recording(tmp_path)
    recorded = b"".join(e.data for e in rec.events([ev.OUTPUT, ev.STDERR]))
    assert AWS_KEY not in recorded and TARGET_PW.encode() not in recorded
    assert len(recorded) == len(out) + len(err)  # masked in place
    assert b"".join(e.data for e in rec.events([ev.INPUT])) == b"stdin \x00\xff bytes"


def test_interactive_line_denied_is_cancelled_and_the_user_told(tmp_path: Path) -> None:
    async def main() -> tuple[bytes, bytes]:
        app = make_app(tmp_path)
        await app.recorder.start()
        rig = Rig(app, pty=True, echo=True)
        await rig.start()
        pipe = _pipe(rig, "shell", pty=True)
        rig.relay.from_target(b"$ ", None)
        pipe.from_user(b"rm -rf /\r")
        await until(lambda: b"\x03" in rig.target.got)
        pipe.from_user(b"echo ok\r")
        await until(lambda: rig.target.got.endswith(b"echo ok\r"))
        await pipe.aclose()
        await rig.core.finish()
        await close_app(app)
        return bytes(rig.target.got), bytes(rig.chan.out)

    got, out = asyncio.run(main())
    assert got == b"rm -rf /\x03echo ok\r"  # the held Enter never reached the target
    assert b"\r\nbastille: denied by policy: denied by rule 'no-root-wipe'\r\n" in out
    rec = recording(tmp_path)
    assert b"bastille: denied by policy" in b"".join(e.data for e in rec.events([ev.OUTPUT]))
    commands = [e.fields()["text"] for e in rec.events([ev.COMMAND])]
    assert commands == ["rm -rf /", "echo ok"]
    kinds = [(r["kind"], r["outcome"]) for r in audit(tmp_path)]
    assert ("policy", "deny") in kinds and ("command", "ok") in kinds


def _sftp_open(req: int, path: str, write: bool) -> bytes:
    body = bytes([3]) + struct.pack(">I", req) + struct.pack(">I", len(path)) + path.encode()
    body += struct.pack(">I", 0x2 | 0x8 if write else 0x1) + struct.pack(">I", 0)
    return struct.pack(">I", len(body)) + body


def test_sftp_request_denied_by_policy_never_reaches_the_target(tmp_path: Path) -> None:
    async def main() -> tuple[bytes, bytes]:
        app = make_app(tmp_path)
        await app.recorder.start()
        rig = Rig(app)
        await rig.start(kind="sftp")
        pipe = _pipe(rig, "sftp")
        denied, allowed = _sftp_open(1, "/etc/shadow", False), _sftp_open(2, "/tmp/x", True)
        pipe.from_user(denied + allowed)
        await pipe.aclose()
        await rig.core.finish()
        await close_app(app)
        return bytes(rig.target.got), bytes(rig.chan.out)

    got, out = asyncio.run(main())
    assert got == _sftp_open(2, "/tmp/x", True)
    assert out[4] == 101 and struct.unpack_from(">I", out, 5)[0] == 1  # STATUS for req 1
    assert b"denied by policy" in out
    policy = [r for r in audit(tmp_path) if r["kind"] == "policy"]
    assert policy[0]["detail"]["command"] == "sftp-get /etc/shadow"


def test_legacy_scp_upload_is_reported_as_a_transfer(tmp_path: Path) -> None:
    async def main() -> bytes:
        app = make_app(tmp_path)
        await app.recorder.start()
        rig = Rig(app)
        await rig.start(kind="scp", command="scp -t /tmp/in")
        pipe = _pipe(rig, "scp", "scp -t /tmp/in")
        pipe.from_user(b"C0644 5 hello.txt\nhello\x00")
        await pipe.aclose()
        await rig.core.finish()
        await close_app(app)
        return bytes(rig.target.got)

    assert asyncio.run(main()) == b"C0644 5 hello.txt\nhello\x00"
    (t,) = [r for r in audit(tmp_path) if r["kind"] == "file_transfer"]
    assert t["detail"]["path"] == "/tmp/in" and t["detail"]["size"] == 5
    assert t["detail"]["direction"] == "upload" and t["detail"]["protocol"] == "scp"


def test_menu_choice_quit_and_timeout(tmp_path: Path) -> None:
    async def main() -> list[object]:
        app = make_app(tmp_path)
        rig = Rig(app, pty=True)
        entries = [MenuEntry("web1", "the web server"), MenuEntry("db1", "")]
        results: list[object] = []
        for keys in (b"2\r", b"\x03"):
            menu = MenuPipe(rig.relay, TargetMenu("alice", entries))
            rig.relay.pipe = menu
            results.append(await menu.choose([keys], timeout=5))
        menu = MenuPipe(rig.relay, TargetMenu("alice", entries))
        try:
            await menu.choose([], timeout=0.05)
        except TimeoutError:
            results.append("timeout")
        empty = MenuPipe(rig.relay, TargetMenu("alice", []))
        results.append(await empty.choose([b"1\r"], timeout=5))
        await close_app(app)
        return results

    assert asyncio.run(main()) == ["db1", None, "timeout", None]


def test_relay_flow_control_and_limits(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from core_harness import TargetChannel, UserChannel

    import gateway.ssh.relay as relay_mod

    async def main() -> list[str]:
        now = [100.0]
        chan = UserChannel()
        relay = relay_mod.Relay(chan, True, clock=lambda: now[0])  # type: ignore[arg-type]
        relay.upstream = TargetChannel(relay)  # type: ignore[assignment]
        relay.start_reading()
        assert not chan.paused and not relay.upstream.paused  # type: ignore[attr-defined]
        relay.set_target_reading(False)  # the user's window is full: stop reading the target
        assert relay.upstream.paused  # type: ignore[attr-defined]
        relay.set_target_reading(True)
        relay.hold_user(True)  # a request waits for approval: stop reading the user
        assert chan.paused and not relay.upstream.paused  # type: ignore[attr-defined]
        relay.hold_user(False)
        assert not chan.paused
        monkeypatch.setattr(relay_mod, "WATCHDOG_INTERVAL", 0.01)
        ended: list[str] = []
        idle = asyncio.ensure_future(relay_mod.watch_limits(relay, ended.append,
                                                            max_session=0, idle_timeout=30))
        await asyncio.sleep(0.05)
        assert not ended
        now[0] += 31  # no traffic for 31 s
        await asyncio.wait_for(idle, 1)
        longest = asyncio.ensure_future(relay_mod.watch_limits(relay, ended.append,
                                                               max_session=60,
                                                               idle_timeout=0))
        await asyncio.sleep(0.02)
        relay.from_user(b"x")  # traffic does not extend a session's maximum length
        now[0] += 61
        await asyncio.wait_for(longest, 1)
        return ended

    assert asyncio.run(main()) == ["idle timeout", "maximum session length reached"]


def test_keys_typed_after_a_refusal_wait_for_the_shells_new_prompt(tmp_path: Path) -> None:
    """bash answers the Ctrl-C of a refused line late when it is busy; keys it reads
    before it handles the interrupt are dropped with the line. The next line typed right
    after the refusal reaches the target only once the shell has prompted again."""
    from core_harness import TargetChannel

    class SlowShell(TargetChannel):
        def write(self, data: bytes) -> None:
            self.got += data
            order.append(data)
            if b"\x03" in data:  # the new prompt comes 0.1 s later
                asyncio.get_running_loop().call_later(0.1, self.answer)
                return
            self.relay.from_target(data.replace(b"\r", b"\r\n"), None)

        def answer(self) -> None:
            order.append(b"<new prompt>")
            self.relay.from_target(b"^C\r\n$ ", None)

    order: list[bytes] = []

    async def main() -> None:
        app = make_app(tmp_path)
        await app.recorder.start()
        rig = Rig(app, pty=True)
        rig.target = SlowShell(rig.relay)
        await rig.start()
        pipe = _pipe(rig, "shell", pty=True)
        rig.relay.from_target(b"$ ", None)
        pipe.from_user(b"rm -rf /\r")
        await until(lambda: b"\x03" in rig.target.got)
        pipe.from_user(b"echo ok\r")  # typed at once, as the refusal shows
        await until(lambda: rig.target.got.endswith(b"echo ok\r"))
        await pipe.aclose()
        await rig.core.finish()
        await close_app(app)

    asyncio.run(main())
    before = order[: order.index(b"echo ok")]
    assert b"<new prompt>" in before, order


def test_a_key_released_after_the_target_closed_ends_quietly(tmp_path: Path,
                                                             caplog) -> None:  # type: ignore[no-untyped-def]
    """The target's channel closes while a line is being decided: the allowed Enter has
    nowhere to go, which is no error (no traceback in the gateway's log)."""
    from core_harness import TargetChannel

    class ClosingShell(TargetChannel):
        def write(self, data: bytes) -> None:
            if self.closed:
                raise BrokenPipeError("Channel not open for sending")  # as asyncssh does
            super().write(data)

    async def main() -> None:
        app = make_app(tmp_path)
        await app.recorder.start()
        rig = Rig(app, pty=True)
        rig.target = ClosingShell(rig.relay, echo=True)
        await rig.start()
        pipe = _pipe(rig, "shell", pty=True)
        rig.relay.from_target(b"$ ", None)
        pipe.from_user(b"ls\r")
        rig.target.closed = True  # before the decision (a worker thread) is back
        await until(lambda: ("command", "ok") in [(r["kind"], r["outcome"])
                                                 for r in audit(tmp_path)])
        await asyncio.sleep(0.1)
        await pipe.aclose()
        await rig.core.finish()
        await close_app(app)

    asyncio.run(main())
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [], [r.getMessage() for r in errors]
