"""Counts of things open right now (connections per source address, sessions per user),
for the bounds ``max_connections_per_source`` and ``max_sessions_per_user``.

:class:`LocalTallies` counts in this process's memory (one process serves SSH).
:class:`SharedTallies` counts for every SSH worker process of one gateway
(``[gateway] workers``): the kernel spreads a client's connections over the workers, and
counted per worker, N workers would allow N times each bound. It is a small table in a
file of the data directory (``ssh_tallies``, 0600) that every worker maps into its
memory (``mmap``, shared); each update takes an exclusive ``flock`` on it for a few
microseconds, so no event loop waits on a disk or a database.

Table: a header and ``SIZE`` entries ``(key hash, worker slot, count)``, open addressing
from ``hash % SIZE``. A key's total is the sum of its entries over every slot; each
worker counts in its own entries, so the gateway can forget a dead worker's counts at
once (:meth:`SharedTallies.forget_slot`) before starting its replacement. Keys are
8-byte BLAKE2b digests: no user name or address is written to the file (two keys with
the same digest would be counted together: 1 in 2^64). The gateway process creates the
file empty at each start (:meth:`SharedTallies.create`), so a killed gateway's counts do
not outlive it.

Known limits: keys beyond ``SIZE`` open at once (16384 (source or user, worker) pairs)
are not counted (one warning); a file written by someone else is only noticed as wrong
counts (it is 0600 in the data directory, like every state file).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import mmap
import os
import struct
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from state.files import FILE_MODE, private_dir

log = logging.getLogger("bastille.state")

SIZE = 16384  # entries (256 KiB): keys open at once, over every worker
MAGIC = b"bstally1"
_HEADER = struct.Struct("<8sII")  # magic, entries, entries ever used (probe chains)
_ENTRY = struct.Struct("<QHxxI")  # key hash (0: never used), worker slot, count
COMPACT_AT = 0.75  # rebuild the table when this share of entries was ever used


class Tallies(Protocol):
    """Things open right now, by key (``src:ADDRESS``, ``user:NAME``)."""

    def increment(self, key: str) -> int:
        """One more open under ``key``: how many are open now (every process)."""
        ...

    def increment_below(self, key: str, limit: int) -> bool:
        """One more open under ``key`` unless ``limit`` are open already (then False,
        nothing counted)."""
        ...

    def decrement(self, key: str) -> None:
        """One fewer open under ``key`` (counted by this process)."""
        ...


class LocalTallies:
    """:class:`Tallies` in this process's memory."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def increment(self, key: str) -> int:
        self._counts[key] += 1
        return self._counts[key]

    def increment_below(self, key: str, limit: int) -> bool:
        if self._counts[key] >= limit:
            return False
        self._counts[key] += 1
        return True

    def decrement(self, key: str) -> None:
        self._counts[key] -= 1
        if self._counts[key] <= 0:
            del self._counts[key]


def _digest(key: str) -> int:
    h = int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"),
                                       digest_size=8).digest(), "little")
    return h or 1  # 0 marks an entry never used


