"""Local write-ahead spool for the S3 sink.

Every byte a recording gets is first appended to a local file and fsynced on ``flush()``;
the S3 uploader reads it back from there. So a recording survives an S3 outage and a
kill -9 of the gateway, and the next start finishes the upload.

Layout (directories 0700, files 0600)::

    <spool>/
      lock                   flock'ed by the process that owns the spool
      <sha256(name)[:32]>/   one directory per recording
        data                 the recording's bytes, append-only
        state.json           upload state, replaced atomically (write, fsync, rename)

``state.json`` holds ``name``, ``part_size``, ``upload_id``, ``parts`` ([number, etag]
pairs of the uploaded parts), ``uploaded`` (bytes covered by those parts), ``finished``
(the recording was closed: no more bytes will come) and ``completed`` (the S3 object
exists; the entry only waits to be deleted).

The cap (``S3Settings.spool_cap_bytes``) bounds the *backlog*: bytes not yet uploaded.
That is what grows while S3 is down; a write that would push it over the cap raises
:class:`SpoolFullError` and stores nothing.

Known limits: bytes already uploaded stay in ``data`` until the object is complete (so a
live recording stays readable and an upload S3 lost can be restarted from local bytes);
that disk use is the size of the recordings still open, like the file sink, and is not
counted in the cap. One process owns a spool at a time (``flock``); a second one gets a
SinkError. A malformed entry is reported in :attr:`Spool.bad` and left on disk untouched.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recorder.errors import SinkError, SpoolFullError
from recorder.sinks.base import describe_os_error

log = logging.getLogger(__name__)

STATE_VERSION = 1
DATA = "data"
STATE = "state.json"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def entry_dirname(name: str) -> str:
    """The directory name of a recording in the spool (names may contain ``/``)."""
    return hashlib.sha256(name.encode()).hexdigest()[:32]


@dataclass(eq=False)
class SpoolEntry:
    """One recording in the spool: its bytes on disk and its upload state.

    Fields other than ``name``/``path`` are guarded by ``lock``; mutate them only through
    :class:`Spool` methods, which keep the cap accounting right and persist the state.
    """

    name: str
    path: Path
    part_size: int
    size: int = 0
    upload_id: str | None = None
    parts: list[tuple[int, str]] = field(default_factory=list)
    uploaded: int = 0
    finished: bool = False
    completed: bool = False
    recovered: bool = False  # left by an earlier process: reconcile with S3 before use
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _wfd: int | None = field(default=None, repr=False)

    @property
    def backlog(self) -> int:
        """Bytes appended but not yet covered by an uploaded part."""
        return self.size - self.uploaded

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "name": self.name,
            "part_size": self.part_size,
            "upload_id": self.upload_id,
            "parts": [[n, etag] for n, etag in self.parts],
            "uploaded": self.uploaded,
            "finished": self.finished,
            "completed": self.completed,
        }

    def read(self, offset: int, length: int | None = None) -> bytes:
        """Read spooled bytes; FileNotFoundError if the entry was removed meanwhile."""
        with self.lock:
            end = self.size if length is None else min(self.size, offset + length)
        if offset >= end:
            return b""
        fd = os.open(self.path / DATA, os.O_RDONLY)
        try:
            chunks = []
            pos = offset
            while pos < end:
                chunk = os.pread(fd, end - pos, pos)
                if not chunk:
                    break
                chunks.append(chunk)
                pos += len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)


class Spool:
    """The spool directory: creates, loads, appends to and removes entries.

    Args:
        directory: created 0700 if missing.
        cap_bytes: the most bytes that may wait for upload, over all entries.

    Raises:
        SinkError: the directory cannot be created or another process owns it.
    """

    def __init__(self, directory: Path, cap_bytes: int) -> None:
        self.directory = Path(directory)
        self.cap_bytes = cap_bytes
        self.bad: list[str] = []  # entries that could not be loaded, with the reason
        self._lock = threading.Lock()
        self._entries: dict[str, SpoolEntry] = {}
        self._backlog = 0
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.directory, 0o700)
            self._lock_fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise SinkError(
                f"cannot open spool directory {directory}: {describe_os_error(exc)}"
            ) from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            raise SinkError(f"spool {directory} is in use by another process") from exc
        self._load()

    # -- loading ---------------------------------------------------------------------

    def _load(self) -> None:
        for sub in sorted(self.directory.iterdir()):
            if not sub.is_dir():
                continue
            if sub.name.endswith(".tmp"):  # a create() that crashed before its rename
                shutil.rmtree(sub, ignore_errors=True)
                continue
            try:
                entry = self._load_entry(sub)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                reason = f"{sub}: {exc}"
                self.bad.append(reason)
                log.error("spool entry %s is malformed and left in place: %s", sub, exc)
                continue
            self._entries[entry.name] = entry
            self._backlog += entry.backlog

    def _load_entry(self, sub: Path) -> SpoolEntry:
        raw = json.loads((sub / STATE).read_text())
        if raw.get("version") != STATE_VERSION:
            raise ValueError(f"unknown state version {raw.get('version')!r}")
        name = str(raw["name"])
        if entry_dirname(name) != sub.name:
            raise ValueError("directory name does not match the recording name")
        entry = SpoolEntry(
            name=name,
            path=sub,
            part_size=int(raw["part_size"]),
            size=(sub / DATA).stat().st_size,
            upload_id=raw["upload_id"] if raw["upload_id"] is None else str(raw["upload_id"]),
            parts=[(int(n), str(etag)) for n, etag in raw["parts"]],
            uploaded=int(raw["uploaded"]),
            finished=bool(raw["finished"]),
            completed=bool(raw["completed"]),
            recovered=True,
        )
        if entry.part_size <= 0 or not 0 <= entry.uploaded <= entry.size:
            raise ValueError(
                f"inconsistent sizes: part_size={entry.part_size} uploaded={entry.uploaded} "
                f"size={entry.size}"
            )
        return entry

    # -- queries ---------------------------------------------------------------------

    @property
    def backlog_bytes(self) -> int:
        """Bytes waiting for upload over all entries (what the cap bounds)."""
        with self._lock:
            return self._backlog

    def get(self, name: str) -> SpoolEntry | None:
        with self._lock:
            return self._entries.get(name)

    def entries(self) -> list[SpoolEntry]:
        with self._lock:
            return list(self._entries.values())

    # -- mutations -------------------------------------------------------------------

    def create(self, name: str, part_size: int) -> SpoolEntry:
        """Start a new entry (its directory, empty data file and state, all fsynced)."""
        final = self.directory / entry_dirname(name)
        tmp = final.with_name(final.name + ".tmp")
        with self._lock:
            if name in self._entries or final.exists():
                raise SinkError(f"recording {name} already exists in the spool")
            entry = SpoolEntry(name=name, path=final, part_size=part_size)
            try:
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(mode=0o700)
                fd = os.open(tmp / DATA, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                os.fsync(fd)
                os.close(fd)
                self._write_state(tmp, entry)
                os.rename(tmp, final)
                _fsync_dir(self.directory)
                entry._wfd = os.open(final / DATA, os.O_WRONLY | os.O_APPEND)
            except OSError as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                raise SinkError(
                    f"cannot create spool entry for {name} in {self.directory}: "
                    f"{describe_os_error(exc)}"
                ) from exc
            self._entries[name] = entry
        return entry

    def append(self, entry: SpoolEntry, data: bytes) -> None:
        """Append bytes to an open entry, within the cap.

        Raises:
            SpoolFullError: the backlog would exceed the cap; nothing was written.
            SinkError: the disk is full or another I/O error; nothing was written.
        """
        n = len(data)
        with self._lock:
            if self._backlog + n > self.cap_bytes:
                raise SpoolFullError(
                    f"spool {self.directory} is full: {self._backlog} bytes wait for upload "
                    f"(cap {self.cap_bytes}); recording {entry.name} cannot take {n} more"
                )
            self._backlog += n
        with entry.lock:
            try:
                if entry._wfd is None or entry.finished:
                    raise SinkError(f"recording {entry.name} is closed")
                view = memoryview(data)
                written = 0
                try:
                    while written < n:
                        written += os.write(entry._wfd, view[written:])
                except OSError as exc:
                    if written:
                        with contextlib.suppress(OSError):
                            os.ftruncate(entry._wfd, entry.size)
                    raise SinkError(
                        f"cannot write recording {entry.name} to the spool {self.directory}: "
                        f"{describe_os_error(exc)}"
                    ) from exc
                entry.size += n
            except BaseException:
                with self._lock:
                    self._backlog -= n
                raise

    def sync(self, entry: SpoolEntry) -> None:
        """fsync the entry's data (the durability point of ``flush()``)."""
        with entry.lock:
            if entry._wfd is None:
                return
            try:
                os.fsync(entry._wfd)
            except OSError as exc:
                raise SinkError(
                    f"cannot flush recording {entry.name} in the spool: {describe_os_error(exc)}"
                ) from exc

    def finish(self, entry: SpoolEntry) -> None:
        """Mark the entry closed (no more bytes) and persist that."""
        with entry.lock:
            if entry.finished:
                return
            try:
                if entry._wfd is not None:
                    os.fsync(entry._wfd)
                    os.close(entry._wfd)
                    entry._wfd = None
                entry.finished = True
                self.save(entry)
            except OSError as exc:
                raise SinkError(
                    f"cannot finish recording {entry.name} in the spool: {describe_os_error(exc)}"
                ) from exc

    def set_upload(self, entry: SpoolEntry, upload_id: str | None) -> None:
        """Start over with a new (or no) multipart upload; uploaded bytes become backlog."""
        with entry.lock:
            again = entry.uploaded
            entry.upload_id = upload_id
            entry.parts = []
            entry.uploaded = 0
            self.save(entry)
        with self._lock:
            self._backlog += again

    def set_parts(self, entry: SpoolEntry, parts: list[tuple[int, str]], uploaded: int) -> None:
        """Replace the list of uploaded parts (after reconciling with S3's ListParts)."""
        with entry.lock:
            delta = uploaded - entry.uploaded
            entry.parts = list(parts)
            entry.uploaded = uploaded
            self.save(entry)
        with self._lock:
            self._backlog -= delta

    def add_part(self, entry: SpoolEntry, number: int, etag: str, nbytes: int) -> None:
        """Record one uploaded part; its bytes leave the backlog."""
        with entry.lock:
            entry.parts.append((number, etag))
            entry.uploaded += nbytes
            self.save(entry)
        with self._lock:
            self._backlog -= nbytes

    def mark_completed(self, entry: SpoolEntry) -> None:
        """The S3 object exists: remember it before removing the entry."""
        with entry.lock:
            delta = entry.size - entry.uploaded
            entry.completed = True
            entry.uploaded = entry.size
            self.save(entry)
        with self._lock:
            self._backlog -= delta

    def remove(self, entry: SpoolEntry) -> None:
        """Delete the entry from disk and memory (after its object is complete)."""
        with self._lock:
            self._entries.pop(entry.name, None)
            self._backlog -= entry.backlog
        with entry.lock:
            if entry._wfd is not None:
                os.close(entry._wfd)
                entry._wfd = None
            shutil.rmtree(entry.path, ignore_errors=True)
        with contextlib.suppress(OSError):
            _fsync_dir(self.directory)

    def save(self, entry: SpoolEntry) -> None:
        """Persist the entry's state atomically (raises SinkError on I/O errors)."""
        try:
            self._write_state(entry.path, entry)
        except OSError as exc:
            raise SinkError(
                f"cannot save the spool state of {entry.name}: {describe_os_error(exc)}"
            ) from exc

    @staticmethod
    def _write_state(directory: Path, entry: SpoolEntry) -> None:
        tmp = directory / (STATE + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(entry.to_json()).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, directory / STATE)
        _fsync_dir(directory)

    def close(self) -> None:
        """Close open files and release the spool lock (entries stay on disk)."""
        with self._lock:
            entries = list(self._entries.values())
        for entry in entries:
            with entry.lock:
                if entry._wfd is not None:
                    with contextlib.suppress(OSError):
                        os.fsync(entry._wfd)
                        os.close(entry._wfd)
                    entry._wfd = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1
