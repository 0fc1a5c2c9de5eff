"""Recording format v1: chunk framing, hash chain, zstd parts, events.

Byte layout (all integers little-endian; full description in ``docs/recording-format.md``)::

    file    := FILE_MAGIC(6) major(1) minor(1) chunk*
    chunk   := header(44) payload(length) digest(32)
    header  := CHUNK_MAGIC(4) type(1) flags(1) reserved(2) seq(u32) part(u32)
               length(u32) raw_len(u32) t_first_us(u64) t_last_us(u64) hcrc(u32)
    digest  := sha256(prev_digest || header || payload)   (prev of chunk 0: CHAIN_SEED)
    event   := type(u8) t_us(u64) length(u32) payload      (inside decompressed data)

Chunk 0 is the header chunk (JSON), then data chunks (zstd), then at close a trailer
(JSON) and optionally a signature chunk (JSON). The payloads of the data chunks of one
part, concatenated, form one zstd frame; each data chunk ends with a zstd block flush so
it is decodable as soon as it is written.

Known limits: a damaged data chunk makes the rest of its part (<= ``PART_RAW_BYTES`` of
events) unreadable, the reader resumes at the next part. Payloads and decoded chunk
sizes above ``MAX_PAYLOAD``/``MAX_RAW`` are rejected as malformed (bounded memory).
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import zstandard

from common import sha256, shared_sha256
from recorder import events as ev
from recorder.errors import FormatError

FILE_MAGIC = b"BSTREC"
VERSION_MAJOR = 1
VERSION_MINOR = 0
FILE_HEADER = FILE_MAGIC + bytes([VERSION_MAJOR, VERSION_MINOR])

CHUNK_MAGIC = b"\x89BCK"
_HDR_BODY = struct.Struct("<4sBBHIIIIQQ")  # 40 bytes, followed by crc32 of these 40 bytes
_CRC = struct.Struct("<I")
HEADER_LEN = _HDR_BODY.size + _CRC.size  # 44
DIGEST_LEN = 32
CHAIN_SEED = hashlib.sha256(b"bastille recording v1").digest()

EVENT_HDR = struct.Struct("<BQI")  # 13 bytes: type, time (us since start), length

HEADER = 0x48  # "H" JSON session header (chunk 0)
DATA = 0x44  # "D" zstd-compressed events
TRAILER = 0x54  # "T" JSON summary written at close
SIGNATURE = 0x53  # "S" JSON Ed25519 signature over the chain head (the trailer's digest)
CHUNK_NAMES = {HEADER: "header", DATA: "data", TRAILER: "trailer", SIGNATURE: "signature"}

FRAME_START = 0x01  # this data chunk starts a new zstd frame (a new part)
FRAME_END = 0x02  # this data chunk ends its zstd frame

MAX_PAYLOAD = 16 * 1024 * 1024  # largest chunk payload a reader accepts
MAX_RAW = 16 * 1024 * 1024  # largest decoded size of one data chunk a reader accepts
MAX_EVENT = 1024 * 1024  # writers split output into events of at most this size
PART_RAW_BYTES = 2 * 1024 * 1024  # writers start a new zstd frame after this much data
MAX_WINDOW = 1 << 23  # largest zstd window a reader accepts (8 MiB)
SIGNED_PREFIX = "bastille-recording-v1"


def signed_message(session_id: str, trailer_seq: int, head: bytes) -> bytes:
    """The exact bytes an Ed25519 signature covers (ASCII, one line, no newline)."""
    return f"{SIGNED_PREFIX} {session_id} {trailer_seq} {head.hex()}".encode()


# --------------------------------------------------------------------------- encoding


# Raw-block frames (incompressible data, see ``Encoder``): the zstd frame format's own
# stored blocks (RFC 8878 3.1.1): magic, a descriptor with no content size, checksum or
# dictionary, a 128 KiB window; blocks of at most 128 KiB, each with a 3-byte header.
STORE_RATIO = 0.97  # a chunk compressed to at least this share of its size is not worth it
STORE_MIN = 16 * 1024  # chunks below this never start a stored part (interactive output)
DECIDE_MIN = 512  # chunks below this say nothing of the data's kind (an event or two)
SAMPLE = 4 * 1024  # bytes of a chunk compressed to see whether compressing it pays
RAW_BLOCK_MAX = 128 * 1024
RAW_FRAME_HEADER = b"\x28\xb5\x2f\xfd\x00\x38"  # magic, FHD 0, window 2**17


Piece = bytes | bytearray | memoryview  # what a chunk's payload is joined from


def _raw_blocks(parts: Sequence[Piece], n: int, *, start: bool, last: bool) -> list[Piece]:
    """``parts`` (``n`` bytes in all) as zstd raw blocks (with the frame header first
    when ``start``); the last block carries the frame's Last_Block flag when ``last``
    (an empty one if no data). The blocks are views of ``parts``: nothing is copied."""
    out: list[Piece] = [RAW_FRAME_HEADER] if start else []
    if n == 0:
        if last:
            out.append(b"\x01\x00\x00")  # an empty raw block that ends the frame
        return out
    pos = 0  # bytes of the data in blocks so far
    block_left = 0  # bytes the current block still takes
    for part in parts:
        view = memoryview(part)
        at, size = 0, len(view)
        while at < size:
            if not block_left:
                block_left = min(RAW_BLOCK_MAX, n - pos)
                flag = 1 if last and pos + block_left == n else 0
                out.append((flag | (block_left << 3)).to_bytes(3, "little"))
            take = min(block_left, size - at)
            out.append(part if take == size else view[at : at + take])
            at += take
            pos += take
            block_left -= take
    return out


def encode_event(etype: int, t_us: int, payload: bytes) -> bytes:
    """Frame one event (inside the decompressed stream)."""
    return EVENT_HDR.pack(etype, t_us, len(payload)) + payload


class Encoder:
    """Pure, deterministic producer of v1 bytes for one recording (no I/O, no threads).

    Args:
        header: JSON-serialisable session header (written as chunk 0).
        level: zstd level.
        window_log: zstd window log (17 = 128 KiB window, ~1.3 MiB of compressor memory).
        part_raw_bytes: start a new zstd frame after this much decoded data.

    Incompressible data (random bytes, compressed archives, encrypted files) is stored
    in zstd *raw blocks* instead of being run through the compressor, which on such data
    spends ~2 ms/MiB to save nothing. Each chunk of at least :data:`DECIDE_MIN` bytes is
    judged by a sample (:data:`SAMPLE` bytes, zstd level 1): a part starts as a raw-block
    frame when its first chunk (of at least :data:`STORE_MIN` bytes) looks
    incompressible; a stored part ends after a chunk that looks compressible; a
    compressed part that meets an incompressible chunk is ended by an empty chunk and
    the chunk starts a stored part. Smaller chunks (a lone event between bulk data) keep
    the part's kind. Any zstd decoder reads them; nothing in the format changes. At most
    one chunk of compressible data is stored uncompressed when the data changes kind.
    """

    def __init__(
        self,
        header: dict[str, Any],
        *,
        level: int = 3,
        window_log: int = 17,
        part_raw_bytes: int = PART_RAW_BYTES,
    ) -> None:
        self.header = header
        params = zstandard.ZstdCompressionParameters.from_level(level, window_log=window_log)
        self._cctx = zstandard.ZstdCompressor(compression_params=params)
        self._cobj: Any = None
        self._stored = False  # the open part is a raw-block frame
        self._sampler = zstandard.ZstdCompressor(level=1)
        self._part_raw_bytes = part_raw_bytes
        self._part_raw = 0
        self.seq = 0
        self.part = -1
        self.offset = 0
        self.head = CHAIN_SEED
        self.parts: list[list[int]] = []  # [first data seq, byte offset, t_first_us]
        # A hash whose deferred data is hashed together with each chunk's (the writer's
        # output digest: two streams at once, see common/sha256.py); None: alone. An
        # open transfer's file hash waiting for a partner goes first (shared_sha256).
        self.hash_partner: sha256.Hash | None = None

    def _chunk(self, ctype: int, payload: bytes) -> bytes:
        """One chunk (header, trailer, signature) as bytes."""
        return b"".join(self._chunk_parts(ctype, (payload,)))

    def _chunk_parts(
        self,
        ctype: int,
        pieces: Sequence[Piece],
        *,
        flags: int = 0,
        part: int = 0,
        raw_len: int = 0,
        t_first: int = 0,
        t_last: int = 0,
    ) -> list[Piece]:
        """One chunk whose payload is ``pieces`` in order, as its pieces (header, the
        payload's pieces, digest): the sink writes them with one call, and a data
        chunk's bytes are not copied on their way there."""
        size = sum(map(len, pieces))
        body = _HDR_BODY.pack(
            CHUNK_MAGIC, ctype, flags, 0, self.seq, part, size, raw_len, t_first, t_last
        )
        hdr = body + _CRC.pack(zlib.crc32(body))
        h = sha256.new(self.head)
        h.update(hdr)
        for piece in pieces:
            h.defer(piece)
        # with an open file's hash if one waits (gateway transfers), else the partner
        shared_sha256.settle_chunk(h, self.hash_partner)
        digest = h.digest()
        self.head = digest
        self.seq += 1
        self.offset += len(hdr) + size + len(digest)
        return [hdr, *pieces, digest]

    def begin(self) -> bytes:
        """File header plus the header chunk."""
        self.offset = len(FILE_HEADER)
        return FILE_HEADER + self._chunk(HEADER, ev.dumps(self.header))

    def data(self, raw: bytes | bytearray, t_first: int, t_last: int, *,
             final: bool = False) -> bytes:
        """One data chunk holding ``raw`` (whole encoded events), as bytes (see
        :meth:`data_parts`)."""
        return b"".join(self.data_parts((raw,) if raw else (), t_first, t_last, final=final))

    def data_parts(self, parts: Sequence[Piece], t_first: int, t_last: int, *,
                   final: bool = False) -> list[Piece]:
        """One data chunk holding ``parts`` joined (whole encoded events), as pieces to
        write in order; ends the part if due.

        Where the data is incompressible and a compressed part is open, two chunks: an
        empty one that ends the compressed frame, then the data starting a stored part.
        """
        n = sum(map(len, parts))
        kind = None if final else self._kind(parts, n)
        if kind and not self._stored and self._cobj is not None and n >= STORE_MIN:
            closing = self.data_parts((), t_first, t_first, final=True)  # ends the frame
            return closing + self.data_parts(parts, t_first, t_last)
        flags = 0
        start = not self.frame_open
        if start:
            self._stored = bool(kind) and n >= STORE_MIN
            if not self._stored:
                self._cobj = self._cctx.compressobj()
            self.part += 1
            self._part_raw = 0
            flags |= FRAME_START
            self.parts.append([self.seq, self.offset, t_first])
        self._part_raw += n
        end = final or self._part_raw >= self._part_raw_bytes
        if self._stored:
            if kind is False:
                end = True  # the data changed kind: the next part decides afresh
            blocks = _raw_blocks(parts, n, start=start, last=end)
            if end:
                self._stored = False
            return self._data_chunk(blocks, flags | (FRAME_END if end else 0), n, t_first,
                                    t_last)
        raw = parts[0] if len(parts) == 1 else b"".join(parts)
        payload = self._cobj.compress(raw) if n else b""
        if end:
            tail = self._cobj.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)
            self._cobj = None
            return self._data_chunk((payload, tail), flags | FRAME_END, n, t_first, t_last)
        tail = self._cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        return self._data_chunk((payload, tail), flags, n, t_first, t_last)

    def _kind(self, parts: Sequence[Piece], n: int) -> bool | None:
        """Whether the data looks incompressible: a sample of it (its middle
        :data:`SAMPLE` bytes, or all of a shorter chunk) does not shrink below
        :data:`STORE_RATIO` at zstd level 1 (a few microseconds). None for chunks too
        small to tell."""
        if n < DECIDE_MIN:
            return None
        mid = max(0, n // 2 - SAMPLE // 2)
        sample: list[Piece] = []
        want = min(SAMPLE, n)
        for part in parts:
            size = len(part)
            if mid >= size:
                mid -= size
                continue
            piece = memoryview(part)[mid : mid + want]
            sample.append(piece)
            want -= len(piece)
            mid = 0
            if not want:
                break
        data = sample[0] if len(sample) == 1 else b"".join(sample)
        return len(self._sampler.compress(data)) >= STORE_RATIO * len(data)

    def _data_chunk(self, pieces: Sequence[Piece], flags: int, raw_len: int,
                    t_first: int, t_last: int) -> list[Piece]:
        return self._chunk_parts(DATA, pieces, flags=flags, part=self.part,
                                 raw_len=raw_len, t_first=t_first, t_last=t_last)

    @property
    def frame_open(self) -> bool:
        return self._cobj is not None or self._stored

    def trailer(self, info: dict[str, Any]) -> bytes:
        """The trailer chunk (closes an open frame first with an empty final data chunk)."""
        out = b""
        if self.frame_open:
            out = self.data(b"", 0, 0, final=True)
        body = dict(info)
        body["parts"] = self.parts
        return out + self._chunk(TRAILER, ev.dumps(body))

    @classmethod
    def resume(cls, header: dict[str, Any], chunks: list[Chunk]) -> Encoder:
        """An encoder that continues the hash chain after ``chunks`` (verified, in order),
        to append a trailer to a recording left unfinished. No frame is open: a frame
        the crashed writer left unterminated stays so (readers decode its flushed
        blocks)."""
        enc = cls(header)
        last = chunks[-1]
        enc.seq = last.seq + 1
        enc.head = last.digest
        enc.offset = last.end
        enc.part = max((c.part for c in chunks if c.type == DATA), default=-1)
        enc.parts = [[c.seq, c.offset, c.t_first] for c in chunks
                     if c.type == DATA and c.flags & FRAME_START]
        return enc

    def recovery_trailer(self, info: dict[str, Any]) -> bytes:
        """A trailer saying the recording was finished by crash recovery (``recovered``
        is set; readers and ``verify`` report the recording as recovered)."""
        body = {**info, "recovered": True, "parts": self.parts}
        return self._chunk(TRAILER, ev.dumps(body))

    def signature(self, sign: Callable[[bytes], bytes], public_key: bytes, key_id: str) -> bytes:
        """Signature chunk over the current chain head (call right after ``trailer``)."""
        import base64

        trailer_seq = self.seq - 1
        message = signed_message(str(self.header.get("session_id", "")), trailer_seq, self.head)
        body = {
            "alg": "Ed25519",
            "key_id": key_id,
            "public_key": base64.b64encode(public_key).decode(),
            "message": message.decode(),
            "signature": base64.b64encode(sign(message)).decode(),
        }
        return self._chunk(SIGNATURE, ev.dumps(body))


# --------------------------------------------------------------------------- reading


class ByteSource(Protocol):
    """Random-access bytes of one stored recording."""

    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes: ...


class BytesSource:
    """A recording held in memory."""

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)

    def size(self) -> int:
        return len(self._data)

    def read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]


