"""Scaling with ``[gateway] workers``: aggregate bulk throughput of N parallel sessions,
and keystroke echo latency of one more interactive session meanwhile.

For each worker count W (``--workers 1,2``) a gateway with ``workers = W`` is started
(recording and masking on, the defaults); ``--sessions`` parallel exec sessions each
stream ``head -c SIZE /dev/zero`` through it to /dev/null, while a PTY session types one
key every few milliseconds and times its echo (bench/latency.py's client). The same load
straight to sshd (``direct``) is measured first for reference.

Columns: aggregate MiB/s of the bulk sessions (total bytes over the time until the last
one finished), that per core of the machine, echo p50/p99 (ms) under that load, the
gateway's CPU (its whole process tree) per MiB, how many cores the gateway kept busy on
average, and MiB/s per core the gateway used: the figure to extrapolate from (W workers
on a machine whose other cores run the clients could move about W times that, as long as
nothing else is the bottleneck; measured here, not on such a machine).

What 2 cores can show (say it with the figures): the OpenSSH clients, the target's sshd
and `head`, the load and latency clients and the gateway all share the machine's cores,
so the gateway cannot get more than a share of them whatever W is. On such a machine
W = 2 shows that a second worker takes load off a saturated one (the loop that serves
the keystroke is no longer the loop that serves half of the bulk sessions), not how far
throughput scales on a bigger machine; per-core figures from a machine with more cores
than the load needs are the honest way to extrapolate.

Run: python bench/workers.py [--workers 1,2] [--sessions 4] [--size-mib 512] [--keys 300]
     python bench/workers.py --smoke
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._rig import MIB, BenchRig, machine, percentile
from bench.latency import PtyClient


def run_load(rig: BenchRig, via: str | None, sessions: int, size: int,
             keys: int) -> tuple[float, list[float], float]:
    """(aggregate seconds, echo times, gateway CPU seconds) for one configuration."""
    meter = rig.gws[via].meter() if via is not None else None
    client = PtyClient(rig.ssh(via, tty=True))
    echoes: list[float] = []
    try:
        client.ready()
        if meter is not None:
            meter.__enter__()
        t0 = time.perf_counter()
        bulk = [subprocess.Popen([*rig.ssh(via), f"head -c {size} /dev/zero"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE) for _ in range(sessions)]
        done = threading.Event()

        def wait_all() -> None:
            for p in bulk:
                p.wait()
            done.set()

        waiter = threading.Thread(target=wait_all)
        waiter.start()
        time.sleep(0.5)  # the streams are under way
        n = 0
        while not done.is_set() and n < keys:
            if n and n % 60 == 0:
                os.write(client.master, b"\x15")
                client.drain(quiet=0.05)
            echoes.append(client.echo_time(b"abcdefghijklmnopqrstuvwxyz"[n % 26:n % 26 + 1]))
            n += 1
            time.sleep(0.005)
        waiter.join()
        elapsed = time.perf_counter() - t0
        failed = [p.stderr.read().decode(errors="replace") if p.stderr else ""
                  for p in bulk if p.returncode != 0]
        if failed:
            raise RuntimeError(f"{len(failed)} bulk session(s) failed: {failed[0][-300:]}")
    finally:
        client.close()
        if meter is not None:
            if via is not None:
                rig.gws[via].settle()
            meter.__exit__(None, None, None)
    return elapsed, echoes, meter.seconds if meter is not None else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--sessions", type=int, default=4, help="parallel bulk sessions")
    ap.add_argument("--size-mib", type=int, default=512, help="bytes per bulk session")
    ap.add_argument("--keys", type=int, default=300, help="at most this many echoes timed")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks it still works")
    a = ap.parse_args(argv)
    if a.smoke:
        a.sessions, a.size_mib, a.keys = 2, 4, 10
    counts = [int(w) for w in a.workers.split(",")]
    size = a.size_mib * MIB
    cores = os.cpu_count() or 1
    print(f"# workers: {machine()}")
    print(f"# load before the run: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(f"# {a.sessions} parallel sessions x {a.size_mib} MiB (exec head -c /dev/zero), "
          f"one interactive session timing echoes meanwhile; {cores} cores")
    print(f"{'path':<12} {'agg MiB/s':>9} {'per core':>8} {'echo p50':>8} {'p99':>7} "
          f"{'gw ms/MiB':>9} {'gw cores':>8} {'MiB/s per gw core':>17}")
    total = a.sessions * a.size_mib
    for w in [None, *counts]:
        keys = f"workers = {w}" if w is not None else "workers = 1"
        with BenchRig(gateway_keys=keys) as rig:
            if w is not None:
                time.sleep(1.0)  # every worker listens (the port answers with the first)
            elapsed, echoes, cpu = run_load(rig, "bastion" if w is not None else None,
                                            a.sessions, size, a.keys)
        name = "direct" if w is None else f"workers={w}"
        rate = total / elapsed
        used = cpu / elapsed  # cores the gateway's process tree kept busy on average
        per_gw_core = f"{total / cpu:>17.1f}" if cpu else f"{'-':>17}"
        print(f"{name:<12} {rate:>9.1f} {rate / cores:>8.1f} "
              f"{percentile(echoes, 50) * 1e3:>8.2f} {percentile(echoes, 99) * 1e3:>7.2f} "
              f"{cpu * 1000 / total:>9.2f} {used:>8.2f} {per_gw_core}", flush=True)
    print(f"# load after the run: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
