"""The terminal renderer and timeline, fed with real escape sequences."""

from __future__ import annotations

from pathlib import Path

import pytest

from player.archive import Mark
from player.fmt import parse_time
from player.render import render_screen
from player.timeline import render_timeline
from recorder.screen import Terminal


def _styles(term: Terminal) -> dict[str, str]:
    text = render_screen(term, show_cursor=False)
    return {text.plain[s.start : s.end].strip(): str(s.style) for s in text.spans}


def test_colours_16_256_truecolour_and_attributes() -> None:
    term = Terminal(40, 4)
    term.feed(
        b"\x1b[33mYEL\x1b[0m \x1b[93mBYEL\x1b[0m \x1b[38;5;208mORANGE\x1b[0m "
        b"\x1b[38;2;10;20;30;48;2;200;100;0mTRUE\x1b[0m\r\n"
        b"\x1b[1;4;7mBUR\x1b[0m \x1b[9;3mSI\x1b[0m plain"
    )
    styles = _styles(term)
    assert styles["YEL"] == "yellow"
    assert styles["BYEL"] == "bright_yellow"
    assert styles["ORANGE"] == "#ff8700"
    assert styles["TRUE"] == "#0a141e on #c86400"
    assert styles["BUR"] == "bold underline reverse"
    assert styles["SI"] == "italic strike"
    assert "plain" not in "".join(styles)


def test_cursor_and_highlight() -> None:
    term = Terminal(20, 2)
    term.feed(b"find the Needle\r\n> ")
    text = render_screen(term, highlight="needle")
    spans = [(text.plain[s.start : s.end], str(s.style)) for s in text.spans]
    assert ("Needle", "bold black on yellow") in spans
    assert ("", "reverse") not in spans and (" ", "reverse") in spans  # cursor after "> "
    term.feed(b"\x1b[?25l")  # hidden cursor: not drawn
    text = render_screen(term)
    assert all(str(s.style) != "reverse" for s in text.spans)


def test_timeline_marks_and_position() -> None:
    marks = [Mark(0.0, "command", "ls"), Mark(5.0, "denied", "rm"), Mark(5.1, "command", "x")]
    text = render_timeline(10, 10.0, 9.9, marks)
    assert text.plain == "|----x--- "  # deny wins over a command in the same cell
    assert "reverse" in str(text.spans[-1].style)


def test_parse_time() -> None:
    assert parse_time("90", 0) == 90
    assert parse_time("1:30", 0) == 90
    assert parse_time("1:02:03", 0) == 3723
    assert parse_time("+30", 10) == 40
    assert parse_time("-5", 10) == 5
    assert parse_time("soon", 0) is None
    assert parse_time("", 0) is None


def test_main_refuses_a_directory_without_an_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from player.__main__ import main

    assert main(["--data", str(tmp_path / "nothing")]) == 2
    assert f"no session index in {tmp_path / 'nothing'}" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists()  # nothing created
