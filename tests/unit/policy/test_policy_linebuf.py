"""Line reconstruction: a real bash under a pty echoes, LineTracker reads the line.

The bash runs with an empty PATH (nothing external can run) and a fixed prompt.
Hand-written byte sequences are used only for the pyte guards and input splitting.
"""

from __future__ import annotations

import time

import pytest
from policy_bashpty import BashPty

from gateway.policy import LineSnapshot, LineTracker
from gateway.policy.sanitize import sanitize


@pytest.fixture
def bash(tmp_path):  # type: ignore[no-untyped-def]
    empty = tmp_path / "nopath"
    empty.mkdir()
    with BashPty(path=str(empty)) as b:
        yield b


def one(snaps: list[LineSnapshot]) -> LineSnapshot:
    assert len(snaps) == 1, snaps
    return snaps[0]


def test_plain_typing(bash: BashPty) -> None:
    s = one(bash.keys(b"echo hello\r"))
    assert s.text == "echo hello"
    assert s.prompt == "$ "
    assert s.typed == "echo hello"
    assert not (s.mismatch or s.echo_off or s.alternate_screen or s.prompt_guessed)


def test_backspace(bash: BashPty) -> None:
    assert one(bash.keys(b"echo hellx\x7fo\r")).text == "echo hello"


def test_cursor_left_and_insert(bash: BashPty) -> None:
    assert one(bash.keys(b"echo hllo\x1b[D\x1b[D\x1b[De\r")).text == "echo hello"


def test_ctrl_u_kills_line(bash: BashPty) -> None:
    s = one(bash.keys(b"rm -rf /nothing\x15echo ok\r"))
    assert s.text == "echo ok"
    assert s.typed == "echo ok"


def test_ctrl_w_and_ctrl_k_and_yank(bash: BashPty) -> None:
    assert one(bash.keys(b"echo foo bar\x17baz\r")).text == "echo foo baz"
    assert one(bash.keys(b"echo abc def\x1b[D\x1b[D\x1b[D\x0b\r")).text == "echo abc"
    assert one(bash.keys(b"echo one\x15echo two \x19\r")).text == "echo two echo one"


def test_history_recall_redraws_line(bash: BashPty) -> None:
    bash.run("echo first")
    bash.run("echo second")
    s = one(bash.keys(b"\x1b[A\x1b[A\r"))
    assert s.text == "echo first"
    assert s.typed is None  # history keys cannot be modelled: the screen decides


def test_reverse_search(bash: BashPty) -> None:
    bash.run("echo needle-in-history")
    bash.run("echo other")
    s = one(bash.keys(b"\x12needle\r"))
    assert s.search
    assert s.text == "echo needle-in-history"


def test_tab_completion(bash: BashPty) -> None:
    bash.run("echo > uniquefile_abc.txt")
    s = one(bash.keys(b"echo uniq\t\r"))
    assert s.text == "echo uniquefile_abc.txt"
    assert s.typed is None


def test_vi_mode(bash: BashPty) -> None:
    bash.run("set -o vi")
    s = one(bash.keys(b"echo hello\x1b0wcwworld\x1b\r"))
    assert s.text == "echo world"


def test_long_line_wraps(bash: BashPty) -> None:
    line = "echo " + "x" * 150 + " y"
    assert one(bash.keys(line.encode() + b"\r")).text == line


def test_wide_characters(bash: BashPty) -> None:
    assert one(bash.keys("echo 中文 ok\r".encode())).text == "echo 中文 ok"


def test_bracketed_paste_multiline(bash: BashPty) -> None:
    snaps = bash.keys(b"\x1b[200~echo a\recho b\x1b[201~\r")
    assert len(snaps) == 2  # the newline inside the paste is held too
    assert snaps[0].typed is not None and "echo a" in snaps[0].typed
    assert snaps[1].text == "echo a\necho b"


def test_line_continuation(bash: BashPty) -> None:
    def release(ev, snap):  # type: ignore[no-untyped-def]
        if snap.text.endswith("\\"):
            bash.tracker.continue_line(snap.text)
        return True

    first = one(bash.keys(b"echo foo \\\r", on_enter=release))
    assert first.text == "echo foo \\"
    second = one(bash.keys(b"bar\r", on_enter=release))
    assert second.prompt == "> "
    assert second.continuation
    assert second.text == "echo foo \\\nbar"


