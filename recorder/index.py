"""The session index: :class:`SessionIndex` (the interface every backend implements) and
:class:`Index`, its SQLite (FTS5) implementation over sessions, commands and rendered
screen text.

Backends: :class:`Index` (one file, the default) and the shared PostgreSQL index of
several gateways (``state.pg.index.PgIndex``, pg_trgm), given to the recorder by
``RecorderSettings.index_opener`` (:func:`open_index`). Both answer the same queries
with the same results: ``text`` is a case-insensitive substring of a command or a
screen line, whatever its length.

The SQLite index is one file, ``data_dir/index.sqlite3`` (WAL mode). Updated when
sessions open and close and when the background screen pass finishes, never per byte.
Everything in it can be rebuilt from the recordings alone (:func:`recorder.postprocess.reindex`).

Text search uses an FTS5 trigram table (substring matches, case-insensitive) over
commands and screen lines; queries shorter than three characters fall back to LIKE.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from common.safefiles import private_dir, private_file
from recorder.errors import RecorderError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, user TEXT, target TEXT, protocol TEXT, kind TEXT, client TEXT,
    start REAL, end REAL, exit_status INTEGER, exit_signal TEXT, status TEXT,
    commands INTEGER DEFAULT 0, policy_events INTEGER DEFAULT 0, name TEXT,
    signature TEXT, command TEXT, output_bytes INTEGER DEFAULT 0,
    screen_indexed INTEGER DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_start ON sessions(start);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user);
CREATE INDEX IF NOT EXISTS sessions_target ON sessions(target);
CREATE TABLE IF NOT EXISTS commands (session TEXT, offset REAL, text TEXT, source TEXT);
CREATE INDEX IF NOT EXISTS commands_session ON commands(session);
CREATE VIRTUAL TABLE IF NOT EXISTS content USING fts5(
    text, session UNINDEXED, offset UNINDEXED, kind UNINDEXED, tokenize='trigram'
);
"""
_COLUMNS = (
    "id, user, target, protocol, kind, client, start, end, exit_status, exit_signal, status, "
    "commands, policy_events, name, signature, command, output_bytes, screen_indexed"
)


def _damage(path: Path) -> str | None:
    """Why the index file at ``path`` cannot be used, or None (also for no file)."""
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        rows = db.execute("PRAGMA quick_check").fetchall()
        if rows != [("ok",)]:
            return "; ".join(str(r[0]) for r in rows[:3])
        db.execute("SELECT count(*) FROM sessions").fetchone()
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        db.close()
    return None


@dataclass(frozen=True)
class SessionRow:
    """One session as the index knows it."""

    id: str
    user: str
    target: str
    protocol: str
    kind: str
    client: str
    start: float
    end: float | None
    exit_status: int | None
    exit_signal: str | None
    status: str  # live | ended | truncated | damaged | failed
    commands: int
    policy_events: int
    name: str
    signature: str | None  # signed | unsigned | None (unknown yet)
    command: str | None
    output_bytes: int
    screen_indexed: bool

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class SessionIndex(Protocol):
    """What the recorder, the CLI and the player use of an index (every backend).

    ``recreated`` names a damaged index that was replaced by an empty one (the caller
    rebuilds it from the recordings); None otherwise.
    """

    recreated: Path | None

    def close(self) -> None: ...

    def session_opened(self, header: dict[str, Any], name: str, status: str = "live") -> None:
        ...

    def session_closed(self, session_id: str, *, end: float | None, exit_status: int | None,
                       exit_signal: str | None, status: str,
                       commands: Iterable[tuple[float, str, str]], policy_events: int,
                       signature: str | None, output_bytes: int) -> None: ...

    def session_indexed(self, header: dict[str, Any], name: str, *, end: float | None,
                        exit_status: int | None, exit_signal: str | None, status: str,
                        commands: Iterable[tuple[float, str, str]], policy_events: int,
                        signature: str | None, output_bytes: int) -> None:
        """The whole row of a finished recording at once (``session_opened`` then
        ``session_closed`` in one transaction)."""
        ...

    def set_status(self, session_id: str, status: str) -> None: ...

    def set_screen_lines(self, session_id: str, lines: Iterable[tuple[float, str]]) -> None:
        ...

    def set_ocr_lines(self, session_id: str, lines: Iterable[tuple[float, str]]) -> None:
        """Replace the text read off an RDP session's screen (kind ``ocr``)."""
        ...

    def clear(self) -> None: ...

    def list_sessions(self, *, user: str | None = None, target: str | None = None,
                      since: float | None = None, until: float | None = None,
                      text: str | None = None, status: str | None = None,
                      limit: int = 1000) -> list[SessionRow]:
        """Sessions matching every given filter, newest first."""
        ...

    def all_sessions(self) -> list[SessionRow]: ...

    def get(self, session_id: str) -> SessionRow | None: ...

    def find(self, prefix: str) -> list[SessionRow]: ...

    def commands(self, session_id: str) -> list[tuple[float, str, str]]: ...

    def matches(self, session_id: str, text: str, limit: int = 50
                ) -> list[tuple[float, str, str]]: ...

    def screen_lines(self, session_id: str) -> list[tuple[float, str]]: ...

    def own_live(self, limit: int = 1000) -> list[SessionRow]:
        """Sessions this recorder left ``live`` (a crash): with a shared index, only this
        node's, never a live session of another gateway."""
        ...


