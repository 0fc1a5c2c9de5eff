"""Recordings made by the real gateway: fidelity, integrity, crash, drain, fail-closed."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recorder import events as ev
from recorder.reader import Recording
from recorder.sinks.file import FileSink
from tests.e2e.rig import Rig

pytestmark = pytest.mark.e2e

BASTILLE = [sys.executable, "-m", "gateway"]


def cli(rig: Rig, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([*BASTILLE, *args, "-c", str(rig.gateway.config)], capture_output=True,
                       text=True, timeout=60)
    if check:
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def sessions(rig: Rig, *filters: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads(cli(rig, "sessions", "list", "--json", *filters).stdout)
    return out


def find_session(rig: Rig, marker: str, timeout: float = 10.0) -> dict[str, Any]:
    """The newest session whose exec command contains ``marker``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for s in sessions(rig):
            if marker in (s.get("command") or ""):
                return s
        time.sleep(0.2)
    raise AssertionError(f"no session with {marker!r}: {sessions(rig)}")


def recording(rig: Rig, session: dict[str, Any]) -> Recording:
    sink = FileSink(rig.data / "recordings")
    return Recording.from_sink(sink, session["name"])


def test_exec_binary_output_fidelity_and_verify(rig: Rig) -> None:
    marker = f"fidelity-{os.getpid()}"
    cmd = f"head -c 3000000 /dev/urandom; echo {marker} >&2"
    r = rig.ssh("alice", "web1", "--", cmd)
    assert r.returncode == 0 and len(r.stdout) == 3_000_000
    s = find_session(rig, marker)
    rec = recording(rig, s)
    stdout = b"".join(e.data for e in rec.events() if e.type == ev.OUTPUT)
    assert hashlib.sha256(stdout).hexdigest() == hashlib.sha256(r.stdout).hexdigest()
    v = cli(rig, "verify", s["id"])
    assert "ok" in v.stdout.lower() or "verified" in v.stdout.lower()


def test_interactive_fidelity(rig: Rig) -> None:
    """Everything the client received on its terminal equals the recorded output."""
    marker = f"tty-{os.getpid()}"
    script = f"stty -echo; printf '\\033[31mred\\033[0m {marker} \\xe2\\x82\\xac\\n'; exit 5\n"
    r = subprocess.run([*rig.ssh_args("alice", tty=True), "web1"], input=script.encode(),
                       capture_output=True, timeout=30)
    assert r.returncode == 5
    shown = r.stdout
    assert marker.encode() in shown
    deadline = time.monotonic() + 10
    match = None
    while match is None and time.monotonic() < deadline:
        for s in sessions(rig, "--user", "alice", "--target", "web1"):
            rec = recording(rig, s)
            out = b"".join(e.data for e in rec.events() if e.is_output)
            if marker.encode() in out:
                match = (s, out)
                break
        time.sleep(0.2)
    assert match is not None
    assert hashlib.sha256(match[1]).hexdigest() == hashlib.sha256(shown).hexdigest()
    assert match[0]["exit_status"] == 5


def test_sessions_list_show_export_play(rig: Rig, tmp_path: Path) -> None:
    marker = f"listed-{os.getpid()}"
    assert rig.ssh("alice", "web1", "--", "echo", marker).returncode == 0
    s = find_session(rig, marker)
    assert (s["user"], s["target"]) == ("alice", "web1")
    assert any(x["id"] == s["id"] for x in sessions(rig, "--text", marker))
    assert not sessions(rig, "--user", "bob", "--text", marker)
    show = cli(rig, "sessions", "show", s["id"])
    assert marker in show.stdout and "alice" in show.stdout
    cast = tmp_path / "s.cast"
    cli(rig, "export", s["id"], "--format", "asciicast", "-o", str(cast))
    header = json.loads(cast.read_text().splitlines()[0])
    assert header["version"] == 2
    play = cli(rig, "play", s["id"], "--speed", "0")
    assert marker in play.stdout


