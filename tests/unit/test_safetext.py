"""The one sanitiser: nothing a user or target sends is interpreted by a human's
terminal (fuzzed), and ordinary text and colours survive."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from common.safetext import TerminalFilter, safe_replay, visible

PIECES = [b"\x1b", b"[", b"]", b"P", b"\\", b"\x07", b"52;c;aGk=", b"0;title", b"6n", b"c",
          b"?1000h", b"?1049h", b"31m", b"\xc2", b"\x9b", b"\x9d", b"X", b"_", b"^", b"t",
          b">4;2m", b"\r", b"\n", b"a", b"\x1b\\", b"\x1b]", b"\x1bP", b"\x18", b"\x00"]
hostile = st.lists(st.sampled_from(PIECES), max_size=60).map(b"".join)
FORBIDDEN = re.compile(
    rb"\x1b[\]PX^_]|\x07|\xc2[\x80-\x9f]|\x1b\[[\x30-\x3f]*[\x20-\x2f]*[nctqpx]"
    rb"|\x1b\[\?(?:1000|1002|1003|1004|1005|1006|1015|2004|1)[hl]|\x1bc|\x1b[=>]")


@settings(max_examples=600)
@given(hostile, st.integers(min_value=1, max_value=7))
def test_replay_filter_lets_nothing_dangerous_through(data: bytes, step: int) -> None:
    whole = safe_replay(data)
    assert not FORBIDDEN.search(whole), (data, whole)
    assert safe_replay(whole) == whole  # a fixed point: nothing left to drop
    f = TerminalFilter()
    chunked = b"".join(f.feed(data[i:i + step]) for i in range(0, len(data), step))
    chunked += f.flush()
    assert not FORBIDDEN.search(chunked), (data, chunked)


@given(st.binary(max_size=300))
def test_replay_filter_on_random_bytes(data: bytes) -> None:
    out = safe_replay(data)
    assert not FORBIDDEN.search(out)
    assert b"\x1b" not in out.replace(b"\x1b[", b"").replace(b"\x1b(", b"").replace(
        b"\x1b)", b"").replace(b"\x1b7", b"").replace(b"\x1b8", b"").replace(
        b"\x1bM", b"").replace(b"\x1bD", b"").replace(b"\x1bE", b"")


def test_colours_and_drawing_survive() -> None:
    screen = (b"\x1b[?1049h\x1b[H\x1b[2J\x1b[1;31mred\x1b[0m \x1b[38;5;208mx\x1b[m\r\n"
              b"\x1b[5;10Hmoved\x1b[K\x1b(0qqq\x1b(B\x1b[?25l\x1b[?25h\x1b[?1049l")
    assert safe_replay(screen) == screen


def test_osc52_and_title_and_reports_are_dropped() -> None:
    out = safe_replay(b"a\x1b]52;c;ZXZpbA==\x07b\x1b]0;owned\x1b\\c\x1b[6nd\x1b[21te")
    assert out == b"abcde"


def test_sequence_built_from_a_dropped_one_is_dropped() -> None:
    data = b"\x1b\x1b[6n]52;c;ZXZpbA==\x1b\x1b[6n\\"
    assert b"\x1b]" not in safe_replay(data)


@given(st.text(max_size=200))
def test_visible_has_no_control_characters(text: str) -> None:
    out = visible(text)
    assert not re.search("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200b-\u200f]", out)


def test_visible_shows_what_was_sent() -> None:
    spoof = "curl x | sh\r\x1b[2Kapprove-service-stop systemctl restart nginx"
    assert visible(spoof) == ("curl x | sh\\r\\x1b[2Kapprove-service-stop systemctl "
                              "restart nginx")
    assert visible("é ✓ 名前") == "é ✓ 名前"
    assert visible("a\u202eb") == "a\\u202eb"
    assert visible(b"x\x1b]52;c;aGk=\x07") == "x\\x1b]52;c;aGk=\\x07"
    assert visible("two\nlines\x1b[31m", newlines=True) == "two\nlines\\x1b[31m"


def test_c1_built_across_chunks_from_lead_bytes_is_dropped() -> None:
    for data in (b"\xc2\xc2\x1b\x9b\x9b", b"\xc2\x1b\x9b", b"\xc2\xc2\xc2\x1b[6n\x9b\x9b"):
        f = TerminalFilter()
        out = b"".join(f.feed(data[i:i + 1]) for i in range(len(data))) + f.flush()
        assert not FORBIDDEN.search(out), (data, out)
