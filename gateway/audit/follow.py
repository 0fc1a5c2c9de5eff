"""Following the audit file like ``tail -F``, from a saved position.

:class:`AuditFollower` reads complete lines from the audit file starting at a
:class:`Cursor` (the file's inode and a byte offset), across log rotation:

* the file renamed (logrotate without ``copytruncate``): the old file is read to its end,
  then the new one from its start (writers reopen it at their next event);
* the saved cursor names an inode that is no longer the current file: a rotated sibling
  (``audit.jsonl.1``, ``audit.jsonl-20261124``, uncompressed) with that inode is read
  from the offset first;
* the file truncated (``copytruncate``) or the rotated file gone: reading restarts at
  the beginning of the current file, and the follower says so (``gaps``), since events
  between the cursor and the truncation may not have been read.

:class:`CursorStore` keeps a cursor in a small 0600 JSON file, so an exporter resumes
where it stopped after a restart (events are delivered at least once).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from state.files import private_file

log = logging.getLogger("bastille.audit")

MAX_LINE = 1 << 20  # a longer "line" is not an audit record: it is skipped


@dataclass(frozen=True)
class Cursor:
    """A position in the audit trail: a file (inode) and a byte offset in it."""

    inode: int
    offset: int


@dataclass(frozen=True)
class Line:
    """One audit record's text and the cursor just after it."""

    text: str
    cursor: Cursor


class AuditFollower:
    """Reads new complete lines of ``path``; see the module docstring.

    Args:
        path: the audit file.
        cursor: where to start; None: at the current end of the file (only new events).
    """

    def __init__(self, path: Path, cursor: Cursor | None) -> None:
        self.path = path
        self.gaps = 0  # times events may have been skipped (truncation, file gone)
        self._fh: BinaryIO | None = None
        self._inode = 0
        self._pos = 0
        self._partial = b""
        self.seek(cursor)

    @property
    def cursor(self) -> Cursor:
        """The position after the last complete line returned."""
        return Cursor(self._inode, self._pos)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _open(self, path: Path, offset: int) -> bool:
        try:
            fh = open(path, "rb")
        except OSError:
            return False
        self.close()
        self._fh = fh
        st = os.fstat(fh.fileno())
        self._inode = st.st_ino
        self._pos = min(max(0, offset), st.st_size)
        self._partial = b""
        fh.seek(self._pos)
        return True

    def seek(self, cursor: Cursor | None) -> None:
        """Go to ``cursor`` (None: the end of the current file)."""
        try:
            st = os.stat(self.path)
        except OSError:
            st = None
        if cursor is None:
            if st is not None:
                self._open(self.path, st.st_size)
            return
        if st is not None and st.st_ino == cursor.inode:
            if cursor.offset > st.st_size:
                self._gap(f"{self.path} is shorter than the saved position (truncated)")
                self._open(self.path, 0)
            else:
                self._open(self.path, cursor.offset)
            return
        rotated = self._find_inode(cursor.inode)
        if rotated is not None:
            self._open(rotated, cursor.offset)
            return
        if cursor.inode:
            self._gap(f"the audit file read last ({self.path}, inode {cursor.inode}) is gone")
        self._open(self.path, 0)

    def _find_inode(self, inode: int) -> Path | None:
        try:
            siblings = list(self.path.parent.iterdir())
        except OSError:
            return None
        for p in siblings:
            if p.name.startswith(self.path.name) and p != self.path:
                try:
                    if p.stat().st_ino == inode:
                        return p
                except OSError:
                    continue
        return None

    def _gap(self, why: str) -> None:
        self.gaps += 1
        log.warning("audit export: %s; reading from the start of %s (events in between "
                    "may not have been exported)", why, self.path)

    def read(self, max_lines: int) -> list[Line]:
        """Up to ``max_lines`` new complete lines (empty lines skipped)."""
        out: list[Line] = []
        while len(out) < max_lines:
            if self._fh is None and not self._open(self.path, 0):
                return out  # no file yet: it is read from its start once it exists
            assert self._fh is not None
            raw = self._fh.readline(MAX_LINE)
            if raw.endswith(b"\n"):
                line = self._partial + raw
                self._partial = b""
                self._pos += len(line)
                text = line.decode("utf-8", errors="replace").strip()
                if text and len(line) < MAX_LINE:
                    out.append(Line(text, self.cursor))
                continue
            if raw:  # a line being written: keep what we have, read the rest later
                self._partial += raw
                if len(self._partial) >= MAX_LINE:
                    self._pos += len(self._partial)
                    self._partial = b""
                continue
            if not self._next_file():
                return out
        return out

    def _next_file(self) -> bool:
        """At the end of what we hold: follow a rotation or a truncation. True if there
        may be more to read now."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False  # renamed and not recreated yet
        if st.st_ino != self._inode:
            if self._partial:
                return False  # the writer of the rotated file may finish its line
            self._open(self.path, 0)  # rotated: the old file is read to its end
            return True
        if st.st_size < self._pos:
            self._gap(f"{self.path} was truncated (copytruncate?)")
            self._open(self.path, 0)
            return True
        return False


class CursorStore:
    """One exporter's saved cursor (a 0600 JSON file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._saved: Cursor | None = None

    def load(self) -> Cursor | None:
        try:
            raw = json.loads(self.path.read_text())
            cursor = Cursor(int(raw["inode"]), int(raw["offset"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("audit export: cannot read %s (%s); starting at the end", self.path,
                        exc)
            return None
        self._saved = cursor
        return cursor

    def save(self, cursor: Cursor) -> None:
        if cursor == self._saved:
            return
        private_file(self.path)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps({"inode": cursor.inode, "offset": cursor.offset}).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        self._saved = cursor
