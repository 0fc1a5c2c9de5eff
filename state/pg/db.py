"""One PostgreSQL database shared by every gateway: the connection pool, the schema, the
notification listener and the "database unavailable" rule.

* :class:`Database` is opened once per process (:func:`connect` caches it by URL, so the
  stores and the index of one process share one pool of ``pool_size`` connections).
* Every call goes through :meth:`Database.run` (a connection from the pool, a
  transaction). A call that cannot reach the database raises
  :class:`state.errors.StateUnavailable` within ``connect_timeout`` seconds; after a
  failure, calls fail at once for ``RETRY_AFTER`` seconds (so that a session path that
  asks the database does not stall the event loop again and again during an outage).
* The schema is created at open, under an advisory lock (several nodes may start
  together); it only ever adds tables and columns (``CREATE ... IF NOT EXISTS``).
* :class:`Listener`: a thread with its own connection that ``LISTEN``s on the channel
  ``bastille`` and calls subscribers (``topic``, ``payload``); it reconnects after an
  outage and then calls every subscriber with ``"*"`` (something may have been missed).
  Notifications only *wake* waiters: every waiter also polls (``poll_interval``), so a
  lost notification costs at most that much.

Known limits: the clock used for leases and expiries is the database's
(``clock_timestamp()``) where several nodes compare times; requests carry the creating
node's wall clock like the SQLite store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg.abc import Buffer
from psycopg.types.string import StrBinaryDumper, StrDumperUnknown

from state.errors import StateError, StateUnavailable
from state.settings import StateSettings

log = logging.getLogger("bastille.state.pg")

T = TypeVar("T")
CHANNEL = "bastille"
RETRY_AFTER = 3.0  # seconds during which calls fail fast after the database was unreachable
SCHEMA_LOCK = 0x6261_7374  # advisory lock id held while the schema is created ("bast")

Subscriber = Callable[[str, str], None]

SCHEMA = """
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE TABLE IF NOT EXISTS requests (
    id BIGSERIAL PRIMARY KEY,
    created DOUBLE PRECISION NOT NULL,
    expires DOUBLE PRECISION NOT NULL,
    "user" TEXT NOT NULL,
    target TEXT NOT NULL,
    session TEXT NOT NULL,
    command TEXT NOT NULL,
    rule TEXT,
    reason TEXT NOT NULL,
    status TEXT NOT NULL,
    decided_by TEXT,
    decided_at DOUBLE PRECISION,
    decision_reason TEXT,
    kind TEXT NOT NULL DEFAULT 'command',
    grant_seconds DOUBLE PRECISION,
    node TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS requests_status ON requests(status);
CREATE INDEX IF NOT EXISTS requests_grant ON requests("user", target) WHERE kind = 'access';
CREATE TABLE IF NOT EXISTS kills (
    session TEXT PRIMARY KEY,
    requested_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    done DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS tokens (
    digest TEXT PRIMARY KEY, kind TEXT NOT NULL, "user" TEXT NOT NULL, target TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL, expires DOUBLE PRECISION NOT NULL,
    used DOUBLE PRECISION, groups TEXT
);
CREATE TABLE IF NOT EXISTS bindings (
    key_sha256 TEXT NOT NULL, "user" TEXT NOT NULL, groups TEXT NOT NULL,
    subject TEXT NOT NULL, issuer TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL, expires DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (key_sha256, "user")
);
CREATE TABLE IF NOT EXISTS login_failures (
    key TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS login_failures_key ON login_failures(key, at);
CREATE TABLE IF NOT EXISTS recording_usage (
    "user" TEXT NOT NULL,
    day TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    PRIMARY KEY ("user", day)
);
CREATE TABLE IF NOT EXISTS reviews (
    id BIGSERIAL PRIMARY KEY,
    session TEXT NOT NULL,
    payload TEXT NOT NULL,
    digest TEXT NOT NULL,
    signature TEXT,
    public_key TEXT
);
CREATE INDEX IF NOT EXISTS reviews_session ON reviews(session, id);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, "user" TEXT, target TEXT, protocol TEXT, kind TEXT, client TEXT,
    start DOUBLE PRECISION, "end" DOUBLE PRECISION, exit_status INTEGER, exit_signal TEXT,
    status TEXT, commands INTEGER DEFAULT 0, policy_events INTEGER DEFAULT 0, name TEXT,
    signature TEXT, command TEXT, output_bytes BIGINT DEFAULT 0,
    screen_indexed BOOLEAN DEFAULT FALSE, node TEXT NOT NULL DEFAULT '',
    reaped_by TEXT
);
CREATE INDEX IF NOT EXISTS sessions_start ON sessions(start);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions("user");
CREATE INDEX IF NOT EXISTS sessions_target ON sessions(target);
CREATE INDEX IF NOT EXISTS sessions_live ON sessions(node) WHERE status = 'live';
CREATE TABLE IF NOT EXISTS commands (
    seq BIGSERIAL PRIMARY KEY, session TEXT NOT NULL, "offset" DOUBLE PRECISION,
    text TEXT, source TEXT
);
CREATE INDEX IF NOT EXISTS commands_session ON commands(session);
CREATE TABLE IF NOT EXISTS content (
    seq BIGSERIAL PRIMARY KEY, session TEXT NOT NULL, "offset" DOUBLE PRECISION,
    kind TEXT NOT NULL, text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS content_session ON content(session, kind);
CREATE INDEX IF NOT EXISTS content_text_trgm ON content USING gin (text gin_trgm_ops);
CREATE TABLE IF NOT EXISTS nodes (
    node TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    started DOUBLE PRECISION NOT NULL,
    heartbeat DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS live_sessions (
    session TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    "user" TEXT NOT NULL DEFAULT '',
    target TEXT NOT NULL DEFAULT '',
    started DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS live_sessions_node ON live_sessions(node);
CREATE TABLE IF NOT EXISTS watches (
    session TEXT PRIMARY KEY,
    until DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS legal_holds (
    session TEXT PRIMARY KEY,
    by_user TEXT NOT NULL,
    reason TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS live_tail (
    session TEXT NOT NULL,
    "offset" BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (session, "offset")
);
"""

NOW = "extract(epoch from clock_timestamp())"

#: what a NUL character becomes in a text column (PostgreSQL text cannot hold one; SQLite
#: can): a client may put one in an exec command, a user name or a reason
NUL_STANDIN = "\ufffd"


class _TextDumper(StrDumperUnknown):
    """Strings sent as text parameters, a NUL replaced (see NUL_STANDIN)."""

    def dump(self, obj: str) -> Buffer | None:
        return super().dump(obj.replace("\x00", NUL_STANDIN))


class _BinaryTextDumper(StrBinaryDumper):
    """Strings sent as binary parameters, a NUL replaced (see NUL_STANDIN)."""

    def dump(self, obj: str) -> Buffer | None:
        return super().dump(obj.replace("\x00", NUL_STANDIN))


def _configure(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
    """Every pooled connection: strings with a NUL are stored, not refused (a write
    refused for that would lose a session's index row or an approval request)."""
    conn.adapters.register_dumper(str, _TextDumper)
    conn.adapters.register_dumper(str, _BinaryTextDumper)


def _conninfo(settings: StateSettings) -> tuple[str, dict[str, Any]]:
    kwargs: dict[str, Any] = {"autocommit": True,
                              "connect_timeout": max(1, round(settings.connect_timeout)),
                              "application_name": f"bastille:{settings.node}"[:63]}
    if settings.password is not None:
        kwargs["password"] = settings.password
    return settings.url, kwargs


class Database:
    """A pool of connections to the shared database (see the module doc)."""

    def __init__(self, settings: StateSettings) -> None:
        self.settings = settings
        self.node = settings.node
        url, kwargs = _conninfo(settings)
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._refs = 0
        self.pool: psycopg_pool.ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = \
            psycopg_pool.ConnectionPool(
                url, kwargs=kwargs, min_size=1, max_size=max(1, settings.pool_size),
                open=False, timeout=settings.connect_timeout, name=f"bastille-{self.node}",
                check=psycopg_pool.ConnectionPool.check_connection, reconnect_timeout=3e7,
                configure=_configure)
        self.pool.open(wait=False)
        self.listener = Listener(settings)
        self._schema_ready = False

    # ------------------------------------------------------------------ calls
    def ensure_schema(self) -> None:
        """Create the tables (idempotent; serialized between nodes). Done by the first
        call that reaches the database."""
        with self.connection():
            pass

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """A pooled connection inside one transaction; errors mapped to StateError."""
        if time.monotonic() < self._down_until:
            raise StateUnavailable("the bastion's database is unavailable")
        try:
            with self.pool.connection(timeout=self.settings.connect_timeout) as conn:
                if not self._schema_ready:
                    with conn.transaction():
                        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                        conn.execute(SCHEMA)
                    self._schema_ready = True
                with conn.transaction():
                    yield conn
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            self._down_until = time.monotonic() + RETRY_AFTER
            log.warning("state: database unavailable: %s", _one_line(exc))
            raise StateUnavailable("the bastion's database is unavailable") from exc
        except psycopg.Error as exc:
            raise StateError(f"database error: {_one_line(exc)}") from exc
        self._down_until = 0.0

    def run(self, fn: Callable[[psycopg.Connection[tuple[Any, ...]]], T]) -> T:
        """``fn(conn)`` in one transaction."""
        with self.connection() as conn:
            return fn(conn)

    def query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        with self.connection() as conn:
            return conn.execute(sql, params).fetchall()

    def execute(self, sql: str, params: Any = ()) -> int:
        """Run one statement; the number of rows it changed."""
        with self.connection() as conn:
            return conn.execute(sql, params).rowcount

    def notify(self, conn: psycopg.Connection[tuple[Any, ...]], topic: str,
               payload: str = "") -> None:
        """Wake the nodes waiting on ``topic`` (sent when the transaction commits)."""
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{topic}:{payload}"))

    def now(self) -> float:
        """The database's clock (epoch seconds): the one clock all nodes share."""
        return float(self.query(f"SELECT {NOW}")[0][0])

    # ------------------------------------------------------------------ lifetime
    def acquire(self) -> Database:
        with self._lock:
            self._refs += 1
        return self

    def release(self) -> None:
        with self._lock:
            self._refs -= 1
            last = self._refs <= 0
        if last:
            self.close()

    def close(self) -> None:
        _forget(self)
        self.listener.stop()
        self.pool.close(timeout=2.0)


class Listener:
    """A thread that LISTENs on the ``bastille`` channel (see the module doc)."""

    def __init__(self, settings: StateSettings) -> None:
        self.settings = settings
        self._subs: list[Subscriber] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Call ``fn(topic, payload)`` for each notification (from the listener thread);
        returns the function that unsubscribes."""
        with self._lock:
            self._subs.append(fn)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="bastille-listen",
                                                daemon=True)
                self._thread.start()

        def unsubscribe() -> None:
            with self._lock:
                if fn in self._subs:
                    self._subs.remove(fn)

        return unsubscribe

    def _emit(self, topic: str, payload: str) -> None:
        with self._lock:
            subs = list(self._subs)
        for fn in subs:
            try:
                fn(topic, payload)
            except Exception:
                log.exception("state: notification subscriber failed")

    def _run(self) -> None:
        url, kwargs = _conninfo(self.settings)
        while not self._stop.is_set():
            try:
                with psycopg.connect(url, **kwargs) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    self._emit("*", "")  # (re)connected: anything may have been missed
                    while not self._stop.is_set():
                        for n in conn.notifies(timeout=0.5):
                            topic, _, payload = n.payload.partition(":")
                            self._emit(topic, payload)
            except psycopg.Error as exc:
                self.connected.clear()
                log.debug("state: listener reconnecting: %s", _one_line(exc))
                self._stop.wait(0.5)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)


def probe(settings: StateSettings) -> str | None:
    """Why the database of ``settings`` cannot serve as the shared state (``bastille
    config check``), or None. Creates nothing."""
    url, kwargs = _conninfo(settings)
    try:
        with psycopg.connect(url, **kwargs) as conn:
            row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_available_extensions "
                               "WHERE name = 'pg_trgm')").fetchone()
    except psycopg.Error as exc:
        return f"cannot reach the database: {_one_line(exc)}"
    if not row or not row[0]:
        return ("the pg_trgm extension is not available on the server (Debian: it is in "
                "the postgresql package; elsewhere: postgresql-contrib)")
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


_open: dict[tuple[str, str], Database] = {}
_open_lock = threading.Lock()


def connect(settings: StateSettings) -> Database:
    """This process's :class:`Database` for ``settings`` (opened once; the schema is
    created by the first call that reaches the database, so a node starts while the
    database is down); each caller calls :meth:`Database.release` when done."""
    key = (settings.url, settings.node)
    with _open_lock:
        db = _open.get(key)
        if db is None:
            db = _open[key] = Database(settings)
        db.acquire()
    return db


def _forget(db: Database) -> None:
    with _open_lock:
        for key, value in list(_open.items()):
            if value is db:
                del _open[key]
