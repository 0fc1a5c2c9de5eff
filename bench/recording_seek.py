"""Seek time in a one-hour recording (target: under 200 ms per seek).

Builds a synthetic one-hour shell session (output every ~0.5 s, with full-screen
redraws and a few bulk bursts), then measures: opening the recording (chunk scan and
hash check), building keyframes (the after-close background pass), loading the
keyframe cache, and random seeks (restore keyframe + replay up to T).

Run: python bench/recording_seek.py [--minutes 60] [--seeks 50]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from recorder import events as ev
from recorder import keyframes
from recorder.reader import Recording
from recorder.service import WINDOW_LOG, SessionHeader, header_fields, sink_name
from recorder.settings import RecorderSettings
from recorder.sinks.memory import MemorySink
from recorder.writer import SessionState, Writer


def synthetic(minutes: int, seed: int = 1) -> bytes:
    rnd = random.Random(seed)
    settings = RecorderSettings(data_dir=Path(tempfile.gettempdir()))
    header = SessionHeader("bench0001", "alice", "web1", "ssh", "shell", "127.0.0.1:1", 0.0)
    sink = MemorySink()
    writer = Writer(settings, sink, None)
    state = SessionState(
        sink_name(header), header_fields(header, settings, None), settings, WINDOW_LOG
    )
    writer.open(state)
    t = 0.0
    n = 0
    last_flush = 0.0
    while t < minutes * 60:
        t += rnd.expovariate(2.0)
        n += 1
        r = rnd.random()
        if r < 0.01:
            data = b"".join(b"bulk line %08d of a cat\r\n" % i for i in range(20_000))
        elif r < 0.1:
            data = b"\x1b[2J\x1b[H" + b"".join(
                b"\x1b[%d;1H\x1b[3%dm%5d proc %-60s\x1b[0m" % (y, y % 8, n + y, b"x" * (y % 40))
                for y in range(1, 24)
            )
        else:
            data = b"\x1b[32malice@web1\x1b[0m:~$ ls -la %d\r\nfile-%d.txt\r\n" % (n, n)
        state.pending.append((ev.OUTPUT, int(t * 1e6), data))
        state.enqueued += len(data)
        if t - last_flush >= 1.0 or state.enqueued - state.written >= settings.flush_bytes:
            state.write_pending(settings.flush_bytes)
            last_flush = t
    writer.finish(state, t, 0, None)
    return sink.read(state.name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=int, default=60)
    ap.add_argument("--seeks", type=int, default=50)
    a = ap.parse_args()
    t0 = time.perf_counter()
    data = synthetic(a.minutes)
    print(
        f"recording: {a.minutes} min, {len(data) / 1e6:.1f} MB stored "
        f"(generated in {time.perf_counter() - t0:.1f}s)"
    )
    t0 = time.perf_counter()
    rec = Recording.from_bytes(data)
    print(
        f"open + verify chunk chain: {(time.perf_counter() - t0) * 1000:.0f} ms "
        f"({len(rec.chunks)} chunks)"
    )
    t0 = time.perf_counter()
    kfi = keyframes.build(rec, interval=10.0)
    print(
        f"keyframe build (background pass): {time.perf_counter() - t0:.1f}s, "
        f"{len(kfi.keyframes)} keyframes, {sum(k.approx for k in kfi.keyframes)} sampled"
    )
    with tempfile.TemporaryDirectory() as d:
        keyframes.save(Path(d), kfi)
        size = keyframes.cache_path(Path(d), kfi.session_id).stat().st_size
        t0 = time.perf_counter()
        kfi = keyframes.load_or_build(rec, Path(d))
        print(
            f"keyframe cache: {size / 1e6:.2f} MB, load {(time.perf_counter() - t0) * 1000:.0f} ms"
        )
    rnd = random.Random(2)
    times = []
    for _ in range(a.seeks):
        target = rnd.uniform(0, rec.duration)
        t0 = time.perf_counter()
        keyframes.screen_at(rec, kfi, target).display()
        times.append(time.perf_counter() - t0)
    times.sort()
    p50 = statistics.median(times) * 1000
    p95 = times[int(len(times) * 0.95) - 1] * 1000
    print(
        f"seek: p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {times[-1] * 1000:.0f} ms "
        f"over {a.seeks} random seeks (target < 200 ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
