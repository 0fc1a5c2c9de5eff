"""``[gateway] workers = N``: SSH worker processes sharing the port (SO_REUSEPORT),
supervised by the gateway, with kill requests, approvals and drain working whichever
worker serves a session. The whole e2e suite also runs with two workers:
``BASTILLE_TEST_WORKERS=2 scripts/test --no-lint tests/e2e``."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncssh
import pytest

from tests.e2e.rig import Rig, wait_until

pytestmark = pytest.mark.e2e


def _audit(rig: Rig) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in (rig.data / "audit.jsonl").read_text().splitlines()]


def _workers(pid: int) -> list[int]:
    """The SSH worker processes under gateway ``pid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and b"gateway.workers" in cmd and fields[0] != "Z":
            out.append(int(entry))
    return sorted(out)


def _session_pids(rig: Rig) -> set[int]:
    """Pids that hold an established connection to the target (the processes that
    serve sessions)."""
    r = subprocess.run(["ss", "-tnpH", "state", "established", f"dport = :{rig.sshd.port}"],
                       capture_output=True, text=True, check=True)
    pids = set()
    for line in r.stdout.splitlines():
        for part in line.split("pid=")[1:]:
            pids.add(int(part.split(",")[0]))
    return pids


def test_workers_share_the_port_and_serve_sessions_in_parallel(make_gateway) -> None:  # type: ignore[no-untyped-def]
    g: Rig = make_gateway(gateway_extra="workers = 2")
    assert g.gateway.proc is not None
    workers = _workers(g.gateway.proc.pid)
    assert len(workers) == 2
    procs = [subprocess.Popen([*g.ssh_args("alice"), "web1", "--", f"sleep 3; echo done{i}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(8)]
    time.sleep(1.5)
    serving = _session_pids(g) & set(workers)
    outs = [p.communicate(timeout=30) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [o[1] for o in outs]
    assert [o[0] for o in outs] == [f"done{i}\n".encode() for i in range(8)]
    assert serving == set(workers)  # the kernel spread 8 connections over both
    start = [e for e in _audit(g) if e["kind"] == "gateway" and e["detail"]["event"] == "start"]
    assert start[-1]["detail"]["ssh_workers"] == 2
    wait_until(lambda: sum(e["kind"] == "session.end" for e in _audit(g)) == 8)
    ends = [e for e in _audit(g) if e["kind"] == "session.end"]
    assert all(e["detail"]["exit_status"] == 0 for e in ends)


def test_status_lists_the_sessions_of_every_worker(make_gateway) -> None:  # type: ignore[no-untyped-def]
    """``bastille status`` counts and names the sessions of both workers in one line,
    and lists the workers."""
    g: Rig = make_gateway(gateway_extra="workers = 2")
    assert g.gateway.proc is not None
    workers = _workers(g.gateway.proc.pid)
    procs = [subprocess.Popen([*g.ssh_args("alice"), "web1", "--", "cat"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(6)]
    seen = [""]

    def listed() -> bool:
        r = subprocess.run([sys.executable, "-m", "gateway", "status", "-c",
                            str(g.gateway.config)], capture_output=True, text=True, timeout=30)
        seen[0] = r.stdout
        return r.returncode == 0 and "ssh         6 session(s): alice@web1" in r.stdout \
            and "ssh workers 2 worker(s) running (pid " in r.stdout  # rewritten every 2 s

    try:
        wait_until(listed, 20, what=seen)
        assert all(str(w) in seen[0] for w in workers), (workers, seen[0])
        assert seen[0].count("alice@web1") == 6
    finally:
        for p in procs:
            p.communicate(timeout=15)  # stdin closed: cat ends on the target


def test_a_worker_that_dies_is_replaced_and_audited(make_gateway) -> None:  # type: ignore[no-untyped-def]
    g: Rig = make_gateway(gateway_extra="workers = 2")
    assert g.gateway.proc is not None
    first = _workers(g.gateway.proc.pid)
    assert len(first) == 2
    os.kill(first[0], signal.SIGKILL)
    wait_until(lambda: len(_workers(g.gateway.proc.pid)) == 2  # type: ignore[union-attr]
          and first[0] not in _workers(g.gateway.proc.pid),  # type: ignore[union-attr]
          what=lambda: (first, _workers(g.gateway.proc.pid), g.gateway.logs()[-2000:]))  # type: ignore[union-attr]
    for i in range(4):  # whichever worker the kernel picks, it serves
        r = g.ssh("alice", "web1", "--", "echo", f"after{i}")
        assert (r.returncode, r.stdout) == (0, f"after{i}\n".encode()), r.stderr
    exited = [e for e in _audit(g) if e["kind"] == "gateway" and e["outcome"] == "failed"]
    assert exited and exited[0]["detail"]["event"] == "ssh worker exited"
    assert exited[0]["detail"]["pid"] == first[0]


def test_sigkill_of_the_gateway_takes_its_workers_along(make_gateway) -> None:  # type: ignore[no-untyped-def]
    g: Rig = make_gateway(gateway_extra="workers = 2")
    assert g.gateway.proc is not None
    workers = _workers(g.gateway.proc.pid)
    g.gateway.proc.kill()
    g.gateway.proc.wait()

    def gone() -> bool:
        return not any(Path(f"/proc/{w}").exists() and
                       Path(f"/proc/{w}/stat").read_text().split()[2] != "Z" for w in workers)

    wait_until(gone, 10)
    r = g.ssh("alice", "web1", "--", "true")
    assert r.returncode == 255  # nothing listens any more


def test_sigterm_drains_sessions_of_every_worker(make_gateway) -> None:  # type: ignore[no-untyped-def]
    g: Rig = make_gateway(gateway_extra="workers = 2")
    procs = [subprocess.Popen([*g.ssh_args("alice"), "web1", "--", "sleep 1.5; echo drained"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(6)]
    time.sleep(1.0)
    assert g.gateway.proc is not None
    g.gateway.proc.terminate()
    for p in procs:
        out, err = p.communicate(timeout=30)
        assert (p.returncode, out) == (0, b"drained\n"), err
    assert g.gateway.proc.wait(30) == 0
    events = _audit(g)
    assert sum(1 for e in events if e["kind"] == "session.end") == 6  # before the stop
    stops = [e for e in events if e["kind"] == "gateway" and
             e["detail"]["event"] == "ssh worker stop"]
    assert len(stops) == 2
    assert events[-1]["kind"] == "gateway" and events[-1]["detail"]["event"] == "stop"


def test_kill_requests_reach_the_worker_that_serves_the_session(make_gateway) -> None:  # type: ignore[no-untyped-def]
    g: Rig = make_gateway(gateway_extra="workers = 2",
                          extra='\n[approvals]\napprovers = ["bob"]\n')
    procs = [subprocess.Popen([*g.ssh_args("alice"), "web1", "--",
                               f"while true; do echo alive{i}; sleep 0.2; done"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(4)]
    time.sleep(2.0)
    ids = [e["session"] for e in _audit(g) if e["kind"] == "session.start"]
    assert len(ids) == 4
    for sid in ids:  # sessions of both workers
        ok = subprocess.run([sys.executable, "-m", "gateway", "sessions", "kill", sid,
                             "--reason", "policy breach", "--as", "bob",
                             "-c", str(g.gateway.config)],
                            capture_output=True, text=True, timeout=30)
        assert ok.returncode == 0, ok.stderr
    for p in procs:
        _, err = p.communicate(timeout=15)
        assert b"session terminated by bob: policy breach" in err


def test_approvals_work_whichever_worker_serves_the_approver(make_gateway) -> None:  # type: ignore[no-untyped-def]
    policy = """
[policy]
default = "allow"

[[policy.rules]]
name = "echo-needs-approval"
match = '^echo approve-me'
action = "approve"

[approvals]
approvers = ["bob"]
"""
    g: Rig = make_gateway(gateway_extra="workers = 2", extra=policy)
    asks = [subprocess.Popen([*g.ssh_args("alice"), "web1", "--", f"echo approve-me-{i}"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(4)]

    def pending() -> list[int]:
        r = g.ssh("bob", "approvals", "list")
        return [int(x) for x in re.findall(rb"^\s*(\d+)\s", r.stdout, re.M)]

    wait_until(lambda: len(pending()) == 4, 30)
    for rid in pending():  # requests of both workers, each decided by a session of bob's
        r = g.ssh("bob", "approvals", "approve", str(rid), "ok")
        assert b"approved" in r.stdout, r
    for i, ask in enumerate(asks):
        out, err = ask.communicate(timeout=30)
        assert (ask.returncode, out) == (0, f"approve-me-{i}\n".encode()), err


CAROL_PW = "carol-Right-Pw-7"


async def _carol(port: int, password: str) -> str:
    """One connection answering ``password`` once as carol: what happened."""
    answers = iter([password])

    class Once(asyncssh.SSHClient):
        def password_auth_requested(self) -> str | None:
            return next(answers, None)

    try:
        async with asyncssh.connect("127.0.0.1", port, username="carol", known_hosts=None,
                                    client_keys=None, agent_path=None,
                                    preferred_auth="password",
                                    client_factory=Once) as conn:
            return f"in: {(await conn.run('help', check=False, timeout=20)).stdout}"
    except asyncssh.DisconnectError as exc:
        return f"cut: {exc.reason}"


def test_failed_logins_are_counted_across_workers(make_gateway) -> None:  # type: ignore[no-untyped-def]
    """The rules of the failed-login limiter hold for the node, not per worker: three
    wrong passwords for carol (their connections spread over both workers by the kernel)
    block carol from this address on every worker; two key offers that match nothing
    then bring the address to its own limit (5), whichever worker counted what."""
    from gateway.auth.passwords import hash_password

    carol = f'''
[users.carol]
password_hash = "{hash_password(CAROL_PW)}"
groups = ["ops"]
'''
    g: Rig = make_gateway(gateway_extra='workers = 2\nmax_auth_failures = 3\n'
                                        'max_source_failures = 5\nauth_failure_window = "2m"',
                          extra=carol)
    port = g.gateway.port
    for i in range(3):
        outcome = asyncio.run(_carol(port, f"wrong-{i}"))  # the third: "too many"
        assert "Permission denied" in outcome or "too many failed logins" in outcome, outcome
    for _ in range(6):  # whichever worker answers, carol is blocked from here
        outcome = asyncio.run(_carol(port, CAROL_PW))
        assert outcome.startswith("cut: ") and "too many failed logins" in outcome, outcome
    assert g.ssh("alice", "web1", "--", "echo", "hi").stdout == b"hi\n"  # not the user
    for _ in range(2):  # key offers count for the source only: 5 failures now
        r = g.ssh("alice", "web1", "--", "true", key="mallory")
        assert r.returncode == 255 and b"Permission denied" in r.stderr
    for _ in range(6):
        r = g.ssh("alice", "web1", "--", "echo", "hi")
        assert r.returncode == 255 and b"too many failed logins" in r.stderr, r.stderr
    path = g.data / "login_failures.sqlite3"
    assert path.stat().st_mode & 0o777 == 0o600
    assert b"carol" not in path.read_bytes()  # buckets are digests, not user names


def test_reload_reaches_every_worker(make_gateway) -> None:  # type: ignore[no-untyped-def]
    """``bastille reload`` with SSH workers: it returns once every worker has re-read the
    file, so the next session takes the new users and policy whichever worker serves it;
    a change of ``workers`` itself waits for a restart."""
    g: Rig = make_gateway(gateway_extra="workers = 2", extra='\n[policy]\ndefault = "allow"\n')
    assert g.gateway.proc is not None
    workers = _workers(g.gateway.proc.pid)
    config = g.gateway.config
    assert g.ssh("mallory", "web1", "--", "true").returncode == 255  # not a user yet
    mallory = (g.root / "mallory_key.pub").read_text().strip()
    text = config.read_text().replace("[targets.web1]\n", '[targets.web1]\nusers = ["mallory"]\n')
    text = text.replace("workers = 2", "workers = 3")
    config.write_text(text + f"""
[users.mallory]
keys = ["{mallory}"]

[[policy.rules]]
name = "no-echo-forbidden"
match = '^echo forbidden-now'
action = "deny"
""")
    r = subprocess.run([sys.executable, "-m", "gateway", "reload", "-c", str(config)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "users" in r.stdout, (r.stdout, r.stderr)
    assert "gateway.workers" in r.stdout  # needs a restart
    for i in range(6):  # the kernel spreads these over both workers
        hi = g.ssh("mallory", "web1", "--", "echo", f"hi{i}")
        assert hi.stdout == f"hi{i}\n".encode(), hi.stderr
        denied = g.ssh("alice", "web1", "--", "echo forbidden-now")
        assert denied.returncode == 1 and b"no-echo-forbidden" in denied.stderr
    assert _workers(g.gateway.proc.pid) == workers  # the same two, reloaded in place
    reloads = [e for e in _audit(g) if e["kind"] == "gateway"
               and e["detail"].get("event") in ("reload", "ssh worker reload")]
    assert [(e["outcome"], e["detail"]["event"]) for e in reloads] == [("ok", "reload")]
    assert "ssh_workers" not in reloads[0]["detail"]  # every worker answered "reloaded"
