"""The RDP screen pass and the player's desktop: CPU per session-minute, cache size, seeks.

Measures, on an RDP recording:

* the screen pass (``gateway.rdp.screens.draw``, in this process): CPU seconds with and
  without OCR, frames, frame-cache bytes, OCR runs and lines, per minute of session;
* the player's side (``player.desktop``): one frame composed and turned into
  half-blocks for a 160x45 terminal (random seeks, and playing forward), and one
  picture scaled for Kitty/Sixel (10x20-pixel cells).

The recording is the golden one (12 s, tests/golden/rdp), a file given with
``--recording FILE.bstl``, or, with ``--record SECONDS`` (root, Debian's xrdp, xorgxrdp,
xvfb, freerdp2-x11, xdotool, xterm), a session recorded now through the real bastion
(tests/e2e/rdp_rig.py): a shell in an xterm where commands are typed, directory listings
scroll, ``top`` refreshes every second and ``man`` pages are paged through.

With ``--synthetic MINUTES``: only the player's seeks, on a frame cache of that many
minutes of a 1024x768 desktop changing every 0.2 s (no pyrdp needed).

Run: python bench/rdp_screens.py [--record 180] [--recording FILE] [--seeks 200]
     python bench/rdp_screens.py --synthetic 30
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recorder import frames as fc  # noqa: E402
from recorder.reader import Recording  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "rdp" / "desktop-session.bstl"
SCRIPT = [  # (typed line, seconds to wait after it)
    ("clear; ls -la /usr/bin | head -300", 4),
    ("cat /etc/services | head -120", 4),
    ("top -d 1", 20),
    ("q", 2),
    ("man bash", 3),
    (" ", 2), (" ", 2), (" ", 2), (" ", 2),
    ("q", 2),
    ("for i in $(seq 1 40); do echo line $i of the build log; sleep 0.25; done", 12),
    ("uname -a; id; df -h", 4),
]


def record(seconds: float, work: Path) -> Path:
    """A scripted session of about ``seconds`` through a real bastion; its recording."""
    from gateway.auth.passwords import hash_password
    from gateway.rdp.tls import file_fingerprint
    from tests.e2e.rdp_rig import (
        RDP_PASSWORD,
        RDP_USER,
        RdpClient,
        Xrdp,
        Xvfb,
        end_user_sessions,
        scratch_dir,
        user_has_process,
    )
    from tests.e2e.rig import Gateway, ensure_user, free_port, keygen

    ensure_user(RDP_USER, RDP_PASSWORD)
    xrdp, xvfb = Xrdp(scratch_dir("bastille-xrdp-")), Xvfb()
    xrdp.start()
    xvfb.start()
    assert xrdp.cert is not None
    keygen(work / "gw_host_key")
    (work / "pw").write_text(RDP_PASSWORD + "\n")
    ssh_port, rdp_port = free_port(), free_port()
    config = work / "bastille.toml"
    config.write_text(f"""\
