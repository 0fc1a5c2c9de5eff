"""Where recordings are stored: :func:`open_sink` picks the sink the settings ask for.

* :class:`FileSink`: a local directory (the embedded default).
* :class:`SpooledSink`: a remote object store (:mod:`recorder.sinks.store`), spooled
  locally first; S3 is :mod:`recorder.sinks.s3` (needs the ``bastille[s3]`` extra; boto3
  is imported only when an S3 store is created). Store types register a URL scheme in
  :mod:`recorder.sinks.registry`.
* :class:`MemorySink`: tests only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from recorder.settings import RecorderSettings
from recorder.sinks.base import LostRecording, Sink, SinkStatus, SinkStream, validate_name
from recorder.sinks.file import FileSink
from recorder.sinks.ledger import LEDGER_FILE, Ledger
from recorder.sinks.memory import MemorySink
from recorder.sinks.spooled import SpooledSink

if TYPE_CHECKING:
    from recorder.sinks.s3 import S3Sink


def __getattr__(name: str) -> Any:
    # The S3 module registers itself and imports the registry and the spooled sink; it
    # is loaded on first use so that importing the recorder never needs boto3.
    if name == "S3Sink":
        from recorder.sinks.s3 import S3Sink

        return S3Sink
    if name == "parse_s3_url":
        from recorder.sinks.s3 import parse_s3_url

        return parse_s3_url
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FileSink",
    "LostRecording",
    "MemorySink",
    "S3Sink",
    "Sink",
    "SinkStatus",
    "SinkStream",
    "SpooledSink",
    "open_sink",
    "parse_s3_url",
    "validate_name",
]


def open_sink(settings: RecorderSettings, *, readonly: bool = False) -> Sink:
    """The sink the settings ask for: a spooled object store when ``settings.storage`` is
    set, else a directory.

    Args:
        settings: recorder settings.
        readonly: for tools that only read (``sessions``, ``play``, ``export``,
            ``verify``, the player): no spool lock, no upload thread, nothing written,
            the store's read credentials. Works while a gateway runs.

    The spool is ``settings.data_dir / "spool"`` and the upload ledger
    ``settings.data_dir / LEDGER_FILE``. A writing caller should call ``recover()``
    once at start-up and ``close()`` at shutdown.

    Raises:
        SinkError: the directory or spool cannot be created, invalid store settings, or
            the store's client library is missing.
    """
    store_settings = settings.storage
    if store_settings is None:
        return FileSink(settings.file_dir, 0 if readonly else settings.min_free_bytes)
    from recorder.sinks.registry import open_store

    store = open_store(store_settings, reading=readonly)
    return SpooledSink(
        store,
        settings.spool_dir,
        ledger=Ledger(settings.data_dir / LEDGER_FILE),
        min_free_bytes=settings.min_free_bytes,
        readonly=readonly,
    )
