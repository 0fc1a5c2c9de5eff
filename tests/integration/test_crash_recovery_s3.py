"""Crash recovery of spooled recordings against a real moto_server: an entry whose
process was killed (kill -9) is given a signed recovery trailer before it is finished
and uploaded, at start (``recover()``) and while the recovering sink runs (adoption of a
dead RDP worker's entries). The object in the bucket verifies as "recovered"."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from recorder import events as ev
from recorder.format import v1
from recorder.recovery import Finisher, Recovered
from recorder.signing import Signer, generate, load_public_key, load_signer
from recorder.sinks import S3Sink
from recorder.verify import verify_source
from tests.unit.recorder.recorder_helpers import build_recording, make_header

pytestmark = pytest.mark.s3

MIB = 1024 * 1024
TORN = b"\x89BCK\x44torn"

CHILD = r"""
import dataclasses, json, sys, time
from pathlib import Path
from recorder.settings import S3Settings
from recorder.sinks.s3 import S3Sink
cfg = json.loads(sys.stdin.read())
sink = S3Sink(S3Settings(**cfg["settings"]), Path(cfg["spool"]))
data = Path(cfg["file"]).read_bytes()
st = sink.create(cfg["name"])
for i in range(0, len(data), 65536):
    st.write(data[i:i + 65536])
st.flush()
while sink.backlog_bytes > len(data) - cfg["wait_uploaded"]:
    time.sleep(0.01)
print("READY", flush=True)
time.sleep(120)
"""


def recording_bytes(sid: str, signer: Signer, size: int) -> tuple[bytes, str]:
    """A recording (never closed) holding about ``size`` bytes of incompressible output."""
    import random

    rnd = random.Random(5)
    batches = [[(0.1 * i, ev.OUTPUT, rnd.randbytes(256 * 1024))]
               for i in range(size // (256 * 1024))]
    return build_recording(batches, header=make_header(sid), close=False, signer=signer)


def crash_child(settings: Any, spool: Path, name: str, blob: bytes, tmp: Path,
                wait_uploaded: int) -> None:
    """Write ``blob`` through an S3Sink in a child process, flush, then kill -9 it."""
    import dataclasses

    f = tmp / f"blob-{time.monotonic_ns()}"
    f.write_bytes(blob)
    cfg = {"settings": {x.name: getattr(settings, x.name) for x in dataclasses.fields(settings)},
           "spool": str(spool), "file": str(f), "name": name, "wait_uploaded": wait_uploaded}
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(cfg))
    proc.stdin.close()
    try:
        assert proc.stdout.readline().strip() == "READY"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()


def stored(client: Any, bucket: str, name: str) -> bytes:
    return bytes(client.get_object(Bucket=bucket, Key=f"rec/{name}")["Body"].read())


def test_a_killed_process_entry_is_recovered_at_start(
    s3_client: Any, bucket: str, s3_settings: Any, moto_server: str, tmp_path: Path
) -> None:
    key = tmp_path / "rec.key"
    generate(key)
    signer = load_signer(key)
    settings = s3_settings(moto_server, bucket)
    spool = tmp_path / "spool"
    raw, name = recording_bytes("s3crash001", signer, 7 * MIB)
    crash_child(settings, spool, name, raw + TORN, tmp_path, wait_uploaded=5 * MIB)
    heard: list[Recovered] = []
    sink = S3Sink(settings, spool)
    try:
        sink.set_recovery(Finisher(signer, heard.append))
        assert sink.recover() == [name]
        assert sink.wait_idle(30)
    finally:
        sink.close()
    blob = stored(s3_client, bucket, name)
    assert blob.startswith(raw) and TORN not in blob
    rep = verify_source(v1.BytesSource(blob), name, trusted=[load_public_key(key)],
                        require_signature=True)
    assert (rep.status, rep.ok) == ("recovered", True), rep.message
    assert [(r.session_id, r.outcome, r.signed) for r in heard] == [
        ("s3crash001", "recovered", True)]


def test_entries_of_a_process_that_dies_later_are_recovered_while_running(
    s3_client: Any, bucket: str, s3_settings: Any, moto_server: str, tmp_path: Path
) -> None:
    """The gateway's sink adopts the entries of a worker that died while it runs."""
    key = tmp_path / "rec.key"
    generate(key)
    signer = load_signer(key)
    settings = s3_settings(moto_server, bucket)
    spool = tmp_path / "spool"
    heard: list[Recovered] = []
    sink = S3Sink(settings, spool)
    try:
        sink.set_recovery(Finisher(signer, heard.append))
        assert sink.recover() == []
        raw, name = recording_bytes("s3crash002", signer, 1 * MIB)
        crash_child(settings, spool, name, raw, tmp_path, wait_uploaded=0)
        deadline = time.monotonic() + 30
        while not heard and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [(r.session_id, r.outcome) for r in heard] == [("s3crash002", "recovered")]
        assert sink.wait_idle(30)
    finally:
        sink.close()
    rep = verify_source(v1.BytesSource(stored(s3_client, bucket, name)), name,
                        trusted=[load_public_key(key)], require_signature=True)
    assert rep.status == "recovered", rep.message
