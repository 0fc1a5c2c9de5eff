"""Suite-wide guards that keep the test command honest on a fresh machine.

1. **No bare interpreter.** A test or benchmark that starts ``python``/``python3`` from
   PATH gets whatever Python the machine has, usually one without the project's packages
   (it passed on a developer machine with packages installed globally and failed on a
   fresh one). For the whole run, PATH starts with a directory whose ``python`` and
   ``python3`` refuse to run and say why: start ``sys.executable`` or the venv's console
   scripts instead (:func:`venv_tool`).
2. **Nothing left running.** The pytest process becomes a *child subreaper*
   (``PR_SET_CHILD_SUBREAPER``), so every process the suite starts, even one whose
   parent died or that daemonized, stays a descendant of pytest. At the end of the run,
   any descendant still alive after a short grace period is listed, killed, and fails
   the run (exit status 3).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import stat
import sys
import tempfile
import time
from pathlib import Path

import pytest

PR_SET_CHILD_SUBREAPER = 36
LEAK_GRACE = 10.0  # seconds the suite's processes get to finish after the last test
GUARD_EXIT = 97

_SHIM = f"""#!/bin/sh
echo "bastille test guard: '$(basename "$0") $*' was started from PATH; tests and benchmarks \
must start sys.executable or the venv's console scripts (tests/conftest.py)" >&2
exit {GUARD_EXIT}
"""


def venv_tool(name: str) -> str | None:
    """A console script installed next to the running interpreter (the venv's ``bin``),
    else one on PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    return shutil.which(name)


def _install_python_guard() -> Path:
    guard = Path(tempfile.mkdtemp(prefix="bastille-path-guard-"))
    for name in ("python", "python3"):
        shim = guard / name
        shim.write_text(_SHIM)
        shim.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    os.environ["PATH"] = f"{guard}{os.pathsep}{os.environ.get('PATH', '')}"
    return guard


def _become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _children_of(pid: int) -> dict[int, int]:
    """Every live (non-zombie) process and its parent, for processes below ``pid``."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2:].split()
        if fields[0] == "Z":
            continue
        parents[int(entry)] = int(fields[1])
    below: dict[int, int] = {}
    for child, parent in parents.items():
        cur = parent
        seen = 0
        while cur > 1 and seen < 64:
            if cur == pid:
                below[child] = parent
                break
            cur = parents.get(cur, 0)
            seen += 1
    return below


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:200]


_guard_dir: Path | None = None
_subreaper = False


def pytest_configure(config: pytest.Config) -> None:
    global _guard_dir, _subreaper
    if _guard_dir is None:
        _guard_dir = _install_python_guard()
        _subreaper = _become_subreaper()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _guard_dir is not None:
        shutil.rmtree(_guard_dir, ignore_errors=True)
    if not _subreaper:
        return
    me = os.getpid()
    deadline = time.monotonic() + LEAK_GRACE
    left = _children_of(me)
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = _children_of(me)
    if not left:
        return
    lines = [f"  pid {pid} (parent {parent}): {_cmdline(pid)}" for pid, parent in
             sorted(left.items())]
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    text = ("error: the test run left processes running (now killed):\n" + "\n".join(lines))
    if reporter is not None:
        reporter.write_line(text, red=True)
    else:
        print(text, file=sys.stderr)
    session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
