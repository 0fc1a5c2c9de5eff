"""Storage that misbehaves, against a real moto_server (issue 16, items 1-4 and 10).

A blackholed, slow, refusing or emptied store is an outage: nothing waits on it at
session start, nothing is lost, and everything catches up without a restart. Spool
copies are deleted only after the object is confirmed, and the loss of confirmed
objects is detectable.
"""

from __future__ import annotations

import asyncio
import dataclasses
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
from recorder.errors import RecorderError
from recorder.reader import Recording
from recorder.service import Recorder, SessionHeader
from recorder.settings import RecorderSettings
from recorder.sinks import S3Sink, SpooledSink
from recorder.sinks.ledger import LEDGER_FILE, Ledger
from recorder.sinks.spool import Spool
from recorder.verify import verify_recording

pytestmark = pytest.mark.s3

MIB = 1024 * 1024
PART = 5 * MIB
MOTO_SK = "fake-secret-Zm9vYmFyYmF6cXV4LXNlY3JldA"


def data_of(n: int, seed: int = 3) -> bytes:
    import random

    return random.Random(seed).randbytes(n)


def write_all(stream: Any, data: bytes, chunk: int = 256 * 1024) -> None:
    for i in range(0, len(data), chunk):
        stream.write(data[i : i + chunk])


def get(client: Any, bucket: str, name: str) -> bytes:
    return bytes(client.get_object(Bucket=bucket, Key=f"rec/{name}")["Body"].read())


