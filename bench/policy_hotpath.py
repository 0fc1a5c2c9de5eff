"""Throughput of the policy layer's hot paths, and decide() latency.

Run: ``python bench/policy_hotpath.py [--mib 50]``  (``--smoke``: 1 MiB)

* ``LineTracker.feed_output``: every output byte of every interactive session;
* ``StreamMasker.feed``: every output byte when masking is on (always for recordings);
* ``PolicyEngine.decide``: once per exec request, and ``PolicySession.decide`` once per
  Enter (p50/p99 over the 963 ordinary commands of the false-positive corpus).

The corpus is terminal-like: ``ls -l``/``ps``/log lines with colour codes, ~70 bytes a
line, cut into 4 KiB chunks like an SSH channel delivers them. Numbers are printed,
not asserted: machines are noisy.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.policy import (
    Action,
    LineSnapshot,
    LineTracker,
    PolicyEngine,
    PolicySession,
    StreamMasker,
    starter_rules,
)


def corpus(mib: int, seed: int = 7) -> list[bytes]:
    """Terminal-like output, in 4 KiB chunks."""
    rnd = random.Random(seed)
    lines = [
        b"-rw-r--r-- 1 root root  %d 2024-01-%02d 12:%02d \x1b[01;34mfile_%d.txt\x1b[0m\r\n",
        b"root      %d  0.0  0.1 %d  %d ?        Ss   10:%02d   0:00 /usr/sbin/sshd -D\r\n",
        b"Jan %02d 12:00:%02d web1 nginx[%d]: GET /api/v1/items?id=%d HTTP/1.1 200\r\n",
        b"\x1b[32mINFO\x1b[0m worker %d processed batch %d in %d ms (queue=%d)\r\n",
    ]
    out = bytearray()
    target = mib * 1024 * 1024
    while len(out) < target:
        tpl = rnd.choice(lines)
        n = tpl.count(b"%")
        out += tpl % tuple(rnd.randrange(1, 28) for _ in range(n))
    data = bytes(out[:target])
    return [data[i : i + 4096] for i in range(0, len(data), 4096)]


def bench_feed_output(chunks: list[bytes]) -> float:
    t = LineTracker()
    start = time.perf_counter()
    for c in chunks:
        t.feed_output(c)
    return time.perf_counter() - start


def bench_masker(chunks: list[bytes]) -> float:
    m = StreamMasker(secrets=["hunter2-vaulted-secret"])
    start = time.perf_counter()
    for c in chunks:
        m.feed(c, 0.0)
    m.flush(1.0, end=True)
    return time.perf_counter() - start


def ordinary_commands() -> list[str]:
    """The 963 ordinary commands of the false-positive corpus (tests/unit/policy)."""
    path = Path(__file__).resolve().parents[1] / "tests/unit/policy/ordinary_commands.txt"
    return [line.replace("\u23ce", "\n") for line in path.read_text("utf-8").splitlines()
            if line.strip() and not line.startswith("## ")]


def _stats(per_command: list[list[float]]) -> tuple[float, float, float, float]:
    """p50, p99, max over all calls, and p99 of each command's fastest call (the cost
    without other processes' interference on a shared machine), in ms."""
    flat = sorted(t for ts in per_command for t in ts)
    best = sorted(min(ts) for ts in per_command)
    return (statistics.median(flat) * 1e3, flat[int(len(flat) * 0.99)] * 1e3, flat[-1] * 1e3,
            best[int(len(best) * 0.99)] * 1e3)


def bench_decide() -> tuple[float, float, float, float]:
    """``PolicyEngine.decide`` on each ordinary command (a fresh shell state each)."""
    commands = ordinary_commands()
    eng = PolicyEngine(starter_rules())
    for c in commands:  # first decisions compile the rules' automata: warm up once
        eng.decide(c, user="alice", groups=["ops"], target="web1")
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(3):
        for k, c in enumerate(commands):
            s = time.perf_counter()
            eng.decide(c, user="alice", groups=["ops"], target="web1")
            times[k].append(time.perf_counter() - s)
    return _stats(times)


