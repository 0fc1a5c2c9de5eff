"""Maskers for one session: which patterns, which secrets, and masking what is recorded.

* :class:`Maskers` builds a :class:`gateway.policy.StreamMasker` per session from the
  built-in patterns, ``policy.mask_patterns`` and the target's vaulted password (masked
  if a target ever echoes it).
* :meth:`Maskers.text_for` is the one masker for *text lines* (a typed command line, an
  exec command, an approval request, a search snippet): the same patterns and secrets,
  one line at a time. Wherever a command line is stored or shown (audit, recording
  headers and command events, approvals, the index) it goes through it;
  :meth:`Maskers.keys_for` masks the keys of one typed line the same way before they
  are recorded. The policy decides on the real text; only what is kept and shown is
  masked, so an approver sees the command with its secrets as ``****``.
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
import functools
import time
from collections.abc import Callable, Iterable

from gateway.config import PolicySettings, TargetConfig
from gateway.core.vault import target_password
from gateway.errors import VaultError
from gateway.policy import BUILTIN_PATTERNS, MaskPattern, StreamMasker

#: masks one line of text (the same line when there is nothing to mask)
TextMask = Callable[[str], str]


def _secrets(target: TargetConfig | None) -> tuple[str, ...]:
    """The vaulted secrets of ``target`` that masking looks for (its password, when this
    process can read it: tools started without target secrets mask patterns only)."""
    if target is None or target.builtin is not None:
        return ()
    try:
        password = target_password(target)
    except VaultError:
        return ()
    return (password,) if password else ()


class Maskers:
    """Makes the masker of each session (patterns compiled once)."""

    def __init__(self, policy: PolicySettings) -> None:
        self._patterns = (*BUILTIN_PATTERNS, *(
            MaskPattern.from_config(f"custom-{i}", rx, prefix)
            for i, (rx, prefix) in enumerate(policy.mask_patterns)))

    def for_target(self, target: TargetConfig, *, binary: bool = False) -> StreamMasker:
        """A masker for one session to ``target`` (``binary``: file contents)."""
        return StreamMasker(self._patterns, secrets=_secrets(target), binary=binary)

    def _line(self, secrets: tuple[str, ...], data: bytes) -> bytes:
        masker = StreamMasker(self._patterns, secrets=secrets)  # a line has no history
        return masker.feed(data, 0.0) + masker.flush(0.0, end=True)

    def text_for(self, target: TargetConfig | None = None, *,
                 targets: Iterable[TargetConfig] = ()) -> TextMask:
        """The text-line masker for sessions to ``target`` (None: patterns only);
        ``targets``: the secrets of all of these too (tools reading every session)."""
        secrets = (*_secrets(target), *(x for t in targets for x in _secrets(t)))

        def mask(text: str) -> str:
            if not text:
                return text
            data = text.encode("utf-8", "surrogateescape")
            return self._line(secrets, data).decode("utf-8", "surrogateescape")

        return mask

    def keys_for(self, target: TargetConfig | None = None) -> Callable[[bytes], bytes]:
        """Masks the keys of one typed line (escape sequences kept) before recording."""
        secrets = _secrets(target)
        return functools.partial(self._line, secrets)


@functools.lru_cache(maxsize=8)
def maskers_for(policy: PolicySettings) -> Maskers:
    """The :class:`Maskers` of a ``[policy]`` (patterns compiled once per process)."""
    return Maskers(policy)


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
