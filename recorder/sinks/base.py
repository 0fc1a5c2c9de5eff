"""The sink contract: where recording bytes go.

A recording is stored as one append-only byte stream named by an opaque relative key
(for example ``2026/11/24/<session-id>.bstl``). Sinks are synchronous and are called
from the recorder's writer thread, never from the event loop.

Durability contract: after ``flush()`` returns, everything written before it survives a
crash of the process (kill -9): the file sink fsyncs, the S3 sink fsyncs its local spool
and uploads in the background. ``close()`` makes the stream complete and visible to
readers as a finished object. ``recover()`` (called once at start-up) finishes whatever a
previous process left half done (e.g. incomplete multipart uploads from the spool), and
``adopt_orphans()`` (called every few seconds while the gateway runs) what a process
that shares the storage (an RDP worker) left when it died.

Crash recovery: a recording its process did not close has no trailer. Before a sink
finishes such a recording it asks the :class:`CrashRecovery` given to
:meth:`Sink.set_recovery` (the recorder's, which holds the signing key) for the bytes
that finish it: cut at the end of the last intact chunk (a torn last write is dropped),
then a signed recovery trailer appended. It reports each one back with
:meth:`CrashRecovery.finished`, so that the index and the audit trail learn of it.

Errors: every failure is raised as :class:`recorder.errors.SinkError` (or a subclass).
A transient outage of remote storage is *not* an error while the spool has room.
:class:`recorder.errors.SinkFullError` means "not now": the spool cap, the disk's
low-water mark (``min_free_bytes``) or a full disk; nothing was stored and the same write
may be retried (the recorder pauses the session meanwhile).

Names: every sink accepts the same names (see :func:`validate_name`): relative, ``/``
separated components of ``[A-Za-z0-9_][A-Za-z0-9._@+=,-]*``, at most 512 characters, not
ending in ``.part`` (the file sink's in-progress suffix). Anything else is a SinkError, so
a name can never escape a directory or mean different things on different sinks.
"""

from __future__ import annotations

import errno
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from recorder.errors import SinkError, SinkFullError

MAX_NAME_LENGTH = 512
RESERVED_SUFFIX = ".part"
_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._@+=,-]*")


def validate_name(name: str) -> str:
    """Check a recording name against the rules every sink shares.

    Args:
        name: the relative key, e.g. ``2026/11/24/<session-id>.bstl``.

    Returns:
        The name, unchanged.

    Raises:
        SinkError: the name is empty, absolute, too long, has an empty, ``.`` or ``..``
            component, a character outside the allowed set, or the reserved suffix.
    """
    if not isinstance(name, str) or not name:
        raise SinkError("invalid recording name: empty")
    if len(name) > MAX_NAME_LENGTH:
        raise SinkError(f"invalid recording name: longer than {MAX_NAME_LENGTH} characters")
    if name.endswith(RESERVED_SUFFIX):
        raise SinkError(f"invalid recording name {name!r}: suffix {RESERVED_SUFFIX} is reserved")
    for part in name.split("/"):
        if not _COMPONENT.fullmatch(part):
            raise SinkError(
                f"invalid recording name {name!r}: each /-separated part must match "
                "[A-Za-z0-9_][A-Za-z0-9._@+=,-]*"
            )
    return name


