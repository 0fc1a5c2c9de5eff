"""Keystroke echo latency, direct OpenSSH vs through the bastion, idle and under load.

A small client owns a pty; the real OpenSSH client `ssh -tt` runs on its slave side and
opens an interactive bash on the target (directly, or through the gateway's recorded
interactive path). The client writes one key to the pty master, then times how long it
takes for the echo (bash's readline writes the key back) to come out of the master. Each
60 keys it sends Ctrl-U and drains the redraw, so the line never wraps.

Conditions: ``idle``; ``loaded``: another session on the same path (the same gateway,
or the same sshd for direct) streams `head -c 100G /dev/zero` to /dev/null meanwhile;
``loaded-pty``: another *interactive* session (pty, line tracking, live masking) runs
`cat` of a 64 MiB terminal-output file in a loop.

Known limits: the client, ssh, gateway, sshd and bash share the machine's cores, so the
loaded figures include CPU contention with the streaming client and sshd (as they would
on a busy bastion); times are from perf_counter around write/read on the pty master, so
they include the local ssh client and the kernel pty on both ends.

Run: python bench/latency.py [--keys 1000]    |    python bench/latency.py --smoke
"""

from __future__ import annotations

import argparse
import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._rig import MIB, BenchRig, machine, make_terminal_corpus, percentile, shared_file

KEYS = b"abcdefghijklmnopqrstuvwxyz"


class PtyClient:
    """`ssh -tt` on a pty we own; one key in, wait for its echo out."""

    def __init__(self, args: list[str]) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
        self.proc = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
        )
        os.close(slave)

    def drain(self, quiet: float = 0.3, limit: float = 10.0) -> bytes:
        """Read until nothing arrives for ``quiet`` seconds."""
        got = bytearray()
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.master], [], [], quiet)
            if not r:
                break
            try:
                got += os.read(self.master, 65536)
            except OSError:
                break
        return bytes(got)

    def ready(self) -> None:
        """Wait for the shell, then give it a short prompt."""
        self.drain(quiet=1.0)
        os.write(self.master, b"PS1='$ '; unset PROMPT_COMMAND\r")
        self.drain(quiet=0.5)

    def echo_time(self, key: bytes, timeout: float = 10.0) -> float:
        t0 = time.perf_counter()
        os.write(self.master, key)
        seen = b""
        while key not in seen:
            r, _, _ = select.select([self.master], [], [], timeout)
            if not r:
                raise TimeoutError(f"no echo of {key!r} within {timeout}s")
            try:
                seen += os.read(self.master, 65536)
            except OSError as exc:  # EIO: the ssh client exited
                raise RuntimeError(f"the ssh session ended (exit {self.proc.poll()})") from exc
        return time.perf_counter() - t0

    def measure(self, n: int) -> list[float]:
        times = []
        for i in range(n):
            if i and i % 60 == 0:
                os.write(self.master, b"\x15")  # Ctrl-U: kill the line
                self.drain(quiet=0.05)
            times.append(self.echo_time(KEYS[i % len(KEYS) : i % len(KEYS) + 1]))
            time.sleep(0.002)
        return times

    def close(self) -> None:
        try:
            os.write(self.master, b"\x15exit\r")
            self.proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def run_one(rig: BenchRig, via: str | None, keys: int, load: str) -> list[float]:
    bulk = None
    if load == "loaded":
        bulk = subprocess.Popen(
            [*rig.ssh(via), "head -c 100G /dev/zero"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
    elif load == "loaded-pty":
        # an interactive session (pty, line tracking, live masking) cat-ing a large
        # terminal-output file over and over
        corpus = make_terminal_corpus(shared_file("latency-corpus-64M.txt"), 64 * MIB)
        bulk = subprocess.Popen(
            rig.ssh(via, tty=True),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert bulk.stdin is not None
        bulk.stdin.write(f"while :; do cat {corpus}; done\n".encode())
        bulk.stdin.flush()
        time.sleep(2.0)
    client = PtyClient(rig.ssh(via, tty=True))
    try:
        client.ready()
        return client.measure(keys)
    finally:
        client.close()
        if bulk is not None:
            if bulk.poll() is not None:
                print(f"# warning: the bulk stream ended early ({bulk.returncode})")
            bulk.terminate()
            bulk.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--smoke", action="store_true", help="30 keys, idle only")
    ap.add_argument("--gateway", action="append", default=[], metavar="KEY=VALUE",
                    help="a [gateway] setting, e.g. --gateway 'event_loop = \"asyncio\"'")
    a = ap.parse_args(argv)
    conditions = ["idle"] if a.smoke else ["idle", "loaded", "loaded-pty"]
    keys = 30 if a.smoke else a.keys
    print(f"# latency: {machine()}")
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    settings = "; ".join(a.gateway) or "defaults"
    print(f"# {keys} keys per cell; echo time in ms; [gateway] {settings}; load {load}")
    with BenchRig(gateway_keys="\n".join(a.gateway)) as rig:
        print(
            f"{'condition':<10} {'direct p50':>10} {'p99':>7} {'bastion p50':>11} {'p99':>7} "
            f"{'added p50':>9} {'added p99':>9} {'ratio p50':>9} {'gw CPU ms':>9}"
        )
        gw = rig.gws["bastion"]
        for cond in conditions:
            d = run_one(rig, None, keys, cond)
            c0 = gw.cpu()
            b = run_one(rig, "bastion", keys, cond)
            cpu = (gw.cpu() - c0) * 1000
            dp50, dp99 = percentile(d, 50) * 1e3, percentile(d, 99) * 1e3
            bp50, bp99 = percentile(b, 50) * 1e3, percentile(b, 99) * 1e3
            print(
                f"{cond:<10} {dp50:>10.3f} {dp99:>7.3f} {bp50:>11.3f} {bp99:>7.3f} "
                f"{bp50 - dp50:>9.3f} {bp99 - dp99:>9.3f} {bp50 / dp50:>9.2f} {cpu:>9.0f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
