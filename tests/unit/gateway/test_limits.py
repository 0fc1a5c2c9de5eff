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


# ------------------------------------------------------------------ requests and counts
class _Packet:
    def __init__(self, key: bytes, value: bytes) -> None:
        self._items = [key, value]

    def get_string(self) -> bytes:
        return self._items.pop(0)

    def check_end(self) -> None:
        assert not self._items


class _Channel:
    def __init__(self) -> None:
        self._env: dict[bytes, bytes] = {}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=12), st.binary(max_size=3000)), max_size=300))
def test_environment_requests_stay_bounded(requests: list[tuple[bytes, bytes]]) -> None:
    from gateway.limits import MAX_ENV_BYTES, MAX_ENV_VARS
    from gateway.ssh.bounded_env import bound_environment

    chan = _Channel()
    bound_environment(chan)  # type: ignore[arg-type]
    for key, value in requests:
        accepted = chan._process_env_request(_Packet(key, value))  # type: ignore[attr-defined]
        if accepted:
            assert chan._env[key] == value
    env = chan._env
    assert len(env) <= MAX_ENV_VARS
    assert sum(len(k) + len(v) for k, v in env.items()) <= MAX_ENV_BYTES


@given(st.text(max_size=5000), st.integers(min_value=1, max_value=200))
def test_cut_bounds_any_text(text: str, limit: int) -> None:
    from gateway.limits import cut

    out = cut(text, limit)
    assert len(out) <= limit + 20
    assert out == text or out.startswith(text[:limit])


ADDRESSES = st.sampled_from(["10.0.0.1", "10.0.0.2:22", "[2001:db8::1]:22", "2001:db8::2",
                             "192.0.2.7"])
NAMES = st.sampled_from(["alice", "bob", "carol", None])


@given(st.lists(st.tuples(ADDRESSES, NAMES), max_size=200), NAMES)
def test_failures_never_block_a_user_from_elsewhere(failures: list[tuple[str, str | None]],
                                                    user: str | None) -> None:
    """Whatever fails from other addresses, a user is never refused from an address that
    failed nothing (the limiter has no per-user-name bucket)."""
    from state.ratelimit import FailureLimiter

    lim = FailureLimiter(1, 300, source_limit=1)
    for source, name in failures:
        lim.record_failure(source, name)
    assert not lim.blocked("198.51.100.9", user)
    assert not lim.blocked("[2001:db9::1]:22", user)


def test_lines_past_the_policy_bound_are_uncertain_without_parsing() -> None:
    import re

    from gateway.core.enforce import too_long
    from gateway.limits import MAX_POLICY_LINE
    from gateway.policy import Action, PolicyEngine, Rule

    engine = PolicyEngine([Rule(name="r", match=re.compile("^rm "), action=Action.DENY)],
                          on_uncertain=Action.APPROVE)
    assert too_long(engine, "a|" * (MAX_POLICY_LINE // 2)) is None  # at the bound: parsed
    decision = too_long(engine, None, "ok", "a|" * MAX_POLICY_LINE)
    assert decision is not None and decision.action is Action.APPROVE
    assert "too long to check" in decision.reason and decision.rule is None
