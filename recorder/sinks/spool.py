"""Local write-ahead spool of the spooled sink (:mod:`recorder.sinks.spooled`).

Every byte a recording gets is first appended to a local file and fsynced on ``flush()``;
the uploader reads it back from there. So a recording survives a store outage and a
kill -9 of the gateway, and the same or the next process finishes the upload.

Layout (directories 0700, files 0600)::

    <spool>/
      <sha256(name)[:32]>/   one directory per recording
        lock                 flock'ed by the one process that owns (writes, uploads) it
        data                 the recording's bytes, append-only
        state.json           upload state, replaced atomically (write, fsync, rename)

``state.json`` holds ``name``, ``part_size``, ``created`` (unix time), ``upload_id``,
``parts`` ([number, tag] of the uploaded parts), ``md5s`` (part number -> MD5 of its
bytes), ``uploaded`` (bytes covered by those parts), ``punched`` (bytes at the start
whose disk space was released, see below), ``finished`` (the recording was closed: no
more bytes will come) and ``completed`` (the object was completed in the store; it
waits for confirmation).

Disk pressure: when the spool's filesystem nears its low-water mark, the disk space of
bytes already uploaded is released (``fallocate`` PUNCH_HOLE) even for recordings still
running, so that a session bigger than the free disk does not stay paused for ever.
Those bytes can then be read only from the store, once the recording is complete.

Processes: several processes may write into one spool (the gateway and its RDP
workers); each entry is owned by the process holding its ``lock``, which is released by
the kernel when that process dies, so another process can *adopt* the entry and finish
it. Readers (``bastille sessions``, ``play``, the player) take no lock and never write:
they see every entry on disk, read-only, while a gateway runs.

Back-pressure, never loss: the cap (``spool_cap_bytes``) bounds the *backlog*, the bytes
not yet uploaded, over every process's entries; a write that would pass it, or that
would leave less than ``min_free_bytes`` free on the spool's filesystem, or that meets a
full disk, raises :class:`SpoolFullError` / :class:`SinkFullError` and stores nothing:
the writer retries it later. The first write of an entry (its header) is always
accepted so that a session can start; it then waits for room like the others.

Known limits: bytes already uploaded stay in ``data`` until the object is confirmed (so
a live recording stays readable and an upload the store lost can be restarted from
local bytes): that disk use is the size of the recordings still open, like the file
sink, and is not counted in the cap (their pages leave the page cache once uploaded:
``POSIX_FADV_DONTNEED``, as the file sink does after each fsync). Other processes'
backlog is re-read at most twice a second, so the cap can be passed by what they wrote
meanwhile. A malformed entry is reported in :attr:`Spool.bad` and left on disk untouched.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recorder.errors import SinkError, SinkFullError, SpoolFullError
from recorder.sinks.base import (
    FreeSpace,
    describe_os_error,
    drop_cached,
    replace_tail,
    write_parts,
)

log = logging.getLogger(__name__)

STATE_VERSION = 1
DATA = "data"
STATE = "state.json"
LOCK = "lock"
FOREIGN_REFRESH = 0.5  # seconds between re-reads of other processes' backlog
PUNCH_ALIGN = 64 * 1024
LOST_SUFFIX = ".lost"
LOST_REASON = (
    "the store lost part of this recording after the spool had released it; what the "
    "spool still holds (the end of the recording) is kept here for an administrator"
)
_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02


def _punch_hole(fd: int, offset: int, length: int) -> None:
    """Deallocate a range of a file, keeping its size (Linux fallocate PUNCH_HOLE)."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
    if libc.fallocate(fd, mode, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class ReleasedError(SinkError):
    """An upload must start over, but bytes it needs were released from the spool."""


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
    ``owned`` is False for a read-only view of another process's entry.
    """

    name: str
    path: Path
    part_size: int
    size: int = 0
    created: float = 0.0
    upload_id: str | None = None
    parts: list[tuple[int, str]] = field(default_factory=list)
    uploaded: int = 0
    md5s: dict[int, str] = field(default_factory=dict)
    punched: int = 0  # bytes from the start whose disk space was released (uploaded)
    finished: bool = False
    completed: bool = False
    recovered: bool = False  # left by an earlier process: reconcile with the store first
    owned: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _wfd: int | None = field(default=None, repr=False)
    _lock_fd: int | None = field(default=None, repr=False)

    @property
    def backlog(self) -> int:
        """Bytes appended but not yet covered by an uploaded part."""
        return self.size - self.uploaded

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "name": self.name,
            "part_size": self.part_size,
            "created": self.created,
            "upload_id": self.upload_id,
            "parts": [[n, tag] for n, tag in self.parts],
            "md5s": {str(n): h for n, h in self.md5s.items()},
            "uploaded": self.uploaded,
            "punched": self.punched,
            "finished": self.finished,
            "completed": self.completed,
        }

    def read(self, offset: int, length: int | None = None) -> bytes:
        """Read spooled bytes; FileNotFoundError if the entry was removed meanwhile.

        A read-only view reads up to the current end of the file (another process may
        still be appending).
        """
        with self.lock:
            size = self.size
            punched = self.punched
        if offset < punched:
            raise SinkError(
                f"bytes {offset}-{punched} of the live recording {self.name} were uploaded and "
                "released from the spool to free disk space; they can be read from the "
                "store once the recording is complete"
            )
        fd = os.open(self.path / DATA, os.O_RDONLY)
        try:
            if not self.owned:
                size = max(size, os.fstat(fd).st_size)
            end = size if length is None else min(size, offset + length)
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


def _load_entry(sub: Path, *, recovered: bool) -> SpoolEntry:
    raw = json.loads((sub / STATE).read_text())
    if raw.get("version") != STATE_VERSION:
        raise ValueError(f"unknown state version {raw.get('version')!r}")
    name = str(raw["name"])
    if entry_dirname(name) != sub.name:
        raise ValueError("directory name does not match the recording name")
    data_stat = (sub / DATA).stat()
    created = raw.get("created")
    entry = SpoolEntry(
        name=name,
        path=sub,
        part_size=int(raw["part_size"]),
        size=data_stat.st_size,
        created=float(created) if isinstance(created, int | float) else data_stat.st_mtime,
        upload_id=raw["upload_id"] if raw["upload_id"] is None else str(raw["upload_id"]),
        parts=[(int(p[0]), str(p[1])) for p in raw["parts"]],
        md5s={int(k): str(v) for k, v in dict(raw.get("md5s", {})).items()},
        uploaded=int(raw["uploaded"]),
        punched=int(raw.get("punched", 0)),
        finished=bool(raw["finished"]),
        completed=bool(raw["completed"]),
        recovered=recovered,
    )
    if entry.part_size <= 0 or not 0 <= entry.punched <= entry.uploaded <= entry.size:
        raise ValueError(
            f"inconsistent sizes: part_size={entry.part_size} uploaded={entry.uploaded} "
            f"size={entry.size}"
        )
    return entry


class Spool:
    """The spool directory: creates, adopts, appends to and removes entries.

    Args:
        directory: created 0700 if missing (not in read-only mode).
        cap_bytes: the most bytes that may wait for upload, over all entries.
        min_free_bytes: keep at least this much free on the filesystem (low-water mark).
        readonly: a reader's view: no lock, no write, every entry visible.

    Raises:
        SinkError: the directory cannot be created (or, read-only, does not exist).
    """

    def __init__(
        self,
        directory: Path,
        cap_bytes: int,
        *,
        min_free_bytes: int = 0,
        readonly: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.cap_bytes = cap_bytes
        self.readonly = readonly
        self.bad: list[str] = []  # entries that could not be loaded, with the reason
        self._lock = threading.Lock()
        self._entries: dict[str, SpoolEntry] = {}  # owned by this process
        self._backlog = 0  # of owned entries
        self._foreign = 0  # other processes' backlog, as last read
        self._foreign_at = 0.0
        self._free = FreeSpace(self.directory, min_free_bytes)
        if readonly:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.directory, 0o700)
        except OSError as exc:
            raise SinkError(
                f"cannot open spool directory {directory}: {describe_os_error(exc)}"
            ) from exc
        self._sweep_tmp()

    def _sweep_tmp(self) -> None:
        """Remove ``.tmp`` directories of creates that crashed before their rename (left
        for a minute: another process may be creating one right now)."""
        now = time.time()
        for sub in self._subdirs():
            if not sub.name.endswith(".tmp"):
                continue
            try:
                if now - sub.stat().st_mtime < 60:
                    continue
            except OSError:
                continue
            fd = self._try_lock(sub)
            if fd is not None:
                shutil.rmtree(sub, ignore_errors=True)
                os.close(fd)

    def _subdirs(self) -> list[Path]:
        try:
            return sorted(p for p in self.directory.iterdir() if p.is_dir())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise SinkError(
                f"cannot list spool {self.directory}: {describe_os_error(exc)}"
            ) from exc

    @staticmethod
    def _try_lock(sub: Path) -> int | None:
        """flock ``sub/lock`` (created if missing); the fd, or None if another holds it."""
        try:
            fd = os.open(sub / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return fd

    # -- scanning (any process) -------------------------------------------------------

    def scan(self) -> list[SpoolEntry]:
        """Every loadable entry on disk, as read-only views (owned ones as they are)."""
        out = []
        bad = []
        with self._lock:
            mine = {e.path.name: e for e in self._entries.values()}
        for sub in self._subdirs():
            if sub.name.endswith(".tmp"):
                continue
            if sub.name.endswith(LOST_SUFFIX):
                bad.append(f"{sub}: {LOST_REASON}")
                continue
            if sub.name in mine:
                out.append(mine[sub.name])
                continue
            try:
                out.append(_load_entry(sub, recovered=False))
            except FileNotFoundError:
                continue  # removed (uploaded) while we looked
            except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
                bad.append(f"{sub}: {exc}")
        self.bad = bad
        return out

    def view(self, name: str) -> SpoolEntry | None:
        """The entry of ``name``: owned, or read fresh from disk; None if not spooled."""
        with self._lock:
            entry = self._entries.get(name)
        if entry is not None:
            return entry
        sub = self.directory / entry_dirname(name)
        try:
            entry = _load_entry(sub, recovered=False)
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None
        return entry if entry.name == name else None

    def _refresh_foreign(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._foreign_at < FOREIGN_REFRESH:
            return
        self._foreign_at = now
        with self._lock:
            mine = {e.path.name for e in self._entries.values()}
        total = 0
        for sub in self._subdirs():
            if sub.name in mine or sub.name.endswith((".tmp", LOST_SUFFIX)):
                continue
            try:
                e = _load_entry(sub, recovered=False)
            except (OSError, ValueError, KeyError, TypeError, IndexError):
                continue
            total += e.backlog
        with self._lock:
            self._foreign = total

    # -- ownership ---------------------------------------------------------------------

    def adopt(self) -> list[SpoolEntry]:
        """Take over entries no live process owns (left by a crashed or stopped one).

        Returns the adopted entries, marked ``recovered`` (reconcile before uploading).
        Malformed entries are left in place and listed in :attr:`bad`.
        """
        if self.readonly:
            return []
        adopted = []
        bad = []
        with self._lock:
            mine = {e.path.name for e in self._entries.values()}
        for sub in self._subdirs():
            if sub.name in mine or sub.name.endswith((".tmp", LOST_SUFFIX)):
                continue
            fd = self._try_lock(sub)
            if fd is None:
                continue  # a live process owns it
            try:
                entry = _load_entry(sub, recovered=True)
            except FileNotFoundError:
                os.close(fd)
                continue
            except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
                os.close(fd)
                bad.append(f"{sub}: {exc}")
                continue
            entry.owned = True
            entry._lock_fd = fd
            with self._lock:
                self._entries[entry.name] = entry
                self._backlog += entry.backlog
            adopted.append(entry)
        for reason in bad:
            if reason not in self.bad:
                log.error("spool entry is malformed and left in place: %s", reason)
        self.bad = bad
        if adopted:
            self._refresh_foreign(force=True)
        return adopted

    # -- queries -----------------------------------------------------------------------

    @property
    def backlog_bytes(self) -> int:
        """Bytes waiting for upload over all entries (what the cap bounds)."""
        with self._lock:
            return self._backlog + self._foreign

    def get(self, name: str) -> SpoolEntry | None:
        """An entry this process owns."""
        with self._lock:
            return self._entries.get(name)

    def entries(self) -> list[SpoolEntry]:
        """Entries this process owns."""
        with self._lock:
            return list(self._entries.values())

    # -- mutations (owner only) --------------------------------------------------------

    def create(self, name: str, part_size: int) -> SpoolEntry:
        """Start a new entry (its directory, lock, empty data file and state, fsynced)."""
        if self.readonly:
            raise SinkError("the spool is open read-only")
        final = self.directory / entry_dirname(name)
        tmp = final.with_name(final.name + ".tmp")
        with self._lock:
            if name in self._entries or final.exists():
                raise SinkError(f"recording {name} already exists in the spool")
        entry = SpoolEntry(name=name, path=final, part_size=part_size, created=time.time())
        entry.owned = True
        lock_fd: int | None = None
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(mode=0o700)
            lock_fd = os.open(tmp / LOCK, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fd = os.open(tmp / DATA, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.fsync(fd)
            os.close(fd)
            self._write_state(tmp, entry)
            os.rename(tmp, final)
            _fsync_dir(self.directory)
            entry._wfd = os.open(final / DATA, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            if lock_fd is not None:
                os.close(lock_fd)
            shutil.rmtree(tmp, ignore_errors=True)
            if final.exists() and entry._wfd is None:
                shutil.rmtree(final, ignore_errors=True)
            raise SinkError(
                f"cannot create spool entry for {name} in {self.directory}: "
                f"{describe_os_error(exc)}"
            ) from exc
        entry._lock_fd = lock_fd
        with self._lock:
            self._entries[name] = entry
        return entry

    def append(self, entry: SpoolEntry, data: bytes) -> None:
        """Append bytes to an open entry (see :meth:`append_parts`)."""
        self.append_parts(entry, (data,))

    def append_parts(self, entry: SpoolEntry,
                     parts: Sequence[bytes | bytearray | memoryview]) -> None:
        """Append ``parts`` (in order) to an open entry, within the cap and the
        low-water mark.

        Raises:
            SpoolFullError: the backlog would exceed the cap; nothing was written.
            SinkFullError: the filesystem is at its low-water mark or full; nothing was
                written.
            SinkError: another I/O error; nothing was written.
        """
        n = sum(map(len, parts))
        first = entry.size == 0  # the header: always accepted so the session can start
        with self._lock:
            over = self._backlog + self._foreign + n > self.cap_bytes
        if over and not first:
            self._refresh_foreign()
        with self._lock:
            if not first and self._backlog + self._foreign + n > self.cap_bytes:
                raise SpoolFullError(
                    f"spool {self.directory} is full: {self._backlog + self._foreign} bytes "
                    f"wait for upload (cap {self.cap_bytes}); recording {entry.name} "
                    f"waits for room"
                )
            self._backlog += n
        try:
            if not first:
                self._free.check(n, f"the spool {self.directory}")
            self._write(entry, parts, n)
        except BaseException:
            with self._lock:
                self._backlog -= n
            raise

    def _write(self, entry: SpoolEntry, parts: Sequence[bytes | bytearray | memoryview],
               n: int) -> None:
        with entry.lock:
            if entry._wfd is None or entry.finished:
                raise SinkError(f"recording {entry.name} is closed")
            done = [0]
            try:
                write_parts(entry._wfd, parts, done)
            except OSError as exc:
                if done[0]:
                    with contextlib.suppress(OSError):
                        os.ftruncate(entry._wfd, entry.size)
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    self._free.full()
                    raise SinkFullError(
                        f"cannot write recording {entry.name} to the spool {self.directory}: "
                        f"{describe_os_error(exc)}; it waits for space"
                    ) from exc
                raise SinkError(
                    f"cannot write recording {entry.name} to the spool {self.directory}: "
                    f"{describe_os_error(exc)}"
                ) from exc
            entry.size += n
            self._free.used(n)

    def sync(self, entry: SpoolEntry) -> None:
        """fsync the entry's data (the durability point of ``flush()``). Outside the
        entry's lock: the recorder's syncer thread calls this while its writer appends
        and the uploader reads; a finish meanwhile makes everything durable itself."""
        with entry.lock:
            fd = entry._wfd
            if fd is None:
                return
        try:
            os.fsync(fd)
        except OSError as exc:
            with entry.lock:
                if entry._wfd is None:
                    return
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

    def rewrite_tail(self, entry: SpoolEntry, cut: int, data: bytes) -> None:
        """Crash recovery of an adopted entry its process did not close: keep its first
        ``cut`` bytes (a torn last write is dropped) and append ``data`` (the recovery
        trailer), fsynced. Bytes already uploaded are never changed.

        Raises:
            SinkError: the entry is closed, ``cut`` is outside the bytes that may change,
                or an I/O error.
        """
        with entry.lock:
            if entry.finished or entry.completed or entry._wfd is not None:
                raise SinkError(f"recording {entry.name} is not an abandoned spool entry")
            if not entry.uploaded <= cut <= entry.size:
                raise SinkError(
                    f"cannot cut recording {entry.name} at {cut}: {entry.uploaded} bytes of "
                    f"its {entry.size} were already uploaded"
                )
            try:
                fd = os.open(entry.path / DATA, os.O_WRONLY)
                try:
                    replace_tail(fd, cut, data)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise SinkError(
                    f"cannot finish recording {entry.name} in the spool: {describe_os_error(exc)}"
                ) from exc
            delta = cut + len(data) - entry.size
            entry.size = cut + len(data)
        with self._lock:
            self._backlog += delta

    def set_upload(self, entry: SpoolEntry, upload_id: str | None) -> None:
        """Start over with a new (or no) multipart upload; uploaded bytes become backlog.

        Raises:
            SinkError: bytes were released from the spool (they cannot be sent again).
        """
        with entry.lock:
            if entry.punched:
                raise ReleasedError(
                    f"the upload of {entry.name} must start over, but its first "
                    f"{entry.punched} bytes were released from the spool after their upload"
                )
            again = entry.uploaded
            entry.upload_id = upload_id
            entry.parts = []
            entry.md5s = {}
            entry.uploaded = 0
            entry.completed = False
            self.save(entry)
        with self._lock:
            self._backlog += again

    def set_parts(self, entry: SpoolEntry, parts: list[tuple[int, str]], uploaded: int) -> None:
        """Replace the list of uploaded parts (after reconciling with the store)."""
        with entry.lock:
            if uploaded < entry.punched:
                raise ReleasedError(
                    f"the store lacks parts of {entry.name} that were released from the spool"
                )
            delta = uploaded - entry.uploaded
            entry.parts = list(parts)
            numbers = {n for n, _ in parts}
            entry.md5s = {n: h for n, h in entry.md5s.items() if n in numbers}
            entry.uploaded = uploaded
            self.save(entry)
        with self._lock:
            self._backlog -= delta

    def add_part(self, entry: SpoolEntry, number: int, tag: str, nbytes: int,
                 md5: str = "") -> None:
        """Record one uploaded part; its bytes leave the backlog."""
        with entry.lock:
            entry.parts.append((number, tag))
            if md5:
                entry.md5s[number] = md5
            entry.uploaded += nbytes
            self.save(entry)
            if entry._wfd is not None:  # uploaded: its pages leave the page cache
                drop_cached(entry._wfd, entry.uploaded - nbytes, entry.uploaded)
        with self._lock:
            self._backlog -= nbytes

    def mark_completed(self, entry: SpoolEntry) -> None:
        """The store completed the object: remember it (it still needs confirming)."""
        with entry.lock:
            delta = entry.size - entry.uploaded
            entry.completed = True
            entry.uploaded = entry.size
            self.save(entry)
        with self._lock:
            self._backlog -= delta

    def under_pressure(self) -> bool:
        """Is the spool's filesystem near its low-water mark (or was a write refused)?"""
        free = self._free.free_bytes()
        near = free is not None and self._free.min_free > 0 and free < 4 * self._free.min_free
        return near or self._free.refused_recently()

    def release_uploaded(self, entry: SpoolEntry) -> int:
        """Give the disk space of uploaded bytes back (PUNCH_HOLE); returns bytes released.

        Only whole 64 KiB blocks are released; the size of the file does not change.
        """
        with entry.lock:
            start = entry.punched
            end = entry.uploaded - entry.uploaded % PUNCH_ALIGN
            if end <= start:
                return 0
            try:
                fd = os.open(entry.path / DATA, os.O_WRONLY)
            except OSError:
                return 0
            try:
                _punch_hole(fd, start, end - start)
            except OSError as exc:
                log.warning("cannot release uploaded bytes of %s: %s", entry.name,
                            describe_os_error(exc))
                return 0
            finally:
                os.close(fd)
            entry.punched = end
            self.save(entry)
            return end - start

    def quarantine(self, entry: SpoolEntry) -> Path:
        """Move an entry that can no longer be uploaded aside (``<dir>.lost``), keeping
        its files for an administrator; it is reported by :meth:`scan` in :attr:`bad`."""
        target = entry.path.with_name(entry.path.name + LOST_SUFFIX)
        self.release(entry)
        try:
            os.rename(entry.path, target)
        except OSError as exc:
            raise SinkError(f"cannot move {entry.path} aside: {describe_os_error(exc)}") from exc
        return target

    def remove(self, entry: SpoolEntry) -> None:
        """Delete the entry from disk and memory (after its object is confirmed), or an
        entry whose recording was abandoned before it held anything."""
        with self._lock:
            self._entries.pop(entry.name, None)
            self._backlog -= entry.backlog
        with entry.lock:
            if entry._wfd is not None:
                os.close(entry._wfd)
                entry._wfd = None
            shutil.rmtree(entry.path, ignore_errors=True)
            if entry._lock_fd is not None:
                os.close(entry._lock_fd)
                entry._lock_fd = None
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

    def release(self, entry: SpoolEntry) -> None:
        """Stop owning an entry (its files stay for whoever adopts it next)."""
        with self._lock:
            self._entries.pop(entry.name, None)
            self._backlog -= entry.backlog
        with entry.lock:
            if entry._wfd is not None:
                with contextlib.suppress(OSError):
                    os.fsync(entry._wfd)
                    os.close(entry._wfd)
                entry._wfd = None
            if entry._lock_fd is not None:
                os.close(entry._lock_fd)
                entry._lock_fd = None

    def close(self) -> None:
        """Close open files and release every entry's lock (entries stay on disk)."""
        for entry in self.entries():
            self.release(entry)
