"""What the interactive relay holds and decides, through the real gateway to a real bash
(``ssh -tt`` in tmux): the other keys that run a line, keys bound in the session, lines
typed with echo off, lines typed ahead, and lines submitted inside REPLs and full-screen
programs. Each test checks what the user sees and that the canary file was not made.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.e2e.policy_gateway import (
    DENIED,
    PROMPT,
    TargetHome,
    Term,
    canaries,
    clear_canaries,
    policy_extra,
    start_gateway,
    stop_gateway,
)
from tests.e2e.rig import TARGET_USER, Rig

pytestmark = pytest.mark.e2e

C = "/tmp/bastille-canary-relay"


@pytest.fixture(scope="module")
def gw(rig: Rig) -> Iterator[Rig]:
    clear_canaries()
    home = TargetHome(TARGET_USER, ["s.sh", "x.txt"])
    g, proc = start_gateway(rig, policy_extra())
    yield g
    stop_gateway(proc)
    home.restore()


@pytest.fixture
def term(gw: Rig) -> Iterator[Term]:
    t = Term(gw)
    yield t
    t.close()
    assert canaries() == []


def _audit(g: Rig, outcome: str) -> list[str]:
    return [e["detail"]["command"] for e in map(json.loads, (g.data / "audit.jsonl")
                                                 .read_text().splitlines())
            if e["kind"] == "policy" and e["outcome"] == outcome]


@pytest.mark.parametrize("key", ["C-j", "C-o", "C-m"])
def test_every_enter_key_is_held(term: Term, key: str) -> None:
    term.tmux.type(f"touch {C}-{key}")
    assert term.press(lambda: term.tmux.send(key)) == "deny"


def test_edit_and_execute_is_held(term: Term) -> None:
    term.tmux.type("echo hi")
    # readline would run the editor, then the line
    assert term.press(lambda: term.tmux.send("C-x", "C-e")) == "approve"
    assert term.run("echo still-$((6*7))") == "ran"
    assert "still-42" in term.tmux.screen()


def test_a_key_bound_in_the_session_is_decided(term: Term) -> None:
    # the binding runs what $F names when the key is pressed: held when bound, then
    # the key itself is decided with the session's state at that moment
    assert term.run_approved("bind -x '\"\\C-t\": touch $F'") == "approved"
    assert term.run(f"F={C}") == "ran"
    assert term.press(lambda: term.tmux.send("C-t")) == "deny"


def test_echo_off_keeps_its_uncertainty(term: Term) -> None:
    assert term.run_approved("stty -echo") == "approved"
    # nothing of these lines is shown: the keys are checked, and never allowed
    assert term.run(f"touch {C}") == "deny"
    assert term.run("echo hidden") == "approve"


def test_lines_typed_ahead_are_read_as_bash_reads_them(term: Term) -> None:
    """Pasted at once: each Enter is held while the next lines wait in the relay."""
    term.tmux.type(f"cat > s.sh <<EOF\ntouch {C}\nEOF\nsh s.sh\n")
    term.tmux.wait_for("sh runs s.sh, a file written in this session")
    term.tmux.wait_for("waiting for approval #")  # (a fresh terminal: the first request)
    term.tmux.send("C-c")
    term.tmux.wait_for("; the command was not run")


def test_python_repl_lines_are_checked(term: Term) -> None:
    term.tmux.type("python3 -q\n")
    term.tmux.wait_re(r"^>>> ?$")
    term.tmux.type(f"import os; os.system('touch {C}')\n")
    term.tmux.wait_for(DENIED)
    term.tmux.type("print(6 * 7)\n")
    term.tmux.wait_re(r"^42$")
    term.tmux.type("exit()\n")
    term.tmux.wait_for(f"\n{PROMPT.rstrip()}")


def test_vi_command_line_is_checked(gw: Rig, term: Term) -> None:
    term.tmux.type("vi x.txt\n")
    term.tmux.wait_re(r"x\.txt")
    time.sleep(0.5)
    term.tmux.type(f":!touch {C}\n")
    deadline = time.monotonic() + 10
    while not any(C in c for c in _audit(gw, "deny")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert any(C in c for c in _audit(gw, "deny"))
    time.sleep(0.5)  # the refusal reaches the terminal (keys typed before it are dropped)
    term.tmux.send("Escape")
    term.tmux.type(":q!\n")
    assert term.wait_prompt(), (term.tmux.screen(), term.history()[-500:])


def test_less_shell_escape_is_checked(gw: Rig, term: Term) -> None:
    term.tmux.type("less /etc/hostname\n")
    time.sleep(0.5)
    term.tmux.type(f"!touch {C}\n")
    deadline = time.monotonic() + 10
    while not any(f"!touch {C}" in c for c in _audit(gw, "deny")) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert any(f"!touch {C}" in c for c in _audit(gw, "deny"))
    time.sleep(0.5)
    term.tmux.type("q")
    assert term.wait_prompt()


def test_repl_started_by_pty_exec_is_checked(gw: Rig) -> None:
    t = Term(gw, extra=(), set_prompt=False, command=("/usr/bin/python3", "-q"))  # on the target
    try:
        t.tmux.wait_re(r"^>>> ?$")
        t.tmux.type(f"import os; os.system('touch {C}')\n")
        t.tmux.wait_for(DENIED)
        t.tmux.type("print(6 * 7)\n")
        t.tmux.wait_re(r"^42$")
    finally:
        t.close()
    assert canaries() == []


def test_escapes_approve_holds_starting_a_repl(rig: Rig) -> None:
    g, proc = start_gateway(rig, policy_extra(escapes="approve"))
    try:
        t = Term(g)
        try:
            assert t.run("python3 -q") == "approve"
            assert t.run("echo ok-$((1+1))") == "ran"
        finally:
            t.close()
    finally:
        stop_gateway(proc)
