"""Chaos: a real ``bastille serve`` recording to S3 (moto_server behind a fault proxy),
real OpenSSH clients streaming numbered lines, and storage that refuses, blackholes,
slows down, fills up, and a gateway killed with SIGKILL at random points.

What a user and an auditor see is measured, not internals: the lines each client
received are compared with the lines in its recording as stored in the bucket.

* lines lost: received by a client but missing from its recording (0 while storage
  eventually returns; after kill -9, only the tail since the last flush);
* sessions refused because of the store: 0;
* catch-up: seconds from the store's return until the spool is empty and every
  recording is confirmed in the bucket (``bastille status`` exit 0).

Figures are printed as ``CHAOS ...`` lines (run with ``-s`` to see them) and appended
to ``$BASTILLE_CHAOS_REPORT`` when set. Seeds are printed so a run can be replayed.
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from recorder import events as ev
from recorder.reader import Recording
from recorder.sinks.memory import MemorySink
from tests.e2e.conftest import write_config
from tests.e2e.rig import Gateway, Rig, free_port
from tests.integration.conftest import (  # noqa: F401 - fixtures used by name
    MOTO_AK,
    MOTO_PROCESSES,
    MOTO_SK,
    FaultProxy,
    bucket,
    fault_proxy,
    moto_server,
    s3_client,
)

pytestmark = [pytest.mark.e2e, pytest.mark.s3, pytest.mark.chaos]

BASTILLE = [sys.executable, "-m", "gateway"]
LINE = re.compile(rb"^(S\d+) (\d+)$")


def report(name: str, **figures: Any) -> None:
    line = f"CHAOS {name} " + " ".join(f"{k}={v}" for k, v in figures.items())
    print(line, flush=True)
    path = os.environ.get("BASTILLE_CHAOS_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"scenario": name, **figures}) + "\n")


def s3_recording(endpoint: str, bucket_name: str, *, data: str, extra: str = "",
                 spool_cap_mib: int = 1024) -> dict[str, str]:
    os.environ["BASTILLE_TEST_S3_SECRET"] = MOTO_SK
    return {"recording_extra": f"""storage = "s3://{bucket_name}/ssh"
