"""The masker's digit-shape gate in C (gateway/policy/_shapes.c) against the translation
it replaces (``any(shape in text.translate(_DIGIT_CLASS) for shape in shapes)``): the
same answer on every input, so a card number is found (and masked) the same way with or
without the compiled module, and with or without Hyperscan."""

from __future__ import annotations

import random
import shutil
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gateway.policy.masker as masker_mod
from gateway.policy import StreamMasker
from gateway.policy.masker import _DIGIT_CLASS, BUILTIN_PATTERNS, c_shape_gate

_has_shape = masker_mod._has_shape_c
needs_c = pytest.mark.skipif(_has_shape is None, reason="the C shape gate is not built here")
CARD = next(p for p in BUILTIN_PATTERNS if p.name == "credit-card")
SHAPES = CARD.shapes


def _reference(data: bytes, shapes: tuple[bytes, ...] = SHAPES) -> bool:
    digits = data.translate(_DIGIT_CLASS)
    return any(shape in digits for shape in shapes)


# digits, both separators, and bytes next to them in the table (the class edges)
_PIECES = [b"0", b"1", b"4", b"9", b" ", b"-", b"/", b":", b"\x00", b"\xff", b"x", b"\n",
           b"4111", b"1111 ", b"-1111", b"411111111111", b"4111 111111 1111"]


@needs_c
@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=40))
def test_same_answer_as_the_translation_on_generated_text(pieces: list[bytes]) -> None:
    assert _has_shape is not None
    data = b"".join(pieces)
    assert _has_shape(data, SHAPES) == _reference(data)


@needs_c
@settings(max_examples=1000, deadline=None)
@given(
    st.lists(st.text(alphabet="0 -", min_size=1, max_size=12).map(lambda t: "0" + t),
             min_size=1, max_size=5),
    st.binary(max_size=60).map(lambda b: b.translate(_DIGIT_CLASS).replace(b".", b"7")),
)
def test_same_answer_for_any_shapes(shapes: list[str], data: bytes) -> None:
    """Shapes other than the card's (other leading runs, so other probe strides)."""
    assert _has_shape is not None
    tup = tuple(s.encode() for s in shapes)
    assert _has_shape(data, tup) == _reference(data, tup)


@needs_c
def test_same_answer_on_random_bytes_and_at_every_offset() -> None:
    assert _has_shape is not None
    rnd = random.Random(20261204)
    for size in (0, 1, 3, 4, 12, 13, 4096, 262144):
        for _ in range(5):
            data = rnd.randbytes(size)
            assert _has_shape(data, SHAPES) == _reference(data)
    alphabet = b"0123456789 -x"
    for _ in range(3000):
        data = bytes(rnd.choice(alphabet) for _ in range(rnd.randrange(1, 50)))
        assert _has_shape(data, SHAPES) == _reference(data)
    # one card number at every offset (every phase of the probe) in filler
    for shape in (b"4111111111111", b"4111 1111 1111 1", b"4111-111111-1111"):
        for pad in range(9):
            data = b"x" * pad + shape + b"y" * pad
            assert _has_shape(data, SHAPES)
            assert not _has_shape(data[:-1 - pad], SHAPES)  # one digit short


@needs_c
def test_it_refuses_what_it_cannot_test() -> None:
    assert _has_shape is not None
    with pytest.raises(TypeError):
        _has_shape(bytearray(b"4111111111111"), SHAPES)  # type: ignore[arg-type]
    for bad in ((), (b"",), (b" 0000",), (b"00a0",), (b"0",) * 17):
        with pytest.raises(ValueError):
            _has_shape(b"0000", bad)
    assert c_shape_gate((b" 0000",)) is None  # the masker keeps the translation for these
    assert c_shape_gate(()) is None


@pytest.mark.parametrize("use_c", [False, True])
@pytest.mark.parametrize("accelerate", [False, True])
def test_a_card_number_is_masked_with_either_gate(
    use_c: bool, accelerate: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if use_c and _has_shape is None:
        pytest.skip("the C shape gate is not built here")
    monkeypatch.setattr(masker_mod, "_has_shape_c", _has_shape if use_c else None)
    m = StreamMasker(BUILTIN_PATTERNS, accelerate=accelerate)
    assert bool(m._shape_c) == use_c
    out = b""
    # split across chunks, with random bytes around (the gate sees each chunk's text)
    noise = random.Random(7).randbytes(70000).replace(b"\x1b", b".")
    for part in (noise, b"card 4111 1111 ", b"1111 1111 ok\r\n", noise, b"4111111111111111\n"):
        out += m.feed(part, 0.0)
    out += m.flush(0.0, end=True)
    assert b"card " + b"*" * 19 + b" ok\r\n" in out
    assert out.endswith(b"*" * 16 + b"\n")
    assert b"4111" not in out.replace(noise, b"")


def test_the_c_shape_gate_is_built_where_a_compiler_is() -> None:
    if sys.platform != "linux" or shutil.which("cc") is None:
        pytest.skip("no C compiler here: the translation is used")
    assert _has_shape is not None, "gateway/policy/_shapes.c was not built (see setup.py)"
    assert StreamMasker(BUILTIN_PATTERNS)._shape_c, "the card pattern does not use it"


def _word(c: int) -> bool:
    return chr(c).isascii() and (chr(c).isalnum() or c == 95)


def _reference_sharp(data: bytes, shapes: tuple[bytes, ...], first: bytes,
                     edge: bool) -> bool:
    """An occurrence of a shape at s that starts with a byte of ``first`` (any, when
    empty) and, with ``edge``, is not preceded by [A-Za-z0-9_]."""
    digits = data.translate(_DIGIT_CLASS)
    for shape in shapes:
        s = digits.find(shape)
        while s >= 0:
            if (not first or data[s] in first) and not (edge and s > 0 and _word(data[s - 1])):
                return True
            s = digits.find(shape, s + 1)
    return False


_SHARP_PIECES = [*_PIECES, b"_", b"a", b"Z", b"1733333333333", b" 4111111111111",
                 b"x4111111111111", b"_5500 0000 0000 0004", b"7", b"2", b"6", b"3"]


@needs_c
@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_SHARP_PIECES), max_size=40),
       st.sampled_from([b"", b"23456", b"4", b"0123456789"]), st.booleans())
