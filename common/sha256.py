"""SHA-256 for the recorder, two streams hashed at once where the CPU allows.

A recording's writer hashes most bytes twice: the chunk chain (over each chunk's stored
payload) and ``output_sha256`` (over the raw output). :func:`new` returns a hash object
that can also :meth:`~Hash.defer` immutable data: it keeps a reference and hashes the
data later. :func:`settle` hashes one object's deferred data and, with the rounds of
the two streams interleaved, as much of another's as pairs with it (``common/_sha2x.c``,
the x86 SHA extensions: ~0.38 instead of ~0.64 ms/MiB per stream on these machines). Whatever the
path, a digest is exactly SHA-256 of the bytes given, in the order given.

Where the extension is not built, the CPU has no SHA extensions, or
``BASTILLE_NO_SHA_EXT=1`` is set, :func:`new` wraps hashlib: ``defer`` hashes at once
and ``settle`` has nothing to do.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Protocol

NO_EXT_ENV = "BASTILLE_NO_SHA_EXT"  # set to 1 to use hashlib anyway

Data = bytes | bytearray | memoryview


class Hash(Protocol):
    """What :func:`new` returns (either implementation)."""

    def update(self, data: Data, /) -> None: ...

    def defer(self, data: Data, start: int = 0, end: int | None = None, /) -> None: ...

    def copy(self) -> Hash: ...

    def digest(self) -> bytes: ...

    def hexdigest(self) -> str: ...


class _Eager:
    """hashlib's SHA-256 behind the same calls: nothing waits."""

    __slots__ = ("_h",)

    def __init__(self, h: Any) -> None:
        self._h = h

    def update(self, data: Data, /) -> None:
        self._h.update(data)

    def defer(self, data: Data, start: int = 0, end: int | None = None, /) -> None:
        self._h.update(data if not start and end is None else memoryview(data)[start:end])

    def copy(self) -> _Eager:
        return _Eager(self._h.copy())

    def digest(self) -> bytes:
        return bytes(self._h.digest())

    def hexdigest(self) -> str:
        return str(self._h.hexdigest())


_ext: Any = None
if os.environ.get(NO_EXT_ENV, "") not in ("1", "true", "yes"):
    try:
        from common import _sha2x
    except ImportError:  # not built (no compiler): hashlib
        pass
    else:
        if _sha2x.accelerated:  # else no SHA extensions on this CPU: hashlib
            _ext = _sha2x

#: True when :func:`new` returns the extension's objects (two streams at once)
ACCELERATED = _ext is not None


def new(data: Data = b"") -> Hash:
    """A SHA-256 hash object, fed ``data`` first."""
    if _ext is not None:
        h: Hash = _ext.sha256(data)
        return h
    return _Eager(hashlib.sha256(data))


def settle(a: Hash, b: Hash) -> None:
    """Hash all that ``a`` deferred and, the two streams interleaved, as much of what
    ``b`` deferred as pairs with it; the rest of ``b`` waits for the next settle (or
    for anything else done with ``b``)."""
    if _ext is not None and not isinstance(a, _Eager) and not isinstance(b, _Eager):
        _ext.settle(a, b)