min_free_mib = 1
{extra}
[recording.s3]
endpoint_url = "{endpoint}"
region = "us-east-1"
access_key_id = "{MOTO_AK}"
secret_access_key_env = "BASTILLE_TEST_S3_SECRET"
part_size_mib = 5
spool_cap_mib = {spool_cap_mib}
retry_interval = "0.5s"
max_retry_interval = "2s"
connect_timeout = "1s"
read_timeout = "2s"
call_timeout = "4s"
""", "data": data}


@pytest.fixture
def s3_gateway(rig: Rig, tmp_path: Path) -> Iterator[Any]:
    """Start gateways recording to S3 (one config each); all are killed at the end."""
    started: list[Gateway] = []

    def start(endpoint: str, bucket_name: str, *, data_dir: Path | None = None,
              extra: str = "", spool_cap_mib: int = 1024) -> Rig:
        port = free_port()
        tag = f"{os.getpid()}-{time.monotonic_ns()}"
        data = str(data_dir) if data_dir is not None else f"data-{tag}"
        kw = s3_recording(endpoint, bucket_name, data=data, extra=extra,
                          spool_cap_mib=spool_cap_mib)
        config = write_config(rig.root, rig.sshd, port, name=f"chaos-{tag}.toml", **kw)
        gw = Gateway(config, port)
        gw.start()
        started.append(gw)
        known = rig.root / f"known_hosts-{tag}"
        host_pub = " ".join((rig.root / "gw_host_key.pub").read_text().split()[:2])
        known.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
        return Rig(root=rig.root, sshd=rig.sshd, gateway=gw, known_hosts=known, keys=rig.keys,
                   data_dir=data_dir or rig.root / data)

    yield start
    for gw in started:
        gw.stop(signal.SIGKILL)


@dataclass
class Stream:
    """One OpenSSH client printing numbered lines through the bastion."""

    tag: str
    proc: subprocess.Popen[bytes]
    lines: list[int] = field(default_factory=list)
    stderr: bytes = b""
    reader: threading.Thread | None = None

    def wait(self, timeout: float) -> int:
        rc = self.proc.wait(timeout)
        if self.reader is not None:
            self.reader.join(timeout)
        return rc


def start_stream(g: Rig, tag: str, bursts: int, per_burst: int = 200,
                 pause: float = 0.2) -> Stream:
    """``bursts`` bursts of ``per_burst`` numbered lines, ``pause`` seconds apart."""
    script = (f"for b in $(seq 0 {bursts - 1}); do "
              f"seq -f '{tag} %.0f' $((b*{per_burst}+1)) $((b*{per_burst}+{per_burst})); "
              f"sleep {pause}; done")
    proc = subprocess.Popen([*g.ssh_args("alice"), "web1", "--", script],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    s = Stream(tag, proc)

    def read() -> None:
        assert proc.stdout is not None and proc.stderr is not None
        for raw in proc.stdout:
            m = LINE.match(raw.rstrip(b"\n"))
            if m:
                s.lines.append(int(m.group(2)))
        s.stderr = proc.stderr.read()

    s.reader = threading.Thread(target=read, daemon=True)
    s.reader.start()
    return s


class Flood:
    """A client reading ``head -c 20000000 /dev/urandom`` as fast as it comes."""

    def __init__(self, g: Rig, n: int) -> None:
        self.n = n
        self.received = 0
        self.tail = b""
        self.stderr = b""
        self.proc = subprocess.Popen(
            [*g.ssh_args("alice"), "web1", "--",
             f"head -c 20000000 /dev/urandom; echo FLOOD{n}-done"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        while chunk := self.proc.stdout.read1(1 << 16):
            self.received += len(chunk)
            self.tail = (self.tail + chunk)[-64:]
        self.stderr = self.proc.stderr.read()

    def wait(self, timeout: float) -> int:
        rc = self.proc.wait(timeout)
        self._reader.join(timeout)
        return rc


def recorded_lines(s3: Any, bucket_name: str) -> dict[str, tuple[list[int], str]]:
    """Every recording in the bucket: tag -> (numbers in its output, status)."""
    out: dict[str, tuple[list[int], str]] = {}
    for item in s3.list_objects_v2(Bucket=bucket_name).get("Contents", []):
        blob = s3.get_object(Bucket=bucket_name, Key=item["Key"])["Body"].read()
        sink = MemorySink()
        st = sink.create("x.bstl")
        st.write(blob)
        st.close()
        rec = Recording.from_sink(sink, "x.bstl")
        text = b"".join(e.data for e in rec.events() if e.type == ev.OUTPUT)
        numbers: list[int] = []
        tag = None
        for line in text.split(b"\n"):
            m = LINE.match(line)
            if m:
                tag = m.group(1).decode()
                numbers.append(int(m.group(2)))
        if tag is not None:
            out[tag] = (numbers, rec.status)
    return out


def status(g: Rig) -> tuple[int, str]:
    r = subprocess.run([*BASTILLE, "status", "-c", str(g.gateway.config)],
                       capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


def wait_caught_up(g: Rig, s3: Any, bucket_name: str, n: int, timeout: float = 120) -> float:
    """Seconds until ``n`` recordings are in the bucket and the spool is empty."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    spool = g.data / "spool"
    while time.monotonic() < deadline:
        objects = s3.list_objects_v2(Bucket=bucket_name).get("KeyCount", 0)
        left = [p for p in spool.iterdir() if p.is_dir()] if spool.exists() else []
        if objects >= n and not left:
            return time.monotonic() - t0
        time.sleep(0.2)
    raise AssertionError(f"not caught up after {timeout} s: {status(g)[1]}")


def lost_lines(streams: list[Stream], recorded: dict[str, tuple[list[int], str]]) -> int:
    lost = 0
    for s in streams:
        got = set(recorded.get(s.tag, ([], ""))[0])
        lost += sum(1 for n in s.lines if n not in got)
    return lost


def test_streams_through_refusal_blackhole_and_slowness(
    s3_gateway: Any, fault_proxy: FaultProxy, bucket: str, s3_client: Any,  # noqa: F811
) -> None:
    """8 sessions stream while S3 refuses, hangs and trickles; new sessions start in
    every phase; nothing is lost and everything catches up without a restart."""
    seed = int(os.environ.get("BASTILLE_CHAOS_SEED", random.randrange(1 << 30)))
    rnd = random.Random(seed)
    g: Rig = s3_gateway(fault_proxy.url, bucket)
    phases = ["refuse", "stall", "slow"]
    rnd.shuffle(phases)
    streams = [start_stream(g, f"S{i}", bursts=70) for i in range(8)]
    refused = 0
    late: list[Stream] = []
    for i, phase in enumerate(phases):
        time.sleep(2.0)
        fault_proxy.set_mode(phase, rate=20_000)
        time.sleep(1.0)
        t0 = time.monotonic()
        probe = g.ssh("alice", "web1", "--", "echo", f"started-{phase}", timeout=30)
        start_s = time.monotonic() - t0
        if probe.returncode != 0 or f"started-{phase}".encode() not in probe.stdout:
            refused += 1
        late.append(start_stream(g, f"S{100 + i}", bursts=10))
        report("session-start-during-outage", phase=phase, seconds=round(start_s, 2),
               ok=probe.returncode == 0)
        time.sleep(3.0)
        fault_proxy.set_mode("pass")
        storage_back = time.monotonic()
    streams += late
    for s in streams:
        assert s.wait(180) == 0, s.stderr
    back = time.monotonic()
    catch_up = wait_caught_up(g, s3_client, bucket, n=len(streams) + len(phases))
    recorded = recorded_lines(s3_client, bucket)
    lost = lost_lines(streams, recorded)
    sent = sum(len(s.lines) for s in streams)
    rc, text = status(g)
    report("outages", seed=seed, phases="/".join(phases), sessions=len(streams),
           lines=sent, lines_lost=lost, sessions_refused=refused,
           catch_up_after_last_client_s=round(catch_up, 1),
           caught_up_after_storage_back_s=round(back + catch_up - storage_back, 1),
           last_client_after_storage_back_s=round(back - storage_back, 1))
    assert refused == 0
    assert lost == 0
    assert all(st == "ended" for _, st in recorded.values()), recorded
    assert rc == 0, text
    v = subprocess.run([*BASTILLE, "verify", "--all", "--require-signature", "-c",
                        str(g.gateway.config)], capture_output=True, text=True, timeout=120)
    assert v.returncode == 0, v.stdout + v.stderr