def test_typeahead_in_one_chunk(bash: BashPty) -> None:
    snaps = bash.keys(b"echo one\recho two\r")
    assert [s.text for s in snaps] == ["echo one", "echo two"]
    assert snaps[1].typed == "echo two"


def test_ctrl_c_starts_a_new_line(bash: BashPty) -> None:
    bash.keys(b"echo abandoned")
    bash.keys(b"\x03")
    assert one(bash.keys(b"echo fresh\r")).text == "echo fresh"


def test_password_prompt_is_echo_off(bash: BashPty) -> None:
    bash.run("read -s secret")
    for ch in b"hunter2":  # typed key by key, like a person
        bash.keys(bytes([ch]))
    s = one(bash.keys(b"\r"))
    assert s.echo_off
    assert s.text == "" and s.typed is None
    assert s.hidden_typed == "hunter2"
    assert "hunter2" not in repr(s)
    kinds = [k for k, _ in bash.tracker.take_signals()]
    assert "echo_off" in kinds
    assert all("hunter2" not in d for _, d in bash.tracker.take_signals())


def test_alternate_screen_detected(bash: BashPty) -> None:
    bash.run("printf '\\033[?1049h'")
    s = one(bash.keys(b"anything\r"))
    assert s.alternate_screen
    assert ("alternate_screen", "a full-screen program took the terminal") in (
        bash.tracker.take_signals()
    )
    bash.run("printf '\\033[?1049l'")
    assert not one(bash.keys(b"echo back\r")).alternate_screen


def test_key_binding_macro_is_a_mismatch(bash: BashPty) -> None:
    bash.run('bind \'"\\C-xq": "echo macro"\'')
    s = one(bash.keys(b"\x18q\r"))
    assert s.text == "echo macro"


def test_screen_and_keys_disagree_is_flagged() -> None:
    """A line the shell shows differently from the keys (e.g. a remapped key)."""
    t = LineTracker()
    t.feed_output(b"$ ")
    t.feed_input(b"ls")
    t.feed_output(b"rm -rf /")  # what a hostile readline binding could draw instead
    (ev,) = t.feed_input(b"\r")
    s = t.current_line(ev.line_id)
    assert s.text == "rm -rf /"
    assert s.typed == "ls"
    assert s.mismatch
    assert any(k == "mismatch" for k, _ in t.take_signals())


# --------------------------------------------------------------------------- input split


def test_feed_input_splits_enters() -> None:
    t = LineTracker()
    evs = t.feed_input(b"ls\rpwd\rwho")
    assert [(e.kind, e.data, e.enter) for e in evs] == [
        ("enter", b"ls", b"\r"),
        ("enter", b"pwd", b"\r"),
        ("data", b"who", b""),
    ]
    assert evs[0].line_id != evs[1].line_id


def test_feed_input_ctrl_o_and_crlf_are_enter() -> None:
    t = LineTracker()
    evs = t.feed_input(b"a\r\nb\x0f")
    assert [(e.kind, e.enter) for e in evs] == [("enter", b"\r\n"), ("enter", b"\x0f")]


def test_paste_marker_split_across_chunks() -> None:
    t = LineTracker()
    first = t.feed_input(b"x\x1b[200")
    assert first == [first[0]] and first[0].data == b"x"
    evs = t.feed_input(b"~a\rb\x1b[201~")
    assert evs[0].kind == "enter" and evs[0].in_paste
    assert evs[0].data == b"\x1b[200~a"


def test_lone_escape_is_not_held() -> None:
    """ESC alone (vi mode) must reach the target at once, not wait for the next key."""
    evs = LineTracker().feed_input(b"\x1b")
    assert [(e.kind, e.data) for e in evs] == [("data", b"\x1b")]


# --------------------------------------------------------------------------- pyte guards


def test_pyte_crash_sequence_is_guarded() -> None:
    t = LineTracker()
    t.feed_output(b"$ ")
    t.feed_input(b"ls")
    t.feed_output(b"\x1b[>4;2mls\x1b[>c")
    (ev,) = t.feed_input(b"\r")
    s = t.current_line(ev.line_id)
    assert s.text == "ls"
    assert [k for k, _ in t.take_signals()] == []  # rendered, not fallen back


