"""Typed settings for the recorder (built by :func:`recorder.config.parse_recording` from the
``[recording]`` table of the gateway's config, or by tests).

Storage: ``RecorderSettings.storage`` is ``None`` for the local directory sink, or the
settings of a remote object store (a subclass of :class:`StoreSettings`, such as
:class:`S3Settings`) for a :class:`recorder.sinks.spooled.SpooledSink`. ``s3`` is the
older spelling of the same thing and is still accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

if TYPE_CHECKING:
    from recorder.index import SessionIndex

from recorder.errors import RecorderError

OnFailure = Literal["terminate", "continue"]

MIB = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class StoreSettings:
    """What every spooled object store shares: part size, spool, retries and deadlines.

    A store type (one file under ``recorder/sinks/``) subclasses this with its own keys.
    """

    scheme: ClassVar[str] = ""
    min_part_size: ClassVar[int] = 1  # the store's minimum for every part but the last

    part_size: int = 8 * MIB  # bytes per multipart part
    spool_cap_bytes: int = 1024 * MIB  # bytes that may wait for upload (then: paused)
    retry_interval: float = 2.0  # seconds before the first retry during an outage
    max_retry_interval: float = 30.0  # backoff ceiling: catch-up starts at most this late
    connect_timeout: float = 2.0  # seconds to open a connection (short: outages show fast)
    read_timeout: float = 10.0  # seconds without a byte before a call fails
    call_timeout: float = 60.0  # hard deadline of one storage call (a trickling store)

    def location(self) -> str:
        """Where recordings go, for messages and status (never a secret)."""
        return self.scheme + "://"


@dataclass(frozen=True, kw_only=True)
class S3Settings(StoreSettings):
    """Where and how recordings are stored in S3 (or an S3-compatible store such as MinIO).

    Credentials: when ``access_key_id``/``secret_access_key`` are None the standard boto3
    chain is used (environment, instance profile). ``read_access_key_id`` and
    ``read_secret_access_key`` are used by the read-only tools (``sessions``, ``play``,
    ``export``, ``verify``, the player) when set, so they need no write secret. Secrets
    are never logged.
    """

    scheme: ClassVar[str] = "s3"
    min_part_size: ClassVar[int] = 5 * MIB  # S3's minimum for all parts but the last

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    read_access_key_id: str | None = None
    read_secret_access_key: str | None = field(default=None, repr=False)
    sse: str | None = None  # "AES256", "aws:kms" or "aws:kms:dsse"
    sse_kms_key_id: str | None = None
    object_lock_mode: str | None = None  # "GOVERNANCE" or "COMPLIANCE"
    object_lock_retain_days: int | None = None

    def location(self) -> str:
        prefix = self.prefix.strip("/")
        return f"s3://{self.bucket}/{prefix}" if prefix else f"s3://{self.bucket}"


@dataclass(frozen=True)
class RecorderSettings:
    """Everything the recorder needs; no reference to the gateway's config types."""

    data_dir: Path  # holds the index, the spool (spool/), the status and upload ledger
    recordings_dir: Path | None = None  # file sink directory; default data_dir/"recordings"
    s3: S3Settings | None = None  # older spelling of ``storage`` for S3
    storage: StoreSettings | None = None  # remote object store (spooled); None = files
    zstd_level: int = 3
    flush_interval: float = 1.0  # seconds: block flush at least this often
    flush_bytes: int = 64 * 1024  # ...or after this much payload
    keyframe_interval: float = 10.0  # seconds of session time between screen snapshots
    signing_key: Path | None = None  # Ed25519 private key (PEM, PKCS8); None = unsigned
    on_failure: OnFailure = "terminate"
    queue_bytes: int = 4 * 1024 * 1024  # per-session bound on unwritten bytes (then paused)
    # Local storage (the recordings directory or the spool) keeps at least this much free
    # space: below it, sessions are paused (back-pressure) until space returns.
    min_free_bytes: int = 64 * MIB
    # A single local storage call blocked this long (a hung disk) fails every open
    # recording; a recording that cannot be opened within it is refused.
    stall_timeout: float = 30.0
    # on_failure = "continue": a session paused this long by full storage goes on; what
    # it produces meanwhile is dropped and the recording notes a gap (resumes after).
    max_pause: float = 10.0
    # `bastille prune`: recordings older than this (seconds) are deleted once verified and
    # stored; 0 keeps them forever. Sessions under a legal hold are never pruned.
    retention: float = 0.0
    # public keys (PEM) of earlier signing keys: recordings they signed still verify
    trusted_keys: tuple[Path, ...] = ()
    #: opens a shared session index (several gateways, ``[state] url``); None: the SQLite
    #: file data_dir/index.sqlite3 (see recorder.index.open_index)
    index_opener: Callable[[], SessionIndex] | None = field(default=None, compare=False,
                                                             repr=False)

    def __post_init__(self) -> None:
        if self.storage is None and self.s3 is not None:
            object.__setattr__(self, "storage", self.s3)
        elif self.s3 is None and isinstance(self.storage, S3Settings):
            object.__setattr__(self, "s3", self.storage)

    @property
    def file_dir(self) -> Path:
        return self.recordings_dir or (self.data_dir / "recordings")

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"


def validate_settings(settings: RecorderSettings) -> None:
    """Raise RecorderError naming the first bad setting."""
    if not -7 <= settings.zstd_level <= 22 or settings.zstd_level == 0:
        raise RecorderError(
            f"recorder zstd_level must be 1..22 (or -7..-1), not {settings.zstd_level}"
        )
    if not 0.05 <= settings.flush_interval <= 60:
        raise RecorderError("recorder flush_interval must be between 0.05 and 60 seconds")
    if not 1024 <= settings.flush_bytes <= 8 * 1024 * 1024:
        raise RecorderError("recorder flush_bytes must be between 1 KiB and 8 MiB")
    if settings.queue_bytes < settings.flush_bytes * 2:
        raise RecorderError("recorder queue_bytes must be at least twice flush_bytes")
    if settings.keyframe_interval <= 0:
        raise RecorderError("recorder keyframe_interval must be positive")
    if settings.on_failure not in ("terminate", "continue"):
        raise RecorderError(
            f"recorder on_failure must be 'terminate' or 'continue', not {settings.on_failure!r}"
        )
    if settings.stall_timeout < 0.1 or settings.max_pause < 0 or settings.min_free_bytes < 0:
        raise RecorderError(
            "recorder stall_timeout must be >= 0.1 s; max_pause and min_free_bytes >= 0"
        )
