"""Local directory sink (the embedded default).

Each recording is one file ``<dir>/<name>``; in-progress files carry the suffix
``.part`` and are renamed on close, so a reader can tell live/crashed from finished.
``flush()`` fsyncs. Files are created 0600 in directories created 0700.

Once a part of a recording is durable (after the fsync of ``flush()``), its pages are
dropped from the page cache (``POSIX_FADV_DONTNEED``): a recording is written once and
read rarely, so its gigabytes should not push out the cache of everything else, and the
next writes reuse the pages just freed instead of taking cold ones (on the VMs measured
in docs/performance.md, writing into cold page-cache pages cost 2-2.3 ms of CPU per MiB,
writing into reused ones 0.33). The pages written since the last flush stay cached until
the next one; readers (the index pass, the player) read the rest from the disk.

A failed write (disk full, file size limit) is undone with ``ftruncate`` so the file
never holds half of a write the caller was told failed. A full disk, or a write that
would leave less than ``min_free_bytes`` free (the low-water mark), raises
:class:`SinkFullError`: back-pressure, retried by the recorder when space returns. A
recording whose header could not be stored is removed (:meth:`SinkStream.abort`), so a
refused session leaves no empty ``.part`` file.

Several processes may write into one directory (the gateway and its RDP workers): each
``.part`` file is ``flock``'ed by the process writing it, and the kernel releases the
lock when that process dies. ``recover()`` (and ``adopt_orphans()``) finish only
``.part`` files nobody holds: they are cut after their last intact chunk and given a
signed recovery trailer through the sink's :class:`~recorder.sinks.base.CrashRecovery`
(when one is set), then renamed to their final name.

Known limits: names are not checked against other processes creating the same name at
the same moment beyond ``O_EXCL`` on the ``.part``. An empty ``.part`` younger than
``FRESH_SECONDS`` is left alone (its process may be about to lock it).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from recorder.errors import SinkError, SinkFullError
from recorder.sinks.base import (
    RESERVED_SUFFIX,
    FdSource,
    FreeSpace,
    Sink,
    SinkStatus,
    SinkStream,
    describe_os_error,
    drop_cached,
    replace_tail,
    validate_name,
    write_parts,
)

log = logging.getLogger(__name__)

PART_SUFFIX = RESERVED_SUFFIX
FRESH_SECONDS = 10.0  # an empty .part this young may be a create in progress


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FileStream(SinkStream):
    def __init__(self, sink: FileSink, name: str, path: Path, final: Path) -> None:
        self._sink = sink
        self._name = name
        self._path = path
        self._final = final
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        except FileExistsError as exc:
            raise SinkError(f"recording {name} already exists (in progress)") from exc
        except OSError as exc:
            raise SinkError(f"cannot create recording {path}: {describe_os_error(exc)}") from exc
        # held while this process writes it: recover() in another process leaves it alone
        # (blocking: a recoverer that looked at the empty file in between lets go at once)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._size = 0
        self._uncached = 0  # pages before this offset were dropped from the page cache
        self._closed = False
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        self.write_parts((data,))

    def write_parts(self, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        size = sum(map(len, parts))
        with self._lock:
            if self._closed:
                raise SinkError(f"recording {self._name} is closed")
            if self._size:  # the header always goes in: the session may start
                self._sink.free.check(size, f"the recordings directory {self._sink.directory}")
            done = [0]
            try:
                write_parts(self._fd, parts, done)
            except OSError as exc:
                self._size += done[0]
                self._undo_partial(done[0])
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    self._sink.free.full()
                    raise SinkFullError(
                        f"cannot write recording {self._path}: {describe_os_error(exc)}; "
                        "it waits for space"
                    ) from exc
                raise SinkError(
                    f"cannot write recording {self._path}: {describe_os_error(exc)}"
                ) from exc
            self._size += size
            self._sink.free.used(size)

    def _undo_partial(self, written: int) -> None:
        if not written:
            return
        # Truncating to a smaller size needs no space; if it fails anyway the size we
        # track stays right for readers of this process and the tail is the format's job.
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, self._size - written)
            self._size -= written

    def flush(self) -> None:
        # The fsync runs outside the lock: the recorder's syncer thread calls this while
        # its writer thread goes on appending (only what was written before is dropped
        # from the cache after). A close meanwhile makes everything durable itself.
        with self._lock:
            if self._closed:
                return
            fd, size = self._fd, self._size
        try:
            os.fsync(fd)
        except OSError as exc:
            with self._lock:
                if self._closed:
                    return
            raise SinkError(
                f"cannot flush recording {self._path}: {describe_os_error(exc)}"
            ) from exc
        with self._lock:
            if not self._closed:
                self._uncached = drop_cached(fd, self._uncached, size)  # durable

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                os.fsync(self._fd)
                os.close(self._fd)
                os.replace(self._path, self._final)
                _fsync_dir(self._final.parent)
            except OSError as exc:
                raise SinkError(
                    f"cannot finish recording {self._path}: {describe_os_error(exc)}"
                ) from exc
            finally:
                self._sink._forget(self._name)

    def abort(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(OSError):
                os.close(self._fd)
            with contextlib.suppress(OSError):
                os.unlink(self._path)
            self._sink._forget(self._name)

    def release(self) -> None:
        """Stop writing without finishing (the sink is closed): the ``.part`` stays, for
        the next :meth:`FileSink.recover`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._sink._forget(self._name)