def describe_os_error(exc: OSError) -> str:
    """A short, clear reason for an OSError, naming disk full explicitly."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk full (no space left on device)"
    if exc.errno == errno.EFBIG:
        return "file size limit reached (EFBIG)"
    return exc.strerror or str(exc)


class FreeSpace:
    """The low-water mark of a filesystem: refuse writes that would leave less free.

    ``statvfs`` is asked at most every ``RECHECK`` seconds while the estimated free space
    is more than twice the mark, and before every write below that.
    """

    RECHECK = 1.0

    def __init__(self, directory: Path, min_free_bytes: int) -> None:
        self.directory = directory
        self.min_free = max(0, min_free_bytes)
        self._lock = threading.Lock()
        self._estimate = 0
        self._at = -1e9
        self.refused_at = -1e9  # monotonic time of the last write refused for space

    def free_bytes(self) -> int | None:
        """Bytes available to this user on the filesystem, or None if it cannot be read."""
        try:
            st = os.statvfs(self.directory)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    def check(self, nbytes: int, what: str) -> None:
        """Raise SinkFullError if writing ``nbytes`` would pass the low-water mark."""
        if not self.min_free:
            return
        now = time.monotonic()
        with self._lock:
            fresh = now - self._at < self.RECHECK and self._estimate - nbytes > 2 * self.min_free
            if fresh:
                return
        free = self.free_bytes()
        with self._lock:
            self._at = now
            self._estimate = free if free is not None else 2 * self.min_free + nbytes + 1
        if free is not None and free - nbytes < self.min_free:
            self.refused_at = now
            raise SinkFullError(
                f"{what} is at its low-water mark: {free // (1024 * 1024)} MiB free, "
                f"{self.min_free // (1024 * 1024)} MiB kept free (recording.min_free_mib); "
                "it waits for space"
            )

    def used(self, nbytes: int) -> None:
        with self._lock:
            self._estimate -= nbytes

    def full(self) -> None:
        """The disk said ENOSPC: look again before the next write."""
        with self._lock:
            self._at = -1e9
        self.refused_at = time.monotonic()

    def refused_recently(self, within: float = 5.0) -> bool:
        return time.monotonic() - self.refused_at < within

    def below_mark(self) -> bool:
        free = self.free_bytes()
        return free is not None and self.min_free > 0 and free < self.min_free


State = Literal["ok", "degraded", "failing"]


@dataclass
class SinkStatus:
    """What a sink says about its health (shown by ``bastille status``).

    ``state``: ``ok``; ``degraded`` (working around a problem, nothing lost: a store
    outage, uploads behind); ``failing`` (needs an administrator: a configuration error
    such as denied access, or storage full so sessions are paused).
    """

    location: str
    state: State = "ok"
    detail: str = ""
    since: float | None = None  # unix time the current state began
    last_error: str | None = None
    last_error_at: float | None = None
    spool_bytes: int = 0  # bytes waiting for upload
    spool_cap_bytes: int | None = None
    spool_entries: int = 0  # recordings in the spool (open or waiting)
    oldest_entry: float | None = None  # unix time the oldest spooled recording began
    uploads_pending: int = 0  # closed recordings not yet confirmed in the store
    confirmed: int = 0  # objects confirmed (HEAD) since start
    free_bytes: int | None = None  # free space on the local storage filesystem
    min_free_bytes: int | None = None
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LostRecording:
    """A recording once confirmed in the store that the store no longer has (or has
    with another size): what ``verify --all`` reports."""

    name: str
    size: int
    sha256: str
    confirmed_at: float
    found_size: int | None  # None: missing; else the size the store has now

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.confirmed_at))
        now = "is missing" if self.found_size is None else f"now has {self.found_size} bytes"
        return (
            f"confirmed in storage at {when} ({self.size} bytes, sha256 {self.sha256[:16]}...) "
            f"but {now}"
        )


class RecordingBytes(Protocol):
    """Random-access bytes of one stored recording (``recorder.format.v1.ByteSource``)."""

    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes: ...


class FdSource:
    """The bytes of an open file, for the format reader (``pread``)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def read(self, offset: int, length: int) -> bytes:
        out = []
        while length > 0:
            piece = os.pread(self._fd, min(length, 1 << 20), offset)
            if not piece:
                break
            out.append(piece)
            offset += len(piece)
            length -= len(piece)
        return b"".join(out)


CACHE_PAGE = 4096  # what the page-cache advice is aligned to


IOV_MAX = 1024  # buffers per writev call (POSIX guarantees at least 16; Linux takes 1024)


def write_parts(fd: int, parts: Sequence[bytes | bytearray | memoryview], done: list[int]
                ) -> None:
    """Write ``parts`` in order to ``fd`` with ``os.writev`` (one system call for a
    chunk's header, data and digest: nothing is joined first), resuming after short
    writes. ``done[0]`` counts the bytes written, for an undo after an ``OSError``."""
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    i = 0
    while i < len(views):
        n = os.writev(fd, views[i : i + IOV_MAX])
        if n <= 0:
            raise OSError(errno.EIO, "write returned no progress")
        done[0] += n
        while n:
            size = len(views[i])
            if n >= size:
                n -= size
                i += 1
            else:
                views[i] = views[i][n:]
                n = 0