def wait_for(pred: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return bool(pred())


def empty_and_delete_bucket(client: Any, bucket: str) -> None:
    for o in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        client.delete_object(Bucket=bucket, Key=o["Key"])
    for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
    client.delete_bucket(Bucket=bucket)


@pytest.mark.parametrize("fault", ["stall", "refuse", "slow", "deny403"])
def test_create_never_waits_on_the_store(
    fault: str, s3_settings: Any, fault_proxy: Any, bucket: str, tmp_path: Path
) -> None:
    """A new recording (and its header) is local only: whatever the store does, it
    starts at once (issue 16 item 1: a blackholed store refused new logins)."""
    sink = S3Sink(s3_settings(fault_proxy.url, bucket, read_timeout=5.0), tmp_path / "sp")
    try:
        fault_proxy.set_mode(fault, rate=1000)
        time.sleep(0.2)
        for i in range(5):
            t0 = time.monotonic()
            st = sink.create(f"s{i}.bstl")
            st.write(b"header")
            st.flush()
            took = time.monotonic() - t0
            assert took < 0.5, f"create took {took:.2f} s with the store in {fault}"
            st.close()
    finally:
        sink.close(timeout=0.5)


def test_every_store_call_has_a_deadline(
    s3_settings: Any, fault_proxy: Any, bucket: str, tmp_path: Path
) -> None:
    """A trickling store never trips the read timeout; the call deadline still ends it."""
    settings = s3_settings(fault_proxy.url, bucket, read_timeout=60.0, call_timeout=1.0)
    sink = S3Sink(settings, tmp_path / "sp", readonly=True)
    try:
        fault_proxy.set_mode("stall")
        t0 = time.monotonic()
        with pytest.raises(Exception, match="no answer within 1 s"):
            sink.check()
        assert time.monotonic() - t0 < 3
    finally:
        sink.close()


def test_slow_store_is_an_outage_and_catches_up(
    s3_client: Any, s3_settings: Any, fault_proxy: Any, bucket: str, tmp_path: Path
) -> None:
    """A store slowed to a trickle: parts miss their deadline, data waits in the spool,
    the status says degraded; at full speed again, everything goes up."""
    settings = s3_settings(fault_proxy.url, bucket, call_timeout=1.5)
    sink = S3Sink(settings, tmp_path / "sp")
    try:
        fault_proxy.set_mode("slow", rate=50_000)
        data = data_of(PART + 4321)
        st = sink.create("slow.bstl")
        write_all(st, data)
        st.close()
        assert wait_for(lambda: sink.status().state == "degraded", 20), sink.status()
        assert "no answer within" in (sink.status().last_error or "")
        assert not sink.wait_idle(1)
        fault_proxy.set_mode("pass")
        assert sink.wait_idle(30)
        assert get(s3_client, bucket, "slow.bstl") == data
        assert wait_for(lambda: sink.status().state == "ok", 10)
    finally:
        sink.close()


def test_bucket_emptied_and_recreated(
    s3_client: Any, s3_settings: Any, bucket: str, tmp_path: Path
) -> None:
    """The bucket disappears (and comes back empty) while recordings are spooled: live
    sessions go on, the spooled ones are uploaded again, and the loss of the ones
    confirmed earlier is reported by lost() (issue 16 item 3)."""
    from tests.integration.conftest import free_port  # noqa: F401 - same moto

    ledger = Ledger(tmp_path / LEDGER_FILE)
    sink = S3Sink(s3_settings(s3_client.meta.endpoint_url, bucket), tmp_path / "sp",
                  ledger=ledger)
    try:
        early = data_of(1000, seed=1)
        st = sink.create("early.bstl")
        st.write(early)
        st.close()
        assert sink.wait_idle(30)
        assert ledger.entries()["early.bstl"].size == len(early)
        live = sink.create("live.bstl")
        first = data_of(PART + 100, seed=2)
        write_all(live, first)
        live.flush()
        assert wait_for(lambda: sink.backlog_bytes == 100, 30)  # part 1 is up

        empty_and_delete_bucket(s3_client, bucket)
        second = data_of(3000, seed=3)
        live.write(second)  # the session goes on
        live.close()
        late = sink.create("late.bstl")  # and new ones start
        late.write(b"late")
        late.close()
        assert wait_for(lambda: sink.status().state == "degraded", 20)
        assert sorted(sink.pending()) == ["late.bstl", "live.bstl"]

        s3_client.create_bucket(Bucket=bucket)  # recreated, empty
        assert sink.wait_idle(60)
        assert get(s3_client, bucket, "live.bstl") == first + second
        assert get(s3_client, bucket, "late.bstl") == b"late"
        lost = sink.lost()
        assert [x.name for x in lost] == ["early.bstl"]
        assert lost[0].found_size is None and "missing" in lost[0].describe()
    finally:
        sink.close()


def test_spool_copy_is_deleted_only_after_confirmation(
    s3_client: Any, s3_settings: Any, bucket: str, tmp_path: Path
) -> None:
    """An entry whose upload was completed (then the process died) is confirmed with a
    HEAD; the store holding different bytes under that key gets the spooled ones again,
    and the ledger has the SHA-256 of what was spooled."""
    import hashlib

    settings = s3_settings(s3_client.meta.endpoint_url, bucket)
    spool = Spool(tmp_path / "sp", settings.spool_cap_bytes)
    entry = spool.create("done.bstl", settings.part_size)
    data = data_of(2000, seed=9)
    spool.append(entry, data)
    spool.finish(entry)
    spool.mark_completed(entry)  # "the store completed it" ...
    spool.close()
    s3_client.put_object(Bucket=bucket, Key="rec/done.bstl", Body=b"someone else's bytes")

    ledger = Ledger(tmp_path / LEDGER_FILE)
    sink = S3Sink(settings, tmp_path / "sp", ledger=ledger)
    try:
        assert sink.recover() == ["done.bstl"]
        assert sink.wait_idle(30)
        assert get(s3_client, bucket, "done.bstl") == data
        line = ledger.entries()["done.bstl"]
        assert line.sha256 == hashlib.sha256(data).hexdigest() and line.size == len(data)
        assert sink.pending() == []
    finally:
        sink.close()


WRITER = r"""
import json, sys, time
from pathlib import Path
from recorder.settings import S3Settings
from recorder.sinks.s3 import S3Sink
cfg = json.loads(sys.stdin.read())
sink = S3Sink(S3Settings(**cfg["settings"]), Path(cfg["spool"]))
st = sink.create("worker.bstl")
st.write(b"written by a process that then died")
st.flush()
print("READY", flush=True)
time.sleep(120)
"""


def test_entries_of_a_dead_process_are_adopted_without_a_restart(
    s3_client: Any, s3_settings: Any, bucket: str, tmp_path: Path
) -> None:
    """An RDP worker (any other writer of the spool) dies with a recording open: the
    gateway's sink, already running, adopts and uploads it within seconds."""
    settings = s3_settings(s3_client.meta.endpoint_url, bucket)
    gateway = S3Sink(settings, tmp_path / "sp")
    try:
        assert gateway.recover() == []
        cfg = {"settings": {f.name: getattr(settings, f.name)
                            for f in dataclasses.fields(settings)},
               "spool": str(tmp_path / "sp")}
        proc = subprocess.Popen([sys.executable, "-c", WRITER], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(cfg))
        proc.stdin.close()
        try:
            assert proc.stdout.readline().strip() == "READY"
            time.sleep(6)  # alive: its entry is not adopted
            assert gateway.pending() == ["worker.bstl"]
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            proc.stdout.close()
        assert wait_for(lambda: gateway.pending() == [], 30)
        assert get(s3_client, bucket, "worker.bstl") == b"written by a process that then died"
    finally:
        gateway.close()


def test_status_reports_the_spool(
    s3_settings: Any, fault_proxy: Any, bucket: str, tmp_path: Path
) -> None:
    sink = S3Sink(s3_settings(fault_proxy.url, bucket), tmp_path / "sp")
    try:
        fault_proxy.set_mode("refuse")
        t0 = time.time()
        for i in range(3):
            st = sink.create(f"r{i}.bstl")
            st.write(b"x" * 1000)
            if i < 2:
                st.close()
        assert wait_for(lambda: sink.status().state == "degraded", 20)
        status = sink.status()
        assert status.spool_entries == 3 and status.uploads_pending == 2
        assert status.spool_bytes == 3000
        assert status.oldest_entry is not None and t0 - 1 <= status.oldest_entry <= time.time()
        assert status.location == f"s3://{bucket}/rec"
        assert "unreachable" in status.detail
    finally:
        sink.close()


# -- through the Recorder, as the gateway uses it ------------------------------------------


def _header(sid: str) -> SessionHeader:
    return SessionHeader(session_id=sid, user="alice", target="web1", protocol="ssh",
                         kind="exec", client_addr="127.0.0.1:1", start_time=time.time())


def test_spool_cap_pauses_sessions_and_resumes_when_the_store_returns(
    s3_client: Any, s3_settings: Any, fault_proxy: Any, bucket: str, tmp_path: Path
) -> None:
    """S3 down, a flood fills the spool: the session is paused, not ended (issue 16 item
    4); when S3 returns it resumes, and every byte is in the bucket."""
    settings = RecorderSettings(
        data_dir=tmp_path / "data",
        storage=s3_settings(fault_proxy.url, bucket, spool_cap_bytes=6 * MIB),
        queue_bytes=512 * 1024, flush_interval=0.05, min_free_bytes=0,
    )
    fault_proxy.set_mode("refuse")
    total = 10 * MIB
    blocks = [os.urandom(64 * 1024) for _ in range(total // (64 * 1024))]  # incompressible

    async def main() -> str:
        r = Recorder(settings)
        await r.start()
        s = await r.open_session(_header("capped000001"))
        failures: list[RecorderError] = []
        s.add_failure_callback(failures.append)

        async def produce() -> None:
            for block in blocks:
                s.output(block)
                if s.congested:
                    await s.wait_writable()

        producer = asyncio.ensure_future(produce())
        for _ in range(400):
            await asyncio.sleep(0.05)
            if s.paused is not None:
                break
        assert s.paused is not None and "full" in s.paused[1]
        await asyncio.sleep(1.0)
        assert not producer.done() and not failures
        st = await asyncio.get_running_loop().run_in_executor(None, r.status)
        assert st.state == "failing" and st.paused
        fault_proxy.set_mode("pass")
        await asyncio.wait_for(producer, 60)
        await s.close(exit_status=0)
        assert not failures
        await r.close(timeout=30)
        return s.name

    name = asyncio.run(main())
    sink = S3Sink(s3_settings(s3_client.meta.endpoint_url, bucket), tmp_path / "check",
                  readonly=True)
    try:
        rec = Recording.from_sink(sink, name)
        assert rec.status == "ended"
        assert sum(len(e.data) for e in rec.events() if e.type == ev.OUTPUT) == total
        assert verify_recording(sink, name).ok
    finally:
        sink.close()


def test_a_failed_recording_is_uploaded_without_a_restart(
    s3_client: Any, s3_settings: Any, bucket: str, tmp_path: Path
) -> None:
    """A recording that fails (here: a relay ignoring back-pressure) is finished in the
    spool at once and uploaded, not left until the next start (issue 16 item 2)."""
    settings = RecorderSettings(
        data_dir=tmp_path / "data", storage=s3_settings(s3_client.meta.endpoint_url, bucket),
        queue_bytes=128 * 1024, on_failure="continue",
    )

    async def main() -> str:
        r = Recorder(settings)
        await r.start()
        s = await r.open_session(_header("failed000001"))
        s.output(b"before the failure\n")
        await asyncio.sleep(1.5)  # written
        failures: list[RecorderError] = []
        s.add_failure_callback(failures.append)
        s.output(os.urandom(600 * 1024))  # no wait_writable: over the hard cap
        await asyncio.sleep(0)
        assert failures
        sink = r.sink
        assert isinstance(sink, SpooledSink)
        ok = await asyncio.get_running_loop().run_in_executor(
            None, wait_for, lambda: sink.pending() == [], 30.0)
        assert ok, sink.pending()
        await s.close()
        await r.close()
        return s.name

    name = asyncio.run(main())
    blob = get(s3_client, bucket, name)
    assert b"BSTREC" in blob[:8]


def test_indexing_is_retried_when_storage_was_down(tmp_path: Path) -> None:
    """The screen pass of a closed session meets an unreadable store: tried again later."""
    from recorder.index import Index
    from recorder.postprocess import Postprocessor
    from recorder.sinks.memory import MemorySink

    sink = MemorySink()
    r_settings = RecorderSettings(data_dir=tmp_path)

    class Flaky(MemorySink):
        fails = 2

        def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
            if self.fails:
                self.fails -= 1
                from recorder.errors import SinkError

                raise SinkError("cannot read x from s3://b/p: no answer within 60 s")
            return sink.read(name, offset, length)

        def size(self, name: str) -> int:
            return sink.size(name)

    async def record() -> str:
        r = Recorder(r_settings, sink=sink)
        await r.start()
        s = await r.open_session(_header("retry0000001"))
        s.output(b"hello\r\n")
        await s.close(exit_status=0)
        await r.close()
        return s.name

    name = asyncio.run(record())
    index = Index(tmp_path / "index2.sqlite3")
    post = Postprocessor(r_settings, Flaky(), index, retry_first=0.2)
    post.start()
    try:
        post.submit(name, "retry0000001")
        assert wait_for(lambda: (row := index.get("retry0000001")) is not None
                        and bool(row.screen_indexed), 10)
        assert post.pending() == 0
    finally:
        post.stop(2)
        index.close()


def test_read_only_tools_work_beside_a_running_gateway_without_the_write_secret(
    s3_client: Any, s3_settings: Any, bucket: str, tmp_path: Path
) -> None:
    """A writer owns the spool; a read-only sink with other (read) credentials and no
    write secret reads live, spooled and uploaded recordings (issue 16 item 8)."""
    settings = s3_settings(s3_client.meta.endpoint_url, bucket)
    writer = S3Sink(settings, tmp_path / "sp")
    try:
        done = writer.create("done.bstl")
        done.write(b"uploaded")
        done.close()
        assert writer.wait_idle(30)
        live = writer.create("live.bstl")
        live.write(b"still running")
        live.flush()
        reader_settings = dataclasses.replace(
            settings, secret_access_key=None, access_key_id=None,
            read_access_key_id="AKIAREADONLY0000", read_secret_access_key="read-secret",
        )
        reader = S3Sink(reader_settings, tmp_path / "sp", readonly=True)
        try:
            assert reader.names() == ["done.bstl", "live.bstl"]
            assert reader.read("done.bstl") == b"uploaded"
            assert reader.read("live.bstl") == b"still running"
            assert reader.size("live.bstl") == len(b"still running")
        finally:
            reader.close()
        live.close()
    finally:
        writer.close()


@pytest.fixture
def spool_disk(tmp_path: Path) -> Any:
    """A 24 MiB tmpfs for the spool (root only)."""
    disk = tmp_path / "spooldisk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _write_through_backpressure(stream: Any, data: bytes, timeout: float = 60) -> int:
    """Write like the recorder does: on SinkFullError wait and retry the same bytes."""
    from recorder.errors import SinkFullError

    refused = 0
    deadline = time.monotonic() + timeout
    for i in range(0, len(data), MIB):
        while True:
            try:
                stream.write(data[i : i + MIB])
                break
            except SinkFullError:
                refused += 1
                assert time.monotonic() < deadline, "the spool never made room"
                time.sleep(0.05)
    return refused


def test_a_recording_bigger_than_the_free_disk_goes_through(
    s3_client: Any, s3_settings: Any, bucket: str, spool_disk: Path
) -> None:
    """The spool's disk has 10 MiB above its low-water mark and a live recording writes
    20 MiB: uploaded parts are released from the disk, so the session is paused only
    while parts go up, never for ever; the object is whole and confirmed."""
    (spool_disk / "ballast").write_bytes(b"\0" * (12 * MIB))
    ledger = Ledger(spool_disk / LEDGER_FILE)
    sink = S3Sink(s3_settings(s3_client.meta.endpoint_url, bucket), spool_disk / "sp",
                  ledger=ledger, min_free_bytes=2 * MIB)
    try:
        data = data_of(20 * MIB + 123, seed=5)
        st = sink.create("big.bstl")
        refused = _write_through_backpressure(st, data)
        assert refused > 0  # it did reach the low-water mark
        with pytest.raises(Exception, match="released from the spool"):
            sink.read("big.bstl", 0, 10)
        st.close()
        assert sink.wait_idle(60)
        assert get(s3_client, bucket, "big.bstl") == data
        assert sink.read("big.bstl", 0, 10) == data[:10]
        line = ledger.entries()["big.bstl"]
        assert line.size == len(data) and line.sha256 == ""  # its start was released
    finally:
        sink.close()


def test_released_bytes_lost_by_the_store_are_reported_not_resent_as_zeros(
    s3_client: Any, s3_settings: Any, bucket: str, spool_disk: Path
) -> None:
    """The bucket is wiped after part of a live recording was released from the spool:
    it cannot be uploaded again; it is moved aside and reported, never uploaded with
    zeros in place of the released bytes."""
    (spool_disk / "ballast").write_bytes(b"\0" * (12 * MIB))
    sink = S3Sink(s3_settings(s3_client.meta.endpoint_url, bucket), spool_disk / "sp",
                  min_free_bytes=2 * MIB)
    try:
        st = sink.create("wiped.bstl")
        _write_through_backpressure(st, data_of(14 * MIB, seed=6))
        assert wait_for(lambda: sink.backlog_bytes < 5 * MIB, 30)
        empty_and_delete_bucket(s3_client, bucket)
        st.write(b"after the wipe")
        st.close()
        assert wait_for(lambda: sink.status().state == "degraded", 20)
        s3_client.create_bucket(Bucket=bucket)
        assert wait_for(lambda: sink.pending() == [], 30)
        status = sink.status()
        assert any("lost part of this recording" in p for p in status.problems), status
        assert "wiped.bstl" in (status.last_error or "")
        assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
        assert [p.name.endswith(".lost") for p in (spool_disk / "sp").iterdir()] == [True]
    finally:
        sink.close()