class _Where(Protocol):
    """What :func:`open_index` reads of ``RecorderSettings`` (no import: no cycle)."""

    @property
    def data_dir(self) -> Path: ...


def open_index(settings: _Where, *, checked: bool = True) -> SessionIndex:
    """The index the settings name: ``settings.index_opener()`` (a shared index), else
    the SQLite file ``data_dir/index.sqlite3`` (``checked``: a damaged file is moved
    aside and replaced, see :meth:`Index.open_checked`)."""
    opener = getattr(settings, "index_opener", None)
    if opener is not None:
        index: SessionIndex = opener()
        return index
    path = settings.data_dir / "index.sqlite3"
    return Index.open_checked(path) if checked else Index(path)


class Index:
    """Thread-safe handle on the index database (one connection, one lock).

    The index is a cache of the recordings: :meth:`open_checked` (used by the gateway at
    start and by ``bastille reindex``) runs SQLite's ``quick_check`` and, when the file
    is damaged (garbage, cut short, not a database), moves it aside as
    ``index.sqlite3.corrupt-<time>`` and starts an empty one; :attr:`recreated` then
    names the damaged file so that the caller rebuilds the index from the recordings.
    """

    recreated: Path | None = None

    @classmethod
    def open_checked(cls, path: Path) -> Index:
        """Open the index, replacing a damaged file by an empty one (see class doc)."""
        path = Path(path)
        problem = _damage(path)
        if problem is None:
            return cls(path)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = path.with_name(f"{path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = path.with_name(path.name + suffix)
            if src.exists():
                os.replace(src, aside.with_name(aside.name + suffix))
        log.error("recorder: the session index %s is damaged (%s); moved aside as %s and "
                  "rebuilt from the recordings", path, problem, aside)
        index = cls(path)
        index.recreated = aside
        return index

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            private_dir(self.path.parent)
            private_file(self.path)  # SQLite gives -wal and -shm the same mode
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
            )
            self._db.commit()
        except (sqlite3.Error, OSError) as exc:
            raise RecorderError(f"cannot open the session index {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self._lock:
            try:
                self._db.execute(sql, params)
                self._db.commit()
            except sqlite3.Error as exc:
                raise RecorderError(f"session index update failed: {exc}") from exc

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise RecorderError(f"session index query failed: {exc}") from exc

    # ------------------------------------------------------------------ updates

    def session_opened(self, header: dict[str, Any], name: str, status: str = "live") -> None:
        with self._lock:
            try:
                self._opened(header, name, status)
                self._db.commit()
            except sqlite3.Error as exc:
                raise RecorderError(f"session index update failed: {exc}") from exc

    def session_closed(self, session_id: str, *, end: float | None, exit_status: int | None,
                       exit_signal: str | None, status: str,
                       commands: Iterable[tuple[float, str, str]], policy_events: int,
                       signature: str | None, output_bytes: int) -> None:
        with self._lock:
            try:
                self._closed(session_id, end=end, exit_status=exit_status,
                             exit_signal=exit_signal, status=status, commands=commands,
                             policy_events=policy_events, signature=signature,
                             output_bytes=output_bytes)
                self._db.commit()
            except sqlite3.Error as exc:
                raise RecorderError(f"session index update failed: {exc}") from exc

    def session_indexed(self, header: dict[str, Any], name: str, *, end: float | None,
                        exit_status: int | None, exit_signal: str | None, status: str,
                        commands: Iterable[tuple[float, str, str]], policy_events: int,
                        signature: str | None, output_bytes: int) -> None:
        """``session_opened`` and ``session_closed`` in one transaction: a reader never
        sees the row between the two (ended, but without its signature and commands)."""
        with self._lock:
            try:
                self._opened(header, name, status)
                self._closed(str(header.get("session_id", "")), end=end,
                             exit_status=exit_status, exit_signal=exit_signal, status=status,
                             commands=commands, policy_events=policy_events,
                             signature=signature, output_bytes=output_bytes)
                self._db.commit()
            except sqlite3.Error as exc:
                raise RecorderError(f"session index update failed: {exc}") from exc

    def _opened(self, header: dict[str, Any], name: str, status: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO sessions (id, user, target, protocol, kind, client, start, "
            "status, name, command) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                str(header.get("session_id", "")),
                str(header.get("user", "")),
                str(header.get("target", "")),
                str(header.get("protocol", "")),
                str(header.get("kind", "")),
                str(header.get("client_addr", "")),
                _float(header.get("start_time")),
                status,
                name,
                header.get("command") if isinstance(header.get("command"), str) else None,
            ),
        )

    def _closed(
        self,
        session_id: str,
        *,
        end: float | None,
        exit_status: int | None,
        exit_signal: str | None,
        status: str,
        commands: Iterable[tuple[float, str, str]],
        policy_events: int,
        signature: str | None,
        output_bytes: int,
    ) -> None:
        cmds = list(commands)
        self._db.execute(
            "UPDATE sessions SET end=?, exit_status=?, exit_signal=?, status=?, "
            "commands=?, policy_events=?, signature=?, output_bytes=? WHERE id=?",
            (
                end,
                exit_status if isinstance(exit_status, int) else None,
                exit_signal if isinstance(exit_signal, str) else None,
                status,
                len(cmds),
                policy_events,
                signature,
                output_bytes,
                session_id,
            ),
        )
        self._db.execute("DELETE FROM commands WHERE session=?", (session_id,))
        self._db.execute("DELETE FROM content WHERE session=? AND kind='command'", (session_id,))
        self._db.executemany(
            "INSERT INTO commands VALUES (?,?,?,?)",
            [(session_id, t, text, src) for t, text, src in cmds],
        )
        self._db.executemany(
            "INSERT INTO content (text, session, offset, kind) VALUES (?,?,?,'command')",
            [(text, session_id, t) for t, text, _src in cmds],
        )

    def set_status(self, session_id: str, status: str) -> None:
        self._write("UPDATE sessions SET status=? WHERE id=?", (status, session_id))

    def set_screen_lines(self, session_id: str, lines: Iterable[tuple[float, str]]) -> None:
        rows = [(text, session_id, t) for t, text in lines]
        with self._lock:
            try:
                self._db.execute(
                    "DELETE FROM content WHERE session=? AND kind='screen'", (session_id,)
                )
                self._db.executemany(
                    "INSERT INTO content (text, session, offset, kind) VALUES (?,?,?,'screen')",
                    rows,
                )
                self._db.execute("UPDATE sessions SET screen_indexed=1 WHERE id=?", (session_id,))
                self._db.commit()
            except sqlite3.Error as exc:
                raise RecorderError(f"session index update failed: {exc}") from exc

    def set_ocr_lines(self, session_id: str, lines: Iterable[tuple[float, str]]) -> None:
        """Replace the text read off an RDP session's screen (kind ``ocr``), each line
        with the time it appeared (``gateway.rdp.screens``)."""
        rows = [(text, session_id, t) for t, text in lines]
        with self._lock:
            try:
                self._db.execute("DELETE FROM content WHERE session=? AND kind='ocr'",
                                 (session_id,))
                self._db.executemany(
                    "INSERT INTO content (text, session, offset, kind) VALUES (?,?,?,'ocr')",
                    rows,
                )
                self._db.commit()
            except sqlite3.Error as exc:
                raise RecorderError(f"session index update failed: {exc}") from exc

    def clear(self) -> None:
        with self._lock:
            try:
                self._db.execute("DELETE FROM sessions")
                self._db.execute("DELETE FROM commands")
                self._db.execute("DELETE FROM content")
                self._db.commit()
            except sqlite3.Error as exc:
                raise RecorderError(f"session index update failed: {exc}") from exc

    # ------------------------------------------------------------------ queries

    def list_sessions(
        self,
        *,
        user: str | None = None,
        target: str | None = None,
        since: float | None = None,
        until: float | None = None,
        text: str | None = None,
        status: str | None = None,
        limit: int = 1000,
    ) -> list[SessionRow]:
        """Sessions matching every given filter, newest first."""
        where: list[str] = []
        params: list[Any] = []
        if user is not None:
            where.append("user = ?")
            params.append(user)
        if target is not None:
            where.append("target = ?")
            params.append(target)
        if since is not None:
            where.append("start >= ?")
            params.append(since)
        if until is not None:
            where.append("start < ?")
            params.append(until)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if text:
            if len(text) >= 3:
                where.append("id IN (SELECT session FROM content WHERE content MATCH ?)")
                params.append('"' + text.replace('"', '""') + '"')
            else:
                where.append("id IN (SELECT session FROM content WHERE text LIKE ? ESCAPE '\\')")
                params.append("%" + _like(text) + "%")
        sql = f"SELECT {_COLUMNS} FROM sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY start DESC, id DESC LIMIT ?"
        params.append(int(limit))
        return [_row(r) for r in self._query(sql, params)]

    def all_sessions(self) -> list[SessionRow]:
        """Every indexed session, oldest first."""
        return [_row(r) for r in self._query(
            f"SELECT {_COLUMNS} FROM sessions ORDER BY start, id")]

    def get(self, session_id: str) -> SessionRow | None:
        rows = self._query(f"SELECT {_COLUMNS} FROM sessions WHERE id = ?", (session_id,))
        return _row(rows[0]) if rows else None

    def find(self, prefix: str) -> list[SessionRow]:
        """Sessions whose id starts with ``prefix`` (for short ids on the command line)."""
        rows = self._query(
            f"SELECT {_COLUMNS} FROM sessions WHERE id LIKE ? ESCAPE '\\' LIMIT 10",
            (_like(prefix) + "%",),
        )
        return [_row(r) for r in rows]

    def commands(self, session_id: str) -> list[tuple[float, str, str]]:
        rows = self._query(
            "SELECT offset, text, source FROM commands WHERE session=? ORDER BY offset, rowid",
            (session_id,),
        )
        return [(float(t), str(text), str(src)) for t, text, src in rows]

    def matches(self, session_id: str, text: str, limit: int = 50) -> list[tuple[float, str, str]]:
        """(offset, kind, text) of the commands and screen lines of a session containing text."""
        if len(text) >= 3:
            rows = self._query(
                "SELECT offset, kind, text FROM content WHERE content MATCH ? AND session=? "
                "ORDER BY offset LIMIT ?",
                ('"' + text.replace('"', '""') + '"', session_id, limit),
            )
        else:
            rows = self._query(
                "SELECT offset, kind, text FROM content WHERE text LIKE ? ESCAPE '\\' "
                "AND session=? ORDER BY offset LIMIT ?",
                ("%" + _like(text) + "%", session_id, limit),
            )
        return [(float(t or 0), str(k), str(x)) for t, k, x in rows]

    def screen_lines(self, session_id: str) -> list[tuple[float, str]]:
        rows = self._query(
            "SELECT offset, text FROM content WHERE session=? AND kind='screen' ORDER BY rowid",
            (session_id,),
        )
        return [(float(t or 0), str(x)) for t, x in rows]

    def own_live(self, limit: int = 1000) -> list[SessionRow]:
        """Sessions left ``live`` (one file belongs to one gateway: all of them)."""
        return self.list_sessions(status="live", limit=limit)


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _float(v: object) -> float:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def _row(r: tuple[Any, ...]) -> SessionRow:
    return SessionRow(
        id=r[0],
        user=r[1] or "",
        target=r[2] or "",
        protocol=r[3] or "",
        kind=r[4] or "",
        client=r[5] or "",
        start=float(r[6] or 0),
        end=r[7],
        exit_status=r[8],
        exit_signal=r[9],
        status=r[10] or "",
        commands=int(r[11] or 0),
        policy_events=int(r[12] or 0),
        name=r[13] or "",
        signature=r[14],
        command=r[15],
        output_bytes=int(r[16] or 0),
        screen_indexed=bool(r[17]),
    )
