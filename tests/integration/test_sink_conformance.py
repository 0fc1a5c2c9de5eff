"""One behaviour contract, run against every sink: memory, file, and S3 (real moto_server).

Each test drives the public Sink/SinkStream API and checks the bytes a reader gets back.
For S3 the bytes are checked twice: while the recording is still in the local spool, and
after the uploader moved it to the bucket (``settle``), straight from moto.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from recorder.errors import SinkError
from recorder.sinks import FileSink, MemorySink, S3Sink, Sink

MIB = 1024 * 1024


@dataclass
class Backend:
    kind: str
    sink: Sink
    reopen: Callable[[], Sink]  # a new sink over the same storage ("next process")
    s3: Any = None  # boto3 client to moto, for S3 only
    bucket: str = ""

    def settle(self, sink: Sink | None = None) -> None:
        """Wait until background work is done (S3: everything closed is in the bucket)."""
        s = sink or self.sink
        if isinstance(s, S3Sink):
            assert s.wait_idle(30), f"uploads still pending: {s.pending()}"

    def stored(self, name: str) -> bytes | None:
        """The finished object as the storage itself holds it (None for memory)."""
        if self.kind == "s3":
            return bytes(self.s3.get_object(Bucket=self.bucket, Key=f"rec/{name}")["Body"].read())
        if self.kind == "file":
            assert isinstance(self.sink, FileSink)
            return (self.sink.directory / name).read_bytes()
        return None


@pytest.fixture(params=["memory", "file", pytest.param("s3", marks=pytest.mark.s3)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    kind = request.param
    opened: list[Sink] = []

    def track(s: Sink) -> Sink:
        opened.append(s)
        return s

    if kind == "memory":
        mem = MemorySink()
        b = Backend(kind, mem, reopen=lambda: mem)
    elif kind == "file":
        d = tmp_path / "recordings"
        b = Backend(kind, track(FileSink(d)), reopen=lambda: track(FileSink(d)))
    else:
        moto = request.getfixturevalue("moto_server")
        client = request.getfixturevalue("s3_client")
        bucket = request.getfixturevalue("bucket")
        settings = request.getfixturevalue("s3_settings")(moto, bucket)
        spool = tmp_path / "spool"
        b = Backend(
            kind,
            track(S3Sink(settings, spool)),
            reopen=lambda: track(S3Sink(settings, spool)),
            s3=client,
            bucket=bucket,
        )
    yield b
    for s in opened:
        s.close()


def payload(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


def write_chunks(stream: Any, data: bytes, chunk: int = 64 * 1024) -> None:
    for i in range(0, len(data), chunk):
        stream.write(data[i : i + chunk])


def test_write_close_read_back(backend: Backend) -> None:
    sink = backend.sink
    data = payload(300_000)
    st = sink.create("2026/11/24/abc.bstl")
    write_chunks(st, data, 7_777)
    st.flush()
    st.close()
    for phase in ("closed", "settled"):
        assert sink.names() == ["2026/11/24/abc.bstl"], phase
        assert sink.size("2026/11/24/abc.bstl") == len(data), phase
        assert sink.read("2026/11/24/abc.bstl") == data, phase
        assert sink.read("2026/11/24/abc.bstl", 1000, 5000) == data[1000:6000], phase
        assert sink.read("2026/11/24/abc.bstl", 299_990) == data[299_990:], phase
        assert sink.read("2026/11/24/abc.bstl", 299_990, 100) == data[299_990:], phase
        assert sink.read("2026/11/24/abc.bstl", len(data) + 10) == b"", phase
        assert sink.read("2026/11/24/abc.bstl", 5, 0) == b"", phase
        backend.settle()
    stored = backend.stored("2026/11/24/abc.bstl")
    assert stored is None or stored == data


def test_empty_recording(backend: Backend) -> None:
    st = backend.sink.create("empty.bstl")
    st.close()
    backend.settle()
    assert backend.sink.size("empty.bstl") == 0
    assert backend.sink.read("empty.bstl") == b""
    stored = backend.stored("empty.bstl")
    assert stored is None or stored == b""


def test_two_concurrent_streams(backend: Backend) -> None:
    sink = backend.sink
    a, b = payload(200_000, 1), payload(150_000, 2)
    sa, sb = sink.create("s/a.bstl"), sink.create("s/b.bstl")
    for i in range(0, 200_000, 10_000):
        sa.write(a[i : i + 10_000])
        sb.write(b[i : i + 10_000])
        if i % 50_000 == 0:
            sa.flush()
            sb.flush()
    sb.close()
    sa.close()
    backend.settle()
    assert sink.names() == ["s/a.bstl", "s/b.bstl"]
    assert sink.read("s/a.bstl") == a
    assert sink.read("s/b.bstl") == b


@pytest.mark.parametrize(
    "bad",
    ["", "/etc/passwd", "../x.bstl", "a/../../x", "a//b", "./a", "a/./b", "a/", ".hidden",
     "a b", "a\x00b", "a\\b", "x.part", "é.bstl", "a" * 513],
)  # fmt: skip
def test_invalid_names_rejected(backend: Backend, bad: str) -> None:
    with pytest.raises(SinkError, match="invalid recording name"):
        backend.sink.create(bad)
    assert backend.sink.names() == []


def test_unusual_valid_names(backend: Backend) -> None:
    for name in ("a", "2026/11/24/alice@web-01_x=1,y+2.bstl", "_/x"):
        st = backend.sink.create(name)
        st.write(name.encode())
        st.close()
    backend.settle()
    for name in ("a", "2026/11/24/alice@web-01_x=1,y+2.bstl", "_/x"):
        assert backend.sink.read(name) == name.encode()


def test_read_live_recording(backend: Backend) -> None:
    sink = backend.sink
    data = payload(100_000)
    st = sink.create("live.bstl")
    st.write(data[:60_000])
    st.flush()
    assert "live.bstl" in sink.names()
    assert sink.size("live.bstl") == 60_000
    assert sink.read("live.bstl") == data[:60_000]
    assert sink.read("live.bstl", 59_990, 100) == data[59_990:60_000]
    st.write(data[60_000:])
    st.flush()
    assert sink.read("live.bstl", 60_000) == data[60_000:]
    st.close()


def test_close_is_idempotent_and_final(backend: Backend) -> None:
    st = backend.sink.create("c.bstl")
    st.write(b"hello")
    st.close()
    st.close()
    st.flush()  # a no-op after close
    with pytest.raises(SinkError, match="closed"):
        st.write(b"more")
    backend.settle()
    assert backend.sink.read("c.bstl") == b"hello"


def test_missing_recording(backend: Backend) -> None:
    with pytest.raises(SinkError, match=r"no recording named nope\.bstl"):
        backend.sink.read("nope.bstl")
    with pytest.raises(SinkError, match=r"no recording named nope\.bstl"):
        backend.sink.size("nope.bstl")


def test_duplicate_name_rejected(backend: Backend) -> None:
    st = backend.sink.create("dup.bstl")
    with pytest.raises(SinkError, match="already exists"):
        backend.sink.create("dup.bstl")
    st.write(b"first")
    st.close()
    backend.settle()
    with pytest.raises(SinkError, match="already exists"):
        backend.sink.create("dup.bstl")
    assert backend.sink.read("dup.bstl") == b"first"


def test_recover_finishes_an_abandoned_recording(backend: Backend) -> None:
    """A stream never closed (its process died) is finished by the next sink's recover()."""
    if backend.kind == "memory":
        pytest.skip("the memory sink does not outlive its process")
    data = payload(3 * MIB + 5)
    st = backend.sink.create("crash/1.bstl")
    write_chunks(st, data)
    st.flush()
    backend.sink.close()  # the process goes away without closing the stream
    nxt = backend.reopen()
    assert nxt.recover() == ["crash/1.bstl"]
    backend.settle(nxt)
    assert nxt.read("crash/1.bstl") == data
    assert nxt.recover() == []
    if backend.kind == "s3":
        assert isinstance(nxt, S3Sink)
        assert nxt.pending() == []
    assert backend.stored("crash/1.bstl") == data