def test_the_sharper_gate_is_its_definition(pieces: list[bytes], first: bytes,
                                            edge: bool) -> None:
    assert _has_shape is not None
    data = b"".join(pieces)
    assert _has_shape(data, SHAPES, first, edge) == _reference_sharp(data, SHAPES, first, edge)
    assert _has_shape(data, SHAPES, b"", False) == _reference(data)


def _texts(seed: int, n: int) -> list[bytes]:
    rnd = random.Random(seed)
    parts = [b"4111 1111 1111 1111", b"5500-0000-0000-0004", b"378282246310005",
             b"4111111111111111", b"1733333333333", b"2026-12-04T17:21:06.123Z", b"id=",
             b"x", b"_", b" ", b"-", b"\n", b"card ", b"0", b"9", b"41111", b"11111111",
             b"6011111111111117", b"30569309025904", b"4012888888881881"]
    return [b"".join(rnd.choice(parts) for _ in range(rnd.randrange(1, 30))) for _ in range(n)]


@needs_c
def test_the_sharper_gate_masks_exactly_what_the_translation_gate_masks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The card pattern's C gate with its issuer digit and left edge skips text the
    translation's gate lets through (timestamps), and never a number it would mask."""
    masked = 0
    for text in _texts(20261204, 3000):
        outs = []
        for c in (_has_shape, None):
            monkeypatch.setattr(masker_mod, "_has_shape_c", c)
            m = StreamMasker(BUILTIN_PATTERNS, accelerate=False)
            outs.append(m.feed(text, 0.0) + m.flush(0.0, end=True))
        assert outs[0] == outs[1], text
        masked += outs[0] != text
    assert masked > 500  # the texts hold card numbers that get masked


@needs_c
def test_timestamps_do_not_pass_the_card_gate() -> None:
    gate = StreamMasker(BUILTIN_PATTERNS)._shape_c
    assert gate
    (card,) = gate.values()
    log = b"2026-12-04T17:21:06.123Z 1733333333333 INFO id=12345 took 35ms\n" * 1000
    assert not card(log)  # the translation's gate passes it (a 13-digit run)
    assert _reference(log)
    assert card(log + b"paid with 4111 1111 1111 1111\n")


@needs_c
def test_runs_found_sixteen_positions_at_a_time_at_every_phase() -> None:
    """The C scan finds digit runs 16 positions at a time (SSE2) on texts of 32 bytes and
    more: runs of every length, at every offset in and across its 16- and 32-byte
    windows, among other digits, with leads of 1 to 20 (above 16: digit by digit)."""
    assert _has_shape is not None
    rnd = random.Random(4)
    filler = b"x- /:\n\x00\xff_a"
    for _ in range(4000):
        size = rnd.randrange(32, 200)
        data = bytearray(rnd.choice(filler) for _ in range(size))
        for _ in range(rnd.randrange(0, 6)):  # short digit runs (under most leads)
            at = rnd.randrange(size)
            for k in range(at, min(size, at + rnd.randrange(1, 5))):
                data[k] = rnd.choice(b"0123456789")
        run = rnd.randrange(1, 22)
        at = rnd.randrange(0, size - min(run, size) + 1)
        for k in range(at, min(size, at + run)):
            data[k] = rnd.choice(b"0123456789")
        lead = rnd.randrange(1, 21)
        shapes = (b"0" * lead, b"0" * lead + rnd.choice([b" 0", b"-0", b"00"]))
        blob = bytes(data)
        assert _has_shape(blob, shapes) == _reference(blob, shapes), (blob, shapes)
        for first, edge in ((b"23456", True), (b"4", False), (b"", True)):
            assert _has_shape(blob, shapes, first, edge) == _reference_sharp(
                blob, shapes, first, edge), (blob, shapes, first, edge)
