"""Tamper detection: ``verify`` names the first bad chunk; signatures are checked."""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import pytest
from recorder_helpers import build_recording

from recorder import events as ev
from recorder.format import v1
from recorder.reader import Recording
from recorder.signing import generate, load_public_key, load_signer
from recorder.verify import verify_source

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "recorder"


def _batches(n: int = 6) -> list[list[tuple[float, int, bytes]]]:
    return [[(float(i), ev.OUTPUT, f"line {i} ".encode() * 50 + b"\n")] for i in range(n)]


@pytest.fixture
def key(tmp_path: Path) -> Path:
    return generate(tmp_path / "rec.key")[0]


@pytest.fixture
def signed(key: Path) -> bytes:
    return build_recording(_batches(), signer=load_signer(key))[0]


def _chunks(data: bytes) -> list[v1.Chunk]:
    scan = v1.scan(v1.BytesSource(data))
    assert scan.problem is None
    return scan.chunks


def _verify(data: bytes, key: Path | None = None) -> tuple[str, int | None, str]:
    trusted = [load_public_key(key.with_name(key.name + ".pub"))] if key else None
    r = verify_source(v1.BytesSource(data), trusted=trusted)
    return r.status, r.first_bad_chunk, r.message


def test_intact_signed_recording_verifies(signed: bytes, key: Path) -> None:
    status, bad, msg = _verify(signed, key)
    assert (status, bad) == ("ok", None), msg
    assert "signed by key" in msg


@pytest.mark.parametrize("victim", [1, 3, 5])
def test_flipped_byte_names_the_chunk(signed: bytes, key: Path, victim: int) -> None:
    c = _chunks(signed)[victim]
    data = bytearray(signed)
    data[c.payload_offset + c.length // 2] ^= 0x40
    status, bad, msg = _verify(bytes(data), key)
    assert (status, bad) == ("damaged", victim), msg
    assert f"chunk {victim}" in msg


def test_flipped_header_byte_names_the_chunk(signed: bytes) -> None:
    c = _chunks(signed)[2]
    data = bytearray(signed)
    data[c.offset + 12] ^= 1  # the part number field: header checksum fails
    status, bad, _ = _verify(bytes(data))
    assert (status, bad) == ("damaged", 2)


def test_truncation_mid_chunk(signed: bytes) -> None:
    c = _chunks(signed)[4]
    status, bad, msg = _verify(signed[: c.offset + 10])
    assert (status, bad) == ("truncated", 4), msg
    rec = Recording.from_bytes(signed[: c.offset + 10])
    assert rec.status == "truncated"
    assert len(list(rec.events())) == 3  # chunks 1..3 survive


def test_truncation_at_chunk_boundary_reports_missing_trailer(signed: bytes) -> None:
    c = _chunks(signed)[4]
    status, bad, msg = _verify(signed[: c.offset])
    assert (status, bad) == ("truncated", 4)
    assert "no trailer" in msg


def test_reordered_chunks(signed: bytes) -> None:
    cs = _chunks(signed)
    a, b = cs[2], cs[3]
    data = (
        signed[: a.offset] + signed[b.offset : b.end] + signed[a.offset : a.end] + signed[b.end :]
    )
    status, bad, msg = _verify(data)
    assert (status, bad) == ("damaged", 2), msg
    assert "found chunk 3" in msg


def test_dropped_chunk(signed: bytes) -> None:
    c = _chunks(signed)[3]
    status, bad, msg = _verify(signed[: c.offset] + signed[c.end :])
    assert (status, bad) == ("damaged", 3), msg
    assert "dropped" in msg
    rec = Recording.from_bytes(signed[: c.offset] + signed[c.end :])
    assert rec.status == "damaged"


def _rechain(data: bytes, victim: int, new_payload: bytes) -> bytes:
    """An attacker's forgery: change a chunk and recompute every digest after it."""
    cs = _chunks(data)
    out = bytearray(data[: cs[0].offset])
    prev = v1.CHAIN_SEED
    for c in cs:
        hdr = bytearray(data[c.offset : c.offset + v1.HEADER_LEN])
        payload = data[c.payload_offset : c.payload_offset + c.length]
        if c.seq == victim:
            payload = new_payload
            hdr[16:20] = len(payload).to_bytes(4, "little")
            hdr[40:44] = zlib.crc32(bytes(hdr[:40])).to_bytes(4, "little")
        digest = hashlib.sha256(prev + bytes(hdr) + payload).digest()
        out += hdr + payload + digest
        prev = digest
    return bytes(out)


def test_rechained_forgery_fails_the_signature(signed: bytes, key: Path) -> None:
    cs = _chunks(signed)
    forged = _rechain(signed, 0, ev.dumps({"session_id": "golden0001", "user": "mallory"}))
    status, bad, msg = _verify(forged, key)
    assert status == "bad-signature", msg
    assert bad == cs[-1].seq


def test_wrong_trusted_key(signed: bytes, tmp_path: Path) -> None:
    other = generate(tmp_path / "other.key")[0]
    status, _bad, msg = _verify(signed, other)
    assert status == "wrong-key", msg


def test_unsigned_passes_unless_required() -> None:
    data = build_recording(_batches(3))[0]
    assert _verify(data)[0] == "unsigned"
    r = verify_source(v1.BytesSource(data), require_signature=True)
    assert (r.status, r.ok) == ("unsigned", False)
    assert verify_source(v1.BytesSource(data)).ok


def test_stripped_signature_is_detected(signed: bytes) -> None:
    sig = _chunks(signed)[-1]
    assert sig.type == v1.SIGNATURE
    status, bad, msg = _verify(signed[: sig.offset])
    assert status == "missing-signature", msg
    assert bad == sig.seq


def test_signature_verifies_with_openssl(signed: bytes, key: Path, tmp_path: Path) -> None:
    """The documented openssl procedure accepts the signature."""
    import base64
    import json
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    sig = _chunks(signed)[-1]
    body = json.loads(signed[sig.payload_offset : sig.payload_offset + sig.length])
    (tmp_path / "msg").write_bytes(body["message"].encode())
    (tmp_path / "sig").write_bytes(base64.b64decode(body["signature"]))
    pub = key.with_name(key.name + ".pub")
    res = subprocess.run(
        [
            "openssl",
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            str(pub),
            "-rawin",
            "-in",
            str(tmp_path / "msg"),
            "-sigfile",
            str(tmp_path / "sig"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Signature Verified Successfully" in res.stdout
