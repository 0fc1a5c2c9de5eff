"""The masker's escape-sequence projection in C (gateway/policy/_escapes.c) against the
regex it replaces: the same bytes on every input, so a secret split by escape sequences
is found (and masked) the same way with or without the compiled module."""

from __future__ import annotations

import random
import shutil
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gateway.policy.masker as masker_mod
from gateway.policy import StreamMasker
from gateway.policy.masker import BUILTIN_PATTERNS, _project_c, _project_py

needs_c = pytest.mark.skipif(_project_c is None, reason="the C projection is not built here")

# Pieces that exercise every branch of the grammar and its edges (the 4096-byte bound of
# OSC and DCS-like strings, truncated sequences, each class's boundary bytes).
_ESC = b"\x1b"
_PIECES = [
    _ESC, b"[", b"]", b"P", b"X", b"^", b"_", b"\\", b"\x07", b"\x00", b"\n", b"\r", b"a",
    b"0", b"9", b";", b"?", b"\x2f", b"\x20", b"\x30", b"\x3f", b"\x40", b"\x4f", b"\x50",
    b"\x51", b"\x57", b"\x58", b"\x59", b"\x5a", b"\x5b", b"\x5c", b"\x5d", b"\x60", b"\x7e",
    b"\x7f", b"\x80", b"\xff", b"m", b"H", b"AKIA", b"\x1b[31m", b"\x1b]0;title\x07",
    b"\x1b]8;;http://x\x1b\\", b"\x1bP1$r\x1b\\", b"\x1b(B", b"\x1b#8", b"\x1b[?25l",
]


def _long_strings() -> list[bytes]:
    out = []
    for intro in (b"]", b"P", b"X", b"^", b"_"):
        for n in (4095, 4096, 4097):
            for end in (b"\x07", b"\x1b\\", b"\x1b", b""):
                out.append(_ESC + intro + b"x" * n + end + b"tail")
    return out


@needs_c
@pytest.mark.parametrize("data", _long_strings())
def test_the_string_bound_is_the_regexs(data: bytes) -> None:
    assert _project_c is not None
    assert _project_c(data) == _project_py(data)


@needs_c
@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=60))
def test_same_bytes_as_the_regex_on_generated_sequences(pieces: list[bytes]) -> None:
    assert _project_c is not None
    data = b"".join(pieces)
    assert _project_c(data) == _project_py(data)


@needs_c
def test_same_bytes_as_the_regex_on_random_bytes() -> None:
    assert _project_c is not None
    rnd = random.Random(20261204)
    for size in (0, 1, 2, 3, 17, 4096, 65536, 262144):
        for _ in range(5):
            data = rnd.randbytes(size)
            assert _project_c(data) == _project_py(data)
    # random bytes over the escape alphabet: sequences everywhere
    alphabet = bytes([0x1b, 0x07, 0x5b, 0x5d, 0x50, 0x5c, 0x30, 0x3b, 0x20, 0x6d, 0x41])
    for _ in range(200):
        data = bytes(rnd.choice(alphabet) for _ in range(rnd.randrange(1, 400)))
        assert _project_c(data) == _project_py(data)


@needs_c
def test_it_takes_bytes_only() -> None:
    assert _project_c is not None
    with pytest.raises(TypeError):
        _project_c(bytearray(b"\x1b[m"))  # type: ignore[arg-type]
    text = b"no escape here"
    assert _project_c(text) is text  # nothing to remove: no copy


@pytest.mark.parametrize("use_c", [False, True])
def test_a_secret_split_by_escapes_is_masked_with_either_projection(
    use_c: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if use_c and _project_c is None:
        pytest.skip("the C projection is not built here")
    monkeypatch.setattr(masker_mod, "project", _project_c if use_c else _project_py)
    m = StreamMasker(BUILTIN_PATTERNS)
    out = m.feed(b"key: AKIA\x1b[1mIOSFODNN7\x1b]0;t\x07EXAMPLE done\r\n", 0.0)
    out += m.flush(0.0, end=True)
    assert b"IOSFODNN7" not in out and b"EXAMPLE" not in out
    assert b"\x1b[1m" in out and b"\x1b]0;t\x07" in out  # the sequences stay
    assert b"key: " in out and b" done\r\n" in out


def test_the_c_projection_is_built_where_a_compiler_is() -> None:
    """The install (``pip install -e .``, setup.py) builds it when a C compiler exists:
    a silent fallback would keep the output and lose the speed."""
    if sys.platform != "linux" or shutil.which("cc") is None:
        pytest.skip("no C compiler here: the pure-Python projection is used")
    assert _project_c is not None, "gateway/policy/_escapes.c was not built (see setup.py)"


def test_an_operator_can_turn_the_c_modules_off() -> None:
    """``BASTILLE_NO_C_MASKER=1`` makes the masker use the regex projection and the
    translated shape gate (to rule the C modules out when diagnosing a masking
    question)."""
    import os
    import subprocess

    probe = ("import gateway.policy.masker as m; "
             "print(m.project is m._project_py and not m.StreamMasker()._shape_c)")
    env = {**os.environ, "BASTILLE_NO_C_MASKER": "1"}
    off = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                         text=True, check=True, timeout=60)
    assert off.stdout.strip() == "True"
    env.pop("BASTILLE_NO_C_MASKER")
    on = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                        text=True, check=True, timeout=60)
    assert on.stdout.strip() == ("False" if _project_c is not None else "True")
