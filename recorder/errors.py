"""Exceptions raised by the recorder.

Tree::

    RecorderError
    ├── SinkError            storage failed (I/O error, bad name, unreadable object)
    │   ├── SinkFullError    storage cannot take more *now* (spool cap, disk low-water
    │   │   │                mark, disk full): back-pressure, retry later; nothing stored
    │   │   └── SpoolFullError   the local write-ahead spool reached its configured cap
    │   └── StoreError       an object store call failed (recorder.sinks.store)
    │       ├── StoreUnavailable  outage: refused, blackholed, slow, 5xx, throttled
    │       │   └── StoreBucketMissing  the bucket (container) does not exist (now)
    │       ├── StoreDenied       configuration: bad credentials, access denied
    │       ├── StoreUploadLost   the store no longer has a multipart upload
    │       └── StoreNotFound     no such object
    ├── RecordingFailed      a live recording can no longer be written (fail-closed trigger)
    ├── FormatError          a stored recording is malformed (reported, never crashed on)
    └── VerifyError          hash chain or signature check failed (names the first bad chunk)
"""


class RecorderError(Exception):
    """Root of every recorder exception."""


class SinkError(RecorderError):
    """A sink could not store or read data."""


class SinkFullError(SinkError):
    """Storage cannot accept more right now (spool cap, disk low-water mark, disk full).

    Nothing of the refused write was stored; the same write may be retried later. The
    recorder treats it as back-pressure (the session is paused), not as a failure.
    """


class SpoolFullError(SinkFullError):
    """The local spool reached its configured cap; new data cannot be accepted yet."""


class StoreError(SinkError):
    """An object store call failed (see :mod:`recorder.sinks.store`)."""


class StoreUnavailable(StoreError):
    """The store did not answer usefully: refused, timed out, slow, 5xx, throttled, or
    the bucket is missing. An outage: data waits in the spool and the call is retried."""


class StoreBucketMissing(StoreUnavailable):
    """The bucket (container) does not exist: deleted, or not created yet. An outage;
    multipart uploads begun before it vanished are restarted when it is back."""


class StoreDenied(StoreError):
    """The store refused us for a reason waiting will not fix (credentials, access
    denied, invalid settings): a configuration error, reported loudly."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class StoreUploadLost(StoreError):
    """The store no longer knows a multipart upload (aborted by a lifecycle rule, or the
    bucket was recreated): restart it from the spooled bytes."""


class StoreNotFound(StoreError):
    """The object does not exist in the store."""


class RecordingFailed(RecorderError):
    """A live recording failed; under ``on_failure = "terminate"`` its session must end."""


class FormatError(RecorderError):
    """A recording is malformed or of an unknown version."""


class VerifyError(RecorderError):
    """Integrity verification failed."""

    def __init__(self, message: str, chunk: int | None = None) -> None:
        super().__init__(message)
        self.chunk = chunk
