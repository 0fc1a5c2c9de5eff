"""Asyncio waiters woken by database notifications (``NOTIFY bastille, 'topic:payload'``).

A waiter asks for a key: ``"approval:12"`` (that request), or ``"kill:"`` (any payload
of the topic). The listener thread sets the waiters' events through their loops;
``"*"`` (the listener reconnected, something may have been missed) wakes everyone. A
wait always ends after its timeout too: callers poll, notifications only shorten it.
"""

from __future__ import annotations

import asyncio
import threading

from state.pg.db import Listener


class Wakeups:
    """Waiters by key, woken from the listener thread."""

    def __init__(self, listener: Listener) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._unsubscribe = listener.subscribe(self._notified)

    def _notified(self, topic: str, payload: str) -> None:
        with self._lock:
            if topic == "*":
                found = [w for ws in self._waiters.values() for w in ws]
            else:
                found = [*self._waiters.get(f"{topic}:{payload}", ()),
                         *self._waiters.get(f"{topic}:", ())]
        for loop, event in found:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed
                pass

    async def wait(self, key: str, timeout: float) -> bool:  # noqa: ASYNC109 - a poll bound
        """Until a notification for ``key`` (True) or ``timeout`` seconds (False)."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.setdefault(key, set()).add(entry)
        try:
            await asyncio.wait_for(entry[1].wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                ws = self._waiters.get(key)
                if ws is not None:
                    ws.discard(entry)
                    if not ws:
                        del self._waiters[key]

    def close(self) -> None:
        self._unsubscribe()