def bench_session() -> tuple[float, float, float, float]:
    """``PolicySession.decide`` + ``commit``: the commands typed one after the other in
    one session (the state of earlier lines applies), as the relay calls them."""
    commands = ordinary_commands()
    eng = PolicyEngine(starter_rules())
    times: list[list[float]] = [[] for _ in commands]
    for rnd in range(4):
        s = PolicySession(eng, user="alice", groups=["ops"], target="web1")
        for k, c in enumerate(commands):
            t0 = time.perf_counter()
            d = s.decide(LineSnapshot(text=c, prompt="$ "))
            if d.action is Action.ALLOW:
                s.commit(d)
            if rnd:  # the first round warms the caches
                times[k].append(time.perf_counter() - t0)
    return _stats(times)


def bench_monsters() -> list[tuple[str, float]]:
    """``PolicyEngine.decide`` on pathological lines (the analysis bounds: 32 KiB,
    400 commands, 0.25 s of analysis and 0.25 s of rule matching)."""
    eng = PolicyEngine(starter_rules())
    lines = {
        "4000 x 'echo a;' (32 KiB)": "echo a; " * 4000,
        "3000-line script": "\n".join(f"echo {i}" for i in range(3000)),
        "for loop, 200 cp with dynamic paths": "for i in $(seq 100); do " + "; ".join(
            f"cp $i /tmp/d{k}/$i" for k in range(200)) + "; done",
        "400 'rm -rf /srv/aN/*'": "; ".join(f"rm -rf /srv/a{k}/*" for k in range(400)),
    }
    out = []
    for name, line in lines.items():
        s = time.perf_counter()
        eng.decide(line, user="alice", groups=["ops"], target="web1")
        out.append((name, (time.perf_counter() - s) * 1e3))
    return out


def bench_render() -> float:
    """current_line() on a typical line with 4 KiB of output before the prompt."""
    t = LineTracker()
    for c in corpus(1)[:1]:
        t.feed_output(c)
    t.feed_output(b"\r\n\x1b[01;32malice@web1\x1b[0m:~$ ")
    t.feed_input(b"systemctl status nginx")
    t.feed_output(b"systemctl status nginx")
    (ev,) = t.feed_input(b"\r")
    start = time.perf_counter()
    for _ in range(100):
        t.current_line(ev.line_id)
    return (time.perf_counter() - start) / 100 * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=50)
    ap.add_argument("--smoke", action="store_true", help="1 MiB")
    args = ap.parse_args()
    chunks = corpus(1 if args.smoke else args.mib)
    size = sum(len(c) for c in chunks) / 2**20
    fo = bench_feed_output(chunks)
    print(f"LineTracker.feed_output: {size / fo:8.1f} MiB/s  ({size:.0f} MiB, 4 KiB chunks)")
    mk = bench_masker(chunks)
    print(f"StreamMasker.feed:       {size / mk:8.1f} MiB/s  (builtin patterns + 1 secret)")
    plain = [b"The quick brown fox jumps over the lazy dog, again and again.\r\n" * 64] * (
        int(size * 256)
    )
    mk2 = bench_masker(plain)
    print(f"StreamMasker.feed (text):{size / mk2:8.1f} MiB/s  (ordinary prose, no digits)")
    n = len(ordinary_commands())
    p50, p99, worst, best = bench_decide()
    print(f"PolicyEngine.decide:     p50 {p50:.3f} ms  p99 {p99:.3f} ms  max {worst:.3f} ms"
          f"  p99 of best-of-3 {best:.3f} ms  ({n} ordinary commands x 3)")
    p50, p99, worst, best = bench_session()
    print(f"PolicySession.decide:    p50 {p50:.3f} ms  p99 {p99:.3f} ms  max {worst:.3f} ms"
          f"  p99 of best-of-3 {best:.3f} ms  ({n} commands typed in one session, x 3)")
    print(f"LineTracker.current_line: {bench_render():.2f} ms per call (typical line)")
    for name, ms in bench_monsters():
        print(f"PolicyEngine.decide, worst case: {ms:7.1f} ms  ({name})")


if __name__ == "__main__":
    main()
