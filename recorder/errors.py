"""Exceptions raised by the recorder.

Tree::

    RecorderError
    ├── SinkError            storage failed (disk full, spool cap, S3 permanent error)
    │   └── SpoolFullError   the local write-ahead spool reached its configured cap
    ├── RecordingFailed      a live recording can no longer be written (fail-closed trigger)
    ├── FormatError          a stored recording is malformed (reported, never crashed on)
    └── VerifyError          hash chain or signature check failed (names the first bad chunk)
"""


class RecorderError(Exception):
    """Root of every recorder exception."""


class SinkError(RecorderError):
    """A sink could not store or read data."""


class SpoolFullError(SinkError):
    """The local spool reached its configured cap; new data cannot be accepted."""


class RecordingFailed(RecorderError):
    """A live recording failed; under ``on_failure = "terminate"`` its session must end."""


class FormatError(RecorderError):
    """A recording is malformed or of an unknown version."""


class VerifyError(RecorderError):
    """Integrity verification failed."""

    def __init__(self, message: str, chunk: int | None = None) -> None:
        super().__init__(message)
        self.chunk = chunk
