"""A real full disk (a small tmpfs): sessions pause, and resume when space returns.

Back-pressure before failure (issue 16): a full disk, or one at its low-water mark, is
not a storage failure but "not now". Under ``on_failure = "terminate"`` the session is
paused (``congested``, state ``paused``) and every byte it produced is recorded once
space returns; under ``"continue"`` a session paused longer than ``max_pause`` goes on
unrecorded and the recording notes a ``gap`` with the bytes it missed. A session that
cannot even store its header is refused and leaves no empty ``.part`` file.

Needs root (mount); skipped elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from recorder_helpers import make_header

from recorder import events as ev
from recorder.errors import RecorderError, RecordingFailed
from recorder.reader import Recording
from recorder.service import Recorder, SessionRecording
from recorder.settings import RecorderSettings
from recorder.sinks.file import FileSink
from recorder.verify import verify_recording

MIB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
        capture_output=True,
        check=False,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(path: Path) -> None:
    """Use up every byte of the filesystem."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)


def _ballast(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        f.write(b"\0" * size)


async def _produce(s: SessionRecording, blocks: list[bytes], paused: list[float]) -> None:
    """Feed output like the relay: pause while congested (counting the pauses)."""
    for block in blocks:
        s.output(block)
        if s.congested:
            t0 = asyncio.get_running_loop().time()
            await s.wait_writable()
            paused.append(asyncio.get_running_loop().time() - t0)


def test_full_disk_pauses_the_session_and_resumes_when_space_returns(
    small_disk: Path, tmp_path: Path
) -> None:
    """terminate mode: the disk fills mid-session; nothing fails, nothing is lost."""
    settings = RecorderSettings(
        data_dir=tmp_path / "data", recordings_dir=small_disk, min_free_bytes=0,
        queue_bytes=256 * 1024, flush_interval=0.05,
    )
    # 1.25 MiB incompressible: it does not fit beside the 1 MiB ballast on the 2 MiB disk,
    # it does once the ballast is gone
    blocks = [os.urandom(32 * 1024) for _ in range(40)]

    async def main() -> str:
        r = Recorder(settings)
        await r.start()
        _ballast(small_disk / "ballast", 1 * MIB)
        s = await r.open_session(make_header("full0001"))
        failures: list[RecorderError] = []
        states: list[tuple[str, str]] = []
        s.add_failure_callback(failures.append)
        s.add_state_callback(lambda st, why: states.append((st, why)))
        paused: list[float] = []
        producer = asyncio.ensure_future(_produce(s, blocks, paused))
        for _ in range(200):  # the disk fills: the recording is paused, not failed
            await asyncio.sleep(0.02)
            if s.paused is not None:
                break
        assert s.paused is not None, "the recording was never paused"
        assert "disk full" in s.paused[1]
        await asyncio.sleep(0.5)
        assert not producer.done() and not failures and s.paused is not None
        st = await asyncio.get_running_loop().run_in_executor(None, r.status)
        assert st.paused and st.paused[0].session_id == "full0001"
        (small_disk / "ballast").unlink()  # space returns
        await asyncio.wait_for(producer, 20)
        assert not failures
        assert [x[0] for x in states][:2] == ["paused", "resumed"]
        await s.close(exit_status=0)
        row = r.index.get("full0001")
        assert row is not None and row.status == "ended"
        await r.close()
        return s.name

    name = asyncio.run(main())
    sink = FileSink(small_disk)
    rec = Recording.from_sink(sink, name)
    assert rec.status == "ended"
    got = b"".join(e.data for e in rec.events() if e.type == ev.OUTPUT)
    assert got == b"".join(blocks)
    assert verify_recording(sink, name).ok


def test_low_water_mark_pauses_before_the_disk_is_full(small_disk: Path, tmp_path: Path) -> None:
    """min_free_bytes: the session pauses while 1 MiB is still free."""
    settings = RecorderSettings(
        data_dir=tmp_path / "data", recordings_dir=small_disk, min_free_bytes=1 * MIB,
        queue_bytes=256 * 1024, flush_interval=0.05,
    )
    blocks = [os.urandom(32 * 1024) for _ in range(48)]

    async def main() -> None:
        r = Recorder(settings)
        await r.start()
        s = await r.open_session(make_header("lowwater1"))
        paused: list[float] = []
        producer = asyncio.ensure_future(_produce(s, blocks, paused))
        for _ in range(200):
            await asyncio.sleep(0.02)
            if s.paused is not None:
                break
        assert s.paused is not None and "low-water mark" in s.paused[1]
        free = os.statvfs(small_disk)
        assert free.f_bavail * free.f_frsize >= 1 * MIB - 64 * 1024
        producer.cancel()
        await r.close(timeout=1)

    asyncio.run(main())


def test_continue_mode_goes_on_and_records_a_gap(small_disk: Path, tmp_path: Path) -> None:
    """continue mode: paused longer than max_pause, the session goes on unrecorded; when
    space returns the recording resumes, with a gap event counting what it missed."""
    settings = RecorderSettings(
        data_dir=tmp_path / "data", recordings_dir=small_disk, min_free_bytes=0,
        queue_bytes=256 * 1024, flush_interval=0.05, on_failure="continue", max_pause=0.3,
    )
    blocks = [os.urandom(32 * 1024) for _ in range(64)]

    async def main() -> str:
        r = Recorder(settings)
        await r.start()
        _ballast(small_disk / "ballast", 1 * MIB)
        s = await r.open_session(make_header("cont0001"))
        states: list[str] = []
        s.add_state_callback(lambda st, why: states.append(st))
        failures: list[RecorderError] = []
        s.add_failure_callback(failures.append)
        paused: list[float] = []
        await asyncio.wait_for(_produce(s, blocks, paused), 20)  # never stuck for long
        assert "dropping" in states and not failures
        (small_disk / "ballast").unlink()
        for _ in range(200):
            await asyncio.sleep(0.02)
            if states[-1] == "resumed":
                break
        s.output(b"after the gap\n")
        await s.close(exit_status=0)
        await r.close()
        return s.name

    name = asyncio.run(main())
    rec = Recording.from_sink(FileSink(small_disk), name)
    assert rec.status == "ended"
    gaps = [e.fields() for e in rec.events() if e.type == ev.GAP]
    assert len(gaps) == 1 and gaps[0]["dropped_bytes"] > 0
    out = b"".join(e.data for e in rec.events() if e.type == ev.OUTPUT)
    assert out.endswith(b"after the gap\n")
    assert len(out) + gaps[0]["dropped_bytes"] == 64 * 32 * 1024 + len(b"after the gap\n")
    assert rec.trailer is not None and rec.trailer["dropped_bytes"] == gaps[0]["dropped_bytes"]


def test_a_session_that_cannot_store_its_header_is_refused_without_leftovers(
    small_disk: Path, tmp_path: Path
) -> None:
    """Item 10 of issue 16: a refused session left a 0-byte .bstl.part."""
    settings = RecorderSettings(data_dir=tmp_path / "data", recordings_dir=small_disk,
                                min_free_bytes=0)

    async def main() -> str:
        r = Recorder(settings)
        await r.start()
        first = await r.open_session(make_header("ok000001"))  # creates the day's directory
        await first.close(exit_status=0)
        _fill(small_disk / "filler")
        with pytest.raises(RecordingFailed, match="cannot start recording"):
            await r.open_session(make_header("full0002"))
        await r.close()
        return first.name

    name = asyncio.run(main())
    left = sorted(p.relative_to(small_disk).as_posix() for p in small_disk.rglob("*")
                  if p.is_file())
    assert left == sorted([name, "filler"]), f"a refused session left {left}"