@dataclass(frozen=True, slots=True)
class Chunk:
    """A chunk whose header CRC and digest were checked."""

    seq: int
    type: int
    flags: int
    part: int
    offset: int
    length: int
    raw_len: int
    t_first: int
    t_last: int
    digest: bytes

    @property
    def payload_offset(self) -> int:
        return self.offset + HEADER_LEN

    @property
    def end(self) -> int:
        return self.offset + HEADER_LEN + self.length + DIGEST_LEN


@dataclass(frozen=True, slots=True)
class Problem:
    """The first thing wrong with a recording's chunk sequence."""

    chunk: int  # the chunk number expected at that position
    offset: int
    kind: str  # "truncated" | "corrupt" | "hash" | "missing" | "trailing" | "version"
    message: str


@dataclass
class ScanResult:
    """Outcome of scanning a recording from the start."""

    chunks: list[Chunk] = field(default_factory=list)  # verified chunks, in order
    problem: Problem | None = None  # first problem (None: intact up to its end)
    resumed: list[Chunk] = field(default_factory=list)  # chunks found after a damaged region
    minor: int = 0

    @property
    def finished(self) -> bool:
        return any(c.type == TRAILER for c in self.chunks)


def _parse_header(hdr: bytes) -> tuple[int, ...] | None:
    if len(hdr) < HEADER_LEN or hdr[:4] != CHUNK_MAGIC:
        return None
    body = hdr[: _HDR_BODY.size]
    (crc,) = _CRC.unpack_from(hdr, _HDR_BODY.size)
    if zlib.crc32(body) != crc:
        return None
    return _HDR_BODY.unpack(body)[1:]


