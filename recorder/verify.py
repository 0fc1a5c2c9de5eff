"""Integrity verification of stored recordings: hash chain, trailer and signature.

Checks, in order: every chunk's header checksum, sequence number and chain digest (the
first bad chunk is named: tampering, truncation, reordering and dropped chunks all show
there); a trailer is present; the signature chunk (when present, or announced by the
header) signs the chain head, and its key is a trusted key when trusted keys are given.

An unsigned recording is reported as "unsigned" (a failure only with
``require_signature``). Without trusted keys a signature is checked against the key
embedded in the recording, which proves integrity but not origin: pass the public key.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass

from recorder.errors import FormatError, SinkError
from recorder.format import v1
from recorder.signing import key_id, same_key, verify_signature
from recorder.sinks.base import Sink


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of verifying one recording.

    Attributes:
        status: "ok" | "unsigned" | "truncated" | "damaged" | "bad-signature" | "wrong-key"
            | "missing-signature" | "unreadable".
        ok: True when the recording passed (unsigned passes unless required).
        first_bad_chunk: the number of the first bad chunk, when one is to blame.
        message: one human-readable sentence.
    """

    name: str
    session_id: str
    status: str
    ok: bool
    message: str
    first_bad_chunk: int | None = None
    chunks: int = 0
    key_id: str | None = None


def verify_source(
    src: v1.ByteSource,
    name: str = "",
    *,
    trusted: list[bytes] | None = None,
    require_signature: bool = False,
) -> VerifyReport:
    """Verify one recording given its bytes."""
    try:
        scan = v1.scan(src, resync=False)
    except FormatError as exc:
        return VerifyReport(name, "", "unreadable", False, str(exc), 0)
    chunks = scan.chunks
    sid = ""
    header: dict[str, object] = {}
    if chunks and chunks[0].type == v1.HEADER:
        try:
            header = v1.read_json(src, chunks[0])
            sid = str(header.get("session_id", ""))
        except FormatError:
            pass
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
            f"no trailer: the recording ends after chunk {n - 1} (truncated, crashed, or "
            f"still being written); chunk {n} onwards is missing",
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
        ok = not require_signature
        return VerifyReport(
            name, sid, "unsigned", ok, "hash chain intact; recording is not signed", None, n
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
