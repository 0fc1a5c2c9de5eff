"""The player with a long timeline: opening, filling the panel, and the per-frame cost.

Records one session with N commands (every 10th denied, every 50th held and approved,
every 100th a file transfer) with the real recorder, then measures in the real player
(Textual's headless test driver): ``Archive.open`` (worker thread: reading, keyframes,
timeline), filling the timeline panel (UI thread), and one status update (what runs ten
times a second while playing: bar, panel cursor, current command).

Run: python bench/player_timeline.py [--commands 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from player.app import PlayerApp
from player.archive import Archive
from player.events_panel import EventsPanel
from player.replay import ReplayScreen
from recorder.service import Recorder, SessionHeader
from recorder.settings import RecorderSettings

SID = "bench-timeline-0001"


class Clock:
    def __init__(self) -> None:
        self.now = 1_763_900_000.0

    def __call__(self) -> float:
        return self.now


async def record(data: Path, commands: int) -> None:
    clock = Clock()
    r = Recorder(RecorderSettings(data_dir=data), clock=clock)
    await r.start()
    s = await r.open_session(SessionHeader(session_id=SID, user="alice", target="web1",
                                           protocol="ssh", kind="shell", client_addr="c:1",
                                           start_time=clock.now))
    for i in range(commands):
        clock.now += 0.5
        text = f"command-{i} --flag value"
        s.command(text, source="interactive")
        if i % 10 == 0:
            s.policy(command=text, action="deny", rule="r", reason="no")
        elif i % 50 == 1:
            s.policy(command=text, action="approve", rule="a", reason="ask")
            s.approval(request_id=str(i), command=text, decision="approved", approver="bob",
                       reason="ok")
        if i % 100 == 2:
            s.file_transfer(path=f"/tmp/f{i}", direction="upload", size=i, sha256="ab" * 32,
                            protocol="sftp")
        s.output(f"$ {text}\r\nresult {i}\r\n".encode())
    await s.close(exit_status=0)
    await r.close()


async def measure(settings: RecorderSettings) -> dict[str, float]:
    archive = Archive(settings)
    t = time.perf_counter()
    data = archive.open(SID)
    opened = time.perf_counter() - t
    archive.close()
    out = {"entries": float(len(data.entries)), "open_s": opened}
    app = PlayerApp(settings, session_id=SID)
    async with app.run_test(size=(160, 45)) as pilot:
        for _ in range(600):
            await pilot.pause()
            scr = app.screen
            if isinstance(scr, ReplayScreen) and scr.data is not None:
                break
            await asyncio.sleep(0.05)
        scr = app.screen
        assert isinstance(scr, ReplayScreen) and scr.data is not None
        panel = scr.query_one(EventsPanel)
        t = time.perf_counter()
        panel.set_events(scr.data.entries, scr.data.reviews)
        out["panel_fill_s"] = time.perf_counter() - t
        ticks = []
        for i in range(50):
            scr.position = scr.data.duration * i / 50
            t = time.perf_counter()
            scr._update_status()
            ticks.append(time.perf_counter() - t)
        out["status_update_p50_ms"] = statistics.median(ticks) * 1000
        out["status_update_max_ms"] = max(ticks) * 1000
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commands", type=int, default=20000)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        t = time.perf_counter()
        asyncio.run(record(data, a.commands))
        print(f"recorded {a.commands} commands in {time.perf_counter() - t:.1f} s")
        result = asyncio.run(measure(RecorderSettings(data_dir=data)))
    for k, v in result.items():
        print(f"{k:24} {v:10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
