"""Reading stored recordings: header, events, trailer, truncation and damage reports.

A reader never trusts sizes from the file beyond the format limits (see
``recorder.format.v1``) and never raises anything but :class:`FormatError` for bad data.
A recording without a trailer (crashed process, or still being written) is read up to
its last complete chunk and reported as truncated; a damaged chunk is reported and
reading resumes at the next intact part.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from recorder import events as ev
from recorder.errors import FormatError, SinkError
from recorder.format import v1
from recorder.sinks.base import Sink


class SinkSource:
    """ByteSource over a sink object, with a read-ahead window (one sink call per MiB)."""

    def __init__(self, sink: Sink, name: str, window: int = 1 << 20) -> None:
        self._sink = sink
        self._name = name
        self._window = window
        self._size = sink.size(name)
        self._buf = b""
        self._buf_off = 0

    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        end = min(offset + length, self._size)
        if offset >= end:
            return b""
        if self._buf_off <= offset and end <= self._buf_off + len(self._buf):
            return self._buf[offset - self._buf_off : end - self._buf_off]
        if length >= self._window:
            return self._sink.read(self._name, offset, end - offset)
        self._buf = self._sink.read(self._name, offset, min(self._window, self._size - offset))
        self._buf_off = offset
        return self._buf[: end - offset]


class Recording:
    """One stored recording, scanned and verified chunk by chunk on open.

    Attributes:
        name: sink name (may be empty for in-memory data).
        header: the session header (JSON object of chunk 0).
        trailer: the trailer object, or None when the recording was never closed.
        signature: the signature object, or None when unsigned.
        problems: human-readable reports of truncation and damage, in file order.
    """

    def __init__(self, src: v1.ByteSource, name: str = "", *, chain: bool = True) -> None:
        """``chain`` False: the chain digests are not checked (see :func:`v1.scan`)."""
        self.name = name
        self.src = src
        self.scan = v1.scan(src, chain=chain)
        chunks = self.scan.chunks
        if not chunks or chunks[0].type != v1.HEADER:
            raise FormatError(self._first_problem() or "recording has no header chunk")
        self.header: dict[str, Any] = v1.read_json(src, chunks[0])
        self.trailer: dict[str, Any] | None = None
        self.signature: dict[str, Any] | None = None
        for c in chunks:
            if c.type == v1.TRAILER and self.trailer is None:
                self.trailer = v1.read_json(src, c)
            elif c.type == v1.SIGNATURE and self.signature is None:
                self.signature = v1.read_json(src, c)
        self.problems: list[str] = []
        problem = self.scan.problem
        if problem is not None:
            self.problems.append(problem.message)
        elif self.trailer is None:
            last = chunks[-1]
            self.problems.append(
                f"recording has no trailer: it ends after chunk {last.seq} "
                f"(t={last.t_last / 1e6:.3f}s); it was not closed (crash) or is still being "
                "written"
            )

    def _first_problem(self) -> str | None:
        return self.scan.problem.message if self.scan.problem else None

    @classmethod
    def from_sink(cls, sink: Sink, name: str, *, chain: bool = True) -> Recording:
        """Open a recording stored in ``sink`` (SinkError if missing, FormatError if bad).
        ``chain`` False: without checking the chain digests (see :func:`v1.scan`)."""
        try:
            return cls(SinkSource(sink, name), name, chain=chain)
        except SinkError:
            raise
        except (ValueError, OverflowError, MemoryError) as exc:  # pragma: no cover - defensive
            raise FormatError(f"{name}: malformed recording: {exc}") from exc

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "") -> Recording:
        return cls(v1.BytesSource(data), name)

    # ------------------------------------------------------------------ state

    @property
    def session_id(self) -> str:
        return str(self.header.get("session_id", ""))

    @property
    def finished(self) -> bool:
        return self.trailer is not None

    @property
    def status(self) -> str:
        """ "ended" (closed, intact), "recovered" (finished by crash recovery: intact but
        the last moments before the crash are missing), "truncated" (never closed), or
        "damaged"."""
        p = self.scan.problem
        if p is not None and p.kind != "truncated":
            return "damaged"
        if self.trailer is None:
            return "truncated"
        if self.trailer.get("recovered"):
            return "recovered"
        return "ended"

    @property
    def chunks(self) -> list[v1.Chunk]:
        return self.scan.chunks

    @property
    def all_chunks(self) -> list[v1.Chunk]:
        return self.scan.chunks + self.scan.resumed

    @property
    def duration(self) -> float:
        """Session length in seconds (from the trailer, else the last chunk's time)."""
        if self.trailer is not None:
            try:
                return float(self.trailer.get("duration", 0.0))
            except (TypeError, ValueError):
                return 0.0
        data = [c for c in self.all_chunks if c.type == v1.DATA and c.raw_len]
        return max((c.t_last for c in data), default=0) / 1e6

    @property
    def start_time(self) -> float:
        try:
            return float(self.header.get("start_time", 0.0))
        except (TypeError, ValueError):
            return 0.0

    @property
    def size(self) -> tuple[int, int]:
        """Initial terminal size (cols, rows), clamped to sane values."""
        cols = _clamp(self.header.get("cols"), 80)
        rows = _clamp(self.header.get("rows"), 24)
        return cols, rows

    # ------------------------------------------------------------------ events

    def _problem(self, msg: str) -> None:
        if msg not in self.problems:
            self.problems.append(msg)

    def iter_chunk_events(
        self, *, from_seq: int | None = None
    ) -> Iterator[tuple[v1.Chunk, list[ev.Event]]]:
        """Yield (data chunk, events) in order, starting at the part holding ``from_seq``."""
        for run in v1.part_runs(self.all_chunks):
            if from_seq is not None and run[-1].seq < from_seq:
                continue
            yield from v1.decode_run(self.src, run, self._problem, skip_to_seq=from_seq)
            from_seq = None

    def events(self, types: Iterable[int] | None = None) -> Iterator[ev.Event]:
        """All readable events in order (optionally only some types)."""
        wanted = frozenset(types) if types is not None else None
        for _chunk, events in self.iter_chunk_events():
            for e in events:
                if wanted is None or e.type in wanted:
                    yield e

    def output(self) -> Iterator[bytes]:
        """The bytes the user saw (stdout and stderr, in order)."""
        for e in self.events((ev.OUTPUT, ev.STDERR)):
            yield e.data


def _clamp(value: object, default: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1000:
        return value
    return default
