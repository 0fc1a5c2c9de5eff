"""S3 sink: recordings streamed to S3 (or MinIO, Ceph...) as multipart uploads.

Writes go to the local write-ahead spool (:mod:`recorder.spool`) and never wait for the
network. One uploader thread per sink sends each full ``part_size`` slice of a recording
as a multipart part while the session runs, and on ``close()`` the last (short) part and
CompleteMultipartUpload; a recording smaller than one part is a single PutObject. Then
the spool entry is deleted.

Failures:

* S3 unreachable (connection refused/reset, timeouts, 5xx, throttling): the data stays
  in the spool, the uploader retries after ``retry_interval`` seconds, doubling up to
  ``max_retry_interval``; one warning per outage and one line when it ends. Writes go on
  until the spool backlog reaches ``spool_cap_bytes`` (then :class:`SpoolFullError`).
* Permanent errors (403 AccessDenied, InvalidAccessKeyId, NoSuchBucket, ...): later
  ``write``/``flush``/``create`` raise SinkError naming the bucket and the S3 error code.
  The uploader keeps retrying at the slowest rate, so fixing the policy or credentials
  resumes the uploads without losing the spooled bytes.
* S3 lost an upload (NoSuchUpload, e.g. a lifecycle rule aborted it): it is restarted
  from the spooled bytes.

``close()`` of a stream never waits for S3: it marks the recording finished in the spool.
``recover()`` at start-up finishes what a crashed process left: it reconciles each entry
with ListParts (checking sizes and, without SSE-KMS, the MD5 ETags) and completes it.

Reading: ``names()/size()/read()`` see recordings still in the spool (live or waiting for
upload) from the local bytes, and finished ones from S3 (ranged GET).

boto3 is imported lazily, here only: it is the optional extra ``bastille[s3]``.

Known limits: one uploader thread per sink, so uploads go one part at a time (ample for
compressed terminal recordings); Content-MD5 protects every part and PutObject, but no
whole-object checksum is stored. ``create()`` checks that the key is free with one
HeadObject; the check is best effort (skipped during a known outage, and a stalled network
can hold that one call for up to 2 x (connect_timeout + read_timeout)). A permanent
error is found by the uploader, so writes right after it happens are still spooled (and
kept). ``names()`` and reads of finished recordings need S3 (SinkError while it is down);
recordings still in the spool stay readable. Call ``recover()`` at start-up: until then
entries left by an earlier process are readable but not uploaded (and count in the cap).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from recorder.errors import SinkError
from recorder.settings import S3Settings
from recorder.sinks.base import Sink, SinkStream, validate_name
from recorder.spool import Spool, SpoolEntry

log = logging.getLogger(__name__)

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
MAX_PART_SIZE = 5 * 1024 * 1024 * 1024
MAX_PARTS = 10_000

TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "503",
        "500",
    }
)
LOST_UPLOAD_CODES = frozenset({"NoSuchUpload", "InvalidPart", "InvalidPartOrder"})
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
# HEAD responses carry no error body, so botocore reports the bare status as the code.
BARE_STATUS_CODES = {"400": "BadRequest", "403": "AccessDenied", "404": "NotFound"}


class _Transient(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class _Permanent(Exception):
    def __init__(self, code: str, status: int | None) -> None:
        super().__init__(code)
        self.code = code
        self.status = status


class _LostUpload(Exception):
    pass


def _load_boto3() -> tuple[Any, Any, Any]:
    try:
        import boto3
        import botocore.exceptions
        from botocore.config import Config
    except ImportError as exc:
        raise SinkError("S3 storage needs boto3: pip install 'bastille[s3]'") from exc
    return boto3, Config, botocore.exceptions


def _safe_endpoint(url: str | None) -> str:
    """The endpoint for logs, without any user:password@ part."""
    if not url:
        return "AWS"
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def validate_settings(settings: S3Settings) -> None:
    """Reject settings S3 would refuse later, with a message naming the setting.

    Raises:
        SinkError: an invalid value.
    """
    if not settings.bucket:
        raise SinkError("S3 bucket name is empty")
    if not MIN_PART_SIZE <= settings.part_size <= MAX_PART_SIZE:
        raise SinkError(
            f"S3 part_size {settings.part_size} must be between {MIN_PART_SIZE} (5 MiB, the "
            f"S3 minimum) and {MAX_PART_SIZE} bytes"
        )
    if settings.spool_cap_bytes < settings.part_size:
        raise SinkError(
            f"spool_cap_bytes {settings.spool_cap_bytes} must be at least part_size "
            f"{settings.part_size}, or no part could ever fill"
        )
    if settings.retry_interval <= 0 or settings.max_retry_interval < settings.retry_interval:
        raise SinkError("retry_interval must be > 0 and <= max_retry_interval")
    if settings.sse not in (None, "AES256", "aws:kms", "aws:kms:dsse"):
        raise SinkError(f"S3 sse {settings.sse!r} must be AES256, aws:kms or aws:kms:dsse")
    if settings.sse_kms_key_id and not (settings.sse or "").startswith("aws:kms"):
        raise SinkError("S3 sse_kms_key_id needs sse = 'aws:kms'")
    if settings.object_lock_mode not in (None, "GOVERNANCE", "COMPLIANCE"):
        raise SinkError(
            f"S3 object_lock_mode {settings.object_lock_mode!r} must be GOVERNANCE or COMPLIANCE"
        )
    if settings.object_lock_mode and not (settings.object_lock_retain_days or 0) > 0:
        raise SinkError("S3 object_lock_mode needs object_lock_retain_days > 0")


class _S3Stream(SinkStream):
    def __init__(self, sink: S3Sink, entry: SpoolEntry) -> None:
        self._sink = sink
        self._entry = entry
        self._closed = False

    def write(self, data: bytes) -> None:
        if self._closed:
            raise SinkError(f"recording {self._entry.name} is closed")
        self._sink._raise_if_fatal()
        self._sink._spool.append(self._entry, data)
        if self._entry.backlog >= self._entry.part_size:
            self._sink._wake()

    def flush(self) -> None:
        if self._closed:
            return
        self._sink._raise_if_fatal()
        self._sink._spool.sync(self._entry)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._sink._spool.finish(self._entry)
        self._sink._wake()


class S3Sink(Sink):
    """Recordings in an S3 bucket, spooled locally first.

    Args:
        settings: bucket, prefix, endpoint, credentials, SSE, Object Lock, part size,
            spool cap and retry timing.
        spool_dir: the local write-ahead spool (created 0700).

    Raises:
        SinkError: invalid settings, boto3 missing, or the spool cannot be opened.
    """

    def __init__(self, settings: S3Settings, spool_dir: Path) -> None:
        validate_settings(settings)
        boto3, config_cls, self._exc = _load_boto3()
        self.settings = settings
        self.bucket = settings.bucket
        prefix = settings.prefix.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        session = boto3.session.Session(
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            region_name=settings.region,
        )
        config = config_cls(
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            # We send Content-MD5 ourselves; "when_required" keeps botocore from adding
            # streaming checksum trailers that some S3-compatible stores reject.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client = session.client("s3", endpoint_url=settings.endpoint_url, config=config)
        self._spool = Spool(spool_dir, settings.spool_cap_bytes)
        self._cond = threading.Condition()
        self._stop = False
        self._busy = False
        self._outage_since: float | None = None
        self._failures = 0
        self._next_attempt = 0.0
        self._fatal: SinkError | None = None
        self._scheduled: set[str] = set()  # names the uploader may work on
        self._thread = threading.Thread(target=self._run, name="s3-uploader", daemon=True)
        self._thread.start()

    # -- helpers -----------------------------------------------------------------

    def key(self, name: str) -> str:
        """The S3 key of a recording."""
        return self.prefix + name

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _raise_if_fatal(self) -> None:
        fatal = self._fatal
        if fatal is not None:
            raise SinkError(str(fatal))

    def _classify(self, exc: Exception) -> Exception:
        """Map a botocore/OS error to _Transient, _Permanent or _LostUpload."""
        client_error = self._exc.ClientError
        if isinstance(exc, client_error):
            err = exc.response.get("Error", {})
            code = str(err.get("Code") or "Unknown")
            code = BARE_STATUS_CODES.get(code, code)
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in LOST_UPLOAD_CODES:
                return _LostUpload(code)
            if code in TRANSIENT_CODES or status == 429 or (status or 0) >= 500:
                return _Transient(f"{code} (HTTP {status})")
            return _Permanent(code, status)
        if isinstance(exc, self._exc.NoCredentialsError | self._exc.PartialCredentialsError):
            return _Permanent("NoCredentials", None)
        if isinstance(exc, self._exc.BotoCoreError | OSError):
            return _Transient(type(exc).__name__)
        return exc

    def _call(self, op: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._client, op)(**kwargs)
        except Exception as exc:
            mapped = self._classify(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def _object_args(self) -> dict[str, Any]:
        s = self.settings
        args: dict[str, Any] = {"ContentType": "application/octet-stream"}
        if s.sse:
            args["ServerSideEncryption"] = s.sse
        if s.sse_kms_key_id:
            args["SSEKMSKeyId"] = s.sse_kms_key_id
        if s.object_lock_mode:
            args["ObjectLockMode"] = s.object_lock_mode
            args["ObjectLockRetainUntilDate"] = dt.datetime.now(dt.UTC) + dt.timedelta(
                days=s.object_lock_retain_days or 0
            )
        return args

    def _fatal_error(self, exc: _Permanent) -> SinkError:
        status = f" (HTTP {exc.status})" if exc.status else ""
        return SinkError(
            f"S3 refused access to bucket {self.bucket!r}: {exc.code}{status}; recordings "
            f"are kept in the local spool {self._spool.directory} until this is fixed"
        )

    # -- Sink API ----------------------------------------------------------------

    def check(self) -> None:
        """Ask S3 whether the bucket is usable (HeadBucket); for start-up diagnostics.

        Raises:
            SinkError: naming the bucket and the S3 error code, or "unreachable".
        """
        try:
            self._call("head_bucket", Bucket=self.bucket)
        except _Permanent as exc:
            if exc.code == "NotFound":
                exc.code = "NoSuchBucket"
            raise self._fatal_error(exc) from None
        except (_Transient, _LostUpload) as exc:
            raise SinkError(f"S3 bucket {self.bucket!r} is unreachable: {exc}") from None

    def create(self, name: str) -> SinkStream:
        validate_name(name)
        self._raise_if_fatal()
        if self._spool.get(name) is not None:
            raise SinkError(f"recording {name} already exists")
        if self._outage_since is None and self._exists_in_s3(name):
            raise SinkError(f"recording {name} already exists in bucket {self.bucket!r}")
        entry = self._spool.create(name, self.settings.part_size)
        with self._cond:
            self._scheduled.add(name)
        return _S3Stream(self, entry)

    def _exists_in_s3(self, name: str) -> bool:
        try:
            self._call("head_object", Bucket=self.bucket, Key=self.key(name))
        except _Permanent as exc:
            if exc.code in MISSING_CODES:
                return False
            return False  # e.g. a write-only policy: the uploader reports real refusals
        except _Transient as exc:
            self._outage(exc)  # later creates skip the check until S3 answers again
            return False  # best effort: never block a session start on the network
        except _LostUpload:
            return False
        return True

    def names(self) -> list[str]:
        out = {e.name for e in self._spool.entries() if not e.completed}
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for obj in page.get("Contents", []):
                    out.add(obj["Key"][len(self.prefix) :])
        except Exception as exc:
            raise self._read_error("list", exc) from None
        return sorted(out)

    def _read_error(self, what: str, exc: Exception, name: str | None = None) -> SinkError:
        mapped = self._classify(exc)
        if isinstance(mapped, _Permanent):
            if name is not None and mapped.code in MISSING_CODES:
                return SinkError(f"no recording named {name}")
            return SinkError(f"cannot {what} in S3 bucket {self.bucket!r}: {mapped.code}")
        if isinstance(mapped, _Transient | _LostUpload):
            return SinkError(f"cannot {what} in S3 bucket {self.bucket!r}: unreachable ({mapped})")
        return SinkError(f"cannot {what} in S3 bucket {self.bucket!r}: {type(exc).__name__}")

    def size(self, name: str) -> int:
        validate_name(name)
        entry = self._spool.get(name)
        if entry is not None and not entry.completed:
            return entry.size
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=self.key(name))
        except Exception as exc:
            raise self._read_error(f"get the size of {name}", exc, name) from None
        return int(head["ContentLength"])

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        validate_name(name)
        if offset < 0 or (length is not None and length < 0):
            raise SinkError(f"invalid range {offset}+{length} for recording {name}")
        entry = self._spool.get(name)
        if entry is not None and not entry.completed:
            try:
                return entry.read(offset, length)
            except FileNotFoundError:
                pass  # uploaded and removed meanwhile: read it from S3
            except OSError as exc:
                raise SinkError(f"cannot read spooled recording {name}: {exc.strerror}") from exc
        if length == 0:
            return b""
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key(name)}
        if length is not None:
            args["Range"] = f"bytes={offset}-{offset + length - 1}"
        elif offset:
            args["Range"] = f"bytes={offset}-"
        try:
            resp = self._client.get_object(**args)
            return bytes(resp["Body"].read())
        except Exception as exc:
            mapped = self._classify(exc)
            if isinstance(mapped, _Permanent) and mapped.code == "InvalidRange":
                if self.size(name) <= offset:
                    return b""
            raise self._read_error(f"read {name}", exc, name) from None

    def recover(self) -> list[str]:
        """Schedule every spool entry left by an earlier process for completion.

        Entries not closed by that process are marked finished (their session is over).
        Returns at once; the uploader does the work (see :meth:`wait_idle`).
        """
        handled = []
        for entry in self._spool.entries():
            with self._cond:
                if entry.name in self._scheduled:
                    continue
            if not entry.finished:
                self._spool.finish(entry)
            handled.append(entry.name)
            with self._cond:
                self._scheduled.add(entry.name)
                self._next_attempt = 0.0
                self._cond.notify_all()
        for bad in self._spool.bad:
            log.error("spool entry not recovered (malformed): %s", bad)
        return sorted(handled)

    def problems(self) -> list[str]:
        """Spool entries that could not be loaded (malformed), with the reason."""
        return list(self._spool.bad)

    def pending(self) -> list[str]:
        """Names of recordings still in the spool (open, or not fully uploaded)."""
        return sorted(e.name for e in self._spool.entries())

    @property
    def backlog_bytes(self) -> int:
        """Bytes in the spool waiting for upload (what ``spool_cap_bytes`` bounds)."""
        return self._spool.backlog_bytes

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no upload work is left (every closed recording is in S3).

        Returns:
            True when idle, False on timeout (e.g. S3 still down).
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._busy or self._has_work():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def close(self, timeout: float = 30.0) -> None:
        """Stop the uploader (after its current S3 call) and release the spool.

        Unfinished work stays in the spool for :meth:`recover` on the next start; call
        :meth:`wait_idle` first to drain.
        """
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._spool.close()

    # -- the uploader ------------------------------------------------------------

    def _work_entries(self) -> list[SpoolEntry]:
        out = []
        for entry in self._spool.entries():
            if entry.name not in self._scheduled:
                continue
            if entry.completed or entry.finished or entry.backlog >= entry.part_size:
                out.append(entry)
        return out

    def _has_work(self) -> bool:
        return bool(self._work_entries())

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop:
                    wait = self._next_attempt - time.monotonic()
                    if wait <= 0 and self._has_work():
                        break
                    self._cond.wait(wait if wait > 0 else None)
                if self._stop:
                    return
                self._busy = True
            try:
                self._round()
            except Exception:  # a bug must not kill the uploader silently
                log.exception("S3 uploader error; retrying")
                self._backoff()
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _round(self) -> None:
        """One step (at most one part) for every entry with work, round-robin."""
        for entry in self._work_entries():
            if self._stop:
                return
            try:
                self._advance(entry)
            except _Transient as exc:
                self._outage(exc)
                return
            except _Permanent as exc:
                self._refused(exc)
                return
            except SinkError as exc:  # local spool I/O; keep the entry, try again later
                log.error("S3 upload of %s: %s", entry.name, exc)
                self._backoff()
                return
            self._healthy()

    def _advance(self, entry: SpoolEntry) -> None:
        if entry.completed:
            self._remove(entry)
            return
        try:
            if entry.recovered:
                self._reconcile(entry)
                entry.recovered = False
            if entry.upload_id is None:
                if entry.finished and entry.size < entry.part_size:
                    self._put_whole(entry)
                    return
                created = self._call(
                    "create_multipart_upload",
                    Bucket=self.bucket,
                    Key=self.key(entry.name),
                    **self._object_args(),
                )
                self._spool.set_upload(entry, str(created["UploadId"]))
            if entry.backlog >= entry.part_size:
                self._upload_part(entry, entry.part_size)
            elif entry.finished:
                if entry.backlog > 0:
                    self._upload_part(entry, entry.backlog)
                self._complete(entry)
        except _LostUpload as exc:
            log.warning(
                "S3 lost the multipart upload of %s (%s); restarting it from the spool",
                entry.name,
                exc,
            )
            self._spool.set_upload(entry, None)

    def _upload_part(self, entry: SpoolEntry, nbytes: int) -> None:
        if len(entry.parts) >= MAX_PARTS:
            raise _Permanent("TooManyParts", None)
        number = len(entry.parts) + 1
        data = entry.read(entry.uploaded, nbytes)
        if len(data) != nbytes:
            raise SinkError(f"spool of {entry.name} is shorter than recorded")
        resp = self._call(
            "upload_part",
            Bucket=self.bucket,
            Key=self.key(entry.name),
            UploadId=entry.upload_id,
            PartNumber=number,
            Body=data,
            ContentMD5=_md5_b64(data),
        )
        self._spool.add_part(entry, number, str(resp["ETag"]), nbytes)

    def _complete(self, entry: SpoolEntry) -> None:
        parts = [{"PartNumber": n, "ETag": etag} for n, etag in entry.parts]
        self._call(
            "complete_multipart_upload",
            Bucket=self.bucket,
            Key=self.key(entry.name),
            UploadId=entry.upload_id,
            MultipartUpload={"Parts": parts},
        )
        self._spool.mark_completed(entry)
        self._remove(entry)

    def _put_whole(self, entry: SpoolEntry) -> None:
        data = entry.read(0, entry.size)
        self._call(
            "put_object",
            Bucket=self.bucket,
            Key=self.key(entry.name),
            Body=data,
            ContentMD5=_md5_b64(data),
            **self._object_args(),
        )
        self._spool.mark_completed(entry)
        self._remove(entry)

    def _remove(self, entry: SpoolEntry) -> None:
        self._spool.remove(entry)
        with self._cond:
            self._scheduled.discard(entry.name)
        log.info("recording %s stored in s3://%s/%s", entry.name, self.bucket, self.key(entry.name))

    def _reconcile(self, entry: SpoolEntry) -> None:
        """Trust only the parts S3 really has, in order, with the right size (and MD5)."""
        if entry.upload_id is None:
            return
        have: dict[int, tuple[str, int]] = {}
        marker = 0
        while True:
            resp = self._call(
                "list_parts",
                Bucket=self.bucket,
                Key=self.key(entry.name),
                UploadId=entry.upload_id,
                PartNumberMarker=marker,
            )
            for p in resp.get("Parts", []):
                have[int(p["PartNumber"])] = (str(p["ETag"]), int(p["Size"]))
            if not resp.get("IsTruncated"):
                break
            marker = int(resp["NextPartNumberMarker"])
        check_md5 = not (self.settings.sse or "").startswith("aws:kms")
        parts: list[tuple[int, str]] = []
        offset = 0
        while offset + entry.part_size <= entry.size:
            got = have.get(len(parts) + 1)
            if got is None or got[1] != entry.part_size:
                break
            if check_md5:
                local = hashlib.md5(
                    entry.read(offset, entry.part_size), usedforsecurity=False
                ).hexdigest()
                if got[0].strip('"') != local:
                    break
            parts.append((len(parts) + 1, got[0]))
            offset += entry.part_size
        self._spool.set_parts(entry, parts, offset)

    # -- outage bookkeeping --------------------------------------------------------

    def _backoff(self) -> None:
        s = self.settings
        delay = min(s.retry_interval * (2 ** min(self._failures, 16)), s.max_retry_interval)
        self._failures += 1
        with self._cond:
            self._next_attempt = time.monotonic() + delay

    def _outage(self, exc: _Transient) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning(
                "S3 unreachable (bucket %r, endpoint %s): %s; spooling locally in %s and "
                "retrying every %.1f-%.1f s",
                self.bucket,
                _safe_endpoint(self.settings.endpoint_url),
                exc.what,
                self._spool.directory,
                self.settings.retry_interval,
                self.settings.max_retry_interval,
            )
        self._backoff()

    def _refused(self, exc: _Permanent) -> None:
        fatal = self._fatal_error(exc)
        if self._fatal is None or str(self._fatal) != str(fatal):
            log.error("%s", fatal)
        self._fatal = fatal
        with self._cond:
            self._failures = 16
            self._next_attempt = time.monotonic() + self.settings.max_retry_interval

    def _healthy(self) -> None:
        if self._outage_since is not None:
            log.warning(
                "S3 reachable again after %.1f s; uploading %d spooled bytes",
                time.monotonic() - self._outage_since,
                self._spool.backlog_bytes,
            )
            self._outage_since = None
        if self._fatal is not None:
            log.warning("S3 accepts uploads to bucket %r again", self.bucket)
            self._fatal = None
        self._failures = 0
        self._next_attempt = 0.0
