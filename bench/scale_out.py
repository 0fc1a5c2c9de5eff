"""Scale-out: sessions across three gateways sharing one PostgreSQL database.

    .venv/bin/python bench/scale_out.py [--sessions 1000] [--parallel 12] [--smoke]

Starts a throwaway PostgreSQL (Debian's, tests/pg_rig.py), one sshd target and three
`bastille serve` nodes (a, b, c) with ``[state] url`` on that database (recordings on
tmpfs, so the disk is not what is measured), then measures:

* **setup rate**: ``--sessions`` exec sessions (``ssh alice+web1@NODE -- true``),
  round-robin over the nodes, ``--parallel`` at a time: sessions per second, per-session
  latency, and the CPU seconds each gateway and PostgreSQL spent; then checks that every
  session is in the shared index, ended;
* **index write latency**: (1) from the end of a session (its ssh client exits) until its
  row reads ``ended`` in the database, sampled one session at a time; (2) enqueue-to-
  commit of index writes made by this process during the load (what a gateway's index
  writer sees under that load);
* **approval round-trip across nodes**: a request created and waited for on one node's
  store, decided on another's: from the decision's commit to the waiter's wake-up
  (LISTEN/NOTIFY); and end to end: an exec needing approval on node a, decided by
  another process, until alice's ssh client has the command's output.

Prints one table; every figure is from this run (2 shared cores: expect noise).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._rig import BenchRig, cpu_seconds, percentile
from tests.e2e.rig import keygen
from tests.pg_rig import PASSWORD, PgServer, available

NODES = ("a", "b", "c")


def _state(pg: PgServer, database: str, node: str, bob_pub: str) -> str:
    return f"""
[users.bob]
keys = ["{bob_pub}"]
groups = ["auditors"]

[policy]
default = "allow"

[[policy.rules]]
name = "bench-approval"
match = '^echo approve-me'
action = "approve"

[approvals]
approvers = ["bob"]
timeout = "60s"

