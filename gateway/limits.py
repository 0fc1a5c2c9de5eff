"""Bounds on what a client controls, checked where it enters the gateway.

Every size, count and length a user's client sends is clamped or refused here before
any part of the gateway allocates or computes from it. docs/security.md lists these
limits; change them here only.
"""

from __future__ import annotations

MAX_TERM_COLS = 1000  # terminal width in cells (a 4K screen at a tiny font is ~500)
MAX_TERM_ROWS = 1000  # terminal height in cells
MAX_TERM_PIXELS = 16384  # pixel width/height reported with a terminal size
MAX_TERM_TYPE = 64  # TERM name ("xterm-256color"); longer names are cut


def clamp_term_size(cols: int, rows: int, pixwidth: int = 0,
                    pixheight: int = 0) -> tuple[int, int, int, int]:
    """A client's terminal size made safe: 1..MAX cells (0, "unknown", becomes 80x24)."""
    def cells(value: int, default: int, top: int) -> int:
        value = int(value)
        return default if value <= 0 else min(value, top)

    def pixels(value: int) -> int:
        return min(max(int(value), 0), MAX_TERM_PIXELS)

    return (cells(cols, 80, MAX_TERM_COLS), cells(rows, 24, MAX_TERM_ROWS),
            pixels(pixwidth), pixels(pixheight))

# ------------------------------------------------------------------ requests and names
MAX_LOGIN_NAME = 129  # "user+target": a name is at most 64 characters (config NAME_RE)
MAX_TARGET_NAME = 64  # a target named in a login or command; a longer one is cut short
MAX_EXEC_COMMAND = 16 * 1024  # bytes of an exec request; longer: refused (use stdin)
MAX_POLICY_LINE = 8 * 1024  # characters the policy parses (in a thread); longer: uncertain
MAX_ENV_VARS = 64  # environment variables a session channel may set (more are refused)
MAX_ENV_BYTES = 16 * 1024  # their names and values together
MAX_SUBSYSTEM_NAME = 64  # a longer subsystem name is refused (and audited cut short)
MAX_FORWARD_HOST = 255  # host names in forwarding requests (DNS names are <= 253)

# ------------------------------------------------------------------ counts
MAX_SESSIONS_PER_CONNECTION = 10  # session channels open at once (OpenSSH MaxSessions)
MAX_FORWARDS_PER_CONNECTION = 256  # forwarding channels and listeners open at once
MAX_AUTH_ATTEMPTS = 6  # password/keyboard-interactive answers per connection, then cut
MAX_KEY_OFFERS = 16  # public keys offered per connection, then cut
MAX_CONNECTIONS_PER_SOURCE = 64  # default of gateway.max_connections_per_source
MAX_SESSIONS_PER_USER = 64  # default of gateway.max_sessions_per_user


def cut(text: str, limit: int) -> str:
    """``text`` for an audit record or a message: at most ``limit`` characters, a longer
    one ends with ``...[N more]``."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more]"
