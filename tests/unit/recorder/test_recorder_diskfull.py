"""A real full disk (a 1 MiB tmpfs): the recording fails, the gateway is told in time.

Needs root (mount); skipped elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
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
        capture_output=True, check=False,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


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
        s.add_failure_callback(lambda e: (errors.append(e), failed.set()))
        t0 = time.monotonic()
        for _ in range(40):  # 2.5 MiB of incompressible output onto a 1 MiB disk
            s.output(os.urandom(64 * 1024))
            await asyncio.sleep(0.005)
            if failed.is_set():
                break
        await asyncio.wait_for(failed.wait(), 2.0)
        assert time.monotonic() - t0 < 2.0
        assert isinstance(errors[0], RecordingFailed)
        assert "disk full" in str(errors[0])
        await s.close()
        # a new session cannot start on the full disk: fail closed
        with pytest.raises(RecordingFailed, match="cannot start recording"):
            big = small_disk / "filler"
            with open(big, "ab") as f:  # use up whatever the failed write left free
                try:
                    f.write(b"\0" * (1 << 20))
                except OSError:
                    pass
            await r.open_session(make_header("full0002"))
        row = r.index.get("full0001")
        assert row is not None and row.status == "failed"
        await r.close()

    asyncio.run(main())
