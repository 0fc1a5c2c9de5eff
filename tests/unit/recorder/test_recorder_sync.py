"""The recorder's periodic fsyncs run on their own thread (recorder-sync).

An fsync of a second of bulk data took 0.12-0.54 s on the machines measured; while the
writer waited in it, every session of the process filled its queue and paused. These
tests hold a sink's flush (the fsync) and check what a user of the recorder sees: the
writer goes on writing, a close waits for the fsync and then finishes the recording, a
failed fsync fails that recording, a hung one is caught by the stall watchdog.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

from recorder_helpers import make_header

from recorder import events as ev
from recorder.errors import RecorderError, SinkError
from recorder.reader import Recording
from recorder.service import Recorder, SessionRecording
from recorder.settings import RecorderSettings
from recorder.sinks.base import SinkStream
from recorder.sinks.file import FileSink
from recorder.sinks.memory import MemorySink
from recorder.verify import verify_recording


class _HeldFlushSink(MemorySink):
    """A memory sink whose periodic flushes (not the header's) wait for ``release``, or
    raise when ``fail`` is set; it logs the order of flushes, writes and closes."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.fail = False
        self.flushing = threading.Event()  # a periodic flush is waiting now
        self.log: list[str] = []
        self.written = 0

    def create(self, name: str) -> SinkStream:
        inner = super().create(name)
        outer = self
        flushes = [0]

        class _S(SinkStream):
            def write(self, data: bytes) -> None:
                inner.write(data)
                outer.written += len(data)
                outer.log.append("write")

            def flush(self) -> None:
                flushes[0] += 1
                if flushes[0] == 1:  # the header: the session may start
                    return
                outer.log.append("flush")
                if outer.fail:
                    raise SinkError("injected fsync failure")
                outer.flushing.set()
                outer.release.wait(30)
                outer.log.append("flushed")

            def close(self) -> None:
                outer.log.append("close")
                inner.close()

        return _S()


def _settings(tmp_path: Path, **kw: object) -> RecorderSettings:
    return RecorderSettings(data_dir=tmp_path / "data", **kw)  # type: ignore[arg-type]


def _first_failure(s: SessionRecording) -> asyncio.Future[RecorderError]:
    """The first failure reported to ``s``'s failure callbacks (on the loop)."""
    fut: asyncio.Future[RecorderError] = asyncio.get_running_loop().create_future()
    s.add_failure_callback(lambda err: fut.done() or fut.set_result(err))
    return fut


def test_the_writer_goes_on_writing_while_an_fsync_waits(tmp_path: Path) -> None:
    sink = _HeldFlushSink()

    async def main() -> str:
        r = Recorder(_settings(tmp_path, flush_interval=0.05, queue_bytes=256 * 1024,
                               stall_timeout=20), sink=sink)
        await r.start()
        s = await r.open_session(make_header("sync1"))
        s.output(os.urandom(64 * 1024))
        assert await asyncio.to_thread(sink.flushing.wait, 10)  # an fsync is stuck now
        before = sink.written
        for _ in range(64):  # 4 MiB through a 256 KiB queue, the fsync still waiting
            s.output(os.urandom(64 * 1024))
            if s.congested:
                await asyncio.wait_for(s.wait_writable(), 10)
        assert not sink.release.is_set()
        assert sink.written - before >= 3 * 1024 * 1024  # written meanwhile, not held
        sink.release.set()
        await s.close(exit_status=0)
        await r.close()
        return s.name

    name = asyncio.run(main())
    rec = Recording.from_sink(sink, name)
    assert rec.status == "ended"
    assert sum(len(e.data) for e in rec.events() if e.type == ev.OUTPUT) == 65 * 64 * 1024


def test_a_close_waits_for_the_fsync_in_flight_then_finishes(tmp_path: Path) -> None:
    sink = _HeldFlushSink()

    async def main() -> str:
        r = Recorder(_settings(tmp_path, flush_interval=0.05, stall_timeout=20), sink=sink)
        await r.start()
        s = await r.open_session(make_header("sync2"))
        s.output(b"hello\r\n" * 1000)
        assert await asyncio.to_thread(sink.flushing.wait, 10)
        closing = asyncio.create_task(s.close(exit_status=0))
        await asyncio.sleep(0.5)
        assert not closing.done()
        assert "close" not in sink.log  # not under the syncer's feet
        sink.release.set()
        await asyncio.wait_for(closing, 10)
        await r.close()
        return s.name

    name = asyncio.run(main())
    held = sink.log.index("flush")
    assert sink.log.index("flushed") < sink.log.index("close")
    assert held < sink.log.index("flushed")
    rec = Recording.from_sink(sink, name)
    assert rec.status == "ended"
    assert b"".join(e.data for e in rec.events() if e.type == ev.OUTPUT) == b"hello\r\n" * 1000


def test_a_failed_fsync_fails_that_recording(tmp_path: Path) -> None:
    sink = _HeldFlushSink()
    sink.fail = True

    async def main() -> None:
        r = Recorder(_settings(tmp_path, flush_interval=0.05), sink=sink)
        await r.start()
        s = await r.open_session(make_header("sync3"))
        failure = _first_failure(s)
        s.output(b"data" * 1000)
        assert "injected fsync failure" in str(await asyncio.wait_for(failure, 10))
        assert r.status().failed_recordings == 1
        await s.close()
        await r.close()

    asyncio.run(main())


def test_a_hung_fsync_fails_the_recordings_after_stall_timeout(tmp_path: Path) -> None:
    sink = _HeldFlushSink()

    async def main() -> None:
        r = Recorder(_settings(tmp_path, flush_interval=0.05, stall_timeout=1.0), sink=sink)
        await r.start()
        s = await r.open_session(make_header("sync4"))
        failure = _first_failure(s)
        s.output(b"data" * 1000)
        assert await asyncio.to_thread(sink.flushing.wait, 10)
        assert "storage has not answered" in str(await asyncio.wait_for(failure, 10))
        sink.release.set()
        await s.close()
        await r.close()

    asyncio.run(main())


def test_a_file_recording_flushed_while_written_and_closed_is_whole(tmp_path: Path) -> None:
    """The file sink's fsync runs outside its lock: flushes from another thread while
    parts are appended, and a close in the middle, lose and break nothing."""
    sink = FileSink(tmp_path / "rec")
    stream = sink.create("s1")
    parts = [os.urandom(n) for n in (1, 4096, 70_000, 300_000) * 40]
    stop = threading.Event()
    errors: list[BaseException] = []

    def flusher() -> None:
        while not stop.is_set():
            try:
                stream.flush()
            except BaseException as exc:  # noqa: BLE001 - the test reports it
                errors.append(exc)
                return

    t = threading.Thread(target=flusher)
    t.start()
    try:
        for p in parts:
            stream.write_parts([p[:7], p[7:]])
        stream.close()
    finally:
        stop.set()
        t.join()
    assert errors == []
    assert (tmp_path / "rec" / "s1").read_bytes() == b"".join(parts)


def test_a_recording_with_fsyncs_on_the_syncer_verifies(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "r")

    async def main() -> str:
        r = Recorder(_settings(tmp_path, flush_interval=0.05), sink=sink)
        await r.start()
        s = await r.open_session(make_header("sync5"))
        for i in range(200):
            s.output(os.urandom(20_000))
            if i % 20 == 0:
                await asyncio.sleep(0.06)  # let fsyncs happen in the middle
        await s.close(exit_status=0)
        await r.close()
        return s.name

    name = asyncio.run(main())
    report = verify_recording(sink, name)
    assert report.ok and report.status in ("ok", "unsigned"), report
