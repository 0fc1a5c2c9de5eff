"""A 1 GiB transfer through the recorder comes back byte-exact (slow)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest
from recorder_helpers import make_header

from recorder.reader import Recording
from recorder.service import Recorder
from recorder.settings import RecorderSettings
from recorder.sinks.file import FileSink


@pytest.mark.slow
def test_one_gib_of_binary_output_is_byte_exact(tmp_path: Path) -> None:
    block = os.urandom(1 << 20)
    want = hashlib.sha256()
    settings = RecorderSettings(data_dir=tmp_path / "data")

    async def main() -> str:
        r = Recorder(settings)
        await r.start()
        s = await r.open_session(make_header("bulk1gib", kind="exec", command="cat big"))
        for i in range(1024):
            piece = i.to_bytes(8, "little") + block[8:]
            want.update(piece)
            for off in range(0, len(piece), 32 * 1024):  # relay-sized writes
                s.output(piece[off : off + 32 * 1024])
            if s.congested:
                await s.wait_writable()
        await s.close(exit_status=0)
        await r.close()
        assert s.failed is None
        return s.name

    name = asyncio.run(main())
    rec = Recording.from_sink(FileSink(settings.file_dir), name)
    got = hashlib.sha256()
    total = 0
    for data in rec.output():
        got.update(data)
        total += len(data)
    assert total == 1 << 30
    assert got.hexdigest() == want.hexdigest()
    assert rec.trailer is not None and rec.trailer["output_sha256"] == want.hexdigest()
