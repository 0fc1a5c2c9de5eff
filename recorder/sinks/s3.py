"""S3 (or MinIO, Ceph, any S3-compatible store): the ``s3://`` object store.

This module is the only one importing boto3 (lazily: the ``bastille[s3]`` extra). It has
three parts: settings parsing and validation for ``storage = "s3://bucket/prefix"`` and
``[recording.s3]`` (registered under the ``s3`` scheme), :class:`S3Store` (the
:class:`~recorder.sinks.store.ObjectStore` calls), and :class:`S3Sink`, the spooled sink
over it. Spooling, retries, outages, confirmation and recovery are not S3-specific and
live in :mod:`recorder.sinks.spooled`.

Error mapping: connection errors, timeouts, 5xx, throttling and a missing bucket
(``NoSuchBucket``: deleted, or recreated later) are outages; ``AccessDenied``,
``InvalidAccessKeyId``, ``SignatureDoesNotMatch``, a wrong region, missing credentials and
other 4xx are configuration errors; ``NoSuchUpload`` is a lost upload.

Confirmation: the ETag of an object S3 assembled from parts is the MD5 of the parts' MD5
digests, ``-N``; of a single put, its MD5. With SSE-KMS the ETag is not an MD5, so only
the size is confirmed. Every part and put carries Content-MD5.

Permissions the gateway's credentials need: ``s3:PutObject``, ``s3:GetObject`` (HEAD to
confirm each upload), ``s3:ListBucket`` (the health probe, ``verify --all``),
``s3:AbortMultipartUpload``, ``s3:ListMultipartUploadParts``. The read-only tools need
``s3:GetObject`` and ``s3:ListBucket`` (``read_access_key_id`` and its secret).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from recorder.errors import (
    SinkError,
    StoreBucketMissing,
    StoreDenied,
    StoreError,
    StoreNotFound,
    StoreUnavailable,
    StoreUploadLost,
)
from recorder.settings import MIB, S3Settings, StoreSettings
from recorder.sinks.ledger import Ledger
from recorder.sinks.registry import Problem, StoreType, TableReader, register
from recorder.sinks.spooled import SpooledSink
from recorder.sinks.store import ObjectInfo

MIN_PART_SIZE = 5 * MIB  # S3's minimum for every part but the last
MAX_PART_SIZE = 5 * 1024 * MIB

TRANSIENT_CODES = frozenset(
    {
        "SlowDown", "Throttling", "ThrottlingException", "RequestThrottled",
        "RequestLimitExceeded", "RequestTimeout", "InternalError", "ServiceUnavailable",
        "BadDigest", "XAmzContentSHA256Mismatch", "IncompleteBody", "OperationAborted",
        "503", "500",
    }
)
LOST_UPLOAD_CODES = frozenset({"NoSuchUpload", "InvalidPart", "InvalidPartOrder"})
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
MISSING_BUCKET_CODES = frozenset({"NoSuchBucket"})
# HEAD responses carry no error body, so botocore reports the bare status as the code.
BARE_STATUS_CODES = {"400": "BadRequest", "403": "AccessDenied", "404": "NotFound"}
SSE_MODES = ("AES256", "aws:kms", "aws:kms:dsse")
LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")

# S3's rules for new buckets: 3-63 characters, lowercase letters, digits, dots and
# hyphens, starting and ending with a letter or digit.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_PREFIX_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._@+=,-]*")


# -- settings ---------------------------------------------------------------------------


def bucket_problem(bucket: str) -> str | None:
    """Why ``bucket`` is not a valid S3 bucket name, or None."""
    if not bucket:
        return "the bucket name is missing: s3://bucket/prefix"
    if not _BUCKET.fullmatch(bucket):
        return (
            f"bucket {bucket!r} must be 3-63 lowercase letters, digits, dots or hyphens, "
            "starting and ending with a letter or digit"
        )
    if ".." in bucket or ".-" in bucket or "-." in bucket:
        return f"bucket {bucket!r} may not contain '..', '.-' or '-.'"
    try:
        ipaddress.IPv4Address(bucket)
    except ValueError:
        pass
    else:
        return f"bucket {bucket!r} may not look like an IP address"
    if bucket.startswith(("xn--", "sthree-")) or bucket.endswith(("-s3alias", "--ol-s3")):
        return f"bucket {bucket!r} uses a prefix or suffix S3 reserves"
    return None


def parse_s3_url(url: str) -> tuple[str, str]:
    """Split ``s3://bucket/prefix`` into the bucket and a prefix.

    Returns:
        ``(bucket, prefix)``; the prefix is ``""`` or ends with ``/`` (keys are
        ``prefix + name``).

    Raises:
        SinkError: not an ``s3://`` URL, an invalid bucket name, or a bad prefix.
    """
    problems = url_problems(url)
    if problems:
        raise SinkError(f"invalid S3 URL {url!r}: {problems[0]}")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def url_problems(url: str) -> list[str]:
    if not isinstance(url, str) or not url.startswith("s3://"):
        return ["expected s3://bucket/prefix"]
    bucket, _, prefix = url[len("s3://") :].partition("/")
    out = []
    why = bucket_problem(bucket)
    if why:
        out.append(why)
    if "?" in prefix or "#" in prefix:
        out.append("no query or fragment allowed")
    prefix = prefix.strip("/")
    if prefix:
        parts = prefix.split("/")
        if any(p in ("", ".", "..") for p in parts):
            out.append("empty, '.' or '..' prefix component")
        elif not all(_PREFIX_PART.fullmatch(p) for p in parts):
            out.append(f"prefix {prefix!r}: each part must match [A-Za-z0-9_][A-Za-z0-9._@+=,-]*")
        elif len(prefix) > 256:
            out.append("prefix longer than 256 characters")
    return out


def settings_problems(s: S3Settings) -> list[tuple[str, str]]:
    """Every value S3 would refuse later, as (key in [recording.s3], message)."""
    out: list[tuple[str, str]] = []
    why = bucket_problem(s.bucket)
    if why:
        out.append(("bucket", why))
    if not MIN_PART_SIZE <= s.part_size <= MAX_PART_SIZE:
        out.append(("part_size_mib", f"part_size {s.part_size} must be between "
                    f"{MIN_PART_SIZE} (5 MiB, the S3 minimum) and {MAX_PART_SIZE} bytes"))
    if s.spool_cap_bytes < s.part_size:
        out.append(("spool_cap_mib", f"spool_cap_bytes {s.spool_cap_bytes} must be at least "
                    f"part_size {s.part_size}, or no part could ever fill"))
    if s.retry_interval <= 0:
        out.append(("retry_interval", "retry_interval must be > 0"))
    if s.max_retry_interval < s.retry_interval:
        out.append(("max_retry_interval", "max_retry_interval must be >= retry_interval"))
    for key in ("connect_timeout", "read_timeout", "call_timeout"):
        if getattr(s, key) <= 0:
            out.append((key, f"{key} must be > 0"))
    if s.sse not in (None, *SSE_MODES):
        out.append(("sse", f"S3 sse {s.sse!r} must be AES256, aws:kms or aws:kms:dsse"))
    if s.sse_kms_key_id and not (s.sse or "").startswith("aws:kms"):
        out.append(("sse_kms_key_id", "S3 sse_kms_key_id needs sse = 'aws:kms'"))
    if s.object_lock_mode not in (None, *LOCK_MODES):
        out.append(("object_lock_mode", f"S3 object_lock_mode {s.object_lock_mode!r} must be "
                    "GOVERNANCE or COMPLIANCE"))
    if s.object_lock_mode and not (s.object_lock_retain_days or 0) > 0:
        out.append(("object_lock_retain_days",
                    "S3 object_lock_mode needs object_lock_retain_days > 0"))
    if s.object_lock_retain_days and not s.object_lock_mode:
        out.append(("object_lock_retain_days", "needs object_lock_mode"))
    if s.endpoint_url is not None:
        parts = urlsplit(s.endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            out.append(("endpoint_url", f"expected http(s)://host[:port], got "
                        f"{_safe_endpoint(s.endpoint_url)!r}"))
        elif parts.username or parts.password:
            out.append(("endpoint_url", "put no credentials in the URL (use access_key_id "
                        "and secret_access_key_env)"))
    if s.region is not None and not _REGION.fullmatch(s.region):
        out.append(("region", f"expected a region name such as eu-west-1, got {s.region!r}"))
    return out


def validate_settings(settings: S3Settings) -> None:
    """Raise SinkError naming the first invalid setting (for programmatic settings)."""
    problems = settings_problems(settings)
    if problems:
        raise SinkError(problems[0][1])


_KEYS = {
    "endpoint_url", "region", "access_key_id", "secret_access_key_env",
    "secret_access_key_file", "read_access_key_id", "read_secret_access_key_env",
    "read_secret_access_key_file", "sse", "sse_kms_key_id", "object_lock_mode",
    "object_lock_retain_days", "part_size_mib", "spool_cap_mib", "retry_interval",
    "max_retry_interval", "connect_timeout", "read_timeout", "call_timeout",
}


def parse(url: str, t: TableReader, reading: bool) -> S3Settings | None:
    """``storage = "s3://..."`` and ``[recording.s3]`` -> S3Settings; problems into ``t``."""
    storage_key = t.path.rsplit(".", 1)[0] + ".storage"
    bad_url = url_problems(url)
    for why in bad_url:
        t.problems.append(Problem(storage_key, f"invalid S3 URL {url!r}: {why}"))
    t.check_keys(_KEYS)
    bucket, _, prefix = url[len("s3://") :].partition("/")
    key_id = t.text("access_key_id")
    secret = t.secret("secret_access_key_env", "secret_access_key_file", serve_only=True)
    has_secret_source = any(k in t.table for k in ("secret_access_key_env",
                                                    "secret_access_key_file"))
    if key_id and not has_secret_source:
        t.problem("access_key_id", "needs secret_access_key_env or secret_access_key_file")
    if has_secret_source and not key_id:
        t.problem("secret_access_key_env", "a secret without access_key_id")
    read_id = t.text("read_access_key_id")
    read_secret = t.secret("read_secret_access_key_env", "read_secret_access_key_file",
                           serve_only=False)
    has_read_source = any(k in t.table for k in ("read_secret_access_key_env",
                                                  "read_secret_access_key_file"))
    if bool(read_id) != has_read_source:
        t.problem("read_access_key_id", "set read_access_key_id together with "
                  "read_secret_access_key_env or read_secret_access_key_file")
    part = t.int_range("part_size_mib", 5, 5120, 8)
    cap = t.int_range("spool_cap_mib", 16, 10**7, 1024)
    retry = t.duration("retry_interval", 2.0, lo=0.01, hi=3600)
    settings = S3Settings(
        bucket=bucket,
        prefix=prefix.strip("/"),
        endpoint_url=t.text("endpoint_url"),
        region=t.text("region"),
        access_key_id=key_id,
        secret_access_key=secret,
        read_access_key_id=read_id,
        read_secret_access_key=read_secret,
        sse=t.choice("sse", SSE_MODES, None),
        sse_kms_key_id=t.text("sse_kms_key_id"),
        object_lock_mode=t.choice("object_lock_mode", LOCK_MODES, None),
        object_lock_retain_days=t.int_range("object_lock_retain_days", 0, 36500, 0) or None,
        part_size=part * MIB,
        spool_cap_bytes=cap * MIB,
        retry_interval=retry,
        max_retry_interval=t.duration("max_retry_interval", max(30.0, retry), lo=0.01, hi=86400),
        connect_timeout=t.duration("connect_timeout", 2.0, lo=0.1, hi=600),
        read_timeout=t.duration("read_timeout", 10.0, lo=0.1, hi=3600),
        call_timeout=t.duration("call_timeout", 60.0, lo=1.0, hi=86400),
    )
    reported = {p.key for p in t.problems}
    for key, why in settings_problems(settings):
        full = storage_key if key == "bucket" else t.key(key)
        if full not in reported:  # already said by the typed reader
            t.problems.append(Problem(full, why))
    return None if bad_url else settings


# -- the store --------------------------------------------------------------------------


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
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}"


class S3Store:
    """The :class:`~recorder.sinks.store.ObjectStore` calls, for one bucket and prefix.

    Args:
        settings: bucket, prefix, endpoint, credentials, SSE, Object Lock, timeouts.
        reading: use the read credentials (``read_access_key_id``) when they are set.

    Raises:
        SinkError: invalid settings or boto3 missing.
    """

    def __init__(self, settings: S3Settings, *, reading: bool = False) -> None:
        validate_settings(settings)
        boto3, config_cls, self._exc = _load_boto3()
        self.settings: StoreSettings = settings
        self.s3 = settings
        self.bucket = settings.bucket
        prefix = settings.prefix.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        key_id, secret = settings.access_key_id, settings.secret_access_key
        if reading and settings.read_access_key_id:
            key_id, secret = settings.read_access_key_id, settings.read_secret_access_key
        elif secret is None:
            key_id = None  # no write secret here: the standard chain, if anything
        session = boto3.session.Session(
            aws_access_key_id=key_id, aws_secret_access_key=secret, region_name=settings.region
        )
        config = config_cls(
            retries={"max_attempts": 1, "mode": "standard"},  # SpooledSink retries
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            # We send Content-MD5 ourselves; "when_required" keeps botocore from adding
            # streaming checksum trailers that some S3-compatible stores reject.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client = session.client("s3", endpoint_url=settings.endpoint_url, config=config)

    def describe(self) -> str:
        return f"{self.s3.location()} at {_safe_endpoint(self.s3.endpoint_url)}"

    def key(self, name: str) -> str:
        return self.prefix + name

    def _map(self, exc: Exception) -> Exception:
        """A botocore/OS error as the store error it means (or ``exc`` if unknown)."""
        if isinstance(exc, self._exc.ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code") or "Unknown")
            code = BARE_STATUS_CODES.get(code, code)
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            what = f"{code} (HTTP {status})" if status else code
            if code in LOST_UPLOAD_CODES:
                return StoreUploadLost(what)
            if code in MISSING_BUCKET_CODES:
                return StoreBucketMissing(f"bucket {self.bucket!r} does not exist ({code})")
            if code in MISSING_CODES:
                return StoreNotFound(what)
            if code in TRANSIENT_CODES or status == 429 or (status or 0) >= 500:
                return StoreUnavailable(what)
            return StoreDenied(f"S3 refused access to bucket {self.bucket!r}: {what}", code)
        if isinstance(exc, self._exc.NoCredentialsError | self._exc.PartialCredentialsError):
            return StoreDenied(
                f"S3 bucket {self.bucket!r}: no credentials (set access_key_id and "
                "secret_access_key_env)", "NoCredentials"
            )
        if isinstance(exc, self._exc.BotoCoreError | OSError):
            return StoreUnavailable(type(exc).__name__)
        return exc

    def _do(self, op: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._client, op)(**kwargs)
        except Exception as exc:
            mapped = self._map(exc)
            if mapped is exc:
                raise
            raise mapped from None

    def _object_args(self) -> dict[str, Any]:
        s = self.s3
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

    def check(self) -> None:
        try:
            self._do("head_bucket", Bucket=self.bucket)
        except StoreNotFound:
            raise StoreBucketMissing(f"bucket {self.bucket!r} does not exist (NoSuchBucket)"
                                     ) from None

    def put(self, name: str, data: bytes, md5: bytes) -> None:
        import base64

        self._do("put_object", Bucket=self.bucket, Key=self.key(name), Body=data,
                 ContentMD5=base64.b64encode(md5).decode(), **self._object_args())

    def begin(self, name: str) -> str:
        resp = self._do("create_multipart_upload", Bucket=self.bucket, Key=self.key(name),
                        **self._object_args())
        return str(resp["UploadId"])

    def put_part(self, name: str, upload_id: str, number: int, data: bytes, md5: bytes) -> str:
        import base64

        resp = self._do("upload_part", Bucket=self.bucket, Key=self.key(name),
                        UploadId=upload_id, PartNumber=number, Body=data,
                        ContentMD5=base64.b64encode(md5).decode())
        return str(resp["ETag"])

    def list_parts(self, name: str, upload_id: str) -> dict[int, tuple[str, int]]:
        have: dict[int, tuple[str, int]] = {}
        marker = 0
        while True:
            resp = self._do("list_parts", Bucket=self.bucket, Key=self.key(name),
                            UploadId=upload_id, PartNumberMarker=marker)
            for p in resp.get("Parts", []):
                have[int(p["PartNumber"])] = (str(p["ETag"]), int(p["Size"]))
            if not resp.get("IsTruncated"):
                return have
            marker = int(resp["NextPartNumberMarker"])

    def _kms(self) -> bool:
        return (self.s3.sse or "").startswith("aws:kms")

    def part_matches(self, tag: str, md5: bytes) -> bool | None:
        if self._kms():
            return None
        return tag.strip('"') == md5.hex()

    def complete(self, name: str, upload_id: str, parts: Sequence[tuple[int, str]]) -> None:
        self._do("complete_multipart_upload", Bucket=self.bucket, Key=self.key(name),
                 UploadId=upload_id,
                 MultipartUpload={"Parts": [{"PartNumber": n, "ETag": t} for n, t in parts]})

    def abort(self, name: str, upload_id: str) -> None:
        self._do("abort_multipart_upload", Bucket=self.bucket, Key=self.key(name),
                 UploadId=upload_id)

    def head(self, name: str) -> ObjectInfo:
        resp = self._do("head_object", Bucket=self.bucket, Key=self.key(name))
        return ObjectInfo(name, int(resp["ContentLength"]), str(resp.get("ETag", "")).strip('"'))

    def expected_etag(self, part_md5s: Sequence[bytes], multipart: bool) -> str | None:
        if self._kms():
            return None
        if not multipart:
            return part_md5s[0].hex() if part_md5s else hashlib.md5(b"").hexdigest()
        joined = hashlib.md5(b"".join(part_md5s), usedforsecurity=False).hexdigest()
        return f"{joined}-{len(part_md5s)}"

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key(name)}
        if length is not None:
            args["Range"] = f"bytes={offset}-{offset + length - 1}"
        elif offset:
            args["Range"] = f"bytes={offset}-"
        try:
            resp = self._do("get_object", **args)
        except StoreDenied as exc:
            if exc.code == "InvalidRange" and self.head(name).size <= offset:
                return b""
            raise
        return bytes(resp["Body"].read())

    def delete(self, name: str) -> None:
        self._do("delete_object", Bucket=self.bucket, Key=self.key(name))

    def list(self) -> Iterator[ObjectInfo]:
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for obj in page.get("Contents", []):
                    yield ObjectInfo(obj["Key"][len(self.prefix) :], int(obj["Size"]),
                                     str(obj.get("ETag", "")).strip('"'))
        except StoreError:
            raise
        except Exception as exc:
            mapped = self._map(exc)
            if mapped is exc:
                raise
            raise mapped from None

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if close is not None:
            close()


class S3Sink(SpooledSink):
    """Recordings in an S3 bucket, spooled locally first (a :class:`SpooledSink` over
    :class:`S3Store`).

    Args:
        settings: bucket, prefix, endpoint, credentials, SSE, Object Lock, part size,
            spool cap, retry timing and deadlines.
        spool_dir: the local write-ahead spool (created 0700).
        ledger: the upload ledger (default: none).
        min_free_bytes: low-water mark of the spool's filesystem.
        readonly: a reader's view (no lock, no upload thread, read credentials).
    """

    def __init__(
        self,
        settings: S3Settings,
        spool_dir: Path,
        *,
        ledger: Ledger | None = None,
        min_free_bytes: int = 0,
        readonly: bool = False,
    ) -> None:
        super().__init__(
            S3Store(settings, reading=readonly),
            spool_dir,
            ledger=ledger,
            min_free_bytes=min_free_bytes,
            readonly=readonly,
        )
        self.bucket = settings.bucket


def _open(settings: StoreSettings, reading: bool) -> S3Store:
    assert isinstance(settings, S3Settings)
    return S3Store(settings, reading=reading)


register(StoreType(scheme="s3", table="s3", parse=parse, open=_open,
                   example="s3://bucket/prefix"))
