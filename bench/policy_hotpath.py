"""Throughput of the policy layer's hot paths, and decide() latency.

Run: ``python bench/policy_hotpath.py [--mib 50]``  (``--smoke``: 1 MiB)

* ``LineTracker.feed_output``: every output byte of every interactive session;
* ``StreamMasker.feed``: every output byte when masking is on (always for recordings);
* ``PolicyEngine.decide``: once per Enter / exec request (p50/p99 over ordinary
  commands from the false-positive corpus).

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

from gateway.policy import LineTracker, PolicyEngine, StreamMasker, starter_rules


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


def bench_decide() -> tuple[float, float, float, int]:
    tests = Path(__file__).resolve().parents[1] / "tests" / "unit" / "policy"
    src = (tests / "test_policy_allow.py").read_text()
    block = src.split('ORDINARY = r"""', 1)[1].split('"""', 1)[0]
    commands = [c for c in block.strip().split("\n") if c]
    eng = PolicyEngine(starter_rules())
    times: list[float] = []
    for _ in range(5):
        for c in commands:
            s = time.perf_counter()
            eng.decide(c, user="alice", groups=["ops"], target="web1")
            times.append(time.perf_counter() - s)
    times.sort()
    p50 = statistics.median(times)
    p99 = times[int(len(times) * 0.99)]
    return p50 * 1e3, p99 * 1e3, times[-1] * 1e3, len(commands)


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
    p50, p99, worst, n = bench_decide()
    print(
        f"PolicyEngine.decide:     p50 {p50:.3f} ms  p99 {p99:.3f} ms  max {worst:.3f} ms"
        f"  ({n} ordinary commands x 5)"
    )
    print(f"LineTracker.current_line: {bench_render():.2f} ms per call (typical line)")


if __name__ == "__main__":
    main()
