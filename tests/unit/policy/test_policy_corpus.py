"""The two corpora of issue #15, through the pure layer.

* ``corpus_evasion.CASES``: every attempt must be denied or sent for approval (as an exec
  request and/or as an interactive line after its setup lines), never allowed;
* ``ordinary_commands.txt``: 963 ordinary commands (man-page EXAMPLES sections, the
  first policy's admin history, cheat sheets) decided with the starter policy, as an
  interactive line and as an exec request with a terminal: no deny, at most 1% held,
  and exactly the holds listed in ``EXPECTED_HOLDS`` (each one a choice, with its why).
"""

from __future__ import annotations

import re

import pytest
from corpus_evasion import CANARY_RULE, CASES, EFFECT_GLOB, rendered
from corpus_ordinary import EXPECTED_HOLDS, LONG_SESSION_HOLDS, NO_TERMINAL_INPUT_HELD, ORDINARY

from gateway.policy import Action, LineSnapshot, PolicyEngine, PolicySession, Rule, starter_rules

BASE = [*starter_rules(), Rule("canary", re.compile(CANARY_RULE), Action.DENY)]
ENGINE = PolicyEngine(BASE)
EFFECTS = PolicyEngine([*BASE, Rule("canary-writes", None, Action.DENY,
                                    writes=(EFFECT_GLOB,))])
STARTER = PolicyEngine(starter_rules())
U = {"user": "alice", "groups": ["ops"], "target": "web1"}


def _check(case_expect: str, action: Action, detail: object) -> None:
    assert action is not Action.ALLOW, detail
    if case_expect != "block":
        assert action is Action(case_expect), detail


@pytest.mark.parametrize(("cid", "case", "text", "setup"), rendered("exec"),
                         ids=[r[0] for r in rendered("exec")])
def test_evasion_exec(cid: str, case: object, text: str, setup: tuple[str, ...]) -> None:
    eng = EFFECTS if case.effect else ENGINE  # type: ignore[attr-defined]
    d = eng.decide(text, interactive=False, **U)
    if case.stdin and d.action is Action.ALLOW:  # type: ignore[attr-defined]
        # its payload comes on the user's input: that input must wait for approval
        assert d.input_gate and case.expect in ("block", "approve"), (text, d)  # type: ignore[attr-defined]
        return
    _check(case.expect, d.action, (text, d))  # type: ignore[attr-defined]


@pytest.mark.parametrize(("cid", "case", "text", "setup"), rendered("interactive"),
                         ids=[r[0] for r in rendered("interactive")])
def test_evasion_interactive(cid: str, case: object, text: str,
                             setup: tuple[str, ...]) -> None:
    eng = EFFECTS if case.effect else ENGINE  # type: ignore[attr-defined]
    s = PolicySession(eng, **U)
    for line in setup:  # earlier lines ran (approved if they needed it)
        d = s.decide(LineSnapshot(text=line))
        # through the gateway (e2e cases) a denied line never runs: its state is unreachable
        assert not (case.e2e and d.action is Action.DENY), (line, d)  # type: ignore[attr-defined]
        s.commit(d, approved=True)
    d = s.decide(LineSnapshot(text=text))
    _check(case.expect, d.action, (setup, text, d))  # type: ignore[attr-defined]


def test_evasion_corpus_covers_every_class() -> None:
    assert len(CASES) >= 300
    by_class = {c.cls for c in CASES}
    assert by_class == {1, 2, 3, 4, 5, 6, 7, 8, 9}
    assert sum(1 for c in CASES if c.e2e) >= 120
    assert sum(1 for c in CASES if c.effect) >= 10


# --------------------------------------------------------------------------- ordinary

def _holds(decide: object, gated: list[str] | None = None) -> tuple[list[str], list[str]]:
    held, denied = [], []
    for line in ORDINARY:
        d = decide(line)  # type: ignore[operator]
        if d.action is Action.DENY:
            denied.append(line)
        elif d.action is Action.APPROVE:
            held.append(line)
        elif d.input_gate is not None and gated is not None:
            gated.append(line)
    return held, denied


@pytest.mark.parametrize("path", ["interactive", "exec-tty", "exec"])
def test_ordinary_commands_pass(path: str) -> None:
    assert len(ORDINARY) >= 500
    expected = set(EXPECTED_HOLDS)
    if path == "interactive":
        held, denied = _holds(lambda line: STARTER.decide(line, **U))
    gated: list[str] = []
    if path != "interactive":
        tty = path == "exec-tty"
        held, denied = _holds(lambda line: STARTER.decide(line, interactive=False, tty=tty,
                                                          **U), gated)
    assert denied == []
    assert sorted(held) == sorted(expected), sorted(set(held) ^ expected)
    assert len(held) / len(ORDINARY) <= 0.01
    # without a terminal, what reads the user's input runs; its input is what waits
    assert set(gated) == (NO_TERMINAL_INPUT_HELD if path == "exec" else set())


def test_ordinary_commands_in_one_session() -> None:
    """The same lines typed one after the other in one shell (state carried over); each
    allowed line runs quietly and the shell's prompt comes back ("$ ")."""
    expected = {*EXPECTED_HOLDS, *LONG_SESSION_HOLDS}
    s = PolicySession(STARTER, **U)
    held = []
    for line in ORDINARY:
        d = s.decide(LineSnapshot(text=line, prompt="$ "))  # the shell's prompt is shown
        if d.action is Action.ALLOW:
            s.commit(d)
            s.feed_output(b"\r\n$ ")
        else:
            held.append(line)
    assert sorted(held) == sorted(expected), sorted(set(held) ^ expected)
    assert len(held) / len(ORDINARY) <= 0.02, held
