"""Local state of a bastille appliance: one home for what the gateway, the RDP workers,
the CLI and the player share on disk.

* :mod:`state.paths`: the data directory's file names (never hard-code one elsewhere).
* :mod:`state.files`: private directories (0700), files (0600) and SQLite connections
  (WAL), whatever the umask.
* :mod:`state.timeparse`: the one parser for durations (``30s``, ``5m``, ``8h``) and
  points in time (``2h`` ago, ISO dates).
* Stores, each a small :class:`typing.Protocol` plus its SQLite implementation, and a
  PostgreSQL one in :mod:`state.pg` for several gateways on one database:
  :mod:`state.approvals` (approval requests, just-in-time access grants, kill requests),
  :mod:`state.tokens` (RDP routing tokens and one-time PINs), :mod:`state.bindings`
  (single sign-on key bindings), :mod:`state.ratelimit` (failed-login counters: in
  memory per process, or shared), :mod:`state.reviews` (auditors' signed, append-only
  reviews of recorded sessions), :mod:`state.registry` (which node holds which live
  session; node leases), and the recorder's session index.
* :mod:`state.settings` (``[state]``) and :mod:`state.backend` (``StateBackend``: the one
  place that opens every store on SQLite or PostgreSQL); :mod:`state.migrate` and
  :mod:`state.cli` (``bastille state migrate|status``).

Layering (enforced by import-linter, see pyproject.toml): ``gateway`` and ``player``
import ``state``; ``state`` imports the standard library, ``recorder``, ``common`` and
(only in ``state.pg`` and ``state.migrate``) psycopg; nothing here knows SSH, RDP or
Textual.
"""
