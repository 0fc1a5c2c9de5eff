"""Private directories, files and SQLite databases, created with safe modes whatever the
umask: directories 0700, files 0600.

An existing directory is left as it is (an operator may have chosen its mode); an
existing state file that is readable by others is narrowed to 0600. SQLite's own side
files (``-wal``, ``-shm``) take the mode of their database file.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

log = logging.getLogger("bastille.state")

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents with mode 0700; return ``path``."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, DIR_MODE)
        except FileExistsError:
            continue  # created meanwhile by another process
        os.chmod(d, DIR_MODE)  # mkdir's mode is filtered by the umask
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` (and its directory) as an empty 0600 file if it does not exist;
    narrow an existing one to 0600 if others may read it. Returns ``path``."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    try:
        if os.fstat(fd).st_mode & 0o077:
            try:
                os.fchmod(fd, FILE_MODE)
            except PermissionError:
                log.warning("%s is readable by others and cannot be narrowed to 0600", path)
    finally:
        os.close(fd)
    return path


def open_sqlite(path: Path, *, timeout: float = 10.0) -> sqlite3.Connection:
    """A connection to the SQLite file ``path`` (created 0600 in a 0700 directory), in
    WAL mode and autocommit; usable from several threads under the caller's lock."""
    private_file(path)
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    return db