def _check_chunk(src: ByteSource, offset: int, prev: bytes, size: int,
                 chain: bool = True) -> Chunk | str:
    """Chunk at ``offset`` or a reason string ("truncated:..." / "corrupt:..." / "hash").
    ``chain`` False: the payload is neither read nor hashed (the stored digest is taken
    as it is; see :func:`scan`)."""
    hdr = src.read(offset, HEADER_LEN)
    if len(hdr) < HEADER_LEN:
        return "truncated:recording ends inside a chunk header"
    fields = _parse_header(hdr)
    if fields is None:
        return "corrupt:bad chunk header (magic or checksum)"
    ctype, flags, _res, seq, part, length, raw_len, t_first, t_last = fields
    if length > MAX_PAYLOAD or raw_len > MAX_RAW:
        return f"corrupt:chunk sizes over the limit ({length}/{raw_len} bytes)"
    end = offset + HEADER_LEN + length + DIGEST_LEN
    if end > size:
        return f"truncated:recording ends inside chunk {seq} (needs {end - size} more bytes)"
    digest = src.read(offset + HEADER_LEN + length, DIGEST_LEN)
    if not chain:
        if len(digest) != DIGEST_LEN:
            return "truncated:short read"
        return Chunk(seq, ctype, flags, part, offset, length, raw_len, t_first, t_last, digest)
    payload = src.read(offset + HEADER_LEN, length)
    if len(payload) != length or len(digest) != DIGEST_LEN:
        return "truncated:short read"
    h = hashlib.sha256(prev)
    h.update(hdr)
    h.update(payload)  # not prev + hdr + payload: a copy of every payload
    if h.digest() != digest:
        return f"hash:{seq}"
    return Chunk(seq, ctype, flags, part, offset, length, raw_len, t_first, t_last, digest)


