"""A real bash under a pty, driven the way the relay drives a target.

Keys go through ``LineTracker.feed_input``; ``data`` events are written to bash at
once, every ``enter`` event is held: we wait for bash's echo, take
``current_line(line_id)``, then release (or refuse) the Enter. Everything bash prints
is fed to ``feed_output``. This is the real thing: readline's actual redraw sequences.
"""

from __future__ import annotations

import fcntl
import os
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
import time
from collections.abc import Callable

from gateway.policy import InputEvent, LineSnapshot, LineTracker

BASH = shutil.which("bash") or "/bin/bash"


class BashPty:
    """``bash --norc --noprofile -i`` with PS1='$ ' in a pty of cols x rows."""

    def __init__(
        self,
        cols: int = 80,
        rows: int = 24,
        tracker: LineTracker | None = None,
        path: str | None = None,
    ) -> None:
        self.home = tempfile.mkdtemp(prefix="bastille-policy-")
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = {
            "PS1": "$ ",
            "PS2": "> ",
            "TERM": "xterm",
            "HOME": self.home,
            "PATH": path if path is not None else os.environ.get("PATH", "/usr/bin:/bin"),
            "HISTFILE": "/dev/null",
            "INPUTRC": "/dev/null",
            "LANG": "C.UTF-8",
        }
        self.proc = subprocess.Popen(
            [BASH, "--norc", "--noprofile", "-i"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=self.home,
            start_new_session=True,
        )
        os.close(slave)
        self.tracker = tracker or LineTracker(cols, rows)
        self.output = bytearray()
        self.read_until_quiet(first_timeout=3.0)

    def close(self) -> None:
        """Kill bash and remove its home."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=5)
        os.close(self.master)
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> BashPty:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read_until_quiet(self, quiet: float = 0.06, first_timeout: float = 1.0) -> bytes:
        """Read bash's output until it is quiet for ``quiet`` s (bounded)."""
        got = bytearray()
        deadline = time.monotonic() + first_timeout
        last = None
        while True:
            now = time.monotonic()
            if last is not None and now - last >= quiet:
                break
            if now >= deadline and (last is None or now - last >= quiet):
                break
            wait = quiet if last is not None else max(0.0, deadline - now)
            r, _, _ = select.select([self.master], [], [], min(wait, 0.05))
            if r:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                got += chunk
                self.tracker.feed_output(chunk)
                last = time.monotonic()
        self.output += got
        return bytes(got)

    def run(self, cmd: str) -> bytes:
        """Type a command and Enter without looking at it (setup steps)."""
        self.keys((cmd + "\r").encode())
        return bytes(self.output)

    def keys(
        self,
        data: bytes,
        on_enter: Callable[[InputEvent, LineSnapshot], bool] | None = None,
    ) -> list[LineSnapshot]:
        """Send keys like the relay; return the snapshot taken at every Enter.

        Args:
            data: the keys.
            on_enter: decides whether to release a held Enter (False: refuse it; the
                line is cleared with Ctrl-U like the relay does).
        """
        snaps: list[LineSnapshot] = []
        for ev in self.tracker.feed_input(data):
            if ev.data:
                os.write(self.master, ev.data)
                self.read_until_quiet(first_timeout=0.5)
            if ev.kind == "enter":
                snap = self.tracker.current_line(ev.line_id)
                snaps.append(snap)
                release = on_enter(ev, snap) if on_enter else True
                if release:
                    os.write(self.master, ev.enter)
                else:
                    os.write(self.master, b"\x15")
                    self.tracker.end_line()
                self.read_until_quiet(first_timeout=0.5)
        return snaps
