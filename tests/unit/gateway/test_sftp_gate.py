"""SftpTap's gate: refused requests get a status reply, held ones stop the stream in order."""

from __future__ import annotations

import struct

from gateway.ssh.transfers import Hold, SftpTap

_OPEN, _STAT, _STATUS = 3, 17, 101


def _packet(kind: int, req_id: int, *fields: bytes) -> bytes:
    body = bytes([kind]) + struct.pack(">I", req_id)
    for f in fields:
        body += f
    return struct.pack(">I", len(body)) + body


def _s(text: str) -> bytes:
    return struct.pack(">I", len(text)) + text.encode()


def _open(req_id: int, path: str, write: bool) -> bytes:
    return _packet(_OPEN, req_id, _s(path), struct.pack(">I", 0x2 | 0x8 if write else 0x1),
                   struct.pack(">I", 0))


def _stat(req_id: int, path: str) -> bytes:
    return _packet(_STAT, req_id, _s(path))


def _gate(op: str, path: str) -> str | Hold | None:
    if path.startswith("/held"):
        return Hold(op, path)
    if path.startswith("/denied"):
        return "denied by policy: test"
    return None


def _status_ids(replies: bytes) -> list[int]:
    ids = []
    while replies:
        (n,) = struct.unpack_from(">I", replies)
        assert replies[4] == _STATUS
        ids.append(struct.unpack_from(">I", replies, 5)[0])
        replies = replies[4 + n:]
    return ids


def test_refused_request_answered_allowed_forwarded() -> None:
    tap = SftpTap(lambda t: None, gate=_gate)
    a, b = _stat(1, "/denied/x"), _stat(2, "/etc/os-release")
    forward, replies = tap.filter_client(a + b[:7])
    assert forward == b"" and _status_ids(replies) == [1]
    forward, replies = tap.filter_client(b[7:])
    assert forward == b and replies == b""


def test_held_request_stops_the_stream_until_released() -> None:
    tap = SftpTap(lambda t: None, gate=_gate)
    before, held, after = _stat(1, "/etc"), _open(2, "/held/f", True), _stat(3, "/tmp")
    forward, replies = tap.filter_client(before + held + after)
    assert forward == before and replies == b""
    assert tap.held == Hold("put", "/held/f")
    more = _stat(4, "/var")
    assert tap.filter_client(more) == (b"", b"")  # queued behind the held request
    forward, replies = tap.release(None)
    assert forward == held + after + more and replies == b""
    assert tap.held is None


def test_refused_after_hold_gets_status_and_stream_goes_on() -> None:
    tap = SftpTap(lambda t: None, gate=_gate)
    held, after, second = _open(7, "/held/a", False), _stat(8, "/tmp"), _stat(9, "/held/b")
    tap.filter_client(held + after + second)
    assert tap.held == Hold("get", "/held/a")
    forward, replies = tap.release("bastille: request #3 denied")
    assert _status_ids(replies) == [7]
    assert b"request #3 denied" in replies
    assert forward == after
    assert tap.held == Hold("stat", "/held/b")  # the next held request waits in turn