def scan(src: ByteSource, *, resync: bool = True, chain: bool = True) -> ScanResult:
    """Walk the chunk sequence, verifying every header checksum and chain digest.

    Args:
        src: the recording bytes.
        resync: after damage, search forward for the next intact chunk (for readers that
            want to show what survived); verification only needs the first problem.
        chain: False: check the headers (magic, checksum, sizes, order) but not the
            chain digests, so payloads are not hashed here (the index pass of a
            recording its own writer has just closed; verify, the player and reindex
            always check the chain).

    Raises:
        FormatError: not a v1 recording (bad magic or unsupported major version).
    """
    size = src.size()
    head = src.read(0, len(FILE_HEADER))
    if len(head) < len(FILE_HEADER) or head[:6] != FILE_MAGIC:
        raise FormatError("not a bastille recording (bad file magic)")
    if head[6] != VERSION_MAJOR:
        raise FormatError(f"unsupported recording format version {head[6]}.{head[7]}")
    result = ScanResult(minor=head[7])
    offset = len(FILE_HEADER)
    prev = CHAIN_SEED
    expected = 0
    while offset < size:
        got = _check_chunk(src, offset, prev, size, chain)
        if isinstance(got, Chunk) and got.seq == expected:
            result.chunks.append(got)
            prev = got.digest
            offset = got.end
            expected += 1
            if got.type == SIGNATURE and offset < size:
                result.problem = Problem(
                    expected, offset, "trailing", f"unexpected data after the signature at {offset}"
                )
                break
            continue
        result.problem = _problem(src, offset, prev, size, expected, got)
        break
    if result.problem is not None and resync and result.problem.kind != "trailing":
        result.resumed = _resync(src, result.problem.offset + 1, size)
    return result


