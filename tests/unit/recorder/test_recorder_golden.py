"""Golden files for recording format v1.

``tests/golden/recorder/v1-basic.bstl`` was written by this writer; the reader must keep
decoding it, and the writer must reproduce it byte for byte (fixed clock, session id and
a test-only signing key committed beside it). Regenerate only for an intended format
change (and bump the version): ``BASTILLE_UPDATE_GOLDEN=1 python -m pytest <this file>``.
The bytes also depend on the zstd library producing the same output for the same input.
"""

from __future__ import annotations

import os
from pathlib import Path

from recorder_helpers import START, build_recording

from recorder import events as ev
from recorder.format import v1
from recorder.reader import Recording
from recorder.signing import load_signer
from recorder.verify import verify_source

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "recorder"
KEY = GOLDEN / "test-signing.key"

BATCHES = [
    [
        (0.0, ev.OUTPUT, b"\x1b[1;32malice@web1\x1b[0m:~$ "),
        (0.5, ev.INPUT, b"l"),
        (0.6, ev.INPUT, b"s\r"),
        (0.61, ev.COMMAND, ev.dumps({"text": "ls", "source": "interactive"})),
        (
            0.62,
            ev.POLICY,
            ev.dumps({"command": "ls", "action": "allow", "rule": "r1", "reason": "ok"}),
        ),
    ],
    [
        (0.7, ev.OUTPUT, "caf\u00e9.txt  notes\n".encode()),
        (0.8, ev.STDERR, b"bad utf-8: \xff\xfe\xc3\n"),
        (1.0, ev.RESIZE, (100).to_bytes(2, "little") + (30).to_bytes(2, "little")),
        (1.5, ev.MARKER, ev.dumps({"text": "checkpoint"})),
    ],
    [
        (
            2.0,
            ev.FILE_TRANSFER,
            ev.dumps(
                {
                    "path": "/tmp/x",
                    "direction": "upload",
                    "size": 3,
                    "sha256": "ab" * 32,
                    "protocol": "sftp",
                }
            ),
        ),
        (2.5, ev.GENERIC, ev.dumps({"kind": "rdp.key", "fields": {"code": 13}})),
        (3.0, ev.OUTPUT, b"\x00\x01\x02 binary " * 50),
    ],
]


def _write() -> bytes:
    data, _name = build_recording(BATCHES, signer=load_signer(KEY))
    return data


def test_writer_reproduces_golden_bytes() -> None:
    data = _write()
    path = GOLDEN / "v1-basic.bstl"
    if os.environ.get("BASTILLE_UPDATE_GOLDEN") == "1":
        path.write_bytes(data)
    assert data == path.read_bytes()


def test_reader_decodes_golden_file() -> None:
    rec = Recording.from_bytes((GOLDEN / "v1-basic.bstl").read_bytes())
    assert rec.status == "ended"
    assert rec.problems == []
    assert rec.header["session_id"] == "golden0001"
    assert rec.header["user"] == "alice"
    assert rec.header["start_time"] == START
    assert rec.header["format"] == "1.0"
    got = [(round(e.time, 6), e.type, e.data) for e in rec.events()]
    want = [(t, typ, data) for batch in BATCHES for t, typ, data in batch]
    assert got[: len(want)] == want
    assert got[-1][1] == ev.EXIT
    assert rec.events().__next__().fields() == {}
    assert [c.type for c in rec.chunks] == [
        v1.HEADER,
        v1.DATA,
        v1.DATA,
        v1.DATA,
        v1.DATA,
        v1.TRAILER,
        v1.SIGNATURE,
    ]
    assert rec.trailer is not None and rec.trailer["exit_status"] == 0
    report = verify_source(v1.BytesSource((GOLDEN / "v1-basic.bstl").read_bytes()))
    assert report.status == "ok", report.message


def test_golden_file_starts_with_versioned_magic() -> None:
    data = (GOLDEN / "v1-basic.bstl").read_bytes()
    assert data[:8] == b"BSTREC\x01\x00"
