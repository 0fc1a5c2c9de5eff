"""Whether a process id names a live process (``kill(pid, 0)``: a process of another
user counts as alive)."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