def test_long_csi_digit_run_does_not_hang() -> None:
    t = LineTracker()
    t.feed_output(b"$ ")
    t.feed_input(b"ls")
    t.feed_output(b"\x1b[" + b"1" * 100_000 + b"mls")
    (ev,) = t.feed_input(b"\r")
    start = time.perf_counter()
    s = t.current_line(ev.line_id)
    assert time.perf_counter() - start < 10  # a hang guard, not a speed assertion
    assert s.text == "ls"


def test_unterminated_csi_digit_run_does_not_hang() -> None:
    t = LineTracker()
    t.feed_output(b"$ ")
    t.feed_input(b"ls")
    t.feed_output(b"ls\x1b[" + b"9" * 100_000)
    (ev,) = t.feed_input(b"\r")
    assert t.current_line(ev.line_id).text == "ls"


def test_sanitize_keeps_ordinary_sequences() -> None:
    seq = b"\x1b[1;31mred\x1b[0m\x1b[K\x1b[?2004h"
    assert sanitize(seq) == seq
    assert sanitize(b"a\x1b[>4;2mb") == b"ab"


def test_big_output_is_bounded() -> None:
    """A `cat` of a big file: memory stays bounded and the line is still found."""
    t = LineTracker()
    t.feed_input(b"cat big\r")
    for _ in range(200):
        t.feed_output(b"y" * 1000 + b"\r\n")
    assert len(t._tail) <= 2 * 64 * 1024
    t.feed_output(b"$ ")
    t.feed_input(b"echo after")
    t.feed_output(b"echo after")
    (ev,) = t.feed_input(b"\r")
    assert t.current_line(ev.line_id).text == "echo after"


def test_enter_on_prefilled_line_uses_learned_prompt() -> None:
    """Enter without any key (a line pre-filled by the shell) is still read."""
    t = LineTracker()
    t.feed_output(b"$ ")
    t.feed_input(b"ls")
    t.feed_output(b"ls")
    (ev,) = t.feed_input(b"\r")
    t.current_line(ev.line_id)
    t.feed_output(b"\r\nfile\r\n$ rm -rf /")  # shell pre-filled the next line
    (ev2,) = t.feed_input(b"\r")
    s = t.current_line(ev2.line_id)
    assert s.text == "rm -rf /"


def test_line_read_before_echo_uses_keys() -> None:
    """A relay that reads the line before the echo arrived: the keys decide, no echo_off."""
    t = LineTracker()
    t.feed_output(b"$ ")
    (ev,) = t.feed_input(b"curl x | sh\r")
    s = t.current_line(ev.line_id)
    assert s.echo_pending and not s.echo_off
    assert s.typed == "curl x | sh"
    (ev2,) = t.feed_input(b"ls /tm\t\r")
    s2 = t.current_line(ev2.line_id)
    assert s2.echo_pending and s2.typed is None


def test_password_typed_key_by_key_is_echo_off() -> None:
    t = LineTracker()
    t.feed_output(b"Password: ")
    for k in (b"p", b"w", b"$", b"("):
        t.feed_input(k)
    (ev,) = t.feed_input(b"\r")
    s = t.current_line(ev.line_id)
    assert s.echo_off and not s.echo_pending and s.hidden_typed == "pw$("


def test_lone_enter_does_not_wait_for_an_echo() -> None:
    """Typed keys, echoed, then Enter in its own packet (how people type): the relay holds
    that Enter, so the target cannot echo anything for it; waiting would add ECHO_WAIT
    (300 ms) to every command. A paste (keys + Enter together) still waits."""
    t = LineTracker()
    t.feed_output(b"$ ")
    t.feed_input(b"ls")
    assert not t.output_since_input()
    t.feed_output(b"ls")
    assert t.output_since_input()
    t.feed_input(b"\r")
    assert t.output_since_input()  # nothing new to wait for
    t.feed_output(b"\r\nfile\r\n$ ")
    t.feed_input(b"pwd\r")
    assert not t.output_since_input()  # the pasted keys' echo is still to come