def _problem(
    src: ByteSource, offset: int, prev: bytes, size: int, expected: int, got: Chunk | str
) -> Problem:
    if isinstance(got, Chunk):
        kind = "missing" if got.seq > expected else "reordered"
        return Problem(
            expected,
            offset,
            "missing",
            f"chunk {expected} at offset {offset}: found chunk {got.seq} instead "
            f"({kind}: a chunk was dropped or chunks were reordered)",
        )
    reason, _, detail = got.partition(":")
    if reason == "hash":
        seq = int(detail)
        if seq != expected:
            return Problem(
                expected,
                offset,
                "missing",
                f"chunk {expected} at offset {offset}: found chunk {seq} instead "
                "(a chunk was dropped or chunks were reordered)",
            )
        return Problem(
            expected,
            offset,
            "hash",
            f"chunk {expected} at offset {offset}: digest mismatch "
            "(its bytes or the chain before it were altered)",
        )
    if reason == "truncated":
        msg = f"chunk {expected} at offset {offset}: {detail}"
        return Problem(expected, offset, "truncated", msg)
    return Problem(expected, offset, "corrupt", f"chunk {expected} at offset {offset}: {detail}")


def _resync(src: ByteSource, start: int, size: int, window: int = 1 << 20) -> list[Chunk]:
    """Find intact chunks after a damaged region (each checked against the 32 bytes before it)."""
    found: list[Chunk] = []
    pos = start
    while pos < size:
        buf = src.read(pos, window + len(CHUNK_MAGIC))
        if not buf:
            break
        idx = buf.find(CHUNK_MAGIC)
        if idx < 0:
            pos += max(1, len(buf) - len(CHUNK_MAGIC) + 1)
            continue
        cand = pos + idx
        if cand >= DIGEST_LEN + len(FILE_HEADER):
            prev = src.read(cand - DIGEST_LEN, DIGEST_LEN)
            got = _check_chunk(src, cand, prev, size)
            if isinstance(got, Chunk):
                found.append(got)
                offset = got.end
                while offset < size:
                    nxt = _check_chunk(src, offset, got.digest, size)
                    if not isinstance(nxt, Chunk) or nxt.seq != got.seq + 1:
                        break
                    found.append(nxt)
                    got = nxt
                    offset = nxt.end
                pos = offset
                if offset >= size:
                    break
                continue
        pos = cand + 1
    return found