def test_recover_with_nothing_to_do(backend: Backend) -> None:
    assert backend.sink.recover() == []


def test_disk_full_is_a_clear_sink_error(backend: Backend, tmpfs_dir: Path) -> None:
    """Fill a 1 MiB tmpfs: the write fails with "disk full" and leaves no torn bytes.

    After freeing space (a ballast file), the recording goes on and reads back exactly
    the accepted writes plus the tail: a half-written chunk would show up in the middle.
    """
    if backend.kind == "memory":
        pytest.skip("no disk")
    if backend.kind == "file":
        sink: Sink = FileSink(tmpfs_dir / "rec")
    else:
        assert isinstance(backend.sink, S3Sink)
        sink = S3Sink(backend.sink.settings, tmpfs_dir / "spool")
    ballast = tmpfs_dir / "ballast"
    ballast.write_bytes(b"\0" * 200_000)
    try:
        st = sink.create("full.bstl")
        accepted = bytearray()
        with pytest.raises(SinkError, match="disk full") as err:
            for i in range(30):
                chunk = payload(100_000, seed=i)
                st.write(chunk)
                accepted += chunk
        assert "full.bstl" in str(err.value)
        assert 0 < len(accepted) < 1024 * 1024
        ballast.unlink()
        st.write(b"tail")
        st.close()
        backend.settle(sink)
        assert sink.read("full.bstl") == bytes(accepted) + b"tail"
    finally:
        if isinstance(sink, S3Sink):
            sink.close()
    if backend.kind == "s3":
        assert backend.stored("full.bstl") == bytes(accepted) + b"tail"
