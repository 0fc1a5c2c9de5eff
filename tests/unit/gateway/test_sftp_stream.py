"""SftpTap takes SFTP apart as it streams, whatever the split of the bytes.

File data (client WRITE, server DATA) is not gathered into packets: only headers and
small packets are. These tests build random SFTP conversations (uploads, downloads, out
of order reads, odd packets, refused and held requests), feed them cut at random points
(inside length fields, headers, handles and data), and check what a user of the tap sees:
the transfers reported (path, direction, size, sha256), the bytes forwarded to the target
and the replies, the same as when each packet arrives whole. The legacy scp tap
(``scp -O``) is cut the same way.
"""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import dataclass, field

import pytest
from test_sftp_gate import _status_ids

from gateway.ssh.transfers import MAX_PACKET, FileOp, Hold, SftpTap, Transfer

_OPEN, _CLOSE, _READ, _WRITE, _STAT, _REMOVE = 3, 4, 5, 6, 17, 13
_STATUS, _HANDLE, _DATA = 101, 102, 103


def _pkt(kind: int, req: int, body: bytes) -> bytes:
    payload = bytes([kind]) + struct.pack(">I", req) + body
    return struct.pack(">I", len(payload)) + payload


def _s(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


@dataclass
class Conversation:
    """Packets in causal order: (side, bytes) with side 0 = client, 1 = server."""

    steps: list[tuple[int, bytes]] = field(default_factory=list)
    transfers: list[Transfer] = field(default_factory=list)
    ops: list[FileOp] = field(default_factory=list)
    denied: set[int] = field(default_factory=set)  # request ids the gate refuses
    req: int = 0

    def next_req(self) -> int:
        self.req += 1
        return self.req

    def add(self, side: int, data: bytes) -> None:
        self.steps.append((side, data))

    def stream(self, side: int) -> bytes:
        return b"".join(d for s, d in self.steps if s == side)


def _file(c: Conversation, rng: random.Random, f: int) -> None:
    """One file opened, moved up or down in blocks (some out of order), and closed."""
    path = f"/srv/f{f}-{rng.randint(0, 99)}.bin".encode()
    upload = rng.random() < 0.5
    req = c.next_req()
    if rng.random() < 0.15:  # a refused open: no handle, nothing transferred
        c.denied.add(req)
        c.add(0, _pkt(_OPEN, req, _s(b"/denied" + path) + struct.pack(">II", 2, 0)))
        return
    c.add(0, _pkt(_OPEN, req, _s(path) + struct.pack(">II", 0x1A if upload else 1, 0)))
    handle = rng.randbytes(rng.choice([4, 4, 8, 16]))
    c.add(1, _pkt(_HANDLE, req, _s(handle)))
    size = rng.choice([0, 1, 5000, 32768, 70000, 200_000])
    content = rng.randbytes(size)
    block = rng.choice([1024, 32768, 65536])
    offsets = list(range(0, size, block))
    in_order = True
    if len(offsets) > 2 and rng.random() < 0.2:  # a client that seeks
        offsets[0], offsets[1] = offsets[1], offsets[0]
        in_order = False
    for off in offsets:
        piece = content[off:off + block]
        r = c.next_req()
        if upload:
            c.add(0, _pkt(_WRITE, r, _s(handle) + struct.pack(">Q", off) + _s(piece)))
            c.add(1, _pkt(_STATUS, r, struct.pack(">I", 0) + _s(b"") + _s(b"")))
        else:
            c.add(0, _pkt(_READ, r, _s(handle) + struct.pack(">QI", off, block)))
            c.add(1, _pkt(_DATA, r, _s(piece)))
        if rng.random() < 0.1:  # a stat in between (path-bearing: decided by the gate)
            c.add(0, _pkt(_STAT, c.next_req(), _s(b"/etc/hostname")))
    if not upload and size and rng.random() < 0.3:  # a read past the end: zero bytes
        r = c.next_req()
        c.add(0, _pkt(_READ, r, _s(handle) + struct.pack(">QI", size, block)))
        c.add(1, _pkt(_DATA, r, _s(b"")))
    if size and rng.random() < 0.1:  # an odd WRITE: its string is longer than the packet
        r = c.next_req()
        c.add(0, _pkt(_WRITE, r, _s(handle) + struct.pack(">QI", 0, 9) + b"x"))
        in_order = False
    c.add(0, _pkt(_CLOSE, c.next_req(), _s(handle)))
    if size:  # (an empty file moves no data: the tests compare transfers of data)
        digest = hashlib.sha256(content).hexdigest() if in_order else ""
        c.transfers.append(Transfer(path.decode(), "upload" if upload else "download",
                                    size, digest, "sftp"))


def _conversation(rng: random.Random) -> Conversation:
    c = Conversation()
    c.add(0, struct.pack(">IBI", 5, 1, 3))  # INIT v3
    for f in range(rng.randint(1, 5)):
        _file(c, rng, f)
    if rng.random() < 0.3:
        c.add(0, _pkt(_REMOVE, c.next_req(), _s(b"/srv/old")))
        c.ops.append(FileOp("remove", "/srv/old"))
    return c


def _cuts(rng: random.Random, data: bytes) -> list[bytes]:
    """``data`` in random pieces: 1 to 40,000 bytes, often tiny (inside headers)."""
    out, pos = [], 0
    while pos < len(data):
        n = rng.choice([1, 2, 3, 4, 5, 7, 13, 100, 4096, 32768, 40000, rng.randint(1, 70000)])
        out.append(data[pos:pos + n])
        pos += n
    return out


def _gate(op: str, path: str) -> str | Hold | None:
    return "bastille: denied" if path.startswith("/denied") else None


def _run(c: Conversation, rng: random.Random, gated: bool) -> tuple[
        list[Transfer], list[FileOp], bytes, bytes]:
    seen: list[Transfer] = []
    ops: list[FileOp] = []
    tap = SftpTap(seen.append, ops.append, _gate if gated else None)
    forward, replies = bytearray(), bytearray()
    # feed in causal order: a side's bytes are all in before the other side's next step
    # (a HANDLE after its OPEN, a DATA after its READ, a CLOSE after the data)
    run: list[bytes] = []
    side = c.steps[0][0]

    def flush(s: int) -> None:
        for piece in _cuts(rng, b"".join(run)):
            if s == 1:
                tap.from_server(piece)
            elif gated:
                f, r = tap.filter_client(piece)
                forward.extend(f)
                replies.extend(r)
            else:
                tap.from_client(piece)
        run.clear()

    for s, data in c.steps:
        if s != side:
            flush(side)
            side = s
        run.append(data)
    flush(side)
    tap.close()
    return seen, ops, bytes(forward), bytes(replies)


@pytest.mark.parametrize("gated", [False, True])
def test_random_conversations_cut_anywhere(gated: bool) -> None:
    for seed in range(150):
        rng = random.Random(seed * 2 + gated)
        c = _conversation(rng)
        seen, ops, forward, replies = _run(c, rng, gated)
        assert [t for t in seen if t.size] == c.transfers, seed
        assert ops == c.ops, seed
        if gated:
            # every client byte is forwarded but the refused requests, answered instead
            kept = b"".join(d for s, d in c.steps if s == 0 and not (
                d[4] == _OPEN and struct.unpack_from(">I", d, 5)[0] in c.denied))
            assert forward == kept, seed
            assert set(_status_ids(replies)) == c.denied, seed


def test_file_data_is_forwarded_without_a_copy() -> None:
    """A piece that holds only file data (or whole ungated packets) is forwarded as the
    same object: the bulk of an upload is not copied by the tap."""
    tap = SftpTap(lambda t: None, gate=_gate)
    handle = b"\x00\x00\x00\x01"
    tap.filter_client(struct.pack(">IBI", 5, 1, 3))
    tap.filter_client(_pkt(_OPEN, 1, _s(b"/srv/a") + struct.pack(">II", 0x1A, 0)))
    tap.from_server(_pkt(_HANDLE, 1, _s(handle)))
    write = _pkt(_WRITE, 2, _s(handle) + struct.pack(">Q", 0) + _s(bytes(65536)))
    pieces = [write[:3], write[3:40000], write[40000:]]
    forwarded = [tap.filter_client(p) for p in pieces]
    assert [r for _, r in forwarded] == [b"", b"", b""]
    assert forwarded[0][0] == b""  # three bytes: the packet's kind is not known yet
    assert forwarded[1][0] == pieces[0] + pieces[1]
    assert forwarded[2][0] is pieces[2]  # file data only: the same object
    whole = write + write
    f, _ = tap.filter_client(whole)
    assert f is whole


def test_a_split_length_field_still_forwards_every_byte() -> None:
    tap = SftpTap(lambda t: None, gate=_gate)
    stat = _pkt(_STAT, 1, _s(b"/etc/hostname"))
    write = _pkt(_WRITE, 2, _s(b"h") + struct.pack(">Q", 0) + _s(b"abc"))
    data = stat + write
    out = bytearray()
    for i in range(len(data)):
        f, _ = tap.filter_client(data[i:i + 1])
        out += f
    assert out == data


def test_an_oversized_length_fails_closed() -> None:
    tap = SftpTap(lambda t: None, gate=_gate)
    with pytest.raises(ValueError):
        tap.filter_client(struct.pack(">IB", MAX_PACKET + 1, _WRITE) + b"x" * 100)
    passive = SftpTap(lambda t: None)
    passive.from_server(struct.pack(">IB", MAX_PACKET + 1, _DATA))
    assert passive.broken


def test_held_request_keeps_the_upload_behind_it() -> None:
    """A held open queues the file data that follows, uncopied into the target."""
    def hold(op: str, path: str) -> str | Hold | None:
        return Hold(op, path) if path == "/held" else None

    tap = SftpTap(lambda t: None, gate=hold)
    op = _pkt(_OPEN, 1, _s(b"/held") + struct.pack(">II", 0x1A, 0))
    write = _pkt(_WRITE, 2, _s(b"h") + struct.pack(">Q", 0) + _s(b"z" * 50000))
    f, r = tap.filter_client(op[:10])
    assert f == b"" and r == b"" and tap.held is None
    f, r = tap.filter_client(op[10:] + write[:20000])
    assert f == b"" and tap.held == Hold("put", "/held")
    assert tap.filter_client(write[20000:]) == (b"", b"")
    f, r = tap.release(None)
    assert f == op + write and r == b"" and tap.held is None


def _legacy_stream(rng: random.Random) -> tuple[bytes, list[tuple[str, int, str]]]:
    """An ``scp -r -t /srv/in`` upload: directories, files (some empty), acks."""
    out, want, dirs = bytearray(), [], []
    for i in range(rng.randint(1, 6)):
        if rng.random() < 0.3:
            d = f"d{i}"
            dirs.append(d)
            out += f"D0755 0 {d}\n".encode()
        content = rng.randbytes(rng.choice([0, 1, 10, 5000, 70000]))
        name = f"f{i} with space.bin"
        out += f"C0644 {len(content)} {name}\n".encode() + content + b"\0"
        # (the tap's naming: into a directory sent with -r, else the target itself)
        path = "/".join(["/srv/in", *dirs, name]) if dirs else "/srv/in"
        want.append((path, len(content), hashlib.sha256(content).hexdigest()))
        if dirs and rng.random() < 0.5:
            dirs.pop()
            out += b"E\n"
    return bytes(out), want


def test_legacy_scp_cut_anywhere() -> None:
    from gateway.ssh.transfers import ScpTap

    for seed in range(200):
        rng = random.Random(seed)
        stream, want = _legacy_stream(rng)
        seen: list[Transfer] = []
        tap = ScpTap("scp -r -t /srv/in", seen.append)
        for piece in _cuts(rng, stream):
            tap.feed(piece)
        assert [(t.path, t.size, t.sha256) for t in seen] == want, seed
        assert all(t.direction == "upload" and t.protocol == "scp" for t in seen)


def test_legacy_scp_overlong_header_is_bounded() -> None:
    """A header line with no newline for megabytes is not gathered past 4 KiB."""
    from gateway.ssh.transfers import ScpTap

    tap = ScpTap("scp -t /srv/x", lambda t: None)
    for _ in range(100):
        tap.feed(b"C" * 100_000)
    assert len(tap._line) <= 4096