[gateway]
listen = "127.0.0.1:{ssh_port}"
host_keys = ["gw_host_key"]
data_dir = "data"
[rdp]
listen = "127.0.0.1:{rdp_port}"
ocr = false
[users.alice]
password_hash = "{hash_password('bench-Pw-1')}"
groups = ["ops"]
[targets.win]
protocol = "rdp"
host = "127.0.0.1"
port = {xrdp.port}
user = "{RDP_USER}"
password_file = "pw"
rdp_cert_sha256 = ["{file_fingerprint(xrdp.cert)}"]
groups = ["ops"]
""")
    gateway = Gateway(config, ssh_port)
    gateway.start()
    client = RdpClient(xvfb.display, [f"/v:127.0.0.1:{rdp_port}", "/u:alice#win",
                                      "/p:bench-Pw-1"]).start(work / "xfreerdp.log")
    try:
        deadline = time.monotonic() + 60
        while not user_has_process(RDP_USER, "bash"):
            assert time.monotonic() < deadline, client.output()
            time.sleep(0.3)
        time.sleep(1.5)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for line, wait in SCRIPT:
                client.type_line(line) if line.strip() else client.xdotool("key", "space")
                time.sleep(wait)
                if time.monotonic() >= end:
                    break
    finally:
        client.stop()
        time.sleep(2)
        gateway.stop()
        xvfb.stop()
        xrdp.stop()
        end_user_sessions(RDP_USER)
    found = sorted((work / "data" / "recordings").rglob("*.bstl"))
    assert found, "no recording"
    return found[-1]


def measure_pass(rec_path: Path, ocr: bool) -> dict[str, float]:
    """Run the pass in a child (a fresh process: imports counted once, like the worker's
    child) and read its figures from the frame cache and the process's CPU time."""
    data = Path(tempfile.mkdtemp(prefix="bench-rdp-"))
    code = f"""
import resource, sys, time
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from recorder.reader import Recording
from gateway.rdp.screens import PassOptions, draw
rec = Recording.from_bytes(Path({str(rec_path)!r}).read_bytes())
r = draw(rec, Path({str(data)!r}), PassOptions(ocr={ocr}, budget=1e9))
u = resource.getrusage(resource.RUSAGE_SELF)
print(r.frames, r.ocr_runs, r.ocr_lines, r.drawn_until, u.ru_utime + u.ru_stime,
      u.ru_maxrss, r.cache.stat().st_size)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "OMP_THREAD_LIMIT": "1"}).stdout
    frames, runs, lines, until, cpu, rss, size = out.split()
    shutil.rmtree(data, ignore_errors=True)
    return {"frames": int(frames), "runs": int(runs), "lines": int(lines),
            "until": float(until), "cpu": float(cpu), "rss_mib": int(rss) / 1024,
            "cache": int(size)}


def measure_player(rec_path: Path, seeks: int) -> dict[str, float]:
    from gateway.rdp.screens import PassOptions, draw
    from player.desktop import render

    data = Path(tempfile.mkdtemp(prefix="bench-rdp-"))
    rec = Recording.from_bytes(rec_path.read_bytes())
    draw(rec, data, PassOptions(ocr=False, budget=1e9))
    cache = fc.FrameCache.open(fc.cache_path(data, rec.session_id))
    rnd = random.Random(1)
    times = []
    for _ in range(seeks):
        t = rnd.uniform(0, rec.duration)
        t0 = time.perf_counter()
        frame = cache.frame_at(t)
        if frame is not None:
            render(frame, t, (160, 45))
        times.append(time.perf_counter() - t0)
    play = []
    t = 0.0
    while t < rec.duration:  # 1x playback: a frame every 0.1 s
        t0 = time.perf_counter()
        frame = cache.frame_at(t)
        if frame is not None:
            render(frame, t, (160, 45))
        play.append(time.perf_counter() - t0)
        t += 0.1
    frame = cache.frame_at(rec.duration)
    t0 = time.perf_counter()
    if frame is not None:
        render(frame, rec.duration, (160, 45), cell_pixels=(10, 20))
    picture = time.perf_counter() - t0
    cache.close()
    shutil.rmtree(data, ignore_errors=True)
    q = statistics.quantiles(times, n=100)
    return {"seek_p50_ms": q[49] * 1000, "seek_p99_ms": q[98] * 1000,
            "seek_max_ms": max(times) * 1000, "play_p50_ms": statistics.median(play) * 1000,
            "picture_ms": picture * 1000}


def synthetic(minutes: float, seeks: int) -> None:
    """A 1024x768 desktop changing every 0.2 s for ``minutes`` (a window of text being
    typed into, a clock, a full redraw every 2 minutes): the player's seeks on it."""
    from player.desktop import render

    data = Path(tempfile.mkdtemp(prefix="bench-rdp-syn-"))
    rnd = random.Random(2)
    w, h = 1024, 768
    writer = fc.FrameWriter(fc.cache_path(data, "syn"), session_id="syn", source_size=1)
    t, last_key = 0.0, -30.0
    while t < minutes * 60:
        if t - last_key >= 30 or writer.bytes_since_key > 4 * writer.last_key_bytes or \
                (int(t) % 120 == 0 and t == int(t)):
            shade = rnd.randrange(256)
            writer.key(t, w, h, bytes([shade, 80, 160]) * (w * h))
            last_key = t
        else:
            x, y = rnd.randrange(0, w - 64), rnd.randrange(0, h - 16)
            writer.rect(t, x, y, 64, 16, os.urandom(64 * 16 * 3))
        t = round(t + 0.2, 1)
    path = writer.finish(until=t, complete=True)
    cache = fc.FrameCache.open(path)
    times = []
    for _ in range(seeks):
        at = rnd.uniform(0, t)
        t0 = time.perf_counter()
        frame = cache.frame_at(at)
        if frame is not None:
            render(frame, at, (160, 45))
        times.append(time.perf_counter() - t0)
    q = statistics.quantiles(times, n=100)
    print(f"# synthetic {minutes:g} min, {len(cache.records)} samples, "
          f"{path.stat().st_size / 2**20:.1f} MiB cache")
    print(f"seek+render      p50 {q[49] * 1000:.1f} ms  p99 {q[98] * 1000:.1f} ms  "
          f"max {max(times) * 1000:.1f} ms")
    cache.close()
    shutil.rmtree(data, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recording", type=Path, help="an RDP recording (.bstl)")
    ap.add_argument("--record", type=float, help="record a scripted session of this many "
                    "seconds through the real rig first (root)")
    ap.add_argument("--seeks", type=int, default=200)
    ap.add_argument("--keep", type=Path, help="with --record: copy the recording here")
    ap.add_argument("--synthetic", type=float, metavar="MINUTES",
                    help="only the player's seeks on a synthetic session this long")
    args = ap.parse_args()
    if args.synthetic:
        synthetic(args.synthetic, args.seeks)
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench-rdp-rig-"))
    os.chmod(work, 0o755)
    try:
        rec_path = args.recording or (record(args.record, work) if args.record else GOLDEN)
        if args.record and args.keep:
            shutil.copy(rec_path, args.keep)
        rec = Recording.from_bytes(rec_path.read_bytes())
        minutes = max(rec.duration, 1e-6) / 60
        print(f"# {rec_path.name}: {rec.duration:.1f} s, {rec_path.stat().st_size} bytes "
              f"recorded")
        print("# pass         frames  ocr_runs  lines  cpu_s  cpu_s/min  cache_KiB  "
              "KiB/min  max_rss_MiB")
        for label, ocr in (("draw+ocr", True), ("draw-only", False)):
            m = measure_pass(rec_path, ocr)
            print(f"{label:12} {m['frames']:7d} {m['runs']:9d} {m['lines']:6d} "
                  f"{m['cpu']:6.2f} {m['cpu'] / minutes:10.2f} {m['cache'] / 1024:10.1f} "
                  f"{m['cache'] / 1024 / minutes:8.1f} {m['rss_mib']:12.0f}")
        p = measure_player(rec_path, args.seeks)
        print("# player (160x45)  seek_p50_ms  seek_p99_ms  seek_max_ms  play_p50_ms  "
              "picture_ms")
        print(f"halfblock         {p['seek_p50_ms']:11.1f} {p['seek_p99_ms']:12.1f} "
              f"{p['seek_max_ms']:12.1f} {p['play_p50_ms']:12.1f} {p['picture_ms']:11.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