class SharedTallies:
    """:class:`Tallies` of one gateway's SSH workers in a shared file (see the module doc).

    Args:
        path: the table (made by :meth:`create` in the gateway process).
        slot: this worker's slot (0..workers-1); its counts are its own entries.

    Raises:
        OSError: the file cannot be opened or is not a table.
    """

    def __init__(self, path: Path, slot: int) -> None:
        self.slot = slot
        self._fd = os.open(path, os.O_RDWR)
        try:
            self._map = mmap.mmap(self._fd, 0)
            magic, self._size, _used = _HEADER.unpack_from(self._map, 0)
            if magic != MAGIC or len(self._map) != _HEADER.size + self._size * _ENTRY.size:
                raise OSError(f"{path} is not a table of open counts")
        except BaseException:
            os.close(self._fd)
            raise
        self._warned = False

    @staticmethod
    def create(path: Path, size: int = SIZE) -> None:
        """A new empty table at ``path`` (0600), replacing any earlier one."""
        private_dir(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            os.write(fd, _HEADER.pack(MAGIC, size, 0))
            os.ftruncate(fd, _HEADER.size + size * _ENTRY.size)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    # ------------------------------------------------------------------ Tallies
    def increment(self, key: str) -> int:
        with self._locked():
            return self._add(_digest(key), 1)

    def increment_below(self, key: str, limit: int) -> bool:
        h = _digest(key)
        with self._locked():
            if self._total(h) >= limit:
                return False
            self._add(h, 1)
            return True

    def decrement(self, key: str) -> None:
        with self._locked():
            self._add(_digest(key), -1)

    def forget_slot(self, slot: int) -> None:
        """Drop every count of worker ``slot`` (it exited; its connections are gone)."""
        with self._locked():
            for i in range(self._size):
                h, s, n = self._entry(i)
                if h and s == slot and n:
                    self._put(i, h, s, 0)

    # ------------------------------------------------------------------ table
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _entry(self, i: int) -> tuple[int, int, int]:
        h, s, n = _ENTRY.unpack_from(self._map, _HEADER.size + i * _ENTRY.size)
        return int(h), int(s), int(n)

    def _put(self, i: int, h: int, slot: int, n: int) -> None:
        _ENTRY.pack_into(self._map, _HEADER.size + i * _ENTRY.size, h, slot, n)

    def _used(self) -> int:
        return int(_HEADER.unpack_from(self._map, 0)[2])

    def _set_used(self, used: int) -> None:
        _HEADER.pack_into(self._map, 0, MAGIC, self._size, used)

    def _chain(self, h: int) -> Iterator[tuple[int, int, int, int]]:
        """(index, hash, slot, count) from ``h``'s home to the first entry never used
        (included, with hash 0), or once around the table."""
        start = h % self._size
        for step in range(self._size):
            i = (start + step) % self._size
            eh, es, en = self._entry(i)
            yield i, eh, es, en
            if eh == 0:
                return

    def _total(self, h: int) -> int:
        return sum(en for _i, eh, _es, en in self._chain(h) if eh == h)

    def _scan(self, h: int) -> tuple[int, int | None, int | None, int | None]:
        """``h``'s total, this slot's entry of ``h``, the first reusable entry (its count
        is 0) and the entry never used that ends the chain (None: none of them)."""
        total, mine, free, fresh = 0, None, None, None
        for i, eh, es, en in self._chain(h):
            if eh == 0:
                fresh = i
                break
            if eh == h:
                total += en
                if es == self.slot:
                    mine = i
            if en == 0 and free is None:  # counts for nobody now
                free = i
        return total, mine, free, fresh

    def _add(self, h: int, delta: int) -> int:
        total, mine, free, fresh = self._scan(h)
        if mine is not None:
            _, _, n = self._entry(mine)
            n = max(0, n + delta)
            self._put(mine, h, self.slot, n)
            return max(0, total + delta)
        if delta <= 0:
            return total
        place = free if free is not None else fresh
        if place is None:
            if not self._warned:
                self._warned = True
                log.warning("state: the table of open connections and sessions is full; "
                            "some are not counted against their bounds")
            return total + delta
        if place == fresh:
            self._set_used(self._used() + 1)
        self._put(place, h, self.slot, delta)
        if self._used() > COMPACT_AT * self._size:
            self._compact()
        return total + delta

    def _compact(self) -> None:
        """Rebuild the table with only its open counts (probe chains shorten again)."""
        live = [self._entry(i) for i in range(self._size)]
        live = [e for e in live if e[0] and e[2]]
        self._map[_HEADER.size:] = bytes(self._size * _ENTRY.size)
        used = 0
        for h, s, n in live:
            start = h % self._size
            for step in range(self._size):
                i = (start + step) % self._size
                if self._entry(i)[0] == 0:
                    self._put(i, h, s, n)
                    used += 1
                    break
        self._set_used(used)
