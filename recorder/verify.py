"""Integrity verification of stored recordings: hash chain, trailer, signature, binding.

Checks, in order: every chunk's header checksum, sequence number and chain digest (the
first bad chunk is named: tampering, truncation, reordering and dropped chunks all show
there); a trailer is present; the signature chunk (when present, or announced by the
header) signs the chain head, and its key is a trusted key when trusted keys are given.

An unsigned recording is reported as "unsigned" (a failure only with
``require_signature``; the CLI requires a signature whenever a signing key is
configured). Without trusted keys a signature is checked against the key embedded in the
recording, which proves integrity but not origin: pass the public key.

Binding (:func:`check_binding`): the header, covered by the hash chain whose head the
signature covers together with the session id, must name the session id, user, target
and start time that the index holds for the session, and the storage name must be that
session's. A recording copied over another session's fails as "wrong-session".

A recording finished by crash recovery ends with a recovery trailer
(:func:`recorder.format.v1.Encoder.recovery_trailer`) and is reported "recovered": it
passes, since what was recorded is intact (and signed), but the last moments before the
crash (at most the flush interval) are missing. A recording with no trailer at all is
"truncated": cut, or still being written.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any

from recorder.errors import FormatError, SinkError
from recorder.format import v1
from recorder.signing import key_id, same_key, verify_signature
from recorder.sinks.base import Sink

START_TOLERANCE = 0.001  # seconds between the header's start time and the index's


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of verifying one recording.

    Attributes:
        status: "ok" | "recovered" | "unsigned" | "truncated" | "damaged" | "bad-signature"
            | "wrong-key" | "missing-signature" | "unreadable" | "wrong-session" |
            "missing" | "live".
        ok: True when the recording passed (unsigned passes unless required; a live
            session is neither passed nor failed: ``ok`` is True and ``live`` is set).
        first_bad_chunk: the number of the first bad chunk, when one is to blame.
        message: one human-readable sentence.
        header: the recording's header chunk (empty when unreadable).
        recovered: the recovery trailer of a crash-recovered recording.
    """

    name: str
    session_id: str
    status: str
    ok: bool
    message: str
    first_bad_chunk: int | None = None
    chunks: int = 0
    key_id: str | None = None
    header: dict[str, Any] = field(default_factory=dict, repr=False)
    recovered: dict[str, Any] | None = None

    @property
    def live(self) -> bool:
        return self.status == "live"

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "header"}
        out["user"] = self.header.get("user")
        out["target"] = self.header.get("target")
        return out


@dataclass(frozen=True)
class Expected:
    """What the index says about a session, to bind its recording to."""

    session_id: str
    user: str
    target: str
    start: float
    name: str


def verify_source(
    src: v1.ByteSource,
    name: str = "",
    *,
    trusted: list[bytes] | None = None,
    require_signature: bool = False,
) -> VerifyReport:
    """Verify one recording given its bytes (chain, trailer, signature)."""
    try:
        scan = v1.scan(src, resync=False)
    except FormatError as exc:
        return VerifyReport(name, "", "unreadable", False, str(exc), 0)
    chunks = scan.chunks
    header: dict[str, Any] = {}
    if chunks and chunks[0].type == v1.HEADER:
        try:
            header = v1.read_json(src, chunks[0])
        except FormatError:
            header = {}
    sid = str(header.get("session_id", ""))
    report = _check_chain(src, name, sid, header, scan, trusted, require_signature)
    report = replace(report, header=header)
    trailer = next((c for c in chunks if c.type == v1.TRAILER), None)
    if trailer is None or not report.ok:
        return report
    try:
        body = v1.read_json(src, trailer)
    except FormatError:
        return report
    if not body.get("recovered"):
        return report
    signed = "signed" if report.status == "ok" else "unsigned"
    return replace(
        report,
        status="recovered",
        recovered=body,
        message=(
            f"recovered after a crash ({signed}): intact up to chunk {body.get('last_chunk')}"
            f" (recorded until {body.get('last_time_us', 0) / 1e6:.1f}s); the last moments "
            f"before the crash are missing; recovered at {body.get('recovered_at')}"
        ),
    )


