"""A recording a crash left without a trailer is finished by a signed recovery trailer:
`verify` then says "recovered" (passes), distinct from "truncated" (cut, never
recovered) and from tampering (a cut or altered recovered recording fails)."""

from __future__ import annotations

from pathlib import Path

import pytest
from recorder_helpers import build_recording, make_header

from recorder import events as ev
from recorder.format import v1
from recorder.reader import Recording
from recorder.signing import generate, load_public_key, load_signer
from recorder.verify import verify_source

BATCHES = [[(0.5 * i, ev.OUTPUT, f"line {i}\r\n".encode())] for i in range(1, 40)]


@pytest.fixture
def key(tmp_path: Path) -> Path:
    k = tmp_path / "rec.key"
    generate(k)
    return k


def _crashed(key: Path, torn: int = 0) -> bytes:
    raw, _ = build_recording(BATCHES, header=make_header("crash-0001"), close=False,
                             signer=load_signer(key))
    return raw + b"\x89BCK\x44partial-write"[:torn] if torn else raw


def _recover(raw: bytes, key: Path) -> bytes:
    signer = load_signer(key)
    tail = v1.recovery_tail(v1.BytesSource(raw), recovered_at=1_800_000_000.0,
                            sign=signer.sign, public_key=signer.public_raw,
                            key_id=signer.key_id)
    assert tail is not None
    return raw[:tail.cut] + tail.data


@pytest.mark.parametrize("torn", [0, 7])
def test_recovered_recording_verifies_as_recovered(key: Path, torn: int) -> None:
    raw = _crashed(key, torn)
    before = verify_source(v1.BytesSource(raw), trusted=[load_public_key(key)])
    assert before.status == "truncated" and not before.ok
    fixed = _recover(raw, key)
    rep = verify_source(v1.BytesSource(fixed), trusted=[load_public_key(key)],
                        require_signature=True)
    assert (rep.status, rep.ok) == ("recovered", True), rep.message
    assert rep.recovered is not None and rep.recovered["last_time_us"] == 19_500_000
    rec = Recording.from_bytes(fixed)
    assert rec.status == "recovered"
    out = b"".join(e.data for e in rec.events() if e.type == ev.OUTPUT)
    assert out.endswith(b"line 39\r\n") and not rec.problems


def test_recovery_is_idempotent_and_leaves_finished_alone(key: Path) -> None:
    fixed = _recover(_crashed(key), key)
    assert v1.recovery_tail(v1.BytesSource(fixed), recovered_at=0.0) is None
    done, _ = build_recording(BATCHES, header=make_header("done-0001"), signer=load_signer(key))
    assert v1.recovery_tail(v1.BytesSource(done), recovered_at=0.0) is None


def test_tampering_with_a_recovered_recording_is_detected(key: Path) -> None:
    fixed = _recover(_crashed(key), key)
    chunks = v1.scan(v1.BytesSource(fixed)).chunks
    cut = fixed[:chunks[-3].end]  # the recovery trailer and signature removed
    assert verify_source(v1.BytesSource(cut)).status == "truncated"
    flipped = bytearray(fixed)
    flipped[chunks[5].payload_offset] ^= 1
    rep = verify_source(v1.BytesSource(bytes(flipped)))
    assert not rep.ok and rep.first_bad_chunk == 5


def test_damaged_recording_is_left_as_found(key: Path) -> None:
    raw = bytearray(_crashed(key))
    raw[v1.scan(v1.BytesSource(bytes(raw))).chunks[3].payload_offset] ^= 1
    assert v1.recovery_tail(v1.BytesSource(bytes(raw)), recovered_at=0.0) is None
