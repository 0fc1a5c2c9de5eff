"""Exceptions raised by the state stores.

Tree::

    StateError             a state store cannot do what was asked
    ├── ApprovalError      an approval action was refused (self-approval, not an
    │                      approver, not pending, ...)
    └── StateUnavailable   the shared database (PostgreSQL) cannot be reached

Messages are written to be shown to the person who asked: short, no secret.
"""

from __future__ import annotations


class StateError(Exception):
    """Root of every exception of the :mod:`state` package."""


class ApprovalError(StateError):
    """An approval action was refused; the message says why."""


class StateUnavailable(StateError):
    """The shared database cannot be reached (PostgreSQL down or unreachable): what
    needs it waits or fails with this message; nothing else stops."""
