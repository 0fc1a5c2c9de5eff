"""Crash recovery through the file sink and the recorder: a recording its process left
as ``.part`` is cut after its last intact chunk, given a signed recovery trailer and
renamed; ``verify`` says "recovered"; the index row and the recorder's listeners learn
of it. A ``.part`` a live process still writes (it holds the lock) is left alone."""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from recorder_helpers import build_recording, make_header

from recorder import events as ev
from recorder.format.v1 import BytesSource
from recorder.index import Index
from recorder.reader import Recording
from recorder.recovery import Finisher, Recovered
from recorder.service import Recorder, header_fields
from recorder.settings import RecorderSettings
from recorder.signing import generate, load_public_key, load_signer
from recorder.sinks.crash import finish_spool_entry
from recorder.sinks.file import FileSink
from recorder.sinks.spool import Spool
from recorder.verify import verify_recording, verify_source

BATCHES = [[(0.25 * i, ev.OUTPUT, f"line {i}\r\n".encode())] for i in range(1, 41)]
TORN = b"\x89BCK\x44torn-write"


@pytest.fixture
def key(tmp_path: Path) -> Path:
    k = tmp_path / "rec.key"
    generate(k)
    return k


def crashed_part(directory: Path, key: Path, sid: str = "crash0001", *,
                 torn: bytes = TORN) -> tuple[str, bytes]:
    """A recording written by the real writer and never closed, as a crash leaves it."""
    raw, name = build_recording(BATCHES, header=make_header(sid), close=False,
                                signer=load_signer(key))
    part = directory / (name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(raw + torn)
    return name, raw


def test_file_sink_recovers_a_crashed_recording_with_a_signed_trailer(
        tmp_path: Path, key: Path) -> None:
    d = tmp_path / "rec"
    name, raw = crashed_part(d, key)
    reports: list[Recovered] = []
    sink = FileSink(d)
    sink.set_recovery(Finisher(load_signer(key), reports.append, clock=lambda: 1.8e9))
    assert sink.recover() == [name]
    assert not list(d.rglob("*.part"))
    rep = verify_recording(sink, name, trusted=[load_public_key(key)], require_signature=True)
    assert (rep.status, rep.ok) == ("recovered", True), rep.message
    rec = Recording.from_sink(sink, name)
    assert rec.status == "recovered" and not rec.problems
    assert b"".join(rec.output()).endswith(b"line 40\r\n")
    stored = (d / name).read_bytes()
    assert stored.startswith(raw) and TORN not in stored  # the torn write is dropped
    [r] = reports
    assert (r.outcome, r.status, r.session_id, r.signed) == ("recovered", "recovered",
                                                             "crash0001", True)
    assert r.header["user"] == "alice" and r.recorded_until == pytest.approx(10.0)
    assert sink.recover() == []  # idempotent


def test_damaged_and_headerless_parts_are_left_as_found_and_reported(
        tmp_path: Path, key: Path) -> None:
    d = tmp_path / "rec"
    name, raw = crashed_part(d, key, "damaged001", torn=b"")
    part = d / (name + ".part")
    blob = bytearray(raw)
    blob[len(blob) // 2] ^= 0xFF
    part.write_bytes(bytes(blob))
    junk = d / "2026/01/01/junk0001.bstl.part"
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"garbage, not a recording")
    reports: list[Recovered] = []
    sink = FileSink(d)
    sink.set_recovery(Finisher(load_signer(key), reports.append))
    assert sorted(sink.recover()) == sorted([name, "2026/01/01/junk0001.bstl"])
    assert (d / name).read_bytes() == bytes(blob)  # untouched: verify names the damage
    by_sid = {r.session_id: r for r in reports}
    assert by_sid["damaged001"].outcome == "unrecovered"
    assert by_sid["damaged001"].status == "damaged"
    assert "damaged" in by_sid["damaged001"].detail
    assert by_sid["junk0001"].outcome == "unrecovered"
    assert verify_recording(sink, name).status == "damaged"


HOLDER = r"""
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


def test_a_part_a_live_process_writes_is_left_alone_until_it_dies(
        tmp_path: Path, key: Path) -> None:
    """One directory shared by processes (gateway and RDP workers): only the recordings of
    dead processes are finished."""
    d = tmp_path / "rec"
    name, _ = crashed_part(d, key)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(d / (name + ".part"))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        reports: list[Recovered] = []
        sink = FileSink(d)
        sink.set_recovery(Finisher(load_signer(key), reports.append))
        assert sink.recover() == [] and reports == []
        assert (d / (name + ".part")).exists()
    finally:
        holder.kill()
        holder.wait()
    assert sink.adopt_orphans() == [name]
    assert [r.outcome for r in reports] == ["recovered"]


def test_streams_of_this_process_hold_their_lock(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "rec")
    st = sink.create("a/b.bstl")
    st.write(b"x")
    fd = os.open(tmp_path / "rec/a/b.bstl.part", os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    other = FileSink(tmp_path / "rec")
    assert other.recover() == []
    sink.close()  # released, as if the process died: the next recover() finishes it
    assert other.recover() == ["a/b.bstl"]


def test_a_fresh_empty_part_may_be_a_create_in_progress(tmp_path: Path) -> None:
    d = tmp_path / "rec"
    d.mkdir()
    (d / "new.bstl.part").write_bytes(b"")
    assert FileSink(d).recover() == []
    old = time.time() - 60
    os.utime(d / "new.bstl.part", (old, old))
    assert FileSink(d).recover() == ["new.bstl"]


def test_recorder_start_recovers_indexes_and_reports(tmp_path: Path, key: Path) -> None:
    """The recorder gives its sink the finisher; the crashed session's index row (left
    "live") becomes "recovered" and listeners hear of it."""
    data = tmp_path / "data"
    settings = RecorderSettings(data_dir=data, signing_key=key)
    name, _ = crashed_part(settings.file_dir, key, "crash0002")
    index = Index(data / "index.sqlite3")
    header = make_header("crash0002")
    index.session_opened(header_fields(header, settings, load_signer(key)), name)
    index.close()
    heard: list[Recovered] = []

    async def run() -> str:
        rec = Recorder(settings)
        rec.add_recovery_listener(heard.append)
        await rec.start()
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                row = rec.index.get("crash0002")
                if row is not None and row.status != "live":
                    return row.status
                await asyncio.sleep(0.05)
            return "live"
        finally:
            await rec.close()

    assert asyncio.run(run()) == "recovered"
    assert [(r.session_id, r.outcome) for r in heard] == [("crash0002", "recovered")]
    rep = verify_recording(FileSink(settings.file_dir), name, trusted=[load_public_key(key)],
                           require_signature=True)
    assert rep.status == "recovered", rep.message


def test_a_spool_entry_whose_start_was_released_is_reported_unrecovered(
        tmp_path: Path, key: Path) -> None:
    """Its first bytes were uploaded and released from the spool (disk pressure): the
    recovery trailer cannot be computed; it is finished as it was and reported so."""
    raw, name = build_recording(BATCHES, header=make_header("punched001"), close=False,
                                signer=load_signer(key))
    spool = Spool(tmp_path / "spool", 1 << 30)
    entry = spool.create(name, 5 * 1024 * 1024)
    spool.append(entry, raw)
    spool.release(entry)  # its process died
    after = Spool(tmp_path / "spool", 1 << 30)
    (adopted,) = after.adopt()
    adopted.punched = adopted.uploaded = 1024  # as release_uploaded() leaves it
    heard: list[Recovered] = []
    finish_spool_entry(after, adopted, Finisher(load_signer(key), heard.append))
    assert adopted.finished and adopted.size == len(raw)
    [r] = heard
    assert r.outcome == "unrecovered" and "released from the spool" in r.detail
    assert r.session_id == "punched001"


def test_a_spool_entry_is_cut_and_given_the_trailer(tmp_path: Path, key: Path) -> None:
    raw, name = build_recording(BATCHES, header=make_header("spooled001"), close=False,
                                signer=load_signer(key))
    spool = Spool(tmp_path / "spool", 1 << 30)
    entry = spool.create(name, 5 * 1024 * 1024)
    spool.append(entry, raw + TORN)
    spool.release(entry)
    after = Spool(tmp_path / "spool", 1 << 30)
    (adopted,) = after.adopt()
    heard: list[Recovered] = []
    finish_spool_entry(after, adopted, Finisher(load_signer(key), heard.append))
    data = adopted.read(0)
    assert data.startswith(raw) and TORN not in data and adopted.size == len(data)
    assert after.backlog_bytes == len(data)
    rep = verify_source(BytesSource(data), name, trusted=[load_public_key(key)],
                        require_signature=True)
    assert rep.status == "recovered", rep.message
    assert [r.outcome for r in heard] == ["recovered"]


def test_a_recovery_interrupted_after_its_trailer_is_reported_once_more_as_recovered(
        tmp_path: Path, key: Path) -> None:
    """Killed again between appending the trailer and the rename: the next start finds a
    recovered recording, renames it, and reports it as recovered (not as "ended")."""
    d = tmp_path / "rec"
    name, raw = crashed_part(d, key, torn=b"")
    first: list[Recovered] = []
    fin = Finisher(load_signer(key), first.append)
    tail = fin.tail(name, BytesSource(raw))
    assert tail is not None
    (d / (name + ".part")).write_bytes(raw[:tail[0]] + tail[1])
    heard: list[Recovered] = []
    sink = FileSink(d)
    sink.set_recovery(Finisher(load_signer(key), heard.append))
    assert sink.recover() == [name]
    assert [(r.outcome, r.status) for r in heard] == [("recovered", "recovered")]
    assert verify_recording(sink, name).status == "recovered"
