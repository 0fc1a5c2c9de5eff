"""The real player in a real terminal: ``python -m player`` inside tmux, driven by keys.

The archive is recorded by the real recorder (``tests/unit/player/player_recordings.py``
run as a script). tmux gives an 80x24 terminal; assertions read the screen with
``capture-pane``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
RECORDINGS = ROOT / "tests" / "unit" / "player" / "player_recordings.py"


class Tmux:
    def __init__(self, sock: Path) -> None:
        self.sock = sock

    def run(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-S", str(self.sock), *args], capture_output=True, text=True, timeout=10
        )
        return out.stdout

    def keys(self, *keys: str) -> None:
        """Type like a person: one key (or word) at a time, focus changes settle between."""
        for key in keys:
            self.run("send-keys", "-t", "player", key)
            time.sleep(0.3)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "player")

    def wait_for(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not on screen after {timeout}s:\n{screen}")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    data = tmp_path / "data"
    subprocess.run([sys.executable, str(RECORDINGS), str(data)], check=True, timeout=60)
    t = Tmux(tmp_path / "tmux.sock")
    env = f"TZ=UTC BASTILLE_PLAYER_COPY_DIR={tmp_path / 'copies'} PYTHONPATH={ROOT}"
    cmd = f"cd {ROOT} && env {env} {sys.executable} -m player --data {data}; sleep 60"
    t.run("new-session", "-d", "-s", "player", "-x", "80", "-y", "24", cmd)
    t.run("set-option", "-g", "set-clipboard", "on")  # accept OSC 52 from the app
    t.copies = tmp_path / "copies"  # type: ignore[attr-defined]
    try:
        yield t
    finally:
        t.run("kill-server")


def test_find_replay_search_copy_in_tmux(tmux: Tmux) -> None:
    screen = tmux.wait_for("tampered@1")
    assert "verified" in screen and "alice" in screen and "bob" in screen
    assert "/ Search" in screen  # the footer
    tmux.keys("u", "alice", "Enter")
    screen = tmux.wait_for("1 session")
    assert "bob" not in screen and "carol" not in screen
    tmux.keys("Enter")
    screen = tmux.wait_for("0:00:00/0:00:40 paused")
    assert "alice@web1 ssh" in screen and "Welcome to web1" in screen
    tmux.keys("n", "n", "n", "n")
    screen = tmux.wait_for("$ rm -rf /")
    assert "bastille: denied by rule no-rm-root" in screen
    tmux.keys("/", "needle", "Enter")
    screen = tmux.wait_for("0:00:39/0:00:40")
    assert "needle-in-haystack" in screen
    tmux.keys("c")
    tmux.wait_for("copied screen")
    copies = list(tmux.copies.rglob("*-screen.txt"))  # type: ignore[attr-defined]
    assert len(copies) == 1 and "needle-in-haystack" in copies[0].read_text()
    assert tmux.run("show-buffer") == copies[0].read_text()  # OSC 52 reached the terminal
    tmux.keys("Escape")
    tmux.wait_for("integrity")
    tmux.keys("q")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "integrity" in tmux.screen():
        time.sleep(0.1)
    assert "integrity" not in tmux.screen()  # the app exited and restored the terminal
    assert os.path.exists(tmux.sock)
