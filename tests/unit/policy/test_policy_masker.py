"""StreamMasker: secrets never reach the output; layout and ordinary text are kept."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wcwidth import wcswidth

from gateway.policy import BUILTIN_PATTERNS, MaskPattern, StreamMasker
from gateway.policy.masker import luhn_ok, mask_all
from gateway.policy.sanitize import strip_escapes

VAULTED = "Vault-S3cret!pw"
SECRETS = {
    "aws-id": "AKIAIOSFODNN7EXAMPLE",
    "aws-secret": "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "github": "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
    "github-pat": "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
    "slack": "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "card-spaces": "4111 1111 1111 1111",
    "card-dashes": "5500-0000-0000-0004",
    "card-plain": "378282246310005",
    "vaulted": VAULTED,
}
# The part of each secret that must never be visible.
CORE = {
    "aws-id": "IOSFODNN7EXAMPLE",
    "aws-secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "github": "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
    "github-pat": "0123456789_abcdefghijklmnopqrstuvwxyz",
    "slack": "1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "card-spaces": "1111 1111 1111",
    "card-dashes": "0000-0000-0004",
    "card-plain": "46310005",
    "vaulted": "S3cret!pw",
}
PEM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\r\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\r\n"
    "QyNTUxOQAAACD2mXq7Hh3YpQ==\r\n"
    "-----END OPENSSH PRIVATE KEY-----\r\n"
)
SGR = ["\x1b[31m", "\x1b[0m", "\x1b[1;32m", "\x1b[38;5;208m", "\x1b[K", "\x1b]0;title\x07"]
FILLER = st.lists(
    st.sampled_from([*list("abcdefghij klmnop.,:;_/=\t"), "\r\n", "中", "文", "é", "x", "g"]),
    max_size=40,
).map("".join)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run(masker: StreamMasker, data: bytes, cuts: list[int]) -> bytes:
    """Feed ``data`` cut at ``cuts`` and flush at the end of the stream."""
    out = bytearray()
    prev = 0
    for c in [*sorted({min(max(c, 0), len(data)) for c in cuts}), len(data)]:
        out += masker.feed(data[prev:c], now=0.0)
        prev = c
    out += masker.flush(1.0, end=True)
    return bytes(out)


def visible(b: bytes) -> str:
    return strip_escapes(b).decode("utf-8", "replace")


def widths(s: str) -> list[int]:
    return [wcswidth(line.replace("\t", " ")) for line in s.replace("\r", "").split("\n")]


def escapes(b: bytes) -> list[str]:
    return _ANSI.findall(b.decode("utf-8", "replace"))


def sprinkle(secret: str, positions: list[int], codes: list[str]) -> str:
    """Insert colour codes between characters of ``secret``."""
    chars = list(secret)
    for p, code in sorted(zip(positions, codes, strict=False), reverse=True):
        chars.insert(p % (len(chars) + 1), code)
    return "".join(chars)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(SECRETS)),
    before=FILLER,
    after=FILLER,
    positions=st.lists(st.integers(0, 80), max_size=4),
    codes=st.lists(st.sampled_from(SGR), max_size=4),
    cuts=st.lists(st.integers(0, 300), max_size=12),
)
def test_secret_never_leaks(
    name: str, before: str, after: str, positions: list[int], codes: list[str], cuts: list[int]
) -> None:
    text = before + " " + sprinkle(SECRETS[name], positions, codes) + " " + after
    data = text.encode()
    out = run(StreamMasker(BUILTIN_PATTERNS, secrets=[VAULTED]), data, cuts)
    vis = visible(out)
    assert CORE[name] not in vis
    assert widths(vis) == widths(visible(data))  # layout kept, line by line
    assert escapes(out) == escapes(data)  # escape sequences untouched, in order


@settings(max_examples=150, deadline=None)
@given(
    text=FILLER,
    cuts=st.lists(st.integers(0, 100), max_size=10),
    codes=st.lists(st.sampled_from(SGR), max_size=3),
    positions=st.lists(st.integers(0, 50)),
)
def test_ordinary_text_unchanged(
    text: str, cuts: list[int], codes: list[str], positions: list[int]
) -> None:
    data = sprinkle(text, positions, codes).encode()
    assert run(StreamMasker(BUILTIN_PATTERNS, secrets=[VAULTED]), data, cuts) == data


@settings(max_examples=60, deadline=None)
@given(before=FILLER, cuts=st.lists(st.integers(0, 400), max_size=20))
def test_private_key_block_masked(before: str, cuts: list[int]) -> None:
    data = (before + "\r\n" + PEM + "after\r\n").encode()
    out = run(StreamMasker(), data, cuts)
    vis = visible(out)
    assert "b3BlbnNzaC1rZXktdjEAAAAABG5vbmU" not in vis
    assert "QyNTUxOQ" not in vis
    assert "-----BEGIN OPENSSH PRIVATE KEY-----" in vis  # the frame stays readable
    assert vis.endswith("after\r\n")
    assert widths(vis) == widths(visible(data))


def test_examples_single_chunk() -> None:
    m = StreamMasker(secrets=[VAULTED])
    out = run(m, b"id AKIAIOSFODNN7EXAMPLE pw Vault-S3cret!pw card 4111111111111111 x", [])
    assert out == b"id ******************** pw *************** card **************** x"


def test_card_needs_luhn() -> None:
    assert luhn_ok(b"4111111111111111")
    assert not luhn_ok(b"4111111111111112")
    out = run(StreamMasker(), b"order 4111111111111112 ok", [])
    assert out == b"order 4111111111111112 ok"


def test_wide_characters_masked_with_same_width() -> None:
    m = StreamMasker(secrets=["密码secret"])
    out = run(m, "x 密码secret y".encode(), [3])
    assert out.decode() == "x ********** y"


def test_partial_held_until_deadline_then_short_prefix_emitted() -> None:
    m = StreamMasker(hold_deadline=0.05)
    assert m.feed(b"$ A", now=10.0) == b"$ "
    assert m.next_deadline() == pytest.approx(10.05)
    assert m.flush(10.01) == b""
    assert m.flush(10.06) == b"A"  # 1 character: too short to be worth masking
    assert m.next_deadline() is None


def test_long_partial_masked_at_deadline() -> None:
    m = StreamMasker(hold_deadline=0.05)
    assert m.feed(b"key: AKIAIOSFODNN", now=0.0) == b"key: "
    assert m.flush(0.1) == b"************"


def test_complete_key_then_more_output() -> None:
    m = StreamMasker()
    a = m.feed(b"AKIAIOSFODNN7EXAMPLE", now=0.0)
    b = m.feed(b"\r\n$ ", now=0.0)
    assert a + b == b"********************\r\n$ "


def test_partial_escape_held_not_broken() -> None:
    m = StreamMasker()
    out = m.feed(b"ok\x1b[3", now=0.0) + m.feed(b"1mred", now=0.0) + m.flush(1, end=True)
    assert out == b"ok\x1b[31mred"


def test_configured_pattern() -> None:
    p = MaskPattern.from_config(
        "employee-id", r"EMP-[0-9]{6}", prefix=r"E(?:M(?:P(?:-[0-9]{0,6})?)?)?"
    )
    out = run(StreamMasker([*BUILTIN_PATTERNS, p]), b"user EMP-123456 done", [7, 9])
    assert out == b"user ********** done"


def test_multiline_and_short_secrets() -> None:
    m = StreamMasker(secrets=["line-one-secret\nline-two-secret", "ab"])
    out = run(m, b"line-one-secret\r\nline-two-secret ab", [5])
    assert out == b"***************\r\n*************** ab"  # "ab" too short: not masked


def test_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    m = StreamMasker()

    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(m, "_process", boom)
    out = m.feed(b"\x1b[31mhello\r\nworld", now=0.0)
    assert out == b"\x1b[31m*****\r\n*****"


def test_mask_all_keeps_escapes_and_layout() -> None:
    assert mask_all("a\x1b[1m中\tb\r\n".encode()) == b"*\x1b[1m**\t*\r\n"


def test_bad_replacement_rejected() -> None:
    with pytest.raises(ValueError):
        StreamMasker(replacement="中")


def test_truncated_key_block_stops_masking_eventually() -> None:
    m = StreamMasker()
    out = m.feed(b"-----BEGIN RSA PRIVATE KEY-----\r\n", now=0.0)
    body = b"QUJD" * 16 + b"\r\n"
    masked = b"".join(m.feed(body, now=0.0) for _ in range(400))  # ~27 KiB, no END
    assert b"QUJD" not in masked[:16 * 1024]  # the key itself never shows
    later = m.feed(b"$ ls\r\n", now=0.0)
    assert out.startswith(b"-----BEGIN") and later == b"$ ls\r\n"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    noise=st.lists(st.binary(max_size=60), max_size=6),
    which=st.lists(st.sampled_from(sorted(SECRETS)), min_size=1, max_size=3),
    cuts=st.lists(st.integers(0, 600), max_size=10),
)
def test_binary_mode_keeps_length_and_masks(
    noise: list[bytes], which: list[str], cuts: list[int]
) -> None:
    """File transfers: masked in place, byte for byte, so SFTP/scp framing stays valid."""
    parts = [b" " + SECRETS[w].encode() + b"\n" for w in which]
    data = b"".join(n.replace(b"\x1b", b"") + p for n, p in zip(noise + [b""] * 3, parts,
                                                                strict=False))
    data += "密码secret 中文".encode()
    out = run(StreamMasker(secrets=[VAULTED, "密码secret"], binary=True), data, cuts)
    assert len(out) == len(data)
    for w in which:
        assert CORE[w].encode() not in out
    assert "密码secret".encode() not in out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(st.sampled_from([*SECRETS.values(), *SGR, "AK", "gh", "xox", "4111 ",
                                    "aws_", "AWS_SECRET_ACCESS_KEY=", "-----BEGIN ", "  ",
                                    "\x00\x00", "zz", "A", "S", "2", "6"]),
                    min_size=1, max_size=10).map("".join),
    cut=st.integers(0, 400),
)
def test_prefix_starts_shortcut_holds_exactly_what_a_full_search_holds(
    parts: str, cut: int
) -> None:
    """``MaskPattern.prefix_starts`` only skips positions where no partial match can
    start: every hold point (so every output) equals that of a search at every position."""
    data = parts.encode()
    promised = [p for p in BUILTIN_PATTERNS if p.prefix_starts]
    assert len(promised) == len(BUILTIN_PATTERNS)  # every built-in pattern makes the promise
    plain = tuple(MaskPattern(**{**p.__dict__, "prefix_starts": b""}) for p in BUILTIN_PATTERNS)
    for end in range(1, len(data) + 1):
        text = data[:end]
        for in_key in (False, True):
            fast = StreamMasker(BUILTIN_PATTERNS, secrets=[VAULTED])._hold_point(text, 0, in_key)
            full = StreamMasker(plain, secrets=[VAULTED])._hold_point(text, 0, in_key)
            assert fast == full, (text, in_key)
    cuts = [cut % (len(data) + 1)]
    assert run(StreamMasker(BUILTIN_PATTERNS, secrets=[VAULTED]), data, cuts) == run(
        StreamMasker(plain, secrets=[VAULTED]), data, cuts)


_UNFACTORED_ESC = re.compile(
    rb"\x1b\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]"
    rb"|\x1b\][^\x07\x1b]{0,4096}(?:\x07|\x1b\\)"
    rb"|\x1b[PX^_][^\x1b]{0,4096}\x1b\\"
    rb"|\x1b[\x20-\x2f]*[\x30-\x4f\x51-\x57\x59\x5a\x5c\x60-\x7e]"
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([b"\x1b", b"[", b"]", b"P", b"X", b"^", b"_", b"\\", b"\x07",
                                 b"0", b";", b"m", b" ", b"(", b"B", b"a", b"\xff", b"\x00"]),
                max_size=60).map(b"".join))
def test_the_escape_regex_finds_exactly_what_the_unfactored_one_does(data: bytes) -> None:
    from gateway.policy.masker import _ESC_RE

    assert [m.span() for m in _ESC_RE.finditer(data)] == [
        m.span() for m in _UNFACTORED_ESC.finditer(data)]
