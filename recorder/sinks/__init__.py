"""Where recordings are stored: :func:`open_sink` picks the sink the settings ask for.

* :class:`FileSink`: a local directory (the embedded default).
* :class:`S3Sink`: an S3 bucket, spooled locally first (needs the ``bastille[s3]`` extra;
  boto3 is imported only when an S3 sink is created).
* :class:`MemorySink`: tests only.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from recorder.errors import SinkError
from recorder.settings import RecorderSettings
from recorder.sinks.base import Sink, SinkStream, validate_name
from recorder.sinks.file import FileSink
from recorder.sinks.memory import MemorySink

if TYPE_CHECKING:
    from recorder.sinks.s3 import S3Sink


def __getattr__(name: str) -> Any:
    # S3Sink is loaded on first use: recorder.spool imports recorder.sinks.base, and
    # recorder.sinks.s3 imports recorder.spool, so an eager import here would be a cycle.
    if name == "S3Sink":
        from recorder.sinks.s3 import S3Sink

        return S3Sink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FileSink",
    "MemorySink",
    "S3Sink",
    "Sink",
    "SinkStream",
    "open_sink",
    "parse_s3_url",
    "validate_name",
]

# S3's rules for new buckets: 3-63 characters, lowercase letters, digits, dots and
# hyphens, starting and ending with a letter or digit.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def parse_s3_url(url: str) -> tuple[str, str]:
    """Split ``s3://bucket/prefix`` into the bucket and a prefix.

    Args:
        url: ``s3://bucket`` or ``s3://bucket/some/prefix`` (a trailing ``/`` is optional).

    Returns:
        ``(bucket, prefix)``; the prefix is ``""`` or ends with ``/`` (keys are
        ``prefix + name``).

    Raises:
        SinkError: not an ``s3://`` URL, an invalid bucket name, or a bad prefix.
    """
    if not isinstance(url, str) or not url.startswith("s3://"):
        raise SinkError(f"invalid S3 URL {url!r}: expected s3://bucket/prefix")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise SinkError(f"invalid S3 URL {url!r}: the bucket name is missing")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise SinkError(
            f"invalid S3 URL {url!r}: bucket {bucket!r} must be 3-63 lowercase letters, "
            "digits, dots or hyphens, starting and ending with a letter or digit"
        )
    if "?" in prefix or "#" in prefix:
        raise SinkError(f"invalid S3 URL {url!r}: no query or fragment allowed")
    prefix = prefix.strip("/")
    if prefix:
        parts = prefix.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise SinkError(f"invalid S3 URL {url!r}: empty, '.' or '..' prefix component")
        prefix += "/"
    return bucket, prefix


def open_sink(settings: RecorderSettings) -> Sink:
    """The sink the settings ask for: S3 when ``settings.s3`` is set, else a directory.

    The S3 spool is ``settings.data_dir / "spool"``. The caller should call
    ``recover()`` once at start-up and ``close()`` at shutdown.

    Raises:
        SinkError: the directory or spool cannot be created, invalid S3 settings, or
            boto3 is missing.
    """
    if settings.s3 is None:
        return FileSink(settings.file_dir)
    from recorder.sinks.s3 import S3Sink

    return S3Sink(settings.s3, settings.data_dir / "spool")