def test_kill_9_at_random_points(
    s3_gateway: Any, bucket: str, s3_client: Any, moto_server: str,  # noqa: F811
) -> None:
    """SIGKILL the gateway at random moments under load, three times; each restart
    finishes and uploads what the dead one left; the loss is the tail since the last
    flush (about one second)."""
    seed = int(os.environ.get("BASTILLE_CHAOS_SEED", random.randrange(1 << 30)))
    rnd = random.Random(seed)
    g: Rig = s3_gateway(moto_server, bucket)
    all_streams: list[Stream] = []
    tails: list[float] = []
    rate = 200 / 0.2  # lines per second per stream (bursts of 200 every 0.2 s)
    for round_ in range(3):
        streams = [start_stream(g, f"S{round_}{i}", bursts=60) for i in range(4)]
        time.sleep(rnd.uniform(1.5, 5.0))
        assert g.gateway.proc is not None
        os.kill(g.gateway.proc.pid, signal.SIGKILL)
        g.gateway.proc.wait(10)
        for s in streams:
            s.wait(60)
        all_streams += streams
        g.gateway.start()  # recovery: finishes and uploads the dead process's recordings
    # a stream that printed a line was recorded (the recording opens before the target);
    # under load a client may not have been admitted before a kill: nothing to record
    catch_up = wait_caught_up(g, s3_client, bucket, n=sum(1 for s in all_streams if s.lines))
    recorded = recorded_lines(s3_client, bucket)
    for s in all_streams:
        got = set(recorded.get(s.tag, ([], ""))[0])
        missing = [n for n in s.lines if n not in got]
        assert missing == s.lines[len(s.lines) - len(missing):], f"{s.tag}: a hole, not a tail"
        tails.append(len(missing) / rate)
    # a spool entry corrupted while the gateway was down: reported, left alone, no harm
    os.kill(g.gateway.proc.pid, signal.SIGKILL)
    g.gateway.proc.wait(10)
    junk = g.data / "spool" / ("f" * 32)
    junk.mkdir()
    (junk / "state.json").write_text("{garbage")
    (junk / "data").write_bytes(b"\xff" * 100)
    g.gateway.start()
    assert g.ssh("alice", "web1", "--", "echo", "after-junk").returncode == 0
    deadline = time.monotonic() + 15
    rc, text = status(g)
    while rc != 1 and time.monotonic() < deadline:
        time.sleep(0.5)
        rc, text = status(g)
    assert rc == 1 and "malformed spool entry" in text, text
    assert (junk / "data").read_bytes() == b"\xff" * 100
    report("kill-9", seed=seed, kills=3, sessions=len(all_streams),
           lines=sum(len(s.lines) for s in all_streams),
           tail_lost_s_max=round(max(tails), 2), tail_lost_s_mean=round(sum(tails) / len(tails), 2),
           catch_up_s=round(catch_up, 1))
    assert max(tails) <= 2.5  # flush_interval 1 s, plus the client's own buffering


