"""The RDP screen pass (gateway.rdp.screens, desktop, ocr, passes) on a real recording.

``tests/golden/rdp/desktop-session.bstl`` was recorded by the RDP rig (xfreerdp ->
bastille -> xrdp, tests/e2e/test_rdp_screens.py): alice types ``clear; cat FILE`` (a
paragraph appears at ~3.4 s), then ``sleep 2; echo zanzi""barptqdzs`` (Enter at 7.30 s;
the word appears at ~9.3 s). Drawing needs pyrdp and the rdp-video extra, reading needs
Tesseract and tesserocr: without them these tests are skipped (scripts/test installs
them).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from recorder import frames as fc
from recorder.index import Index
from recorder.settings import RecorderSettings

GOLDEN = Path(__file__).parents[1] / "golden" / "rdp" / "desktop-session.bstl"
SESSION = "01a2381dc3716d746179113ec3d4"
WORD = "zanzibarptqdzs"
WORD_AT = 7.301145 + 2.0  # the Enter of `sleep 2; echo ...` + 2 s


def _need(*modules: str) -> None:
    for name in modules:
        pytest.importorskip(name, reason=f"{name} is not installed (scripts/test installs it)")


def _have_ocr() -> None:
    _need("pyrdp", "PySide6", "qimage2ndarray", "tesserocr")
    from gateway.rdp.ocr import tessdata_dir

    if tessdata_dir() is None:
        pytest.skip("Tesseract's English data is not installed (tesseract-ocr-eng)")


def golden_data(tmp_path: Path) -> RecorderSettings:
    """A data directory holding the golden recording, indexed."""
    from recorder.postprocess import reindex
    from recorder.service import open_sink

    data = tmp_path / "data"
    day = data / "recordings" / "2026" / "12" / "02"
    day.mkdir(parents=True)
    shutil.copy(GOLDEN, day / f"{SESSION}.bstl")
    settings = RecorderSettings(data_dir=data)
    sink = open_sink(settings)
    index = Index(data / "index.sqlite3")
    try:
        count, problems = reindex(settings, sink, index, screen=False)
    finally:
        index.close()
        sink.close()
    assert count == 1, problems
    return settings


class Audits(list[tuple[str, Any]]):
    def __call__(self, user: str, result: Any) -> None:
        self.append((user, result))


def test_pass_draws_frames_reads_text_and_dates_it(tmp_path: Path) -> None:
    _have_ocr()
    from gateway.rdp.screens import PassOptions, run_pass

    settings = golden_data(tmp_path)
    audits = Audits()
    result = run_pass(settings, SESSION, PassOptions(), audits)
    assert result.outcome == "ok", result.reasons
    assert audits and audits[0][0] == "alice" and audits[0][1].detail()["frames"] > 5
    # the frame cache: private, complete, the desktop of the session
    path = fc.cache_path(settings.data_dir, SESSION)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cache = fc.FrameCache.open(path)
    try:
        assert cache.complete and cache.size == (1024, 768)
        first = cache.frame_at(cache.times[0])  # before any bitmap: black, never the
        assert first is not None and set(first.rgb) == {0}  # memory Qt left in the image
        before, after = cache.frame_at(WORD_AT - 1.0), cache.frame_at(WORD_AT + 0.5)
        assert before is not None and after is not None and before.rgb != after.rgb
        assert any(line.text == WORD for line in cache.ocr)
    finally:
        cache.close()
    # the screen text is in the index, dated when it appeared
    index = Index(settings.data_dir / "index.sqlite3")
    try:
        assert [r.id for r in index.list_sessions(text=WORD)] == [SESSION]
        hits = index.matches(SESSION, WORD)
        assert [k for _, k, _ in hits] == ["ocr"]
        assert abs(hits[0][0] - WORD_AT) < 0.5, hits
        paragraph = index.matches(SESSION, "quarterly backup report")
        assert paragraph and paragraph[0][1] == "ocr" and 3.3 < paragraph[0][0] < 4.0
    finally:
        index.close()


def test_drawing_keeps_none_alive(tmp_path: Path) -> None:
    """pyrdp's bitmap decompressor loses a reference to None per bitmap: drawing the
    same session again and again must not drain None's reference count (on Python 3.11
    the process dies when it reaches zero; a long busy session got there)."""
    _need("pyrdp", "PySide6", "qimage2ndarray")
    import gc

    from gateway.rdp.screens import PassOptions, draw
    from recorder.reader import Recording

    rec = Recording.from_bytes(GOLDEN.read_bytes())
    draw(rec, tmp_path, PassOptions(ocr=False))
    gc.collect()
    before = sys.getrefcount(None)
    for _ in range(3):
        draw(rec, tmp_path, PassOptions(ocr=False))
    gc.collect()
    assert sys.getrefcount(None) - before > -20


def test_ocr_off_draws_frames_and_audits_the_skip(tmp_path: Path) -> None:
    _need("pyrdp", "PySide6", "qimage2ndarray")
    from gateway.rdp.screens import PassOptions, run_pass

    settings = golden_data(tmp_path)
    audits = Audits()
    result = run_pass(settings, SESSION, PassOptions(ocr=False), audits)
    assert result.outcome == "partial"
    assert audits[0][1].detail()["reason"] == "screen text not read: [rdp] ocr = false"
    assert fc.cache_path(settings.data_dir, SESSION).exists()
    index = Index(settings.data_dir / "index.sqlite3")
    try:
        assert index.list_sessions(text=WORD) == []
    finally:
        index.close()


def test_cpu_budget_stops_the_pass_and_is_audited(tmp_path: Path) -> None:
    _have_ocr()
    from gateway.rdp.screens import PassOptions, run_pass

    settings = golden_data(tmp_path)
    audits = Audits()
    result = run_pass(settings, SESSION, PassOptions(budget=0.0), audits)
    assert result.outcome == "partial"
    assert "CPU budget of 0 s used up" in audits[0][1].detail()["reason"]
    cache = fc.FrameCache.open(fc.cache_path(settings.data_dir, SESSION))
    try:
        assert not cache.complete and cache.until < 11.0
    finally:
        cache.close()


def test_reindex_then_restore_the_screen_text(tmp_path: Path) -> None:
    _have_ocr()
    from gateway.rdp.screens import PassOptions, restore_index, run_pass
    from recorder.postprocess import reindex
    from recorder.service import open_sink

    settings = golden_data(tmp_path)
    run_pass(settings, SESSION, PassOptions())
    sink, index = open_sink(settings), Index(settings.data_dir / "index.sqlite3")
    try:
        reindex(settings, sink, index, screen=False)  # the index is rebuilt: no OCR text
        assert index.list_sessions(text=WORD) == []
    finally:
        index.close()
        sink.close()
    assert restore_index(settings, SESSION) >= 5
    index = Index(settings.data_dir / "index.sqlite3")
    try:
        assert [r.id for r in index.list_sessions(text=WORD)] == [SESSION]
    finally:
        index.close()


def test_command_line_pass_is_niced_and_prints_a_summary(tmp_path: Path) -> None:
    _need("pyrdp", "PySide6", "qimage2ndarray")
    import subprocess

    settings = golden_data(tmp_path)
    done = subprocess.run([sys.executable, "-m", "gateway.rdp.screens", "--data",
                           str(settings.data_dir), "--no-ocr", SESSION[:10]],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{SESSION}: partial: ") and "frames up to" in done.stdout
    missing = subprocess.run([sys.executable, "-m", "gateway.rdp.screens", "--data",
                              str(settings.data_dir), "nosuch"], capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 1 and "no session matches 'nosuch'" in missing.stderr


def test_lower_priority_nices_and_limits_cpu() -> None:
    import resource
    import subprocess

    code = ("import os, resource; from gateway.rdp.screens import lower_priority; "
            "before = os.nice(0); lower_priority(5.0); "
            "print(os.nice(0) - before, resource.getrlimit(resource.RLIMIT_CPU)[0], "
            "os.environ['OMP_THREAD_LIMIT'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    niced, limit, threads = done.stdout.split()
    assert int(niced) == 10 and int(limit) == 35 and threads == "1"
    assert resource.RLIM_INFINITY != 35


# ---------------------------------------------------------------- the OCR planner


class FakeEngine:
    """"Reads" rectangles of ink: each run of rows with non-black pixels is a line whose
    text is its grey level (the real engine is tested on the golden recording above)."""

    def __init__(self) -> None:
        self.calls = 0

    def read(self, image: Any) -> list[Any]:
        import numpy as np

        from gateway.rdp.ocr import ReadLine

        self.calls += 1
        a = np.asarray(image.convert("L"))
        rows = np.flatnonzero(a.any(axis=1))
        out = []
        start = None
        for i, r in enumerate(rows):
            start = r if start is None else start
            if i + 1 == len(rows) or rows[i + 1] != r + 1:
                band = a[start:r + 1]
                cols = np.flatnonzero(band.any(axis=0))
                value = int(np.bincount(band[band > 0]).argmax())  # not the resampled edges
                out.append(ReadLine(f"ink {value}", 90.0, (int(cols[0]), int(start),
                                                           int(cols[-1] - cols[0] + 1),
                                                           int(r - start + 1))))
                start = None
        return out

    def close(self) -> None:
        pass


class Screen:
    """A 64x64 desktop drawn rectangle by rectangle, sampled like gateway.rdp.desktop."""

    def __init__(self) -> None:
        import numpy as np

        self.np = np
        self.rgb = np.zeros((64, 64, 3), dtype=np.uint8)

    def sample(self, t: float, box: tuple[int, int, int, int] | None = None,
               value: int = 0) -> Any:
        from gateway.rdp.desktop import TILE, Sample

        np = self.np
        tiles = np.zeros((64 // TILE, 64 // TILE), dtype=bool)
        if box is None:  # the first sample: a key
            tiles[:] = True
            return Sample(t, self.rgb.copy(), tiles, (0, 0, 64, 64), True, None)
        x, y, w, h = box
        self.rgb[y:y + h, x:x + w] = value
        tiles[y // TILE:(y + h - 1) // TILE + 1, x // TILE:(x + w - 1) // TILE + 1] = True
        return Sample(t, self.rgb.copy(), tiles, box, False, np.ones((h, w), dtype=bool))


def test_planner_is_bounded_per_minute() -> None:
    _need("numpy", "PIL")
    from PIL import Image

    from gateway.rdp.ocr import OcrPlanner

    screen = Screen()
    planner = OcrPlanner(FakeEngine(), 6, Image.fromarray)
    planner.feed(screen.sample(0.0))
    for i in range(1, 600):  # a change every second for ten minutes, each settling
        planner.feed(screen.sample(float(i), (0, 16, 8, 8), 1 + i % 250))
    planner.finish()
    assert planner.runs <= 6 + 6 * 10 + 1  # the bucket, ten minutes of refill, the end
    assert planner.runs >= 6 * 10 - 1
    assert planner.skipped > 400


def test_planner_dates_a_line_when_its_pixels_last_changed() -> None:
    _need("numpy", "PIL")
    from PIL import Image

    from gateway.rdp.ocr import OcrPlanner

    screen = Screen()
    planner = OcrPlanner(FakeEngine(), 60, Image.fromarray)
    planner.feed(screen.sample(0.0))
    planner.feed(screen.sample(2.0, (0, 40, 30, 8), 100))  # line A appears at 2.0
    planner.feed(screen.sample(2.2, (40, 0, 8, 8), 150))  # B elsewhere at 2.2
    planner.feed(screen.sample(5.0, (40, 20, 8, 8), 200))  # C at 5.0: A and B are read
    lines = planner.finish()  # ... and C at the end
    assert {line.text: line.time for line in lines} == \
        {"ink 100": 2.0, "ink 150": 2.2, "ink 200": 5.0}
    boxes = {line.text: line.box for line in lines}  # in desktop pixels (give or take one:
    for text, want in (("ink 100", (0, 40, 30, 8)), ("ink 200", (40, 20, 8, 8))):  # resampled)
        assert all(abs(a - b) <= 1 for a, b in zip(boxes[text], want, strict=True)), boxes


def test_changes_are_stored_as_one_rectangle_per_band() -> None:
    """A clock in a corner and a line typed far below it: two small rectangles."""
    _need("numpy")
    import numpy as np

    from gateway.rdp.desktop import Sample, rects

    mask = np.zeros((100, 200), dtype=bool)  # the changes' bounding box at (10, 20)
    mask[0:8, 150:200] = True  # the clock: top right
    mask[90:100, 0:30] = True  # the typed line: bottom left
    s = Sample(1.0, None, None, (10, 20, 200, 100), False, mask)
    assert rects(s) == [(160, 20, 50, 8), (10, 110, 30, 10)]
    key = Sample(0.0, None, None, (0, 0, 64, 48), True, None)
    assert rects(key) == [(0, 0, 64, 48)]


def test_bands_cover_changed_tile_rows() -> None:
    _need("numpy")
    import numpy as np

    from gateway.rdp.ocr import MARGIN, bands

    tiles = np.zeros((6, 4), dtype=bool)
    tiles[1, 2] = tiles[2, 0] = tiles[5, 3] = True
    assert list(bands(tiles, 90)) == [(16 - MARGIN, 48 + MARGIN), (80 - MARGIN, 90)]


def test_clean_keeps_text_plain() -> None:
    from gateway.rdp.ocr import clean

    assert clean("  a\x1b[31m  b\u200e\tc \n") == "a [31m b c"
    assert clean("ﬁle") == "file"


# ---------------------------------------------------------------- the worker's queue


def test_queue_full_and_stop_are_audited() -> None:
    from gateway.audit import AuditEvent
    from gateway.rdp import passes

    async def run() -> list[AuditEvent]:
        events: list[AuditEvent] = []
        sp = passes.ScreenPasses(Path("/nonexistent.toml"), events.append, 10.0)
        for i in range(passes.QUEUE_CAP + 2):
            sp.submit(f"s{i}", "alice", "win1")
        await sp.stop()
        return events

    events = asyncio.run(run())
    reasons = [e.detail["reason"] for e in events]
    assert sum("already waiting" in r for r in reasons) == 2
    assert sum("stopped before the screen pass" in r for r in reasons) == passes.QUEUE_CAP
    assert all(e.outcome == "skipped" and e.detail["event"] == "rdp screen pass"
               for e in events)
    assert json.loads(events[0].to_json())["session"] == f"s{passes.QUEUE_CAP}"


def test_pass_of_an_unknown_session_is_audited_by_the_child(tmp_path: Path) -> None:
    """The worker's child reports what it could not do in the audit log itself."""
    from gateway.rdp import passes

    config = _config(tmp_path)

    async def run() -> None:
        sp = passes.ScreenPasses(config, lambda e: None, 10.0)
        sp.start()
        sp.submit("nosuchsession", "alice", "win1")
        for _ in range(600):
            await asyncio.sleep(0.05)
            if sp._queue.empty() and sp._current is None:
                break
        await sp.stop()

    asyncio.run(run())
    lines = [json.loads(x) for x in (tmp_path / "data" / "audit.jsonl").read_text().splitlines()]
    ours = [x for x in lines if x.get("detail", {}).get("event") == "rdp screen pass"]
    assert ours and ours[-1]["outcome"] == "skipped"
    assert "no session matches 'nosuchsession'" in ours[-1]["detail"]["reason"]


def _config(tmp_path: Path) -> Path:
    from gateway.rdp.tls import file_fingerprint  # noqa: F401 - the rdp package imports

    key = tmp_path / "host_key"
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    config = tmp_path / "bastille.toml"
    config.write_text(f"""\
[gateway]
listen = "127.0.0.1:2299"
host_keys = ["{key}"]
data_dir = "data"

[rdp]
listen = "127.0.0.1:3399"
ocr_budget = "30s"
""")
    (tmp_path / "data").mkdir(mode=0o700)
    Index(tmp_path / "data" / "index.sqlite3").close()
    os.chmod(tmp_path / "data", 0o700)
    return config
