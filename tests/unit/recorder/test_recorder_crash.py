"""A gateway process killed with SIGKILL mid-session leaves a readable recording."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from recorder.reader import Recording
from recorder.sinks.file import FileSink
from recorder.verify import verify_recording

CHILD = r"""
import asyncio, sys, time
from pathlib import Path
from recorder.service import Recorder, SessionHeader
from recorder.settings import RecorderSettings

async def main():
    r = Recorder(RecorderSettings(data_dir=Path(sys.argv[1])))
    await r.start()
    h = SessionHeader("crash1", "alice", "web1", "ssh", "shell", "127.0.0.1:1", time.time())
    s = await r.open_session(h)
    print(s.name, flush=True)
    i = 0
    while True:
        s.output(b"line %06d\n" % i)
        print(i, flush=True)
        i += 1
        await asyncio.sleep(0.02)

asyncio.run(main())
"""


def test_sigkill_mid_session_loses_at_most_about_one_second(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        name = proc.stdout.readline().strip()
        emitted: list[tuple[int, float]] = []
        t_end = time.monotonic() + 3.0
        while time.monotonic() < t_end:
            line = proc.stdout.readline()
            emitted.append((int(line), time.monotonic()))
        proc.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    sink = FileSink(data / "recordings")
    rec = Recording.from_sink(sink, name)
    assert rec.status == "truncated"
    assert any("no trailer" in p for p in rec.problems)
    got = b"".join(rec.output())
    expected = b"".join(b"line %06d\n" % i for i, _ in emitted)
    assert expected.startswith(got)  # exact bytes, in order, nothing invented
    must_have = [i for i, t in emitted if t < killed_at - 1.5]
    assert must_have, "the child did not run long enough"
    assert b"line %06d\n" % must_have[-1] in got
    report = verify_recording(sink, name)
    assert report.status == "truncated" and not report.ok
