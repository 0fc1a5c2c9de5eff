"""Bulk throughput through the bastion vs direct OpenSSH, in the same run.

Workloads (each timed end to end with the real OpenSSH client, output to /dev/null):
  exec-zero   `ssh HOST head -c SIZE /dev/zero`
  exec-cat    `ssh HOST cat RANDOM_FILE`
  scp-up      `scp RANDOM_FILE HOST:` (OpenSSH 9 scp speaks SFTP)
  scp-down    `scp HOST:RANDOM_FILE .`
  sftp-up / sftp-down   `sftp -b -` put / get of the same file
  pty-cat     `ssh -tt HOST` (an interactive bash; the relay's interactive path) typing
              `cat CORPUS; exit`, CORPUS being synthetic terminal output

Gateways: ``bastion`` (default settings: recordings on disk under its data dir) and
``bastion-shm`` (recordings on /dev/shm). Bastille cannot run with recording off (it is
fail-closed), so the second one is the closest honest stand-in for "recording off": it
removes storage I/O, not the recorder's CPU.

Columns: MiB/s direct and through each gateway, ratio to direct, and the gateway
process's CPU milliseconds per MiB moved (utime+stime of all its threads, from
/proc/PID/stat), counted until the gateway is idle again: that includes the recording's
after-close work (keyframe pass), which runs after the client has already finished.
Before each timed cell every gateway is left to go idle, so one cell's background work
does not slow the next.

Known limits: one run per cell by default (``--repeat`` takes the best of N); loopback
only, so the client, gateway and sshd share the machine's cores.

Run: python bench/throughput.py [--size-mib 2048] [--file-mib 512] [--pty-mib 200]
     python bench/throughput.py --smoke
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._rig import (
    MIB,
    BenchRig,
    machine,
    make_random_file,
    make_terminal_corpus,
    shared_file,
    timed_run,
)

GATEWAYS = {"bastion": "", "bastion-shm": "/dev/shm"}


def workloads(
    rig: BenchRig, zero_bytes: int, rand: Path, corpus: Path, scratch: Path
) -> dict[str, tuple[int, Callable[[str | None], float]]]:
    """name -> (bytes moved, run(via) -> seconds)."""
    remote_up = shared_file("upload.bin")

    def exec_zero(via: str | None) -> float:
        return timed_run([*rig.ssh(via), f"head -c {zero_bytes} /dev/zero"])

    def exec_cat(via: str | None) -> float:
        return timed_run([*rig.ssh(via), f"cat {rand}"])

    def scp_up(via: str | None) -> float:
        opts, dest = rig.scp(via)
        return timed_run([*opts, str(rand), f"{dest}{remote_up}"])

    def scp_down(via: str | None) -> float:
        opts, dest = rig.scp(via)
        out = scratch / "down.bin"
        dt = timed_run([*opts, f"{dest}{rand}", str(out)])
        out.unlink()
        return dt

    def sftp_up(via: str | None) -> float:
        return timed_run(rig.sftp(via), input=f"put {rand} {remote_up}\n".encode())

    def sftp_down(via: str | None) -> float:
        out = scratch / "down.bin"
        dt = timed_run(rig.sftp(via), input=f"get {rand} {out}\n".encode())
        out.unlink()
        return dt

    def pty_cat(via: str | None) -> float:
        return timed_run(rig.ssh(via, tty=True), input=f"cat {corpus}; exit\n".encode())

    size = rand.stat().st_size
    return {
        "exec-zero": (zero_bytes, exec_zero),
        "exec-cat": (size, exec_cat),
        "scp-up": (size, scp_up),
        "scp-down": (size, scp_down),
        "sftp-up": (size, sftp_up),
        "sftp-down": (size, sftp_down),
        "pty-cat": (corpus.stat().st_size, pty_cat),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=2048, help="exec-zero size")
    ap.add_argument("--file-mib", type=int, default=512, help="random file for cat/scp/sftp")
    ap.add_argument("--pty-mib", type=int, default=200, help="terminal corpus for pty-cat")
    ap.add_argument("--repeat", type=int, default=1, help="best of N per cell")
    ap.add_argument("--only", default="", help="comma-separated workload names")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks it still works")
    a = ap.parse_args(argv)
    if a.smoke:
        a.size_mib, a.file_mib, a.pty_mib, a.repeat = 8, 4, 2, 1
    window = 0.1 if a.smoke else 0.5  # idle-check window before/after each cell (s)
    rand = make_random_file(shared_file(f"random-{a.file_mib}M.bin"), a.file_mib * MIB)
    corpus = make_terminal_corpus(shared_file(f"corpus-{a.pty_mib}M.txt"), a.pty_mib * MIB)
    print(f"# throughput: {machine()}")
    print(
        f"# exec-zero {a.size_mib} MiB, file {a.file_mib} MiB, pty corpus {a.pty_mib} MiB, "
        f"best of {a.repeat}"
    )
    with BenchRig(gateways=GATEWAYS) as rig, tempfile.TemporaryDirectory() as tmp:
        work = workloads(rig, a.size_mib * MIB, rand, corpus, Path(tmp))
        names = [n for n in work if not a.only or n in a.only.split(",")]
        header = f"{'workload':<10} {'direct MiB/s':>12}"
        for g in GATEWAYS:
            header += f" {g + ' MiB/s':>18} {'ratio':>6} {'gw CPU ms/MiB':>13}"
        print(header)
        failures: list[str] = []
        for name in names:
            nbytes, run = work[name]
            mib = nbytes / MIB
            for gw in rig.gws.values():
                gw.settle(window=window)
            direct = min(run(None) for _ in range(a.repeat))
            line = f"{name:<10} {mib / direct:>12.1f}"
            for g, gw in rig.gws.items():
                best, cpu = float("inf"), 0.0
                for _ in range(a.repeat):
                    for other in rig.gws.values():
                        other.settle(window=window)
                    c0 = gw.cpu()
                    try:
                        dt = run(g)
                    except RuntimeError as exc:  # a failed cell is a result: report it
                        failures.append(f"{name} via {g}: {exc}")
                        continue
                    finally:
                        gw.settle(window=window)
                    if dt < best:
                        best, cpu = dt, gw.cpu() - c0
                if best == float("inf"):
                    line += f" {'FAILED':>18} {'-':>6} {'-':>13}"
                    continue
                line += f" {mib / best:>18.1f} {direct / best:>6.2f} {cpu * 1000 / mib:>13.2f}"
            print(line, flush=True)
        for f in failures:
            print(f"# FAILED {' '.join(f.split())[:300]}")
    up = shared_file("upload.bin")
    if up.exists():
        os.unlink(up)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
