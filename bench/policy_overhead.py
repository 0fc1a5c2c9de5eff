"""Policy overhead: time from Enter to the command reaching the target, end to end.

A pty owned by the benchmark runs the real `ssh -tt` into an interactive bash (directly,
through a gateway without rules, and through a gateway with the starter policy plus
``on_uncertain = "approve"``). For each ordinary command the client types the line, waits
for its echo, then times Enter -> the next prompt. With rules, the gateway holds the
Enter key, reconstructs the line (pyte, in a worker thread), analyses it (bastille's bash
parser and the session's shell model) and decides before it lets the Enter through;
without rules it forwards the Enter at once. The difference of the two gateway columns
is the policy's cost on that path.

Known limits: Enter -> prompt includes running the command and the prompt's way back
(the same in every column); one gateway process per column on a shared 2-core machine.

Run: python bench/policy_overhead.py [--rounds 10]    |    python bench/policy_overhead.py --smoke
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._rig import BenchRig, machine, percentile
from bench.latency import PtyClient
from gateway.policy.starter import starter_toml

# Ordinary admin commands, harmless on the benchmark's target account.
COMMANDS = [
    "true",
    "echo hello",
    "ls /tmp",
    "cd /tmp",
    "cd ~",
    "id -u",
    "date +%s",
    "cat /etc/hostname",
    "grep -c root /etc/passwd",
    "uname -r",
    "test -e /etc/passwd && echo yes",
    "printf '%s\\n' a b | sort",
    "df -h /",
    "ps -o pid= -p $$",
    "wc -l /etc/passwd",
    "head -n 1 /etc/os-release",
    "export FOO=bar",
    "echo $HOME",
    "ls -la ~ | head -n 3",
    "systemctl --version | head -n 1 || true",
]
POLICY = '\n[policy]\ndefault = "allow"\non_uncertain = "approve"\n\n' + starter_toml() + \
    '\n[approvals]\napprovers = ["nobody"]\n'
PROMPT = b"$ "


def enter_to_prompt(client: PtyClient, line: bytes, timeout: float = 10.0) -> float:
    """Type ``line`` (wait for its echo), then time Enter -> the next prompt."""
    os.write(client.master, line)
    seen = b""
    while not seen.endswith(line[-3:]):  # the echo of the typed line (readline redraws)
        r, _, _ = select.select([client.master], [], [], timeout)
        if not r:
            raise TimeoutError(f"no echo of {line!r}")
        seen += os.read(client.master, 65536)
    t0 = time.perf_counter()
    os.write(client.master, b"\r")
    seen = b""
    while not seen.endswith(PROMPT):
        r, _, _ = select.select([client.master], [], [], timeout)
        if not r:
            raise TimeoutError(f"no prompt after {line!r}: {seen[-200:]!r}")
        seen += os.read(client.master, 65536)
    return time.perf_counter() - t0


def run_one(rig: BenchRig, via: str | None, rounds: int) -> list[float]:
    client = PtyClient(rig.ssh(via, tty=True))
    try:
        client.ready()
        times = []
        slowest: dict[str, float] = {}
        for _ in range(rounds):
            for cmd in COMMANDS:
                t = enter_to_prompt(client, cmd.encode())
                times.append(t)
                slowest[cmd] = max(slowest.get(cmd, 0.0), t)
                time.sleep(0.005)
        worst = sorted(slowest.items(), key=lambda kv: -kv[1])[:3]
        print(f"# {via or 'direct'}: slowest " + ", ".join(f"{c!r} {t * 1e3:.1f} ms"
                                                          for c, t in worst))
        return times
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10, help="passes over the command list")
    ap.add_argument("--smoke", action="store_true", help="one pass")
    ap.add_argument("--gateway", action="append", default=[], metavar="KEY=VALUE",
                    help="a [gateway] setting, e.g. --gateway 'event_loop = \"asyncio\"'")
    a = ap.parse_args(argv)
    rounds = 1 if a.smoke else a.rounds
    print(f"# policy_overhead: {machine()}")
    print(f"# {rounds * len(COMMANDS)} ordinary commands per column; Enter -> next prompt, ms")
    gateways = {"bastion": "", "bastion-policy": ""}
    with BenchRig(gateways=gateways, extra={"bastion-policy": POLICY},
                  gateway_keys="\n".join(a.gateway)) as rig:
        cols = {"direct": run_one(rig, None, rounds)}
        for name in gateways:
            cols[name] = run_one(rig, name, rounds)
        print(f"{'path':<16} {'p50':>7} {'p99':>7} {'max':>7}")
        for name, t in cols.items():
            print(f"{name:<16} {percentile(t, 50) * 1e3:>7.2f} {percentile(t, 99) * 1e3:>7.2f} "
                  f"{max(t) * 1e3:>7.2f}")
        pol, plain = cols["bastion-policy"], cols["bastion"]
        print(f"# policy adds: p50 {(percentile(pol, 50) - percentile(plain, 50)) * 1e3:.2f} ms, "
              f"p99 {(percentile(pol, 99) - percentile(plain, 99)) * 1e3:.2f} ms "
              "(target: Enter -> target under 5 ms p99)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
