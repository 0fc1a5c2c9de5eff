"""A recording's durable pages leave the page cache (``POSIX_FADV_DONTNEED`` after each
fsync): gigabytes of recordings must not push out the cache of everything else, and on
the VMs measured in docs/performance.md writing into cold page-cache pages cost several
times the CPU of writing into reused ones. Residency is read with ``mincore(2)``, what
``fincore`` shows an operator."""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

import pytest

from recorder.sinks.file import FileSink
from recorder.sinks.spool import Spool, entry_dirname

PAGE = mmap.PAGESIZE


def _fs_type(path: Path) -> str:
    best, kind = "", ""
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        mount = parts[1]
        if str(path).startswith(mount.rstrip("/") + "/") and len(mount) > len(best):
            best, kind = mount, parts[2]
    return kind


def _resident_pages(path: Path) -> int:
    size = path.stat().st_size
    libc = ctypes.CDLL(None, use_errno=True)
    with path.open("rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as mm:
        anchor = ctypes.c_char.from_buffer(mm)
        try:
            pages = (size + PAGE - 1) // PAGE
            vec = (ctypes.c_ubyte * pages)()
            rc = libc.mincore(ctypes.c_void_p(ctypes.addressof(anchor)), ctypes.c_size_t(size),
                              vec)
            assert rc == 0, os.strerror(ctypes.get_errno())
            return sum(v & 1 for v in vec)
        finally:
            del anchor


def test_durable_pages_of_a_recording_leave_the_page_cache(tmp_path: Path) -> None:
    if _fs_type(tmp_path) in ("tmpfs", "ramfs"):
        pytest.skip("the temporary directory is in memory (tmpfs): it has no page cache to drop")
    sink = FileSink(tmp_path / "rec")
    stream = sink.create("s1.bstl")
    part = tmp_path / "rec" / "s1.bstl.part"
    data = [os.urandom(256 * 1024) for _ in range(32)]  # 8 MiB
    for block in data:
        stream.write(block)
    total = 8 * 1024 * 1024 // PAGE
    assert _resident_pages(part) > total * 0.9  # written, not yet durable: cached
    stream.flush()
    assert _resident_pages(part) == 0  # durable: dropped

    stream.write(b"x" * 1000)  # a partial page stays cached until it is whole and durable
    stream.flush()
    assert _resident_pages(part) <= 1
    for block in data[:4]:
        stream.write(block)
    stream.flush()
    assert _resident_pages(part) <= 1
    stream.close()
    # nothing lost: the file holds every byte, in order
    expected = b"".join(data) + b"x" * 1000 + b"".join(data[:4])
    assert (tmp_path / "rec" / "s1.bstl").read_bytes() == expected


def test_uploaded_bytes_of_a_spooled_recording_leave_the_page_cache(tmp_path: Path) -> None:
    """The S3 spool: bytes still to upload stay cached (the uploader reads them back),
    uploaded ones are dropped."""
    if _fs_type(tmp_path) in ("tmpfs", "ramfs"):
        pytest.skip("the temporary directory is in memory (tmpfs): it has no page cache to drop")
    spool = Spool(tmp_path / "spool", 1 << 30)
    entry = spool.create("s1.bstl", 4 * 1024 * 1024)
    data = os.urandom(8 * 1024 * 1024)
    spool.append(entry, data)
    spool.sync(entry)
    path = tmp_path / "spool" / entry_dirname("s1.bstl") / "data"
    half = 4 * 1024 * 1024 // PAGE
    assert _resident_pages(path) > 2 * half * 0.9  # durable, not uploaded: still cached
    spool.add_part(entry, 1, "etag-1", 4 * 1024 * 1024)
    assert _resident_pages(path) <= half  # the uploaded first half left
    assert half * 0.9 < _resident_pages(path)  # the second half waits for its upload
    assert entry.read(0) == data  # nothing lost: read back from the disk