def _check_chain(
    src: v1.ByteSource,
    name: str,
    sid: str,
    header: dict[str, Any],
    scan: v1.ScanResult,
    trusted: list[bytes] | None,
    require_signature: bool,
) -> VerifyReport:
    chunks = scan.chunks
    n = len(chunks)
    p = scan.problem
    if p is not None:
        status = "truncated" if p.kind == "truncated" else "damaged"
        return VerifyReport(name, sid, status, False, p.message, p.chunk, n)
    if not chunks or chunks[0].type != v1.HEADER:
        return VerifyReport(name, sid, "damaged", False, "chunk 0 is not a header chunk", 0, n)
    trailer = next((c for c in chunks if c.type == v1.TRAILER), None)
    if trailer is None:
        return VerifyReport(
            name,
            sid,
            "truncated",
            False,
            f"no trailer: the recording ends after chunk {n - 1} (truncated, crashed and not "
            f"yet recovered, or still being written); chunk {n} onwards is missing",
            n,
            n,
        )
    sig_chunk = next((c for c in chunks if c.type == v1.SIGNATURE), None)
    if chunks[-1].seq not in (trailer.seq, trailer.seq + 1) or (
        sig_chunk is not None and sig_chunk.seq != trailer.seq + 1
    ):
        return VerifyReport(
            name, sid, "damaged", False, "chunks after the trailer", trailer.seq + 1, n
        )
    announced = header.get("signing_key_id")
    if sig_chunk is None:
        if announced:
            return VerifyReport(
                name,
                sid,
                "missing-signature",
                False,
                f"the header announces signing key {announced} but there is no signature "
                "chunk (stripped?)",
                trailer.seq + 1,
                n,
            )
        if require_signature:
            return VerifyReport(
                name,
                sid,
                "unsigned",
                False,
                "hash chain intact but the recording is not signed, and a signature is "
                "required (a signing key is configured)",
                None,
                n,
            )
        return VerifyReport(
            name, sid, "unsigned", True, "hash chain intact; recording is not signed", None, n
        )
    return _check_signature(src, name, sid, trailer, sig_chunk, n, trusted)


def _check_signature(
    src: v1.ByteSource,
    name: str,
    sid: str,
    trailer: v1.Chunk,
    sig_chunk: v1.Chunk,
    n: int,
    trusted: list[bytes] | None,
) -> VerifyReport:
    bad = sig_chunk.seq
    try:
        body = v1.read_json(src, sig_chunk)
        pub = base64.b64decode(str(body["public_key"]), validate=True)
        sig = base64.b64decode(str(body["signature"]), validate=True)
        message = str(body["message"]).encode()
    except (FormatError, KeyError, ValueError, binascii.Error):
        return VerifyReport(name, sid, "bad-signature", False, "malformed signature chunk", bad, n)
    expected = v1.signed_message(sid, trailer.seq, trailer.digest)
    kid = key_id(pub)
    if not hmac.compare_digest(message, expected):
        return VerifyReport(
            name,
            sid,
            "bad-signature",
            False,
            "the signature does not cover this recording's chain head",
            bad,
            n,
            kid,
        )
    if not verify_signature(pub, message, sig):
        return VerifyReport(name, sid, "bad-signature", False, "invalid signature", bad, n, kid)
    if trusted is not None and not any(same_key(pub, t) for t in trusted):
        return VerifyReport(
            name,
            sid,
            "wrong-key",
            False,
            f"signed by key {kid}, which is not a trusted key",
            bad,
            n,
            kid,
        )
    note = "" if trusted is not None else " (embedded key; no trusted key given)"
    return VerifyReport(
        name, sid, "ok", True, f"hash chain intact; signed by key {kid}{note}", None, n, kid
    )


def check_binding(report: VerifyReport, expected: Expected) -> VerifyReport:
    """Fail ``report`` unless its recording is the one of session ``expected``.

    Only a readable header can be bound; damaged recordings keep their own status.
    """
    header = report.header
    if not header:
        return report
    problems = []
    if str(header.get("session_id", "")) != expected.session_id:
        problems.append(f"it holds session {header.get('session_id')!r}")
    if PurePosixPath(expected.name).name != f"{expected.session_id}.bstl" or (
        PurePosixPath(report.name).name not in ("", f"{expected.session_id}.bstl")
    ):
        problems.append(f"it is stored as {report.name or expected.name!r}")
    if str(header.get("user", "")) != expected.user:
        problems.append(f"its user is {header.get('user')!r}, the index says {expected.user!r}")
    if str(header.get("target", "")) != expected.target:
        problems.append(
            f"its target is {header.get('target')!r}, the index says {expected.target!r}"
        )
    start = header.get("start_time")
    if not isinstance(start, int | float) or abs(float(start) - expected.start) > START_TOLERANCE:
        problems.append("its start time differs from the index's")
    if not problems:
        return report
    return replace(
        report,
        status="wrong-session",
        ok=False,
        session_id=expected.session_id,
        message=f"not the recording of session {expected.session_id}: " + "; ".join(problems),
    )


def verify_recording(
    sink: Sink,
    name: str,
    *,
    trusted: list[bytes] | None = None,
    require_signature: bool = False,
) -> VerifyReport:
    """Verify one stored recording by sink name."""
    from recorder.reader import SinkSource

    try:
        src = SinkSource(sink, name)
    except SinkError as exc:
        return VerifyReport(name, "", "unreadable", False, str(exc))
    try:
        return verify_source(src, name, trusted=trusted, require_signature=require_signature)
    except SinkError as exc:
        return VerifyReport(name, "", "unreadable", False, str(exc))
