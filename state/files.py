"""Private directories, files and SQLite databases, created with safe modes whatever the
umask: directories 0700, files 0600.

An existing directory is left as it is (an operator may have chosen its mode); an
existing state file that is readable by others is narrowed to 0600. SQLite's own side
files (``-wal``, ``-shm``) take the mode of their database file.

Damaged databases (:func:`open_sqlite`): every state database is checked when it is
opened (SQLite's ``quick_check``, then its schema applied). A file that is not a
database, is cut short or fails the check is moved aside as
``NAME.corrupt-<UTC time>`` (with its ``-wal``/``-shm``), one error line says so and
what is lost, and an empty database is started: the gateway keeps serving. The check
and the move happen under a lock on the directory, so that processes opening the same
file at once (the gateway, its RDP workers, the CLI) move it aside only once.

Known limit: a file damaged while a process has it open is noticed by the next process
that opens it; the one that had it open keeps its connection to the old file.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from state.errors import StateError

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


SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26


def open_sqlite(path: Path, *, timeout: float = 10.0, schema: str = "", what: str = "",
                lost: str = "") -> sqlite3.Connection:
    """A connection to the SQLite file ``path`` (created 0600 in a 0700 directory), in
    WAL mode and autocommit, ``schema`` applied; usable from several threads under the
    caller's lock.

    A damaged file is moved aside and an empty database started (see the module doc);
    ``what`` names the database in the one error line and ``lost`` says what that means
    (e.g. "pending approval requests in it are treated as expired").

    Raises:
        StateError: the database cannot be opened for another reason (permissions, a
            lock held too long, a full disk), with a message naming the file.
    """
    path = Path(path)
    private_file(path)
    with _dir_lock(path.parent):
        problem = damage(path, timeout)
        if problem is not None:
            move_aside(path, problem, what=what, lost=lost)
        try:
            return _connect(path, timeout, schema)
        except sqlite3.DatabaseError as exc:
            if not _is_damage(exc):
                raise StateError(f"cannot open {what or 'the database'} {path}: {exc}") from exc
            move_aside(path, str(exc), what=what, lost=lost)
        try:
            return _connect(path, timeout, schema)
        except sqlite3.Error as exc:
            raise StateError(f"cannot open {what or 'the database'} {path}: {exc}") from exc


def _connect(path: Path, timeout: float, schema: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        if schema:
            db.executescript(schema)
    except BaseException:
        db.close()
        raise
    return db


def _is_damage(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB)


def damage(path: Path, timeout: float = 10.0) -> str | None:
    """Why the SQLite file at ``path`` cannot be used, or None (also for no file, or an
    empty one: a new database).

    Raises:
        StateError: it cannot be checked (locked, unreadable): that is not damage.
    """
    try:
        if path.stat().st_size == 0:
            return None
    except FileNotFoundError:
        return None
    try:
        db = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    except sqlite3.Error as exc:
        raise StateError(f"cannot open {path}: {exc}") from exc
    try:
        rows = db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        if _is_damage(exc):
            return str(exc)
        raise StateError(f"cannot check {path}: {exc}") from exc
    finally:
        db.close()
    if rows != [("ok",)]:
        return "; ".join(str(r[0]) for r in rows[:3])
    return None


def move_aside(path: Path, problem: str, *, what: str = "", lost: str = "") -> Path:
    """Rename a damaged database (and its ``-wal``/``-shm``) to ``NAME.corrupt-<time>``
    and say so in one error line; returns the new name.

    Raises:
        StateError: it cannot be renamed.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    try:
        for suffix in ("", "-wal", "-shm"):
            src = path.with_name(path.name + suffix)
            if src.exists():
                os.replace(src, aside.with_name(aside.name + suffix))
    except OSError as exc:
        raise StateError(f"{what or 'the database'} {path} is damaged ({problem}) and cannot "
                         f"be moved aside: {exc.strerror}") from exc
    private_file(path)
    log.error("%s %s is damaged (%s); moved aside as %s and started empty%s",
              what or "state database", path, problem, aside.name, f"; {lost}" if lost else "")
    return aside


@contextlib.contextmanager
def _dir_lock(directory: Path) -> Iterator[None]:
    """An exclusive ``flock`` on a directory, held while a database in it is checked."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
