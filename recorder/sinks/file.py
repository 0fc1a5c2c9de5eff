"""Local directory sink (the embedded default).

Each recording is one file ``<dir>/<name>``; in-progress files carry the suffix
``.part`` and are renamed on close, so a reader can tell live/crashed from finished.
``flush()`` fsyncs. Files are created 0600 in directories created 0700.

A failed write (disk full, file size limit) is undone with ``ftruncate`` so the file
never holds half of a write the caller was told failed. A full disk, or a write that
would leave less than ``min_free_bytes`` free (the low-water mark), raises
:class:`SinkFullError`: back-pressure, retried by the recorder when space returns. A
recording whose header could not be stored is removed (:meth:`SinkStream.abort`), so a
refused session leaves no empty ``.part`` file.

Known limits: ``recover()`` renames every ``.part`` file this process did not create:
one directory must belong to one gateway process. Names are not checked against other
processes creating the same name at the same moment beyond ``O_EXCL`` on the ``.part``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from pathlib import Path

from recorder.errors import SinkError, SinkFullError
from recorder.sinks.base import (
    RESERVED_SUFFIX,
    FreeSpace,
    Sink,
    SinkStatus,
    SinkStream,
    describe_os_error,
    validate_name,
)

PART_SUFFIX = RESERVED_SUFFIX


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
        self._size = 0
        self._closed = False
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._closed:
                raise SinkError(f"recording {self._name} is closed")
            if self._size:  # the header always goes in: the session may start
                self._sink.free.check(len(data), f"the recordings directory {self._sink.directory}")
            view = memoryview(data)
            try:
                while view:
                    n = os.write(self._fd, view)
                    view = view[n:]
                    self._size += n
            except OSError as exc:
                self._undo_partial(len(data) - len(view))
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    self._sink.free.full()
                    raise SinkFullError(
                        f"cannot write recording {self._path}: {describe_os_error(exc)}; "
                        "it waits for space"
                    ) from exc
                raise SinkError(
                    f"cannot write recording {self._path}: {describe_os_error(exc)}"
                ) from exc
            self._sink.free.used(len(data))

    def _undo_partial(self, written: int) -> None:
        if not written:
            return
        # Truncating to a smaller size needs no space; if it fails anyway the size we
        # track stays right for readers of this process and the tail is the format's job.
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, self._size - written)
            self._size -= written

    def flush(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise SinkError(
                    f"cannot flush recording {self._path}: {describe_os_error(exc)}"
                ) from exc

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
        self._open: set[str] = set()
        self._lock = threading.Lock()
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
            self._open.discard(name)

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
            self._open.add(name)
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
        """Finish recordings a crashed process left as ``.part``: rename them to final.

        The bytes are kept as they are (a torn last write is the format reader's job to
        report). Recordings this sink has open are left alone.
        """
        done = []
        with self._lock:
            still_open = set(self._open)
        for part in sorted(self.directory.rglob("*" + PART_SUFFIX)):
            name = part.relative_to(self.directory).as_posix().removesuffix(PART_SUFFIX)
            if name in still_open or not part.is_file():
                continue
            final = part.with_name(part.name.removesuffix(PART_SUFFIX))
            if final.exists():
                continue  # both exist: never overwrite a finished recording
            try:
                os.replace(part, final)
                _fsync_dir(final.parent)
            except OSError as exc:
                raise SinkError(f"cannot recover {part}: {describe_os_error(exc)}") from exc
            done.append(name)
        return done
