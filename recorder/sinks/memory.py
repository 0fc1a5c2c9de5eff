"""In-memory sink for tests. Not durable; ``fail_after`` injects a SinkError after N bytes."""

from __future__ import annotations

import threading

from recorder.errors import SinkError
from recorder.sinks.base import Sink, SinkStream, validate_name


class _MemoryStream(SinkStream):
    def __init__(self, sink: MemorySink, name: str) -> None:
        self._sink = sink
        self._name = name
        self._closed = False

    def write(self, data: bytes) -> None:
        with self._sink._lock:
            if self._closed:
                raise SinkError(f"recording {self._name} is closed")
            buf = self._sink._objects[self._name]
            if self._sink.fail_after is not None and len(buf) + len(data) > self._sink.fail_after:
                raise SinkError("injected failure: memory sink full")
            buf.extend(data)

    def flush(self) -> None:
        return None  # nothing to make durable; a no-op after close too, like every sink

    def close(self) -> None:
        with self._sink._lock:
            self._closed = True
            self._sink.finished.add(self._name)


class MemorySink(Sink):
    """Keeps recordings in a dict of bytearrays."""

    def __init__(self, fail_after: int | None = None) -> None:
        self._objects: dict[str, bytearray] = {}
        self._lock = threading.Lock()
        self.fail_after = fail_after
        self.finished: set[str] = set()

    def create(self, name: str) -> SinkStream:
        validate_name(name)
        with self._lock:
            if name in self._objects:
                raise SinkError(f"recording {name} already exists")
            self._objects[name] = bytearray()
        return _MemoryStream(self, name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._objects)

    def size(self, name: str) -> int:
        with self._lock:
            if name not in self._objects:
                raise SinkError(f"no recording named {name}")
            return len(self._objects[name])

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        with self._lock:
            if name not in self._objects:
                raise SinkError(f"no recording named {name}")
            if offset < 0 or (length is not None and length < 0):
                raise SinkError(f"invalid range {offset}+{length} for recording {name}")
            buf = self._objects[name]
            end = len(buf) if length is None else offset + length
            return bytes(buf[offset:end])
