"""Client-controlled terminal sizes are clamped where they enter, and the policy's screen
model stays bounded in memory and time whatever size it is given."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.limits import MAX_TERM_COLS, MAX_TERM_PIXELS, MAX_TERM_ROWS, clamp_term_size
from gateway.policy import LineTracker

U32 = st.integers(min_value=0, max_value=2**32 - 1)


@given(U32, U32, U32, U32)
def test_clamped_sizes_are_in_range(cols: int, rows: int, pw: int, ph: int) -> None:
    c, r, x, y = clamp_term_size(cols, rows, pw, ph)
    assert 1 <= c <= MAX_TERM_COLS and 1 <= r <= MAX_TERM_ROWS
    assert 0 <= x <= MAX_TERM_PIXELS and 0 <= y <= MAX_TERM_PIXELS
    if 0 < cols <= MAX_TERM_COLS:
        assert c == cols


def test_unknown_size_is_80x24() -> None:
    assert clamp_term_size(0, 0) == (80, 24, 0, 0)


@settings(max_examples=25, deadline=None)
@given(U32, U32)
def test_line_tracker_renders_fast_at_any_size(cols: int, rows: int) -> None:
    tracker = LineTracker(cols, rows)
    tracker.resize(cols, rows)
    tracker.feed_output(b"$ ")
    for ev in tracker.feed_input(b"echo hello\r"):
        if ev.kind == "enter":
            tracker.feed_output(b"echo hello")
            started = time.monotonic()
            snap = tracker.current_line(ev.line_id)
            assert time.monotonic() - started < 1.0
            if tracker.cols >= 20:  # a narrower terminal wraps the prompt and line
                assert snap.text == "echo hello"
