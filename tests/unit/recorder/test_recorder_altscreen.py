"""The replay screen model's alternate screen (vim, less, htop leave the shell intact)."""

from __future__ import annotations

import json

import pytest

from recorder.screen import Terminal

SHELL = b"$ ls\r\n\x1b[31mfile1\x1b[0m file2\r\n$ vim notes\r\n"


@pytest.mark.parametrize("mode", [47, 1047, 1049])
def test_leaving_the_alternate_screen_restores_the_shell(mode: int) -> None:
    t = Terminal(40, 6)
    t.feed(SHELL)
    before, cursor = t.display(), (t.screen.cursor.x, t.screen.cursor.y)
    t.feed(b"\x1b[?%dh\x1b[H\x1b[2Jvim content\x1b[5;1H~ ~" % mode)
    assert t.display()[0].startswith("vim content") and "file1" not in "".join(t.display())
    t.feed(b"\x1b[?%dl" % mode)
    assert t.display() == before
    assert (t.screen.cursor.x, t.screen.cursor.y) == cursor
    assert t.errors == 0


def test_snapshot_inside_the_alternate_screen_round_trips() -> None:
    t = Terminal(40, 6)
    t.feed(SHELL)
    before = t.display()
    t.feed(b"\x1b[?1049h\x1b[Hhtop")
    copy = Terminal.from_snapshot(json.loads(json.dumps(t.snapshot())))
    assert copy.display() == t.display()
    copy.feed(b"\x1b[?1049l")
    assert copy.display() == before


def test_resize_while_in_the_alternate_screen() -> None:
    t = Terminal(40, 6)
    t.feed(SHELL)
    t.feed(b"\x1b[?1049hfull screen")
    t.resize(20, 3)
    t.feed(b"\x1b[?1049l")
    assert t.display()[0].startswith("$ ls") and t.errors == 0