class FileSink(Sink):
    """Recordings as files under a directory.

    Args:
        directory: created (0700) if missing.
        min_free_bytes: keep this much free on its filesystem (writes wait below it).

    Raises:
        SinkError: the directory cannot be created.
    """

    def __init__(self, directory: Path, min_free_bytes: int = 0) -> None:
        self.directory = Path(directory)
        self.free = FreeSpace(self.directory, min_free_bytes)
        self._open: dict[str, _FileStream] = {}
        self._lock = threading.Lock()
        self._unrecoverable: set[str] = set()  # .part files recover() failed on (said once)
        self._full_since: float | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise SinkError(
                f"cannot create recordings directory {directory}: {describe_os_error(exc)}"
            ) from exc

    def _path(self, name: str) -> Path:
        return self.directory / validate_name(name)

    def _forget(self, name: str) -> None:
        with self._lock:
            self._open.pop(name, None)

    def create(self, name: str) -> SinkStream:
        final = self._path(name)
        if final.exists():
            raise SinkError(f"recording {name} already exists")
        try:
            final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise SinkError(f"cannot create {final.parent}: {describe_os_error(exc)}") from exc
        stream = _FileStream(self, name, final.with_name(final.name + PART_SUFFIX), final)
        with self._lock:
            self._open[name] = stream
        return stream

    def names(self) -> list[str]:
        out = []
        for p in self.directory.rglob("*"):
            if p.is_file():
                rel = p.relative_to(self.directory).as_posix()
                out.append(rel.removesuffix(PART_SUFFIX))
        return sorted(set(out))

    def _existing(self, name: str) -> Path:
        p = self._path(name)
        if p.exists():
            return p
        part = p.with_name(p.name + PART_SUFFIX)
        if part.exists():
            return part
        raise SinkError(f"no recording named {name}")

    def size(self, name: str) -> int:
        try:
            return self._existing(name).stat().st_size
        except FileNotFoundError:  # renamed between the check and stat: finished now
            return self._existing(name).stat().st_size

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        if offset < 0 or (length is not None and length < 0):
            raise SinkError(f"invalid range {offset}+{length} for recording {name}")
        for attempt in range(2):
            path = self._existing(name)
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    return f.read() if length is None else f.read(length)
            except FileNotFoundError:
                if attempt:  # pragma: no cover - renamed twice in a row
                    raise SinkError(f"no recording named {name}") from None
            except OSError as exc:
                raise SinkError(f"cannot read recording {name}: {describe_os_error(exc)}") from exc
        raise SinkError(f"no recording named {name}")  # pragma: no cover

    def status(self) -> SinkStatus:
        st = SinkStatus(location=f"file:{self.directory}")
        st.free_bytes = self.free.free_bytes()
        st.min_free_bytes = self.free.min_free
        with self._lock:
            st.spool_entries = len(self._open)
        if self.free.below_mark() or self.free.refused_recently():
            if self._full_since is None:
                self._full_since = time.time()
            st.state = "failing"
            st.since = self._full_since
            st.detail = (
                f"{self.directory} is full or at its low-water mark "
                f"({self.free.min_free // (1024 * 1024)} MiB kept free): recording sessions "
                "are paused until space is freed"
            )
        else:
            self._full_since = None
        return st

    def is_finished(self, name: str) -> bool:
        """True when the recording was closed (its final file exists)."""
        return self._path(name).exists()

    def stored(self, name: str) -> bool:
        with self._lock:
            if name in self._open:
                return False
        return self.is_finished(name)

    def delete(self, name: str) -> None:
        """Remove a finished recording (and directories it leaves empty)."""
        if not self.stored(name):
            raise SinkError(f"recording {name} is not finished: not deleted")
        path = self._path(name)
        try:
            path.unlink()
            _fsync_dir(path.parent)
        except OSError as exc:
            raise SinkError(f"cannot delete {name}: {describe_os_error(exc)}") from exc
        parent = path.parent
        while parent != self.directory and parent.is_relative_to(self.directory):
            try:
                parent.rmdir()  # only when empty
            except OSError:
                break
            parent = parent.parent

    def recover(self) -> list[str]:
        """Finish recordings that dead processes left as ``.part`` (none holds its lock):
        cut after the last intact chunk and given a signed recovery trailer when a
        :class:`~recorder.sinks.base.CrashRecovery` is set (else kept as they are), then
        renamed to final. Recordings open in any live process are left alone; a
        ``.part`` that cannot be finished is logged (once) and left in place.

        Returns:
            The names finished.
        """
        done = []
        with self._lock:
            still_open = set(self._open)
        for part in sorted(self.directory.rglob("*" + PART_SUFFIX)):
            name = part.relative_to(self.directory).as_posix().removesuffix(PART_SUFFIX)
            if name in still_open or name in self._unrecoverable or not part.is_file():
                continue
            try:
                finished = self._finish_part(name, part)
            except OSError as exc:
                self._unrecoverable.add(name)
                log.error("cannot recover recording %s: %s; it is left as %s", name,
                          describe_os_error(exc), part)
                continue
            if finished:
                done.append(name)
        return done

    def adopt_orphans(self) -> list[str]:
        return self.recover()

    def _finish_part(self, name: str, part: Path) -> bool:
        """Finish one ``.part`` if no process holds it; False if left alone."""
        final = part.with_name(part.name.removesuffix(PART_SUFFIX))
        try:
            fd = os.open(part, os.O_RDWR)
        except FileNotFoundError:
            return False  # finished by its process meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # a live process writes it
            st = os.fstat(fd)
            if st.st_nlink == 0:
                return False  # renamed or removed between our open and our lock
            if st.st_size == 0 and time.time() - st.st_mtime < FRESH_SECONDS:
                return False  # maybe a create in progress: look again later
            if final.exists():
                self._unrecoverable.add(name)
                log.error("recording %s exists both finished and as %s; the .part is left "
                          "alone", name, part)
                return False  # never overwrite a finished recording
            outcome, detail = self._recovery_tail(name, fd)
            os.replace(part, final)
            _fsync_dir(final.parent)
        finally:
            os.close(fd)
        if self.recovery is not None:
            self.recovery.finished(name, outcome, detail)
        return True

    def _recovery_tail(self, name: str, fd: int) -> tuple[str, str]:
        """Cut and append what the sink's CrashRecovery asks for; (outcome, detail)."""
        recovery = self.recovery
        if recovery is None:
            return "unrecovered", "no crash recovery configured"
        try:
            tail = recovery.tail(name, FdSource(fd))
        except Exception as exc:  # a bad recording must not stop the others
            log.exception("recording %s: computing its recovery trailer failed", name)
            return "unrecovered", f"its recovery trailer could not be computed: {exc}"
        if tail is None:
            return "unrecovered", ""
        replace_tail(fd, *tail)
        return "recovered", ""

    def close(self) -> None:
        """Stop writing open recordings without finishing them (their ``.part`` files
        stay for :meth:`recover`, like after a crash)."""
        with self._lock:
            streams = list(self._open.values())
        for stream in streams:
            stream.release()
