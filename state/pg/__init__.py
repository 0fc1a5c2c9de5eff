"""The stores on one shared PostgreSQL database (``[state] url``): several gateways, one
bastion (docs/scale-out.md).

* :mod:`state.pg.db`: the pool, the schema, notifications, "database unavailable".
* :mod:`state.pg.approvals`, :mod:`state.pg.tokens`, :mod:`state.pg.bindings`,
  :mod:`state.pg.ratelimit`, :mod:`state.pg.reviews`: the protocols of :mod:`state`.
* :mod:`state.pg.index`: the session index (``recorder.index.SessionIndex``), pg_trgm.
* :mod:`state.pg.registry`: live sessions by node, node leases, taking over lost nodes.
* :mod:`state.pg.writer`, :mod:`state.pg.wake`: ordered background writes; asyncio
  waiters woken by ``NOTIFY``.

psycopg (3, with its pool) is imported only here and in :mod:`state.migrate` (an
import-linter contract), and only when a database is configured.
"""
