"""Private files: every file that holds sessions, commands, approvals, audit or keys.

* Directories are created 0700 and existing ones are narrowed to 0700 (whatever the
  umask or the mode they were created with).
* Files are created 0600 with ``O_EXCL`` temporary names and renamed into place, never
  through a symbolic link (``O_NOFOLLOW``; ``rename`` replaces a planted link itself
  instead of writing where it points).
* Names that come from data (a session id read from a recording header) are checked as
  ids before they become part of a path (:func:`safe_id`).
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from pathlib import Path

_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DIR_MODE = 0o700
FILE_MODE = 0o600


class UnsafePath(OSError):
    """A path that must not be used: a symbolic link where a file or directory belongs,
    or a name that is not a plain id."""


def safe_id(value: str) -> str:
    """``value`` if it is a plain id (letters, digits, ``_``, ``-``; 1-64), else raise."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise UnsafePath(f"not a valid id: {value!r}")
    return value


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) as 0700; narrow an existing one to 0700.

    Raises:
        UnsafePath: ``path`` is a symbolic link.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePath(f"{path} is a symbolic link; refusing to use it")
    if stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.geteuid():
        os.chmod(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Make sure ``path`` exists as a regular 0600 file (created empty if missing), e.g.
    before SQLite opens it (its -wal and -shm files take the same mode).

    Raises:
        UnsafePath: ``path`` is a symbolic link or not a regular file.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        if os.path.islink(path):
            raise UnsafePath(f"{path} is a symbolic link; refusing to use it") from exc
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(f"{path} is not a regular file")
        if stat.S_IMODE(st.st_mode) != FILE_MODE and st.st_uid == os.geteuid():
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path


def write_private(path: Path, data: bytes) -> Path:
    """Atomically replace ``path`` with ``data`` as a 0600 file, never through a link."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def read_nofollow(path: Path, limit: int | None = None) -> bytes:
    """Read a regular file, refusing a symbolic link (``O_NOFOLLOW``)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise UnsafePath(f"{path} is not a regular file")
        return f.read() if limit is None else f.read(limit)