def test_file_transfer_recorded(rig: Rig, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    src = tmp_path / "rec.bin"
    src.write_bytes(data)
    remote = f"/home/bastille-t1/rec-{os.getpid()}.bin"
    subprocess.run(["scp", *rig.scp_args(), str(src), f"alice+web1@127.0.0.1:{remote}"],
                   check=True, capture_output=True, timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for s in sessions(rig, "--user", "alice"):
            rec = recording(rig, s)
            for e in rec.events():
                f = e.fields()
                if e.type == ev.FILE_TRANSFER and f.get("path") == remote:
                    assert f["direction"] == "upload" and f["size"] == len(data)
                    assert f["sha256"] == hashlib.sha256(data).hexdigest()
                    return
        time.sleep(0.3)
    raise AssertionError("no file transfer event in any recording")


def test_kill_9_mid_session_keeps_what_was_flushed(make_gateway) -> None:  # type: ignore[no-untyped-def]
    g: Rig = make_gateway()
    proc = subprocess.Popen([*g.ssh_args("alice"), "web1", "--",
                             "for i in $(seq 1 100); do echo line-$i; sleep 0.1; done"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(3.0)
    assert g.gateway.proc is not None
    os.kill(g.gateway.proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=20)
    seen = out.decode().split()
    assert len(seen) >= 15  # the client saw ~2.5 s of lines
    # restart: recovery runs, and the recording is readable up to ~1 s before the kill
    g.gateway.start()
    deadline = time.monotonic() + 15
    found: list[dict[str, Any]] = []
    while not found and time.monotonic() < deadline:
        found = [s for s in sessions(g) if "line-$i" in (s.get("command") or "")]
        time.sleep(0.3)
    assert found, sessions(g)
    rec = recording(g, found[0])
    recorded = b"".join(e.data for e in rec.events() if e.is_output).decode().split()
    assert recorded == seen[:len(recorded)]
    assert len(recorded) >= len(seen) - 12  # at most ~1 s (10 lines) lost, plus slack
    # finished with a signed recovery trailer (tests/e2e/test_recovery.py checks the rest)
    deadline = time.monotonic() + 15
    while found[0]["status"] == "live" and time.monotonic() < deadline:
        time.sleep(0.3)
        found = [s for s in sessions(g) if s["id"] == found[0]["id"]]
    assert found[0]["status"] == "recovered"
    g.gateway.stop()


def test_sigterm_finalizes_recordings(make_gateway) -> None:  # type: ignore[no-untyped-def]
    g: Rig = make_gateway()
    proc = subprocess.Popen([*g.ssh_args("alice"), "web1", "--", "sleep 1; echo finalized"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)
    g.gateway.stop(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert out == b"finalized\n"
    s = find_session(g, "finalized")
    assert s["status"] == "ended"
    v = cli(g, "verify", "--all", "--require-signature")
    assert v.returncode == 0, v.stdout + v.stderr
    assert list((g.data / "recordings").rglob("*.part")) == []
    logs = g.gateway.logs()
    for bad in ("Traceback", "Event loop is closed", "was never retrieved", "Task was destroyed"):
        assert bad not in logs, logs


def test_tampered_recording_is_detected(make_gateway) -> None:  # type: ignore[no-untyped-def]
    g: Rig = make_gateway()
    assert g.ssh("alice", "web1", "--", "seq 1 20000").returncode == 0
    s = find_session(g, "seq 1 20000")
    path = next((g.data / "recordings").rglob(f"*{s['id']}*.bstl"))
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    v = cli(g, "verify", s["id"], check=False)
    assert v.returncode != 0
    assert "chunk" in (v.stdout + v.stderr).lower()


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs filled to the last byte by the file ``fill`` (root only)."""
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(tiny)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    fd = os.open(tiny / "fill", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 512):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    yield tiny
    subprocess.run(["umount", "-l", str(tiny)], capture_output=True)


def test_recording_failure_fails_closed(make_gateway, full_disk: Path) -> None:  # type: ignore[no-untyped-def]
    """Storage that cannot take even the header: the session does not start
    (on_failure=terminate), and the refused session leaves no empty .part behind."""
    g: Rig = make_gateway(recording_extra=f'dir = "{full_disk}"')
    r = g.ssh("alice", "web1", "--", "echo", "must-not-run")
    assert r.returncode != 0
    assert b"must-not-run" not in r.stdout
    assert b"cannot be recorded" in r.stderr
    assert [p.name for p in full_disk.rglob("*") if p.is_file()] == ["fill"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 40 MiB tmpfs (root only)."""
    disk = tmp_path / "small"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_full_disk_pauses_the_session_until_space_returns(make_gateway,  # type: ignore[no-untyped-def]
                                                           small_disk: Path) -> None:
    """A session whose recording storage reaches its low-water mark is paused, not ended
    (issue 16: back-pressure before failure); `bastille status` says so (exit 2); once
    space is freed it runs to the end and every byte is recorded."""
    (small_disk / "ballast").write_bytes(b"\0" * (30 * 1024 * 1024))
    g: Rig = make_gateway(recording_extra=f'dir = "{small_disk}"\nmin_free_mib = 1')
    marker = f"pause-{os.getpid()}"
    proc = subprocess.Popen([*g.ssh_args("alice"), "web1", "--",
                             f"head -c 16000000 /dev/urandom; echo {marker}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    got = bytearray()
    os.set_blocking(proc.stdout.fileno(), False)
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        chunk = proc.stdout.read(1 << 16)
        if chunk:
            got += chunk
        time.sleep(0.05)
    assert proc.poll() is None, "the session ended instead of pausing"
    assert marker.encode() not in got and len(got) < 16_000_000
    st = cli(g, "status", check=False)
    assert st.returncode == 2, st.stdout + st.stderr
    assert "paused for" in st.stdout and "low-water mark" in st.stdout
    time.sleep(6)  # long enough for the one-line notice (after 5 s of pause)
    (small_disk / "ballast").unlink()  # space returns
    os.set_blocking(proc.stdout.fileno(), True)
    rest, err = proc.communicate(timeout=60)
    got += rest
    assert proc.returncode == 0, err
    assert b"recording failed" not in err
    assert got.endswith(marker.encode() + b"\n") and len(got) == 16_000_000 + len(marker) + 1
    # told once (after ~5 s) on stderr, which is not the data stream; audited
    notice = b"bastille: recording storage is full; output is paused until it has room\n"
    assert err.count(notice) == 1, err
    audit = [json.loads(x) for x in (g.data / "audit.jsonl").read_text().splitlines()]
    pauses = [e["outcome"] for e in audit if e["kind"] == "recording"
              and e["outcome"] in ("paused", "resumed")]
    assert pauses == ["paused", "resumed"], pauses
    states = [e["detail"]["state"] for e in audit if e["kind"] == "recording"
              and e["outcome"] == "state"]
    assert "failing" in states, states  # the storage's state changes are audited too
    s = find_session(g, marker)
    rec = Recording.from_sink(FileSink(small_disk), s["name"])
    out = b"".join(e.data for e in rec.events() if e.type == ev.OUTPUT)
    assert out == bytes(got)
    assert b"".join(e.data for e in rec.events() if e.type == ev.STDERR) == notice
    deadline = time.monotonic() + 15  # "full" is remembered for a few seconds
    while cli(g, "status", check=False).returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    st = cli(g, "status", check=False)
    assert st.returncode == 0 and "ssh         0 session(s)" in st.stdout, st.stdout


def test_on_failure_continue_runs_unrecorded_and_audits(make_gateway, full_disk: Path) -> None:  # type: ignore[no-untyped-def]
    g: Rig = make_gateway(recording_extra=f'dir = "{full_disk}"\non_failure = "continue"')
    r = g.ssh("alice", "web1", "--", "echo", "runs-anyway")
    assert (r.returncode, r.stdout) == (0, b"runs-anyway\n")
    audit = [json.loads(x) for x in (g.data / "audit.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "recording" and e["outcome"] == "failed" for e in audit)
    assert any(e["kind"] == "session.start" and e["outcome"] == "unrecorded" for e in audit)


def test_exec_secrets_masked_in_recording(rig: Rig) -> None:
    key = "AKIA" + "IOSFODNN7EXAMPLE"
    marker = f"maskexec-{os.getpid()}"
    cmd = f"printf '%s%s\\n' AKIA IOSFODNN7EXAMPLE; echo {marker}"
    r = rig.ssh("alice", "web1", "--", cmd)
    assert key.encode() in r.stdout  # a non-PTY exec is passed through byte-exact
    s = find_session(rig, marker)
    out = b"".join(e.data for e in recording(rig, s).events() if e.is_output)
    assert marker.encode() in out and key.encode() not in out
    assert b"****************" in out
    # with a PTY (terminal output) the user sees it masked too
    r = subprocess.run([*rig.ssh_args("alice", tty=True), "web1", "--", cmd],
                       capture_output=True, timeout=30)
    assert marker.encode() in r.stdout and key.encode() not in r.stdout


def test_masked_recordings_prove_what_the_user_received(rig: Rig) -> None:
    """The recording is masked, the user gets exact bytes (exec) or masked ones (PTY): the
    signed trailer holds the SHA-256 and size of exactly what the OpenSSH client got."""
    for tty in (False, True):
        marker = f"delivered{int(tty)}-{os.getpid()}"
        cmd = f"printf '%s%s\\n' AKIA IOSFODNN7EXAMPLE; seq 1 30000; echo {marker}"
        r = subprocess.run([*rig.ssh_args("alice", tty=tty), "web1", "--", cmd],
                           capture_output=True, timeout=60)
        assert r.returncode == 0 and marker.encode() in r.stdout, r.stderr
        s = find_session(rig, marker)
        deadline = time.monotonic() + 10
        while (rec := recording(rig, s)).trailer is None and time.monotonic() < deadline:
            time.sleep(0.2)
        trailer = rec.trailer or {}
        assert trailer.get("delivered_bytes") == len(r.stdout), (tty, trailer)
        assert trailer.get("delivered_sha256") == hashlib.sha256(r.stdout).hexdigest()
        if not tty:  # the user got the key, the recording has it masked
            assert trailer["output_sha256"] != trailer["delivered_sha256"]
    v = cli(rig, "verify", s["id"], "--require-signature")
    assert v.returncode == 0, v.stdout


@pytest.mark.slow
def test_one_gigabyte_exec_fidelity(rig: Rig) -> None:
    """1 GiB through the gateway: sha256 at the client == sha256 rebuilt from the recording."""
    marker = f"gig-{os.getpid()}"
    proc = subprocess.Popen([*rig.ssh_args("alice"), "web1", "--",
                             f"head -c 1073741824 /dev/urandom; echo {marker} >&2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    client = hashlib.sha256()
    total = 0
    while chunk := proc.stdout.read(1 << 20):
        client.update(chunk)
        total += len(chunk)
    proc.wait(600)
    assert proc.returncode == 0 and total == 1 << 30
    s = find_session(rig, marker, timeout=30)
    recorded = hashlib.sha256()
    for e in recording(rig, s).events():
        if e.type == ev.OUTPUT:
            recorded.update(e.data)
    assert recorded.hexdigest() == client.hexdigest()


@pytest.mark.parametrize("with_policy", [False, True], ids=["no-policy", "policy"])
def test_password_typed_without_echo_is_not_recorded(rig: Rig, make_gateway,  # type: ignore[no-untyped-def]
                                                     with_policy: bool) -> None:
    from tests.e2e.rig import Tmux

    # with a policy, lines are decided; `stty -echo` and keys typed without echo are not
    # fully understood (they would wait for approval): allowed here, this is about the
    # recording of what such a line hides
    extra = '\n[policy]\ndefault = "allow"\non_uncertain = "allow"\n[[policy.rules]]\n' \
        'name = "x"\nmatch = "^nope$"\naction = "deny"\n' if with_policy else ""
    g: Rig = make_gateway(extra=extra)
    secret = f"hunter2-{os.getpid()}-s3cret"
    t = Tmux(g.root, [*g.ssh_args("alice", tty=True), "web1"])
    try:
        t.wait_re(r"[$#]$")
        # echo is off for certain once "ready-2" shows (with `read -s -p` the prompt can
        # show before the terminal stops echoing, and a loaded machine types into that gap)
        t.type("read -s -t 0.1 -p 'pw: ' X; stty -echo; echo ready-$((1+1)); read X; "
               "stty echo; echo got-${#X}\n")
        t.wait_for("ready-2")
        t.type(secret + "\n")
        t.wait_for(f"got-{len(secret)}")
        t.type("exit\n")
        t.dead_status()
    finally:
        t.close()
    s = next(x for x in sessions(g) if x["target"] == "web1")
    typed = b"".join(e.data for e in recording(g, s).events() if e.type == ev.INPUT)
    assert secret.encode() not in typed
    assert b"*" * len(secret) in typed
    # ordinary lines are recorded as typed; under heavy load the classification may
    # hide one more line (it fails closed), never show a hidden one
    assert b"read -s -t 0.1" in typed or b"*" * 20 in typed


def test_password_typed_in_pty_exec_is_not_recorded(rig: Rig) -> None:
    """`ssh -t host -- CMD` (sudo, passwd...): keys typed without echo are stored as `*`."""
    from tests.e2e.rig import Tmux

    secret = f"execpw-{os.getpid()}-s3cret"
    marker = f"ptyexec-{os.getpid()}"
    cmd = f"read -s -p 'pw: ' X; echo; echo {marker}-${{#X}}; read -p 'name: ' N; echo hi-$N"
    t = Tmux(rig.root, [*rig.ssh_args("alice", tty=True), "web1", "--", cmd])
    try:
        t.wait_for("pw:")
        t.type(secret + "\n")
        t.wait_for(f"{marker}-{len(secret)}")
        t.wait_for("name:")
        t.type("visible-name\n")
        t.wait_for("hi-visible-name")
        t.dead_status()
    finally:
        t.close()
    s = find_session(rig, marker)
    typed = b"".join(e.data for e in recording(rig, s).events() if e.type == ev.INPUT)
    assert secret.encode() not in typed
    assert b"*" * len(secret) in typed
    assert b"visible-name" in typed  # echoed input is recorded as typed
