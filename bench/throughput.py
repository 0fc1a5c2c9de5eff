"""Bulk throughput through the bastion vs direct OpenSSH, in the same run.

Workloads (each timed end to end with the real OpenSSH client, output to /dev/null):
  exec-zero   `ssh HOST head -c SIZE /dev/zero`
  exec-cat    `ssh HOST cat RANDOM_FILE`
  scp-up      `scp RANDOM_FILE HOST:` (OpenSSH 9 scp speaks SFTP)
  scp-down    `scp HOST:RANDOM_FILE .`
  sftp-up / sftp-down   `sftp -b -` put / get of the same file
  pty-cat     `ssh -tt HOST` (an interactive bash; the relay's interactive path) typing
              `cat CORPUS; exit`, CORPUS being synthetic terminal output

Paths, measured in the same run, one after the other for each workload:
  direct        the OpenSSH client straight to the target's sshd
  ossh-relay    an OpenSSH-terminating relay: a second sshd whose ForceCommand runs the
                OpenSSH client to the target (C on both legs, the architecture of The
                Bastion); the fair peer of a terminating bastion on shared cores
  bastille      `bastille serve` with its defaults: every session recorded (signed,
                zstd), exec/transfer recordings and terminal output masked

Columns: MiB/s for each path; bastille's ratio to direct and to the OpenSSH relay; and
CPU milliseconds per MiB moved of the relaying processes: for the relay, its sshd and
every process under it (per-connection sshd, the ssh client), for bastille the gateway's
whole process tree (the serving process, SSH workers, the recording writer), counted
until the gateway is idle again, so it includes the recording's after-close work
(gw-ms/MiB); gw-live is the part of it used while the transfer ran (before that work).
The client, the target's sshd and the command are not counted for either. Before each timed
cell the gateway is left to go idle, so one cell's background work does not slow the
next. The load average before and after the run is printed: figures taken while other
work runs on the machine are noise.

``--repeat N`` takes the best of N runs per cell, and runs the paths in turn (direct,
relay, bastille, bare, then again), so that a change in the machine's load during the
run spreads over every path instead of falling on one of them.

Known limits: one run per cell by default; loopback only, so the client, gateway and
sshd share the machine's cores.

Run: python bench/throughput.py [--size-mib 2048] [--file-mib 512] [--pty-mib 200]
     python bench/throughput.py --smoke
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._rig import (
    BARE,
    MIB,
    RELAY,
    BenchRig,
    TreeMeter,
    machine,
    make_random_file,
    make_terminal_corpus,
    shared_file,
    timed_run,
)

GATEWAY = "bastion"
#: one measured run of a path: (seconds, CPU seconds counted until idle, CPU seconds
#: while the transfer ran)
Cell = tuple[float, float, float]


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


def measure(rig: BenchRig, run: Callable[[str | None], float], via: str | None,
            window: float) -> Cell:
    """One run through ``via``: (seconds, CPU seconds of the path's own processes for
    that run: the gateway's tree, or the relay's; 0 for direct; and of those, the CPU
    seconds used while the transfer ran, before the recording's after-close work)."""
    for gw in rig.gws.values():
        gw.settle(window=window)
    meter = _meter(rig, via)
    with meter:
        dt = run(via)
        during = meter.now()
        if via in rig.gws:
            rig.gws[via].settle(window=window)  # the recording's after-close work
    return dt, meter.seconds, during


def measure_paths(rig: BenchRig, run: Callable[[str | None], float],
                  paths: list[str | None], repeat: int, window: float,
                  failures: list[str], name: str) -> list[Cell | None]:
    """Best of ``repeat`` runs per path, the paths taken in turn each round; a path that
    fails once is reported and not run again."""
    best: list[Cell | None] = [None] * len(paths)
    failed = [False] * len(paths)
    for _ in range(repeat):
        for i, via in enumerate(paths):
            if failed[i]:
                continue
            try:
                cell = measure(rig, run, via, window)
            except RuntimeError as exc:  # a failed cell is a result: report it
                tail = rig.log_tail(via)
                failures.append(f"{name} via {via or 'direct'}: {exc}"
                                + (f"\n  its log ends:\n{tail}" if tail else ""))
                failed[i], best[i] = True, None
                continue
            prev = best[i]
            if prev is None or cell[0] < prev[0]:
                best[i] = cell
    return best


def _meter(rig: BenchRig, via: str | None) -> TreeMeter | contextlib.nullcontext[None]:
    if via is None:
        return _NoMeter()
    if via == RELAY:
        assert rig.openssh_relay is not None
        return rig.openssh_relay.meter()
    if via == BARE:
        assert rig.bare_relay is not None
        return rig.bare_relay.meter()
    return rig.gws[via].meter()


class _NoMeter(contextlib.nullcontext[None]):
    seconds = 0.0

    def now(self) -> float:
        return 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=2048, help="exec-zero size")
    ap.add_argument("--file-mib", type=int, default=512, help="random file for cat/scp/sftp")
    ap.add_argument("--pty-mib", type=int, default=200, help="terminal corpus for pty-cat")
    ap.add_argument("--repeat", type=int, default=1, help="best of N per cell")
    ap.add_argument("--only", default="", help="comma-separated workload names")
    ap.add_argument("--gateway", action="append", default=[], metavar="KEY=VALUE",
                    help="a [gateway] setting for bastille, e.g. --gateway 'workers = 1' "
                         "(repeatable; the defaults otherwise)")
    ap.add_argument("--config", default="", metavar="TOML",
                    help="TOML appended to bastille's config, e.g. "
                         "$'[policy]\\nmask_exec = false' (what a default costs)")
    ap.add_argument("--bare", action="store_true",
                    help="also measure a bare asyncssh relay (no recording): the CPU yardstick")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks it still works")
    a = ap.parse_args(argv)
    if a.smoke:
        a.size_mib, a.file_mib, a.pty_mib, a.repeat = 8, 4, 2, 1
    window = 0.1 if a.smoke else 0.5  # idle-check window before/after each cell (s)
    rand = make_random_file(shared_file(f"random-{a.file_mib}M.bin"), a.file_mib * MIB)
    corpus = make_terminal_corpus(shared_file(f"corpus-{a.pty_mib}M.txt"), a.pty_mib * MIB)
    print(f"# throughput: {machine()}")
    print(f"# load before the run: {load_average()}")
    print(
        f"# exec-zero {a.size_mib} MiB, file {a.file_mib} MiB, pty corpus {a.pty_mib} MiB, "
        f"best of {a.repeat}; MiB/s, and CPU ms per MiB of the relaying processes"
    )
    keys = "\n".join(a.gateway)
    if keys:
        print(f"# bastille [gateway] settings: {'; '.join(a.gateway)}")
    if a.config:
        print(f"# bastille config added: {' '.join(a.config.split())}")
    with BenchRig(gateways={GATEWAY: ""}, relay=True, bare=a.bare, gateway_keys=keys,
                  extra={GATEWAY: "\n" + a.config + "\n"}) as rig, \
            tempfile.TemporaryDirectory() as tmp:
        work = workloads(rig, a.size_mib * MIB, rand, corpus, Path(tmp))
        names = [n for n in work if not a.only or n in a.only.split(",")]
        paths: list[str | None] = [None, RELAY, GATEWAY] + ([BARE] if a.bare else [])
        print(f"{'workload':<10} {'direct':>8} {'ossh-relay':>10} {'relay-ms/MiB':>12} "
              f"{'bastille':>9} {'/direct':>7} {'/relay':>7} {'gw-ms/MiB':>9} {'gw-live':>9}"
              + (f" {'bare':>8} {'bare-ms/MiB':>11}" if a.bare else ""))
        failures: list[str] = []
        for name in names:
            nbytes, run = work[name]
            mib = nbytes / MIB
            cells = measure_paths(rig, run, paths, a.repeat, window, failures, name)
            print(_row(name, mib, cells), flush=True)
        for f in failures:
            print(f"# FAILED {' '.join(f.split())[:300]}")
    print(f"# load after the run: {load_average()}")
    up = shared_file("upload.bin")
    if up.exists():
        os.unlink(up)
    return 0 if not failures else 1


def _row(name: str, mib: float, cells: list[Cell | None]) -> str:
    direct, relay, gw = cells[:3]

    def rate(c: Cell | None) -> str:
        return f"{mib / c[0]:.1f}" if c else "FAILED"

    def cpu(c: Cell | None, during: bool = False) -> str:
        return f"{c[2 if during else 1] * 1000 / mib:.2f}" if c else "-"

    def ratio(c: Cell | None, base: Cell | None) -> str:
        return f"{base[0] / c[0]:.2f}" if c and base else "-"

    bare = f" {rate(cells[3]):>8} {cpu(cells[3]):>11}" if len(cells) > 3 else ""
    return (f"{name:<10} {rate(direct):>8} {rate(relay):>10} {cpu(relay):>12} "
            f"{rate(gw):>9} {ratio(gw, direct):>7} {ratio(gw, relay):>7} {cpu(gw):>9} "
            f"{cpu(gw, during=True):>9}{bare}")


def load_average() -> str:
    """The 1/5/15-minute load averages (figures taken under load are noise)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


if __name__ == "__main__":
    raise SystemExit(main())
