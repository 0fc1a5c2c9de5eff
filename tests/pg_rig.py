"""A throwaway PostgreSQL server for tests and benchmarks (Debian's ``postgresql``).

``initdb`` + ``pg_ctl`` on a free loopback port, in a fresh directory, as an
unprivileged user (``postgres`` when the tests run as root: PostgreSQL refuses to run as
root). Password authentication (scram) is on, so the stores are tested with a password
from a file exactly as an appliance would use it. ``restart()`` and ``stop()`` are for
failure tests.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
USER = "bastille"
PASSWORD = "pg-" + uuid.uuid4().hex


def pg_bin(name: str) -> str | None:
    for d in BIN_DIRS:
        if (d / name).exists():
            return str(d / name)
    return shutil.which(name)


def available() -> bool:
    return pg_bin("initdb") is not None and pg_bin("pg_ctl") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One PostgreSQL cluster; :meth:`new_database` gives each test its own database."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="bastille-pg-"))
        os.chmod(self.root, 0o755)
        self.port = _free_port()
        self.data = self.root / "data"
        self.log = self.root / "log"
        self.password_file = self.root / "password"
        self.password_file.write_text(PASSWORD + "\n")
        os.chmod(self.password_file, 0o600)
        self._as: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self.running = False

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self._as, *args], check=check, capture_output=True,
                              text=True, timeout=120, cwd=self.root)

    def init(self) -> None:
        pwfile = self.root / "initpw"
        pwfile.write_text(PASSWORD + "\n")
        if self._as:
            pw = pwd.getpwnam("postgres")
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        initdb = pg_bin("initdb")
        assert initdb is not None
        self._run(initdb, "-D", str(self.data), "-U", USER, "--pwfile", str(pwfile),
                  "-A", "scram-sha-256", "--locale=C.UTF-8", "-E", "UTF8")
        pwfile.unlink()
        self.start()

    def start(self) -> None:
        pg_ctl = pg_bin("pg_ctl")
        assert pg_ctl is not None
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200")
        self._run(pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.log), "-w",
                  "-t", "60", "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        if not self.running:
            return
        pg_ctl = pg_bin("pg_ctl")
        assert pg_ctl is not None
        self._run(pg_ctl, "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop",
                  check=False)
        self.running = False

    def restart(self, down: float = 0.0) -> None:
        self.stop()
        time.sleep(down)
        self.start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        psql = pg_bin("psql")
        assert psql is not None
        out = subprocess.run([psql, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d",
                              self.url(database), "-c", sql], check=True, capture_output=True,
                             text=True, timeout=60, env={**os.environ, "PGPASSWORD": PASSWORD})
        return out.stdout

    def new_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        self.psql(f"CREATE DATABASE {name}")
        return name

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
