"""The player never outlives its terminal or the process that started it.

The app asks Textual to exit when its terminal goes away (SIGHUP, SIGTERM) or its
parent is gone. That exit can block: Textual's writer thread may be stuck in a
``write()`` to a terminal nobody reads any more (a PTY whose reader stopped), and the
event loop that would run the signal handler may be waiting for it. :class:`Lifeline`
is a daemon thread, independent of the event loop, that ends the process
(``os._exit``) when any of these holds:

- the terminal on stdin is hung up (``POLLHUP``/``POLLERR``/``POLLNVAL``), for
  :data:`EXIT_GRACE` seconds;
- the parent process changed (the one that started us died);
- :meth:`Lifeline.leaving` was called (a signal) and the app has not exited within
  :data:`EXIT_GRACE` seconds.

Nothing is lost by ending this way: the player only reads recordings; reviews and
approval decisions are written when they are made.
"""

from __future__ import annotations

import os
import select
import threading
import time

CHECK = 0.5  # seconds between checks
EXIT_GRACE = 3.0  # seconds a clean exit may take once the terminal is gone


class Lifeline:
    """Watches the terminal and the parent from a daemon thread (see the module doc)."""

    def __init__(self, fd: int = 0, *, grace: float = EXIT_GRACE) -> None:
        self._fd = fd
        self._grace = grace
        self._parent = os.getppid()
        self._since: float | None = None  # when the end was first seen
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="player-lifeline",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def leaving(self) -> None:
        """The app was asked to end: it has :data:`EXIT_GRACE` seconds to do so."""
        with self._lock:
            if self._since is None:
                self._since = time.monotonic()

    def gone(self) -> bool:
        """The terminal is hung up or the parent process is gone."""
        if os.getppid() != self._parent:
            return True
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        try:
            events = poller.poll(0)
        except OSError:
            return True
        return any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL)
                   for _fd, ev in events)

    def _watch(self) -> None:
        while True:
            time.sleep(CHECK)
            if self.gone():
                self.leaving()
            with self._lock:
                since = self._since
            if since is not None and time.monotonic() - since >= self._grace:
                os._exit(0)
