"""The object store protocol: the few calls a :class:`~recorder.sinks.spooled.SpooledSink`
needs from a remote store (S3 today; GCS or Azure would each be one more file).

A store is synchronous and knows nothing about spooling, retries or outages: it makes one
call and either returns or raises one of the :mod:`recorder.errors` store errors:

* :class:`~recorder.errors.StoreUnavailable`: an outage (refused, no answer, slow, 5xx,
  throttled, the bucket missing). The spooled sink keeps the data and retries.
* :class:`~recorder.errors.StoreDenied`: a configuration error (credentials, access
  denied). Reported loudly; the data stays spooled; retried at the slowest rate.
* :class:`~recorder.errors.StoreUploadLost`: a multipart upload is gone; restart it.
* :class:`~recorder.errors.StoreNotFound`: no such object.

Deadlines are the caller's job (the spooled sink runs each call under
``StoreSettings.call_timeout``); a store should still set its own connect and read
timeouts so abandoned calls end.

Names are recording names (``2026/11/24/<id>.bstl``); the store maps them to its keys
(for S3: ``prefix + name``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from recorder.settings import StoreSettings


@dataclass(frozen=True)
class ObjectInfo:
    """What the store says about a stored object."""

    name: str
    size: int
    etag: str = ""  # the store's content tag (S3: ETag without quotes)


@runtime_checkable
class ObjectStore(Protocol):
    """One remote store of finished recordings."""

    settings: StoreSettings

    def describe(self) -> str:
        """Where objects go, for logs and status: never a secret (``s3://b/p at URL``)."""
        ...

    def check(self) -> None:
        """Is the store usable (bucket exists, credentials accepted)? Raises a store error."""
        ...

    def put(self, name: str, data: bytes, md5: bytes) -> None:
        """Store a whole (small) object; ``md5`` is its digest, for integrity in transit."""
        ...

    def begin(self, name: str) -> str:
        """Start a multipart upload; returns its id."""
        ...

    def put_part(self, name: str, upload_id: str, number: int, data: bytes, md5: bytes) -> str:
        """Upload part ``number`` (1-based); returns the part's tag for :meth:`complete`."""
        ...

    def list_parts(self, name: str, upload_id: str) -> dict[int, tuple[str, int]]:
        """The parts the store holds for an upload: number -> (tag, size)."""
        ...

    def part_matches(self, tag: str, md5: bytes) -> bool | None:
        """Does a part tag prove these bytes (S3: the ETag is the MD5)? None: cannot tell."""
        ...

    def complete(self, name: str, upload_id: str, parts: Sequence[tuple[int, str]]) -> None:
        """Finish a multipart upload from its parts (number, tag), in order."""
        ...

    def abort(self, name: str, upload_id: str) -> None:
        """Abandon a multipart upload (best effort)."""
        ...

    def head(self, name: str) -> ObjectInfo:
        """Size and tag of a stored object; :class:`StoreNotFound` if missing."""
        ...

    def expected_etag(self, part_md5s: Sequence[bytes], multipart: bool) -> str | None:
        """The tag :meth:`head` will report for an object made of these parts (their MD5
        digests, in order), or None when the store cannot be predicted (S3 with SSE-KMS)."""
        ...

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Read a range of a stored object (all of it from ``offset`` when length is None)."""
        ...

    def list(self) -> Iterator[ObjectInfo]:
        """Every stored object under this store's prefix."""
        ...

    def delete(self, name: str) -> None:
        """Delete an object (retention); :class:`StoreDenied` when the store forbids it
        (S3 Object Lock, a policy without s3:DeleteObject)."""
        ...

    def close(self) -> None:
        """Release clients and connections."""
        ...
