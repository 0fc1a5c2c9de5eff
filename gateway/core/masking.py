"""Maskers for one session: which patterns, which secrets, and masking what is recorded.

* :class:`Maskers` builds a :class:`gateway.policy.StreamMasker` per session from the
  built-in patterns, ``policy.mask_patterns`` and the target's vaulted password (masked
  if a target ever echoes it).
* :class:`RecordMasker` masks only what is recorded of a session without a PTY, per
  stream: exec output (streams 1, 2) and file transfers (``streams=(0, 1, 2)``; stream 0
  is the user's input, i.e. uploads). The user gets the exact bytes (scripts and files
  depend on them). Held partial matches are flushed by a timer at their deadline.

Known limits: only the target's own vaulted *password* is masked as a secret (a key
target's key is never sent to the target, so it cannot be echoed); what the patterns
do not describe is not masked (docs/policy.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from gateway.config import PolicySettings, TargetConfig
from gateway.core.vault import target_password
from gateway.errors import VaultError
from gateway.policy import BUILTIN_PATTERNS, MaskPattern, StreamMasker


class Maskers:
    """Makes the masker of each session (patterns compiled once)."""

    def __init__(self, policy: PolicySettings) -> None:
        self._patterns = (*BUILTIN_PATTERNS, *(
            MaskPattern.from_config(f"custom-{i}", rx, prefix)
            for i, (rx, prefix) in enumerate(policy.mask_patterns)))

    def for_target(self, target: TargetConfig, *, binary: bool = False) -> StreamMasker:
        """A masker for one session to ``target`` (``binary``: file contents)."""
        secrets: list[str] = []
        if target.builtin is None:
            try:
                password = target_password(target)
            except VaultError:
                password = None
            if password:
                secrets.append(password)
        return StreamMasker(self._patterns, secrets=secrets, binary=binary)


class RecordMasker:
    """Masks what is recorded, per stream; ``record(masked, stream)`` receives it."""

    def __init__(self, make_masker: Callable[[], StreamMasker],
                 record: Callable[[bytes, int], None],
                 streams: tuple[int, ...] = (1, 2)) -> None:
        self._maskers = {stream: make_masker() for stream in streams}
        self.masks_input = 0 in self._maskers
        self._record = record
        self._timer: asyncio.TimerHandle | None = None

    def feed(self, data: bytes, stream: int) -> None:
        masked = self._maskers[stream].feed(data, time.monotonic())
        if masked:
            self._record(masked, stream)
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None:
            return
        deadlines = [d for m in self._maskers.values() if (d := m.next_deadline()) is not None]
        if deadlines:
            delay = max(0.0, min(deadlines) - time.monotonic()) + 0.001
            self._timer = asyncio.get_running_loop().call_later(delay, self._flush)

    def _flush(self, end: bool = False) -> None:
        self._timer = None
        for stream, masker in self._maskers.items():
            out = masker.flush(time.monotonic(), end=end)
            if out:
                self._record(out, stream)
        if not end:
            self._schedule()

    def close(self) -> None:
        """End of session: flush what is held."""
        if self._timer is not None:
            self._timer.cancel()
        self._flush(end=True)