@dataclass(frozen=True)
class RecoveryTail:
    """How to finish a recording a crash left without a trailer: cut it at ``cut`` (the
    end of its last intact chunk; a torn last write is dropped) and append ``data``."""

    cut: int
    data: bytes
    last_chunk: int
    last_time_us: int


def recovery_tail(
    src: ByteSource,
    *,
    recovered_at: float,
    sign: Callable[[bytes], bytes] | None = None,
    public_key: bytes = b"",
    key_id: str = "",
) -> RecoveryTail | None:
    """The bytes that finish a crashed recording: a recovery trailer that continues its
    hash chain, and a signature over it when a key is given.

    Returns None when there is nothing to do: the recording already has a trailer, has
    no intact header chunk, or is damaged before its end (then it must stay as found, so
    that ``verify`` names the damage).
    """
    scan_result = scan(src, resync=False)
    chunks = scan_result.chunks
    if not chunks or chunks[0].type != HEADER or scan_result.finished:
        return None
    if scan_result.problem is not None and scan_result.problem.kind != "truncated":
        return None
    header = read_json(src, chunks[0])
    last_t = max((c.t_last for c in chunks if c.type == DATA), default=0)
    enc = Encoder.resume(header, chunks)
    info = {
        "recovered_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(recovered_at)),
        "recovered_at_ts": recovered_at,
        "last_chunk": chunks[-1].seq,
        "last_time_us": last_t,
        "duration": last_t / 1e6,
        "end_time": float(header.get("start_time", 0.0) or 0.0) + last_t / 1e6,
        "exit_status": None,
        "exit_signal": None,
        "reason": "the gateway stopped without closing the recording (crash, kill -9 or "
        "power loss); recovered at the next start",
    }
    data = enc.recovery_trailer(info)
    if sign is not None:
        data += enc.signature(sign, public_key, key_id)
    return RecoveryTail(chunks[-1].end, data, chunks[-1].seq, last_t)


