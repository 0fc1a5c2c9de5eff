"""Typed settings for the recorder (built by the gateway's config loader, or by tests)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from recorder.index import SessionIndex

OnFailure = Literal["terminate", "continue"]


@dataclass(frozen=True)
class S3Settings:
    """Where and how recordings are stored in S3 (or an S3-compatible store such as MinIO).

    Credentials: when ``access_key_id``/``secret_access_key`` are None the standard boto3
    chain is used (environment, instance profile). The secret is never logged.
    """

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    sse: str | None = None  # "AES256" or "aws:kms"
    sse_kms_key_id: str | None = None
    object_lock_mode: str | None = None  # "GOVERNANCE" or "COMPLIANCE"
    object_lock_retain_days: int | None = None
    part_size: int = 8 * 1024 * 1024  # >= 5 MiB (S3 minimum for all parts but the last)
    spool_cap_bytes: int = 1024 * 1024 * 1024  # local write-ahead spool cap
    retry_interval: float = 2.0  # seconds between upload retries while S3 is unreachable
    max_retry_interval: float = 30.0  # backoff ceiling (seconds) during a long outage
    connect_timeout: float = 2.0  # seconds; short so an outage is detected quickly
    read_timeout: float = 10.0  # seconds without a byte from S3 before a call fails


@dataclass(frozen=True)
class RecorderSettings:
    """Everything the recorder needs; no reference to the gateway's config types."""

    data_dir: Path  # holds the index (index.sqlite3) and the S3 spool (spool/)
    recordings_dir: Path | None = None  # file sink directory; default data_dir/"recordings"
    s3: S3Settings | None = None  # when set, recordings go to S3 (spooled locally first)
    zstd_level: int = 3
    flush_interval: float = 1.0  # seconds: block flush at least this often
    flush_bytes: int = 64 * 1024  # ...or after this much payload
    keyframe_interval: float = 10.0  # seconds of session time between screen snapshots
    signing_key: Path | None = None  # Ed25519 private key (PEM, PKCS8); None = unsigned
    on_failure: OnFailure = "terminate"
    queue_bytes: int = 4 * 1024 * 1024  # per-session bound on unwritten bytes
    #: opens a shared session index (several gateways, ``[state] url``); None: the SQLite
    #: file data_dir/index.sqlite3 (see recorder.index.open_index)
    index_opener: Callable[[], SessionIndex] | None = field(default=None, compare=False,
                                                             repr=False)

    @property
    def file_dir(self) -> Path:
        return self.recordings_dir or (self.data_dir / "recordings")
