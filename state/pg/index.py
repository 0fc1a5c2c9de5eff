""":class:`recorder.index.SessionIndex` on the shared PostgreSQL database: every gateway
writes its sessions there, and ``sessions list``, the player and search on any node see
every session.

Search: a ``pg_trgm`` GIN index over commands, screen lines and the text read off RDP
screens (OCR), and ``ILIKE '%text%'``, which is the SQLite index's meaning exactly (a
case-insensitive substring, whatever its length), so a query gives the same sessions on
both backends.

Writes go through one queue per process and a writer thread, in order: the recorder
never waits for the database (a session starts and ends while PostgreSQL restarts), and
the writer retries every half second until the database answers again. The queue holds
``QUEUE_CAP`` operations; beyond it an update is dropped and logged (``bastille
reindex`` rebuilds everything from the recordings). Reads wait for this process's
pending writes first (up to ``connect_timeout``), so a process reads what it wrote.

Each row names the node that recorded it (``node``): :meth:`PgIndex.own_live` gives a
restarting node only its own sessions left live, and a node that notices another one
died marks that node's live sessions ended (:mod:`state.pg.registry`). :meth:`clear`
(``bastille reindex``) keeps the rows of sessions still live on other nodes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from recorder.errors import RecorderError
from recorder.index import SessionRow
from state.errors import StateError
from state.pg.db import Database
from state.pg.writer import Conn, Op, OrderedWriter

log = logging.getLogger("bastille.state.pg")

QUEUE_CAP = 10_000  # index operations waiting for the database (a few MiB at most)
_COLUMNS = ('id, "user", target, protocol, kind, client, start, "end", exit_status, '
            "exit_signal, status, commands, policy_events, name, signature, command, "
            "output_bytes, screen_indexed")


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _float(v: object) -> float:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def _row(r: tuple[Any, ...]) -> SessionRow:
    return SessionRow(
        id=str(r[0]), user=r[1] or "", target=r[2] or "", protocol=r[3] or "",
        kind=r[4] or "", client=r[5] or "", start=float(r[6] or 0), end=r[7],
        exit_status=r[8], exit_signal=r[9], status=r[10] or "", commands=int(r[11] or 0),
        policy_events=int(r[12] or 0), name=r[13] or "", signature=r[14], command=r[15],
        output_bytes=int(r[16] or 0), screen_indexed=bool(r[17]))


class PgIndex:
    """The session index in PostgreSQL (see the module doc)."""

    recreated: Path | None = None

    def __init__(self, db: Database) -> None:
        self.db = db.acquire()
        self.node = db.node
        self.writer = OrderedWriter(db, "bastille-index-writer", QUEUE_CAP)

    def _submit(self, op: Op) -> None:
        try:
            self.writer.submit(op)
        except StateError as exc:
            raise RecorderError(f"session index update dropped: {exc} (`bastille reindex` "
                                "rebuilds the index from the recordings)") from exc

    def flush(self, timeout: float) -> bool:
        """Wait until this process's writes are in the database; False on timeout."""
        return self.writer.flush(timeout)

    def close(self) -> None:
        self.writer.close(max(5.0, self.db.settings.connect_timeout * 3))
        self.db.release()

    # ------------------------------------------------------------------ updates
    def session_opened(self, header: dict[str, Any], name: str, status: str = "live") -> None:
        self._submit(self._opened(header, name, status))

    def session_closed(self, session_id: str, *, end: float | None, exit_status: int | None,
                       exit_signal: str | None, status: str,
                       commands: Iterable[tuple[float, str, str]], policy_events: int,
                       signature: str | None, output_bytes: int) -> None:
        self._submit(self._closed(session_id, end=end, exit_status=exit_status,
                                  exit_signal=exit_signal, status=status, commands=commands,
                                  policy_events=policy_events, signature=signature,
                                  output_bytes=output_bytes))

    def session_indexed(self, header: dict[str, Any], name: str, *, end: float | None,
                        exit_status: int | None, exit_signal: str | None, status: str,
                        commands: Iterable[tuple[float, str, str]], policy_events: int,
                        signature: str | None, output_bytes: int) -> None:
        opened = self._opened(header, name, status)
        closed = self._closed(str(header.get("session_id", "")), end=end,
                              exit_status=exit_status, exit_signal=exit_signal, status=status,
                              commands=commands, policy_events=policy_events,
                              signature=signature, output_bytes=output_bytes)

        def op(conn: Conn) -> None:  # one operation: one transaction
            opened(conn)
            closed(conn)

        self._submit(op)

    def _opened(self, header: dict[str, Any], name: str, status: str) -> Op:
        command = header.get("command") if isinstance(header.get("command"), str) else None
        values = (str(header.get("session_id", "")), str(header.get("user", "")),
                  str(header.get("target", "")), str(header.get("protocol", "")),
                  str(header.get("kind", "")), str(header.get("client_addr", "")),
                  _float(header.get("start_time")), status, name, command, self.node)

        def op(conn: Conn) -> None:
            # INSERT OR REPLACE: every other column back to its default
            conn.execute("DELETE FROM sessions WHERE id = %s", (values[0],))
            conn.execute(
                'INSERT INTO sessions (id, "user", target, protocol, kind, client, start, '
                "status, name, command, node) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                values)

        return op

    @staticmethod
    def _closed(session_id: str, *, end: float | None, exit_status: int | None,
                exit_signal: str | None, status: str,
                commands: Iterable[tuple[float, str, str]], policy_events: int,
                signature: str | None, output_bytes: int) -> Op:
        cmds = list(commands)
        values = (end, exit_status if isinstance(exit_status, int) else None,
                  exit_signal if isinstance(exit_signal, str) else None, status, len(cmds),
                  policy_events, signature, output_bytes, session_id)

        def op(conn: Conn) -> None:
            conn.execute(
                'UPDATE sessions SET "end"=%s, exit_status=%s, exit_signal=%s, status=%s, '
                "commands=%s, policy_events=%s, signature=%s, output_bytes=%s, reaped_by=NULL "
                "WHERE id=%s",
                values)
            conn.execute("DELETE FROM commands WHERE session=%s", (session_id,))
            conn.execute("DELETE FROM content WHERE session=%s AND kind='command'",
                         (session_id,))
            with conn.cursor() as cur:
                cur.executemany('INSERT INTO commands (session, "offset", text, source) '
                                "VALUES (%s,%s,%s,%s)",
                                [(session_id, t, text, src) for t, text, src in cmds])
                cur.executemany('INSERT INTO content (session, "offset", kind, text) '
                                "VALUES (%s,%s,'command',%s)",
                                [(session_id, t, text) for t, text, _src in cmds])

        return op

    def set_status(self, session_id: str, status: str) -> None:
        def op(conn: Conn) -> None:
            conn.execute("UPDATE sessions SET status=%s, reaped_by=NULL WHERE id=%s",
                         (status, session_id))

        self._submit(op)

    def set_screen_lines(self, session_id: str, lines: Iterable[tuple[float, str]]) -> None:
        rows = [(session_id, t, text) for t, text in lines]

        def op(conn: Conn) -> None:
            conn.execute("DELETE FROM content WHERE session=%s AND kind='screen'",
                         (session_id,))
            with conn.cursor() as cur:
                cur.executemany('INSERT INTO content (session, "offset", kind, text) '
                                "VALUES (%s,%s,'screen',%s)", rows)
            conn.execute("UPDATE sessions SET screen_indexed=TRUE WHERE id=%s", (session_id,))

        self._submit(op)

    def set_ocr_lines(self, session_id: str, lines: Iterable[tuple[float, str]]) -> None:
        """Replace the text read off an RDP session's screen (kind ``ocr``), each line
        with the time it appeared (``gateway.rdp.screens``)."""
        rows = [(session_id, t, text) for t, text in lines]

        def op(conn: Conn) -> None:
            conn.execute("DELETE FROM content WHERE session=%s AND kind='ocr'", (session_id,))
            with conn.cursor() as cur:
                cur.executemany('INSERT INTO content (session, "offset", kind, text) '
                                "VALUES (%s,%s,'ocr',%s)", rows)

        self._submit(op)

    def clear(self) -> None:
        """Forget every session except those still live on another node."""
        keep = "status = 'live' AND node <> %s"

        def op(conn: Conn) -> None:
            conn.execute(f"DELETE FROM commands WHERE session NOT IN "
                         f"(SELECT id FROM sessions WHERE {keep})", (self.node,))
            conn.execute(f"DELETE FROM content WHERE session NOT IN "
                         f"(SELECT id FROM sessions WHERE {keep})", (self.node,))
            conn.execute(f"DELETE FROM sessions WHERE NOT ({keep})", (self.node,))

        self._submit(op)

    # ------------------------------------------------------------------ queries
    def _query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        self.flush(self.db.settings.connect_timeout)
        try:
            return self.db.query(sql, params)
        except StateError as exc:
            raise RecorderError(f"session index query failed: {exc}") from exc

    def list_sessions(self, *, user: str | None = None, target: str | None = None,
                      since: float | None = None, until: float | None = None,
                      text: str | None = None, status: str | None = None,
                      limit: int = 1000) -> list[SessionRow]:
        where: list[str] = []
        params: list[Any] = []
        for cond, value in (('"user" = %s', user), ("target = %s", target),
                            ("start >= %s", since), ("start < %s", until),
                            ("status = %s", status)):
            if value is not None:
                where.append(cond)
                params.append(value)
        if text:
            where.append("id IN (SELECT session FROM content WHERE text ILIKE %s)")
            params.append(_like(text))
        sql = f"SELECT {_COLUMNS} FROM sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY start DESC, id DESC LIMIT %s"
        params.append(int(limit))
        return [_row(r) for r in self._query(sql, params)]

    def all_sessions(self) -> list[SessionRow]:
        return [_row(r) for r in self._query(
            f"SELECT {_COLUMNS} FROM sessions ORDER BY start, id")]

    def get(self, session_id: str) -> SessionRow | None:
        rows = self._query(f"SELECT {_COLUMNS} FROM sessions WHERE id = %s", (session_id,))
        return _row(rows[0]) if rows else None

    def find(self, prefix: str) -> list[SessionRow]:
        rows = self._query(f"SELECT {_COLUMNS} FROM sessions WHERE id LIKE %s LIMIT 10",
                           (_like(prefix)[1:],))
        return [_row(r) for r in rows]

    def commands(self, session_id: str) -> list[tuple[float, str, str]]:
        rows = self._query('SELECT "offset", text, source FROM commands WHERE session=%s '
                           'ORDER BY "offset", seq', (session_id,))
        return [(float(t), str(text), str(src)) for t, text, src in rows]

    def matches(self, session_id: str, text: str, limit: int = 50
                ) -> list[tuple[float, str, str]]:
        rows = self._query('SELECT "offset", kind, text FROM content WHERE text ILIKE %s '
                           'AND session=%s ORDER BY "offset", seq LIMIT %s',
                           (_like(text), session_id, limit))
        return [(float(t or 0), str(k), str(x)) for t, k, x in rows]

    def screen_lines(self, session_id: str) -> list[tuple[float, str]]:
        rows = self._query('SELECT "offset", text FROM content WHERE session=%s AND '
                           "kind='screen' ORDER BY seq", (session_id,))
        return [(float(t or 0), str(x)) for t, x in rows]

    def own_live(self, limit: int = 1000) -> list[SessionRow]:
        """This node's sessions left live (its previous run crashed), and those another
        node marked ended when this one was lost: the recordings say how they end."""
        rows = self._query(
            f"SELECT {_COLUMNS} FROM sessions WHERE node = %s AND (status = 'live' OR "
            "reaped_by IS NOT NULL) ORDER BY start LIMIT %s", (self.node, limit))
        return [_row(r) for r in rows]
