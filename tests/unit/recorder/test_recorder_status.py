"""``bastille status``: what the running recorder reports, with an exit code for monitoring."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from recorder_helpers import make_header

from recorder.service import Recorder
from recorder.settings import RecorderSettings
from recorder.status import STATUS_FILE, RecorderStatus, read_status


def _status(data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "status", "--data", str(data),
                           *extra], capture_output=True, text=True, timeout=60)


def test_no_gateway_is_failing(tmp_path: Path) -> None:
    r = _status(tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "state       FAILING" in r.stdout
    assert "NOT RUNNING" in r.stdout and STATUS_FILE in r.stdout


def test_running_recorder_is_ok_then_paused_sessions_are_failing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = RecorderSettings(data_dir=data, flush_interval=0.05, queue_bytes=256 * 1024)
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    changes: list[str] = []

    async def main() -> None:
        r = Recorder(settings)
        r.add_status_listener(lambda st: changes.append(st.state))
        r.set_status_extra(lambda: {"workers": "2 rdp workers"})
        await r.start()
        s = await r.open_session(make_header("stat0001"))
        s.output(b"hello")
        await asyncio.sleep(0.6)  # the status file is written
        loop = asyncio.get_running_loop()
        results["ok"] = await loop.run_in_executor(None, _status, data)
        results["json"] = await loop.run_in_executor(None, _status, data, "--json")
        # storage refuses data from now on (the writer's sink says "full")
        from recorder.errors import SinkFullError

        stream = s._s.stream
        assert stream is not None
        real_write = stream.write_parts
        gate = threading.Event()

        def full(parts: Any) -> None:
            if not gate.is_set():
                raise SinkFullError("disk full (no space left on device); it waits for space")
            real_write(parts)

        stream.write_parts = full  # type: ignore[method-assign]
        s.output(os.urandom(300_000))
        await asyncio.sleep(6.5)  # paused for more than 5 s: failing
        results["paused"] = await loop.run_in_executor(None, _status, data)
        gate.set()
        await asyncio.sleep(0.5)
        await s.close(exit_status=0)
        await r.close()

    asyncio.run(main())
    ok = results["ok"]
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "state       OK" in ok.stdout and "sessions    1 recording, 0 paused" in ok.stdout
    assert "workers     2 rdp workers" in ok.stdout
    assert f"file:{data / 'recordings'}" in ok.stdout
    body = json.loads(results["json"].stdout)
    assert body["state"] == "ok" and body["sessions"] == 1 and body["pid"] == os.getpid()
    paused = results["paused"]
    assert paused.returncode == 2, paused.stdout
    assert "stat0001  paused for" in paused.stdout and "disk full" in paused.stdout
    assert "failing" in changes
    status, _why = read_status(data)
    assert isinstance(status, RecorderStatus) and status.sessions == 0  # written at close
    assert (data / STATUS_FILE).stat().st_mode & 0o777 == 0o600
