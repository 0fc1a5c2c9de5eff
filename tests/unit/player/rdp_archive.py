"""An RDP session for the player tests, written by the real recorder, with its frames.

``rdp-grace-0007`` grace@win1 (protocol rdp, kind desktop), 40 s: the logon (0.1 s), the
drive channel denied by the target's policy (0.6 s), typed ``notepad secrets.txt``
(4 s), a clipboard download (8 s), typed ``shutdown /s`` (20 s). Its frame cache (what
the gateway's screen pass writes; built here with :mod:`recorder.frames` directly, no
pyrdp needed) has a 320x200 desktop:

* 1 s: key, dark blue;      2 s: a white window (20,20)-(220,140);
* 9 s: a red box (30,30)-(70,50) with the screen text "TOPSECRETWORD quarterly";
* 15 s: a green box (250,150)-(290,180);   30 s: key, grey.

The screen text is in the index (kind ``ocr``, at 9 s) and in the cache.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from recorder import frames as fc
from recorder.index import Index
from recorder.service import Recorder, SessionHeader
from recorder.settings import RecorderSettings
from recorder.signing import generate

START = 1_763_900_000.0 + 20_000
SESSION = "rdp-grace-0007"
SIZE = (320, 200)
BLUE, WHITE, RED, GREEN, GREY = (0, 0, 128), (255, 255, 255), (215, 0, 0), (0, 175, 0), \
    (90, 90, 90)
SCREEN_TEXT = "TOPSECRETWORD quarterly"
TIMES = [1.0, 2.0, 9.0, 15.0, 30.0]


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def solid(w: int, h: int, rgb: tuple[int, int, int]) -> bytes:
    return bytes(rgb) * (w * h)


def write_frames(data: Path, source_size: int) -> Path:
    w = fc.FrameWriter(fc.cache_path(data, SESSION), session_id=SESSION,
                       source_size=source_size)
    w.key(1.0, *SIZE, solid(*SIZE, BLUE))
    w.rect(2.0, 20, 20, 200, 120, solid(200, 120, WHITE))
    w.rect(9.0, 30, 30, 40, 20, solid(40, 20, RED))
    w.rect(15.0, 250, 150, 40, 30, solid(40, 30, GREEN))
    w.key(30.0, *SIZE, solid(*SIZE, GREY))
    return w.finish(until=40.0, complete=True,
                    ocr=[fc.OcrLine(9.0, SCREEN_TEXT, (30, 30, 40, 20))])


async def _record(data: Path) -> None:
    key = data / "recording.key"
    generate(key)
    clock = Clock()
    settings = RecorderSettings(data_dir=data, signing_key=key, keyframe_interval=5.0)
    r = Recorder(settings, clock=clock)
    await r.start()
    s = await r.open_session(SessionHeader(
        session_id=SESSION, user="grace", target="win1", protocol="rdp", kind="desktop",
        client_addr="203.0.113.9:50000", start_time=clock.now, gateway_version="0.1.0"))
    clock.now += 0.1
    s.event("rdp.logon", {"user": "grace", "method": "password", "route": "cookie",
                          "target_user": "Administrator", "client": "203.0.113.9:50000"})
    s.rdp(b"\x00" * 32)  # (not a real replay stream: the frames come from the cache)
    clock.now = START + 0.6
    s.policy(command="rdp-channel rdpdr", action="deny", rule="target policy",
             reason="rdpdr is not allowed")
    clock.now = START + 4.0
    s.command("notepad secrets.txt", source="rdp-keys")
    s.event("rdp.keys", {"text": "notepad secrets.txt"})
    clock.now = START + 8.0
    s.event("rdp.clipboard", {"direction": "download", "text": "hunter2-copied"})
    s.command("hunter2-copied", source="rdp-clipboard-download")
    clock.now = START + 20.0
    s.command("shutdown /s", source="rdp-keys")
    clock.now = START + 40.0
    await s.close(exit_status=None)
    await r.close()


def make_rdp_archive(data: Path) -> Path:
    """Record the session, write its frames, index its screen text; returns ``data``."""
    data.mkdir(parents=True, exist_ok=True)
    asyncio.run(_record(data))
    index = Index(data / "index.sqlite3")
    try:
        row = index.get(SESSION)
        assert row is not None
        size = (data / "recordings" / row.name).stat().st_size
        index.set_ocr_lines(SESSION, [(9.0, SCREEN_TEXT)])
    finally:
        index.close()
    write_frames(data, size)
    return data
