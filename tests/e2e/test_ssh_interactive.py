"""Interactive sessions: the real OpenSSH client in tmux, through the gateway, to sshd."""

from __future__ import annotations

import time

import pytest

from tests.e2e.rig import TARGET_USER, Rig, Tmux

pytestmark = pytest.mark.e2e


@pytest.fixture
def term(rig: Rig):  # type: ignore[no-untyped-def]
    terms: list[Tmux] = []

    def open_term(user: str, *command: str, cols: int = 120, rows: int = 40) -> Tmux:
        t = Tmux(rig.root, [*rig.ssh_args(user, tty=True), *command], cols=cols, rows=rows)
        terms.append(t)
        return t

    yield open_term
    for t in terms:
        t.close()


def _prompt(t: Tmux) -> None:
    t.type("export PS1='PROMPT$ '\n")
    t.wait_for("PROMPT$ ")


def test_interactive_shell_on_target(rig: Rig, term) -> None:  # type: ignore[no-untyped-def]
    t = term("alice", "web1")
    _prompt(t)
    t.type("whoami; echo marker-$((6*7))\n")
    screen = t.wait_for("marker-42")
    assert TARGET_USER in screen
    t.type("exit 3\n")
    assert t.dead_status() == 3


def test_pty_size_and_window_change(rig: Rig, term) -> None:  # type: ignore[no-untyped-def]
    t = term("alice", "web1", cols=100, rows=30)
    _prompt(t)
    t.type("stty size\n")
    t.wait_for("30 100")
    t.resize(90, 25)
    time.sleep(0.5)
    t.type("clear; stty size\n")
    t.wait_for("25 90")
    t.type("exit\n")
    assert t.dead_status() == 0


def test_ctrl_c_interrupts_remote_command(rig: Rig, term) -> None:  # type: ignore[no-untyped-def]
    t = term("alice", "web1")
    _prompt(t)
    t.type("sleep 30; echo not-$((10+1))\n")
    time.sleep(0.5)
    t.send("C-c")
    t.type("echo after-$((1+1))\n")
    screen = t.wait_for("after-2")
    assert "not-11" not in screen


def test_menu_without_target(rig: Rig, term) -> None:  # type: ignore[no-untyped-def]
    t = term("alice")
    screen = t.wait_for("Select a target")
    assert "web1" in screen and "web frontend" in screen
    assert "secret" not in screen  # only targets alice may use
    t.type("web1\r")
    _prompt(t)
    t.type("echo via-menu-$((2+3))\n")
    t.wait_for("via-menu-5")
    t.type("exit\n")
    assert t.dead_status() == 0


def test_menu_quit(rig: Rig, term) -> None:  # type: ignore[no-untyped-def]
    t = term("alice")
    t.wait_for("Select a target")
    t.type("q\r")
    assert t.dead_status() == 0


def test_plus_form_interactive(rig: Rig, term) -> None:  # type: ignore[no-untyped-def]
    t = term("alice+web1")
    _prompt(t)
    t.type("echo plus-$((3*3))\n")
    t.wait_for("plus-9")


def test_builtin_demo_target_shell(rig: Rig, term) -> None:  # type: ignore[no-untyped-def]
    t = term("alice", "demo")
    _prompt(t)
    t.type("echo demo-$((5*5))\n")
    t.wait_for("demo-25")
    t.type("exit 4\n")
    assert t.dead_status() == 4