[state]
url = "{pg.url(database)}"
password_file = "{pg.password_file}"
node = "{node}"
lease = "15s"
heartbeat = "3s"
"""


def _pg_cpu(pg: PgServer) -> float:
    """CPU seconds of the test cluster's postmaster and its backends."""
    try:
        pid = int((pg.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if int(entry) == pid or ppid == pid:
            total += cpu_seconds(int(entry))
    return total


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    return (f"p50 {percentile(values, 50) * 1000:.1f} ms, p99 {percentile(values, 99) * 1000:.1f}"
            f" ms, max {max(values) * 1000:.1f} ms (n={len(values)})")


def _setup_rate(rig: BenchRig, sessions: int, parallel: int) -> tuple[float, list[float], int]:
    def one(i: int) -> float | None:
        t0 = time.monotonic()
        r = subprocess.run([*rig.ssh(NODES[i % len(NODES)]), "true"], capture_output=True,
                           timeout=120)
        return time.monotonic() - t0 if r.returncode == 0 else None

    t0 = time.monotonic()
    with ThreadPoolExecutor(parallel) as pool:
        results = list(pool.map(one, range(sessions)))
    wall = time.monotonic() - t0
    ok = [r for r in results if r is not None]
    return wall, ok, len(results) - len(ok)


def _visible_latency(rig: BenchRig, url: str, samples: int) -> list[float]:
    """Session end (ssh exits) -> its row reads 'ended' in the shared index."""
    import psycopg

    out = []
    conn = psycopg.connect(url, autocommit=True, password=PASSWORD)
    try:
        for i in range(samples):
            before = {r[0] for r in conn.execute("SELECT id FROM sessions")}
            r = subprocess.run([*rig.ssh(NODES[i % len(NODES)]), "true"], capture_output=True,
                               timeout=60)
            t0 = time.monotonic()
            if r.returncode != 0:
                continue
            while time.monotonic() - t0 < 10:
                rows = conn.execute("SELECT id FROM sessions WHERE status = 'ended'").fetchall()
                if any(row[0] not in before for row in rows):
                    out.append(time.monotonic() - t0)
                    break
                time.sleep(0.002)
    finally:
        conn.close()
    return out


def _index_writer_load(url: str, stop: threading.Event) -> list[float]:
    """Index writes from this process while the nodes are loaded: enqueue -> commit."""
    from state.pg.db import Database
    from state.pg.index import PgIndex
    from state.settings import StateSettings

    db = Database(StateSettings(url=url, password=PASSWORD, node="bench-writer"))
    index = PgIndex(db)
    i = 0
    while not stop.is_set():
        sid = f"bench{i:08d}{os.getpid():08x}"
        index.session_opened({"session_id": sid, "user": "bench", "target": "none",
                              "start_time": time.time()}, f"bench/{sid}.bstl")
        index.session_closed(sid, end=time.time(), exit_status=0, exit_signal=None,
                             status="ended", commands=[(0.1, "true", "exec")],
                             policy_events=0, signature="signed", output_bytes=0)
        i += 1
        time.sleep(0.05)
    index.flush(30)
    latencies = list(index.writer.latencies)
    index.close()  # its rows (node "bench-writer") are not counted below
    db.close()
    return latencies


async def _approval_rtt(url: str, rounds: int) -> list[float]:
    from state.pg.approvals import PgApprovals
    from state.pg.db import Database
    from state.settings import StateSettings

    class Bob:
        def allows(self, user: str, groups: frozenset[str]) -> bool:
            return user == "bob"

    db_a = Database(StateSettings(url=url, password=PASSWORD, node="bench-a"))
    db_b = Database(StateSettings(url=url, password=PASSWORD, node="bench-b"))
    a, b = PgApprovals(db_a), PgApprovals(db_b)
    loop = asyncio.get_running_loop()
    out = []
    try:
        a.wakeups  # noqa: B018 - subscribe before the first round
        await asyncio.sleep(0.5)  # the listener connects
        for i in range(rounds):
            req = await loop.run_in_executor(None, lambda i=i: a.create(
                user="alice", target="web1", session="bench", command=f"bench {i}",
                rule=None, reason="", timeout=60))
            waiter = asyncio.ensure_future(a.wait(req.id, poll_interval=5.0))
            await asyncio.sleep(0.01)
            await loop.run_in_executor(None, lambda rid=req.id: b.decide(
                rid, approver="bob", approver_groups=frozenset(), approvers=Bob(),
                approve=True))
            t0 = time.monotonic()  # the decision is committed
            await waiter
            out.append(time.monotonic() - t0)
    finally:
        a.close()
        b.close()
        db_a.close()
        db_b.close()
    return out


def _approval_e2e(rig: BenchRig, url: str, rounds: int) -> list[float]:
    """ssh exec needing approval on node a; decided from this process (another node's
    view); time from the decision to alice's ssh having the output."""
    from state.pg.approvals import PgApprovals
    from state.pg.db import Database
    from state.settings import StateSettings

    class Bob:
        def allows(self, user: str, groups: frozenset[str]) -> bool:
            return user == "bob"

    db = Database(StateSettings(url=url, password=PASSWORD, node="bench-approver"))
    store = PgApprovals(db)
    out = []
    try:
        for i in range(rounds):
            proc = subprocess.Popen([*rig.ssh("a"), f"echo approve-me-{i}"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 30
            pending = []
            while not pending and time.monotonic() < deadline:
                pending = [r for r in store.list() if r.command == f"echo approve-me-{i}"]
                time.sleep(0.01)
            if not pending:
                proc.kill()
                proc.wait()
                continue
            store.decide(pending[0].id, approver="bob", approver_groups=frozenset(),
                         approvers=Bob(), approve=True)
            t0 = time.monotonic()
            stdout, _ = proc.communicate(timeout=30)
            if f"approve-me-{i}".encode() in stdout:
                out.append(time.monotonic() - t0)
    finally:
        store.close()
        db.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--parallel", type=int, default=12)
    ap.add_argument("--samples", type=int, default=50, help="index visibility samples")
    ap.add_argument("--approvals", type=int, default=200, help="store round-trips")
    ap.add_argument("--approvals-e2e", type=int, default=20, help="through a gateway")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (the test suite)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.sessions, args.parallel, args.samples = 12, 4, 3
        args.approvals, args.approvals_e2e = 5, 2
    if not available():
        print("cannot run: PostgreSQL is not installed (apt-get install postgresql)",
              file=sys.stderr)
        return 2
    pg = PgServer()
    keys = Path(tempfile.mkdtemp(prefix="bastille-bench-keys-"))
    try:
        pg.init()
        database = pg.new_database()
        url = pg.url(database)
        bob_pub = keygen(keys / "bob_key", "bob")
        extra = {n: _state(pg, database, n, bob_pub) for n in NODES}
        shm = "/dev/shm" if Path("/dev/shm").is_dir() else ""
        with BenchRig(gateways=dict.fromkeys(NODES, shm), max_startups=200,
                      extra=extra) as rig:
            rows = _run(rig, pg, url, args)
        for name, value in rows:
            print(f"{name:<44} {value}")
    finally:
        pg.close()
        import shutil

        shutil.rmtree(keys, ignore_errors=True)
    return 0


def _run(rig: BenchRig, pg: PgServer, url: str,
         args: argparse.Namespace) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = [("# nodes", "3 gateways + PostgreSQL 15 on this machine "
                                    f"({os.cpu_count()} cores)")]
    cpu0 = {n: rig.gws[n].cpu() for n in NODES}
    pg0 = _pg_cpu(pg)
    stop = threading.Event()
    writer_lat: list[float] = []
    writer = threading.Thread(target=lambda: writer_lat.extend(_index_writer_load(url, stop)))
    writer.start()
    wall, latencies, failed = _setup_rate(rig, args.sessions, args.parallel)
    stop.set()
    writer.join()
    for gw in rig.gws.values():
        gw.settle()
    cpu = {n: rig.gws[n].cpu() - cpu0[n] for n in NODES}
    pg_cpu = _pg_cpu(pg) - pg0
    dbname = url.rsplit("/", 1)[1]
    indexed = int(pg.psql("SELECT count(*) FROM sessions WHERE status = 'ended' AND "
                          "node IN ('a', 'b', 'c')", dbname).strip())
    per_node = pg.psql("SELECT node || '=' || count(*) FROM sessions WHERE node IN "
                       "('a','b','c') GROUP BY node ORDER BY node", dbname).split()
    rows += [
        ("sessions (ok / failed)", f"{len(latencies)} / {failed}"),
        ("setup rate", f"{len(latencies) / wall:.1f} sessions/s over {wall:.1f} s, "
                       f"{args.parallel} at a time"),
        ("session latency (ssh start -> exit)", _ms(latencies)),
        ("gateway CPU per session (a, b, c)",
         ", ".join(f"{cpu[n] / max(1, len(latencies) / 3) * 1000:.0f} ms" for n in NODES)),
        ("PostgreSQL CPU per session", f"{pg_cpu / max(1, len(latencies)) * 1000:.1f} ms"),
        ("in the shared index, ended", f"{indexed} (by node: {' '.join(per_node)})"),
        ("index write, enqueue -> commit (under load)", _ms(writer_lat)),
    ]
    rows.append(("index: session end -> row 'ended'",
                 _ms(_visible_latency(rig, url, args.samples))))
    rows.append(("approval round-trip, store (node -> node)",
                 _ms(asyncio.run(_approval_rtt(url, args.approvals)))))
    rows.append(("approval, decision -> command output (e2e)",
                 _ms(_approval_e2e(rig, url, args.approvals_e2e))))
    size = pg.psql("SELECT pg_size_pretty(pg_database_size(current_database()))",
                   dbname).strip()
    rows.append(("database size after the run", size))
    if statistics.mean(latencies or [0]) <= 0:
        rows.append(("warning", "no session succeeded"))
    return rows


if __name__ == "__main__":
    sys.exit(main())
