"""A real full disk (a 1 MiB tmpfs): the recording fails, the gateway is told in time.

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

from recorder.errors import RecorderError, RecordingFailed
from recorder.service import Recorder
from recorder.settings import RecorderSettings


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
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
    """Use up whatever the failed write left free."""
    with open(path, "ab") as f:
        try:
            f.write(b"\0" * (1 << 20))
        except OSError:
            pass


def test_disk_full_mid_session_fires_failure_within_two_seconds(
    small_disk: Path, tmp_path: Path
) -> None:
    settings = RecorderSettings(data_dir=tmp_path / "data", recordings_dir=small_disk)

    async def main() -> None:
        r = Recorder(settings)
        await r.start()
        s = await r.open_session(make_header("full0001"))
        failed = asyncio.Event()
        errors: list[RecorderError] = []

        def on_failure(err: RecorderError) -> None:
            errors.append(err)
            failed.set()

        s.add_failure_callback(on_failure)
        for _ in range(40):  # 2.5 MiB of incompressible output onto a 1 MiB disk
            s.output(os.urandom(64 * 1024))
            await asyncio.sleep(0.005)
            if failed.is_set():
                break
        await asyncio.wait_for(failed.wait(), 2.0)  # the gateway must end it within 2 s
        assert isinstance(errors[0], RecordingFailed)
        assert "disk full" in str(errors[0])
        await s.close()
        # a new session cannot start on the full disk: fail closed
        with pytest.raises(RecordingFailed, match="cannot start recording"):
            _fill(small_disk / "filler")
            await r.open_session(make_header("full0002"))
        row = r.index.get("full0001")
        assert row is not None and row.status == "failed"
        await r.close()

    asyncio.run(main())