def drop_cached(fd: int, start: int, end: int) -> int:
    """Drop the whole pages of ``[start, end)`` of a file from the page cache (advice,
    ``POSIX_FADV_DONTNEED``: bytes written once and made durable or uploaded, so that
    recordings neither push the rest of the machine out of the cache nor make each write
    take cold pages; docs/performance.md). ``start`` is rounded down to its page, so the
    partial page a previous call left is dropped once whole. Returns where the pages
    still cached begin (the caller's next ``start``). A kernel or file system that
    refuses the advice changes nothing."""
    start &= ~(CACHE_PAGE - 1)
    if end - start < CACHE_PAGE:
        return start
    try:
        os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_DONTNEED)
    except (OSError, AttributeError):  # AttributeError: no posix_fadvise on this OS
        return start
    return end & ~(CACHE_PAGE - 1)


def replace_tail(fd: int, cut: int, data: bytes) -> None:
    """Crash recovery: truncate the file ``fd`` to ``cut`` bytes, write ``data`` after
    them and fsync (raises OSError). Redone from the start if interrupted."""
    os.ftruncate(fd, cut)
    view = memoryview(data)
    pos = cut
    while view:
        n = os.pwrite(fd, view, pos)
        view = view[n:]
        pos += n
    os.fsync(fd)


class CrashRecovery(Protocol):
    """How a sink finishes a recording left without its trailer (see the module doc)."""

    def tail(self, name: str, src: RecordingBytes) -> tuple[int, bytes] | None:
        """``(cut, data)``: keep the first ``cut`` bytes and append ``data``; None when
        the recording must stay as found (already finished, damaged, no header)."""

    def finished(self, name: str, outcome: str, detail: str) -> None:
        """Called once per recording a sink finished after a crash, from any thread:
        ``outcome`` is ``"recovered"`` (the trailer was appended) or ``"unrecovered"``
        (finished as found; ``detail`` says why)."""


class SinkStream(ABC):
    """One recording being written."""

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Append bytes. May buffer; raises SinkError if the data cannot be accepted."""

    def write_parts(self, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        """Append ``parts`` in order, all or nothing, like ``write`` of their join.
        Default: that join; sinks that write files override it to write them as
        they are."""
        self.write(b"".join(parts))

    @abstractmethod
    def flush(self) -> None:
        """Make everything written so far durable against a process crash."""

    @abstractmethod
    def close(self) -> None:
        """Finish the recording (complete the object). Idempotent."""

    def abort(self) -> None:
        """Give up a recording that never started (its header could not be stored):
        remove what was written so no empty object is left. Default: close."""
        self.close()


class Sink(ABC):
    """A place recordings are stored: local directory, S3, or memory (tests)."""

    @abstractmethod
    def create(self, name: str) -> SinkStream:
        """Start a new recording under ``name``; raises SinkError if impossible."""

    @abstractmethod
    def names(self) -> list[str]:
        """Names of stored recordings (finished, and in-progress ones where visible)."""

    @abstractmethod
    def size(self, name: str) -> int:
        """Current size in bytes of a stored recording."""

    @abstractmethod
    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Read ``length`` bytes (all when None) from ``offset``; SinkError if missing."""

    recovery: CrashRecovery | None = None

    def set_recovery(self, recovery: CrashRecovery | None) -> None:
        """Finish crashed recordings through ``recovery`` (call before :meth:`recover`)."""
        self.recovery = recovery

    def recover(self) -> list[str]:
        """Finish interrupted writes left by a crashed process; return the names handled."""
        return []

    def adopt_orphans(self) -> list[str]:
        """Finish what processes sharing this storage left when they died while this one
        runs (called every few seconds by the recorder that called :meth:`recover`);
        sinks that do this on their own threads return ``[]``."""
        return []

    def status(self) -> SinkStatus:
        """Health for ``bastille status``; sinks with nothing to report are always ok."""
        return SinkStatus(location=type(self).__name__)

    def lost(self) -> list[LostRecording]:
        """Recordings this storage confirmed once and no longer has (see verify --all)."""
        return []

    def stored(self, name: str) -> bool:
        """True when ``name`` is finished and safely in its final storage (closed; for an
        object store: uploaded and confirmed, no longer in the spool). Retention deletes
        only such recordings."""
        return False

    def delete(self, name: str) -> None:
        """Delete a stored recording on purpose (retention). Raises SinkError if it is
        not :meth:`stored` or cannot be deleted."""
        raise SinkError(f"{type(self).__name__} cannot delete recordings")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (threads, clients)."""