def read_json(src: ByteSource, chunk: Chunk) -> dict[str, Any]:
    """Decode a JSON chunk payload (header, trailer, signature)."""
    try:
        value = json.loads(src.read(chunk.payload_offset, chunk.length))
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormatError(f"chunk {chunk.seq}: malformed JSON payload") from exc
    if not isinstance(value, dict):
        raise FormatError(f"chunk {chunk.seq}: JSON payload is not an object")
    return value


class _PayloadFeed:
    """File-like object handing zstd the payloads of consecutive chunks of one part."""

    def __init__(self, src: ByteSource, chunks: list[Chunk]) -> None:
        self._src = src
        self._chunks = iter(chunks)
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        while not self._buf:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._buf = self._src.read(chunk.payload_offset, chunk.length)
        if n < 0 or n >= len(self._buf):
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out


def parse_events(raw: bytes, part: int, seq: int) -> list[ev.Event]:
    """Split a data chunk's decoded bytes into events; FormatError if malformed."""
    out: list[ev.Event] = []
    pos = 0
    n = len(raw)
    hsize = EVENT_HDR.size
    while pos < n:
        if n - pos < hsize:
            raise FormatError(f"chunk {seq}: truncated event header")
        etype, t_us, length = EVENT_HDR.unpack_from(raw, pos)
        pos += hsize
        if length > n - pos:
            raise FormatError(f"chunk {seq}: event length {length} past the chunk end")
        out.append(ev.Event(etype, t_us / 1e6, raw[pos : pos + length], part))
        pos += length
    return out


def part_runs(chunks: list[Chunk]) -> list[list[Chunk]]:
    """Group data chunks into decodable runs: each starts at a frame start, seq contiguous."""
    runs: list[list[Chunk]] = []
    cur: list[Chunk] | None = None
    for c in chunks:
        if c.type != DATA:
            cur = None
            continue
        if c.flags & FRAME_START:
            cur = [c]
            runs.append(cur)
        elif cur is not None and c.part == cur[-1].part and c.seq == cur[-1].seq + 1:
            cur.append(c)
        else:
            cur = None  # continuation of a part whose start was lost
            continue
        if c.flags & FRAME_END:
            cur = None
    return runs


def decode_run(
    src: ByteSource,
    run: list[Chunk],
    on_problem: Callable[[str], None],
    *,
    skip_to_seq: int | None = None,
) -> Iterator[tuple[Chunk, list[ev.Event]]]:
    """Decode one part; yields (chunk, its events). Stops (reporting) at the first error.

    Memory is bounded: zstd output is read ``raw_len`` bytes at a time (<= MAX_RAW) and the
    window is capped at MAX_WINDOW, so a decompression bomb cannot allocate more.
    """
    dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
    feed: Any = _PayloadFeed(src, run)  # file-like: zstandard only calls read()
    reader = dctx.stream_reader(feed, read_size=65536, read_across_frames=False)
    try:
        for chunk in run:
            parts: list[bytes] = []
            got = 0
            while got < chunk.raw_len:
                piece = reader.read(min(chunk.raw_len - got, 1 << 20))
                if not piece:
                    break
                parts.append(piece)
                got += len(piece)
            if got != chunk.raw_len:
                on_problem(f"chunk {chunk.seq}: decoded {got} bytes, header says {chunk.raw_len}")
                return
            if skip_to_seq is not None and chunk.seq < skip_to_seq:
                continue
            try:
                events = parse_events(b"".join(parts), chunk.part, chunk.seq)
            except FormatError as exc:
                on_problem(str(exc))
                return
            yield chunk, events
    except zstandard.ZstdError as exc:
        on_problem(f"part {run[0].part} (chunk {run[0].seq}): zstd error: {exc}")
    finally:
        reader.close()  # type: ignore[no-untyped-call]  # zstandard stubs
