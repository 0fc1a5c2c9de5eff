"""The SHA-256 digests of a recording's trailer: what was recorded, what was delivered.

``output_sha256`` covers the recorded output (``output`` and ``stderr`` events, in
order). A session whose recorded output is masked also reports every byte its user was
sent (``delivered``), and the trailer gets ``delivered_sha256`` over those, so that what
the user received can be proved later.

Usually the masker changes nothing, so the two streams are the same bytes, only cut at
different places and reported at different times. :class:`OutputDigests` then hashes
them once: the stream that is ahead is kept (at most :data:`MAX_LAG` bytes), the other
is compared with it byte for byte as it arrives, and only the common prefix is hashed.
At the first difference (a mask, an order that differs, a lag above the bound) the hash
of the common prefix is copied and each stream goes on with its own: both digests are
always exactly SHA-256 of their own stream; the pairing only saves a pass.

The output hash defers its data (:func:`common.sha256.new`): the writer's encoder hashes
it together with the chunk that holds the same events (:attr:`partner`), the two streams'
rounds interleaved on one core.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from common import sha256

#: bytes one stream may run ahead of the other while they are paired (then: split)
MAX_LAG = 1024 * 1024

_OUT = 1
_DEL = 2


class OutputDigests:
    """SHA-256 of the recorded output, and of the delivered bytes once any are reported.

    Call :meth:`pair` before the first byte of either stream when the session will
    report what it delivers (later, it is ignored: the streams are hashed apart).
    """

    def __init__(self) -> None:
        self._out = sha256.new()  # while paired: the hash of the common prefix
        self._del: Any = None  # its own hash, once apart
        self._paired = False
        self._started = False
        self.delivered_seen = False
        self._ahead: deque[bytes] = deque()  # bytes of one stream not yet matched
        self._ahead_kind = 0
        self._ahead_len = 0

    @property
    def partner(self) -> sha256.Hash:
        """The hash whose deferred data waits for a partner stream (``settle``)."""
        return self._out

    @property
    def paired(self) -> bool:
        """Still one pass for both streams (nothing differed so far)."""
        return self._paired

    def pair(self) -> None:
        if not self._started:
            self._paired = True

    def output(self, data: bytes) -> None:
        self._started = True
        if self._paired:
            self._take(data, _OUT)
        else:
            self._out.defer(data)

    def delivered(self, data: bytes) -> None:
        self._started = True
        self.delivered_seen = True
        if self._paired:
            self._take(data, _DEL)
        else:
            if self._del is None:
                self._del = sha256.new()
            self._del.update(data)

    def output_hex(self) -> str:
        self._settle()
        return str(self._out.hexdigest())

    def delivered_hex(self) -> str | None:
        """None when no delivered byte was reported."""
        if not self.delivered_seen:
            return None
        self._settle()
        return str((self._del if self._del is not None else self._out).hexdigest())

    # ------------------------------------------------------------------ internals

    def _settle(self) -> None:
        """At the end: unmatched bytes left means the streams differ."""
        if self._paired and self._ahead:
            self._split()

    def _take(self, data: bytes, kind: int) -> None:
        if not data:
            return
        ahead = self._ahead
        if not ahead or self._ahead_kind == kind:
            self._keep(data, kind)
            return
        pos = 0
        size = len(data)
        while pos < size and ahead:
            head = ahead[0]
            n = min(len(head), size - pos)
            if n == len(head) == size:  # the common case: the same piece both ways
                same = head == data
            else:
                same = head[:n] == data[pos : pos + n]
            if not same:
                self._split(pending=(data[pos:], kind))
                return
            self._out.defer(data, pos, pos + n)
            self._ahead_len -= n
            if n == len(head):
                ahead.popleft()
            else:
                ahead[0] = head[n:]
            pos += n
        if pos < size:  # this stream is ahead now
            self._keep(data[pos:] if pos else data, kind)

    def _keep(self, data: bytes, kind: int) -> None:
        """``data`` of stream ``kind`` waits for the other stream (which is not ahead)."""
        self._ahead.append(data)
        self._ahead_kind = kind
        self._ahead_len += len(data)
        if self._ahead_len > MAX_LAG:
            self._split()

    def _split(self, pending: tuple[bytes, int] | None = None) -> None:
        """The streams differ: each goes on with its own hash from the common prefix."""
        self._paired = False
        self._del = self._out.copy()
        held = self._out if self._ahead_kind == _OUT else self._del
        for piece in self._ahead:
            held.update(piece)
        self._ahead.clear()
        self._ahead_len = 0
        if pending is not None:
            data, kind = pending
            (self._out if kind == _OUT else self._del).update(data)
