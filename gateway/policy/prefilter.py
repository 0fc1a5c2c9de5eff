"""C-speed prefilter for the masker: which mask patterns can possibly match a text.

The masker's patterns are Python regexes, run over every visible byte of target output:
~100 MiB/s, which is most of the gateway's CPU on bulk output. Almost all output
contains nothing that could be a secret, so one pass of Hyperscan (Intel's multi-regex
engine, several GB/s) over the text first tells which patterns have a *necessary
condition* present; the Python regexes run only for those.

Exactness: each gate is compiled with ``HS_FLAG_PREFILTER``, under which Hyperscan may
report matches the expression would not have, but never misses one; and each gate is a
necessary condition of its pattern (a literal or a regex that every match contains, or
the pattern's own regex). A pattern whose gate Hyperscan cannot compile has no gate: it
runs on every chunk, as without the prefilter.

Hyperscan is optional (x86-64 wheels with SSSE3; :func:`available`). Without it the
masker falls back to its pure-Python gates, slower but with the same output.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from types import ModuleType

_hs: ModuleType | None
try:  # the one place that imports hyperscan
    import hyperscan as _hs
except ImportError:  # pragma: no cover - depends on the platform
    _hs = None

DISABLE_ENV = "BASTILLE_NO_HYPERSCAN"  # set to 1 to force the pure-Python gates


def available() -> bool:
    """Whether the Hyperscan prefilter can be used here."""
    return _hs is not None and os.environ.get(DISABLE_ENV, "") not in ("1", "true", "yes")


def literal(data: bytes) -> bytes:
    """A Hyperscan expression matching ``data`` exactly (every byte hex-escaped)."""
    return b"".join(b"\\x%02x" % c for c in data)


class Prefilter:
    """One compiled Hyperscan database of gates; ``scan`` returns the keys that hit."""

    def __init__(self, gates: Sequence[tuple[object, bytes, bool]]) -> None:
        """Compile ``(key, expression, caseless)`` gates; uncompilable ones are dropped.

        Raises:
            RuntimeError: Hyperscan is not available.
        """
        if _hs is None:
            raise RuntimeError("hyperscan is not installed")
        base = _hs.HS_FLAG_SINGLEMATCH | _hs.HS_FLAG_PREFILTER | _hs.HS_FLAG_ALLOWEMPTY
        exprs: list[bytes] = []
        flags: list[int] = []
        keys: list[object] = []
        for key, expr, caseless in gates:
            flag = base | (_hs.HS_FLAG_CASELESS if caseless else 0)
            if not self._compiles(expr, flag):
                continue
            exprs.append(expr)
            flags.append(flag)
            keys.append(key)
        self.covered: frozenset[object] = frozenset(keys)
        self._keys = keys
        self._db = None
        if exprs:
            db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
            db.compile(
                expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs), flags=flags
            )
            self._db = db

    @staticmethod
    def _compiles(expr: bytes, flag: int) -> bool:
        assert _hs is not None
        try:
            db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
            db.compile(expressions=[expr], ids=[0], elements=1, flags=[flag])
        except Exception:  # hyperscan.error: unsupported construct, too large...
            return False
        return True

    def scanner(self) -> Callable[[bytes], set[object]]:
        """A scan function with its own scratch space (one per stream: not shareable
        between threads). It returns the keys of the gates present in a text, a superset
        of the patterns that match it."""
        db, keys = self._db, self._keys
        if db is None:
            return lambda text: set()
        assert _hs is not None
        scratch = _hs.Scratch(db)

        def scan(text: bytes) -> set[object]:
            hits: set[object] = set()
            if text:

                def on_match(idx: int, start: int, end: int, flags: int, ctx: object) -> None:
                    hits.add(keys[idx])

                db.scan(text, match_event_handler=on_match, scratch=scratch)
            return hits

        return scan


@functools.lru_cache(maxsize=64)
def compiled(gates: tuple[tuple[object, bytes, bool], ...]) -> Prefilter:
    """A cached :class:`Prefilter` (compiling takes milliseconds; sessions share it)."""
    return Prefilter(gates)