def test_full_spool_disk_pauses_then_resumes(
    s3_gateway: Any, fault_proxy: FaultProxy, bucket: str, s3_client: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    """S3 down while sessions flood: the spool's disk (a small tmpfs) reaches its
    low-water mark. Sessions pause instead of ending and go on when S3 returns; nothing
    is lost. (The spool cap, the other limit, is tested against moto in
    tests/integration/test_storage_outages.py.)"""
    disk = tmp_path / "spooldisk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (disk / "ballast").write_bytes(b"\0" * (30 * 1024 * 1024))
        g: Rig = s3_gateway(fault_proxy.url, bucket, data_dir=disk / "data")
        fault_proxy.set_mode("refuse")
        # incompressible floods, together bigger than what the spool's disk may hold
        floods = [Flood(g, i) for i in range(2)]
        lines = start_stream(g, "S1", bursts=40)
        time.sleep(10)
        rc, text = status(g)
        paused = "paused for" in text
        assert all(f.proc.poll() is None for f in floods), "a flood ended instead of pausing"
        assert rc == 2 and paused, text
        assert sum(f.received for f in floods) < 40_000_000
        t_full = time.monotonic()
        fault_proxy.set_mode("pass")
        for f in floods:
            assert f.wait(180) == 0, f.stderr
            assert f.received == 20_000_000 + len(f"FLOOD{f.n}-done\n")
            assert f.tail.endswith(f"FLOOD{f.n}-done\n".encode())
            assert b"recording failed" not in f.stderr
        resumed_s = time.monotonic() - t_full
        assert lines.wait(120) == 0
        catch_up = wait_caught_up(g, s3_client, bucket, n=3)
        recorded = recorded_lines(s3_client, bucket)
        lost = lost_lines([lines], recorded)
        report("spool-full", sessions=3, paused_seen=paused, lines_lost=lost,
               resumed_after_s=round(resumed_s, 1), catch_up_s=round(catch_up, 1))
        assert lost == 0
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_kill_9_during_an_outage_then_denied_then_a_stopped_server(
    s3_gateway: Any, fault_proxy: FaultProxy, bucket: str, s3_client: Any,  # noqa: F811
    moto_server: str,  # noqa: F811
) -> None:
    """The gateway is killed while S3 refuses and restarted while it still does; then
    S3 answers 403 (a configuration error: loud, nothing lost); then the S3 server
    itself stops (SIGSTOP: connections accepted, never answered). Sessions start and
    stream through all of it; everything is uploaded at the end."""
    g: Rig = s3_gateway(fault_proxy.url, bucket)
    fault_proxy.set_mode("refuse")
    killed = [start_stream(g, f"S{i}", bursts=60) for i in range(3)]
    time.sleep(3)
    assert g.gateway.proc is not None
    os.kill(g.gateway.proc.pid, signal.SIGKILL)
    g.gateway.proc.wait(10)
    for s in killed:
        s.wait(60)
    g.gateway.start()  # S3 still refuses: recovery must not wait for it
    refused = 0
    streams = [start_stream(g, f"S{10 + i}", bursts=90) for i in range(3)]
    time.sleep(2)
    fault_proxy.set_mode("deny403")
    time.sleep(4)
    rc, text = status(g)
    denied_seen = rc == 2 and "AccessDenied" in text
    probe = g.ssh("alice", "web1", "--", "echo", "started-denied", timeout=30)
    refused += probe.returncode != 0
    fault_proxy.set_mode("pass")
    time.sleep(3)
    moto = MOTO_PROCESSES[moto_server]
    moto.send_signal(signal.SIGSTOP)
    try:
        time.sleep(1)
        t0 = time.monotonic()
        probe = g.ssh("alice", "web1", "--", "echo", "started-stopped", timeout=30)
        start_s = time.monotonic() - t0
        refused += probe.returncode != 0
        time.sleep(4)
    finally:
        moto.send_signal(signal.SIGCONT)
    for s in streams:
        assert s.wait(180) == 0, s.stderr
    catch_up = wait_caught_up(g, s3_client, bucket, n=len(killed) + len(streams) + 2)
    recorded = recorded_lines(s3_client, bucket)
    lost_live = lost_lines(streams, recorded)
    tails = []
    for s in killed:
        got = set(recorded.get(s.tag, ([], ""))[0])
        missing = [n for n in s.lines if n not in got]
        assert missing == s.lines[len(s.lines) - len(missing):], f"{s.tag}: a hole, not a tail"
        tails.append(len(missing) / 1000)
    logs = g.gateway.logs()
    report("kill-9-in-outage+403+sigstop", sessions=len(killed) + len(streams) + 2,
           lines=sum(len(s.lines) for s in killed + streams), lines_lost=lost_live,
           killed_tail_lost_s_max=round(max(tails), 2), sessions_refused=refused,
           start_while_server_stopped_s=round(start_s, 2), denied_in_status=denied_seen,
           catch_up_s=round(catch_up, 1))
    assert refused == 0 and lost_live == 0 and denied_seen
    assert max(tails) <= 2.5
    # said once per process that uploads (the gateway, and each SSH worker if any), not
    # once per retry
    denials = [re.search(r"bastille-ssh\[\d+:\d+\]", line) for line in logs.splitlines()
               if "AccessDenied" in line and " ERROR " in line]
    per_process = collections.Counter(m.group(0) if m else "gateway" for m in denials)
    assert denials and set(per_process.values()) == {1}, per_process
    assert MOTO_SK not in logs
