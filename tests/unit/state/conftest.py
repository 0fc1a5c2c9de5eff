"""A PostgreSQL server for the store tests (started once per run, a database per test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from state.settings import StateSettings
from tests.pg_rig import PASSWORD, PgServer, available


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    if not available():
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    server = PgServer()
    server.init()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_settings(pg_server: PgServer) -> StateSettings:
    """Settings of a fresh, empty database on the test server."""
    return StateSettings(url=pg_server.url(pg_server.new_database()), password=PASSWORD,
                         node="node-a", lease=2.0, heartbeat=0.5, poll_interval=0.2)
