"""A SHA-256 one thread feeds and another may hash in the gaps of its own stream.

The gateway's event loop computes each transferred file's SHA-256 (the ``sha256`` of
its transfer event) while the recorder's writer thread hashes each chunk it writes (the
chunk chain). With the x86 SHA extensions two streams hashed together cost ~0.38 ms/MiB
each, one alone ~0.64 (:mod:`common.sha256`), and on the loop that hash was the largest
single item of a bulk transfer (15-17% of the loop thread). A :class:`SharedSha256` lets
the writer take the file's bytes as the second stream of its chunk hashes:

* the loop :meth:`~SharedSha256.add` s the file's bytes: a reference is kept (bytes, or
  a read-only view of bytes; anything else is copied), nothing is hashed yet;
* the writer, hashing a chunk, calls :func:`settle_chunk`: the chunk's hash is settled
  together with the open shared hash that has the most bytes waiting, if that one's lock
  is free at once (the writer never waits for the loop; otherwise its usual partner);
* the loop hashes what waits itself when more than :data:`LIMIT` bytes wait, and when it
  asks for the digest. The digest never waits for the writer (a recorder stalled on
  storage does not delay a transfer's audit line), and at most ``LIMIT`` bytes (plus
  what arrives while the writer holds the lock for one settle) are kept per file;
* at most :data:`MAX_OPEN` hashes share at once in a process; a file started while
  they are taken is hashed on the loop as it comes (as before), so what waits is
  bounded per process whatever a client opens, and whether or not the writer runs.

Whoever hashes, the digest is exactly SHA-256 of the bytes added, in order: the lock
serialises the two threads, and bytes added while the writer holds it queue behind
the ones it is hashing. Without the extension (or with ``BASTILLE_NO_SHA_EXT=1``),
``add`` hashes at once with hashlib, as before, and nothing is shared.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from common import sha256

#: bytes a shared hash keeps for the writer before its owner hashes them itself
LIMIT = 2 * 1024 * 1024
#: shared hashes open at once in a process (more are hashed by their owner at once):
#: with LIMIT, what waits for the writer is bounded per process, not per file, whatever
#: a client opens (a session may have 1,024 files open) and whether or not the writer
#: runs (storage full, continue mode: no chunks are written to pair with)
MAX_OPEN = 8
#: fewer bytes waiting than this are not worth pairing with
MIN_PAIR = 16 * 1024

# open shared hashes with bytes waiting (id -> weak reference): the writer's candidates
_open: dict[int, weakref.ref[SharedSha256]] = {}


def _immutable(view: memoryview) -> bool:
    return view.readonly and isinstance(view.obj, bytes) and view.contiguous


def _kept(data: sha256.Data) -> bytes | memoryview:
    """``data`` as it can wait to be hashed: bytes, a view of bytes of its own (the
    caller may release theirs), or a copy (mutable data may change before)."""
    if isinstance(data, memoryview) and _immutable(data):
        return memoryview(data)
    if isinstance(data, bytes):
        return data
    return bytes(data)


def _size(piece: bytes | memoryview) -> int:
    return len(piece) if isinstance(piece, bytes) else piece.nbytes


def _forget(key: int) -> Callable[[object], None]:
    """The weak reference's callback: a hash dropped without its digest is no candidate."""

    def forget(_ref: object) -> None:
        _open.pop(key, None)

    return forget


class SharedSha256:
    """SHA-256 fed by one thread (the owner); another thread may hash what waits
    (:func:`settle_chunk`). ``add`` and ``hexdigest`` are the owner's; they are not for
    two owners at once."""

    __slots__ = ("__weakref__", "_added", "_eager", "_h", "_lock", "_moved", "_registered",
                 "_side")

    def __init__(self) -> None:
        self._h: Any = sha256.new()
        self._lock = threading.Lock()
        self._side: deque[bytes | memoryview] = deque()  # added while the lock was taken
        self._added = 0  # bytes put in _side (owner only)
        self._moved = 0  # bytes moved from _side into _h (holder of the lock only)
        self._registered = False  # a candidate for the writer (in _open)
        self._eager = False  # no room in _open when it started: hashed at once

    def waiting(self) -> int:
        """Bytes added and not hashed yet (a hint: read without the lock)."""
        return self._added - self._moved + int(self._h.deferred)

    def add(self, data: sha256.Data) -> None:
        """Hash ``data`` after what was added before (now, or later by either thread)."""
        if not sha256.ACCELERATED:
            self._h.update(data)
            return
        if not len(data):
            return
        if not self._registered and not self._eager:
            self._enlist()
        piece = data if self._eager else _kept(data)
        if self._lock.acquire(blocking=False):
            try:
                self._take_side()
                if self._eager:
                    self._h.update(piece)
                else:
                    self._h.defer(piece)
                    if self._h.deferred >= LIMIT:
                        sha256.settle(self._h, self._h)  # the writer did not keep up
            finally:
                self._lock.release()
        else:  # the writer is hashing: queue behind its bytes
            piece = _kept(piece)  # (eager: not kept yet)
            self._side.append(piece)
            self._added += _size(piece)

    def _enlist(self) -> None:
        """Become a candidate for the writer, or (no room) a hash done at once."""
        if len(_open) < MAX_OPEN:
            self._registered = True
            _open[id(self)] = weakref.ref(self, _forget(id(self)))
        else:  # enough hashes wait for the writer already
            self._eager = True

    def hexdigest(self) -> str:
        """The digest of everything added (hashed here what still waits)."""
        if not sha256.ACCELERATED:
            return str(self._h.hexdigest())
        with self._lock:
            self._take_side()
            out = str(self._h.hexdigest())
        if self._registered:
            self._registered = False
            _open.pop(id(self), None)
        self._eager = False
        return out

    def _take_side(self) -> None:
        """Move the queued pieces into the hash, in order (lock held)."""
        side = self._side
        while side:
            piece = side.popleft()
            self._h.defer(piece)
            self._moved += _size(piece)

    def _pair(self, h: Any) -> bool:
        """Settle ``h`` with what waits here, if the lock is free now."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self._take_side()
            sha256.settle(h, self._h)
        finally:
            self._lock.release()
        return True


def settle_chunk(h: sha256.Hash, partner: sha256.Hash | None) -> None:
    """Settle ``h`` (the writer's chunk hash) with the open shared hash that has the
    most bytes waiting, else with ``partner`` (may be None: ``h`` settles when read).
    A partner left waiting past :data:`LIMIT` bytes is hashed alone here."""
    best: SharedSha256 | None = None
    most = MIN_PAIR
    if _open:
        for ref in list(_open.values()):  # one C call: safe while the loop adds
            s = ref()
            if s is not None:
                n = s.waiting()
                if n > most:
                    best, most = s, n
    if best is not None and best._pair(h):
        if partner is not None and getattr(partner, "deferred", 0) >= LIMIT:
            sha256.settle(partner, partner)
        return
    if partner is not None:
        sha256.settle(h, partner)
