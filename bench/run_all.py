"""Run every benchmark, one after the other, and print their tables.

Our benchmarks (throughput, latency, policy_overhead, concurrency, recording_size) start
their own sshd and gateways on loopback ports; the recorder's own (recording_seek,
recording_memory) and the policy layer's (policy_hotpath) need neither.

Run: python bench/run_all.py [--smoke] [--skip NAME,...] [-- extra args are not passed]
Full run takes roughly 15 minutes on 2 cores; ``--smoke`` about a minute.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> (full args, smoke args)
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "throughput": ([], ["--smoke"]),
    "latency": ([], ["--smoke"]),
    "policy_overhead": ([], ["--smoke"]),
    "policy_hotpath": ([], ["--smoke"]),
    "concurrency": ([], ["--smoke"]),
    "recording_size": ([], ["--smoke"]),
    "recording_seek": ([], ["--minutes", "2", "--seeks", "5"]),
    "recording_memory": ([], ["--sessions", "5"]),
    "player_timeline": ([], ["--commands", "2000"]),
    "policy_worst": ([], ["--smoke"]),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes for every benchmark")
    ap.add_argument("--skip", default="", help="comma-separated benchmark names to skip")
    ap.add_argument("--only", default="", help="comma-separated benchmark names to run")
    a = ap.parse_args(argv)
    failed = []
    for name, (full, smoke) in BENCHMARKS.items():
        if name in a.skip.split(",") or (a.only and name not in a.only.split(",")):
            continue
        args = [sys.executable, str(HERE / f"{name}.py"), *(smoke if a.smoke else full)]
        print(
            f"\n## {name}: {' '.join(Path(x).name if i < 2 else x for i, x in enumerate(args))}",
            flush=True,
        )
        t0 = time.monotonic()
        rc = subprocess.run(args, cwd=HERE.parent).returncode
        print(f"## {name}: exit {rc}, {time.monotonic() - t0:.0f}s", flush=True)
        if rc != 0:
            failed.append(name)
    if failed:
        print(f"\nFAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
