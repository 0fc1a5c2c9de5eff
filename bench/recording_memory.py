"""Memory per recorded session (target: ~1-2 MiB at most).

Opens N concurrent recordings through the real Recorder and FileSink, writes some
terminal output to each (so every zstd context is live), and prints the growth of the
process RSS divided by N.

Run: python bench/recording_memory.py [--sessions 200]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path

from recorder.service import Recorder, SessionHeader
from recorder.settings import RecorderSettings


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def run(n: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        r = Recorder(RecorderSettings(data_dir=Path(d)))
        await r.start()
        gc.collect()
        before = rss()
        recs = []
        for i in range(n):
            h = SessionHeader(
                f"mem{i:06d}", "alice", "web1", "ssh", "shell", "127.0.0.1:1", time.time()
            )
            recs.append(await r.open_session(h))
        for round_ in range(5):
            for i, s in enumerate(recs):
                s.output(b"\x1b[32malice@web1\x1b[0m:~$ ls %d %d\r\n" % (i, round_) * 400)
            await asyncio.sleep(0.3)
        await asyncio.sleep(1.5)  # let the writer flush everything
        gc.collect()
        after = rss()
        print(
            f"{n} open recordings: RSS +{(after - before) / 2**20:.1f} MiB, "
            f"{(after - before) / n / 2**20:.2f} MiB per session"
        )
        t0 = time.perf_counter()
        await r.close(timeout=30)
        print(f"closing all: {time.perf_counter() - t0:.2f}s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=200)
    asyncio.run(run(ap.parse_args().sessions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
