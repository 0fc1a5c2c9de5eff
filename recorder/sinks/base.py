"""The sink contract: where recording bytes go.

A recording is stored as one append-only byte stream named by an opaque relative key
(for example ``2026/11/24/<session-id>.bstl``). Sinks are synchronous and are called
from the recorder's writer thread, never from the event loop.

Durability contract: after ``flush()`` returns, everything written before it survives a
crash of the process (kill -9): the file sink fsyncs, the S3 sink fsyncs its local spool
and uploads in the background. ``close()`` makes the stream complete and visible to
readers as a finished object. ``recover()`` (called once at start-up) finishes whatever a
previous process left half done (e.g. incomplete multipart uploads from the spool).

Errors: every failure is raised as :class:`recorder.errors.SinkError` (or a subclass).
A transient outage of remote storage is *not* an error while the spool has room.

Names: every sink accepts the same names (see :func:`validate_name`): relative, ``/``
separated components of ``[A-Za-z0-9_][A-Za-z0-9._@+=,-]*``, at most 512 characters, not
ending in ``.part`` (the file sink's in-progress suffix). Anything else is a SinkError, so
a name can never escape a directory or mean different things on different sinks.
"""

from __future__ import annotations

import errno
import re
from abc import ABC, abstractmethod

from recorder.errors import SinkError

MAX_NAME_LENGTH = 512
RESERVED_SUFFIX = ".part"
_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._@+=,-]*")


def validate_name(name: str) -> str:
    """Check a recording name against the rules every sink shares.

    Args:
        name: the relative key, e.g. ``2026/11/24/<session-id>.bstl``.

    Returns:
        The name, unchanged.

    Raises:
        SinkError: the name is empty, absolute, too long, has an empty, ``.`` or ``..``
            component, a character outside the allowed set, or the reserved suffix.
    """
    if not isinstance(name, str) or not name:
        raise SinkError("invalid recording name: empty")
    if len(name) > MAX_NAME_LENGTH:
        raise SinkError(f"invalid recording name: longer than {MAX_NAME_LENGTH} characters")
    if name.endswith(RESERVED_SUFFIX):
        raise SinkError(f"invalid recording name {name!r}: suffix {RESERVED_SUFFIX} is reserved")
    for part in name.split("/"):
        if not _COMPONENT.fullmatch(part):
            raise SinkError(
                f"invalid recording name {name!r}: each /-separated part must match "
                "[A-Za-z0-9_][A-Za-z0-9._@+=,-]*"
            )
    return name


def describe_os_error(exc: OSError) -> str:
    """A short, clear reason for an OSError, naming disk full explicitly."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk full (no space left on device)"
    if exc.errno == errno.EFBIG:
        return "file size limit reached (EFBIG)"
    return exc.strerror or str(exc)


class SinkStream(ABC):
    """One recording being written."""

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Append bytes. May buffer; raises SinkError if the data cannot be accepted."""

    @abstractmethod
    def flush(self) -> None:
        """Make everything written so far durable against a process crash."""

    @abstractmethod
    def close(self) -> None:
        """Finish the recording (complete the object). Idempotent."""


class Sink(ABC):
    """A place recordings are stored: local directory, S3, or memory (tests)."""

    @abstractmethod
    def create(self, name: str) -> SinkStream:
        """Start a new recording under ``name``; raises SinkError if impossible."""

    @abstractmethod
    def names(self) -> list[str]:
        """Names of stored recordings (finished, and in-progress ones where visible)."""

    @abstractmethod
    def size(self, name: str) -> int:
        """Current size in bytes of a stored recording."""

    @abstractmethod
    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Read ``length`` bytes (all when None) from ``offset``; SinkError if missing."""

    def recover(self) -> list[str]:
        """Finish interrupted writes left by a crashed process; return the names handled."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (threads, clients)."""
