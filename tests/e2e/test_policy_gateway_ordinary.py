"""The ordinary-commands corpus (tests/unit/policy/ordinary_commands.txt: man-page
EXAMPLES sections, admin history, cheat sheets) through the real gateway with the
starter policy, as exec requests (``ssh alice@gw fp -- LINE``, no terminal) and typed
in one terminal session (``ssh -tt`` in tmux), to a target account whose shell runs
nothing (``policy_gateway.fp_account``): no line may be denied, and the lines held for
approval must be exactly the by-design holds of the pure-layer test.

By default every fifth line runs; ``BASTILLE_FP_FULL=1`` runs all of them (about ten
minutes on two cores).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway.policy import Action, LineSnapshot, PolicyEngine, PolicySession, starter_rules
from tests.e2e.policy_gateway import (
    PROMPT,
    Term,
    exec_line,
    fp_account,
    policy_extra,
    start_gateway,
    stop_gateway,
)
from tests.e2e.rig import Rig
from tests.unit.policy.corpus_ordinary import EXPECTED_HOLDS, ORDINARY

pytestmark = pytest.mark.e2e

FULL = os.environ.get("BASTILLE_FP_FULL") == "1"
LINES = ORDINARY if FULL else ORDINARY[::5]


@pytest.fixture(scope="module")
def fp(rig: Rig) -> Iterator[Rig]:
    account = fp_account(rig)
    table = next(account)
    g, gw = start_gateway(rig, policy_extra(fp_target=table, canary=False))
    yield g
    stop_gateway(gw)
    next(account, None)


def _report(kind: str, outcomes: dict[str, list[str]]) -> None:
    counts = {k: len(v) for k, v in outcomes.items()}
    print(f"{kind}: {len(LINES)} lines, {counts}")


@pytest.mark.timeout(1800)
def test_ordinary_commands_as_exec_requests(fp: Rig) -> None:
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda line: (line, exec_line(fp, "fp", line)), LINES))
    outcomes: dict[str, list[str]] = {}
    for line, r in results:
        outcomes.setdefault(r.outcome, []).append(line)
        if r.outcome == "ran":
            assert "RAN-OK" not in r.stderr, r.stderr
    _report("exec", outcomes)
    assert outcomes.get("deny", []) == []
    assert outcomes.get("timeout", []) == []
    # NO_TERMINAL_INPUT_HELD lines run too (no input is sent; tests/e2e/test_policy.py
    # shows their input waiting for approval)
    expected = {x for x in LINES if x in EXPECTED_HOLDS}
    assert set(outcomes.get("approve", [])) == expected


def _reasons(g: Rig) -> dict[str, str]:
    """The gateway's reason for each line it did not allow (its audit log)."""
    out = {}
    for e in map(json.loads, (g.data / "audit.jsonl").read_text().splitlines()):
        if e["kind"] == "policy" and e["outcome"] != "allow":
            out[e["detail"]["command"].split("\n")[-1]] = e["detail"]["reason"]
    return out


def _pure_session(lines: list[str]) -> dict[str, str]:
    """The same lines through one pure ``PolicySession`` (refused lines not committed)."""
    s = PolicySession(PolicyEngine(starter_rules()), user="alice", groups=["ops"],
                      target="fp")
    out = {}
    for line in lines:
        d = s.decide(LineSnapshot(text=line, prompt=PROMPT))  # as the terminal shows it
        if d.action is Action.ALLOW:
            s.commit(d)
            # what the account's bash answers (no builtin, no PATH)
            word = (line.split() or [""])[0]
            s.feed_output(f"\r\nbash: {word}: command not found\r\n{PROMPT}".encode())
        out[line] = {"allow": "ran"}.get(d.action.value, d.action.value)
    return out


@pytest.mark.timeout(3600)
def test_ordinary_commands_typed_in_one_session(fp: Rig) -> None:
    """Typed one after the other (the state of earlier lines applies): the gateway
    decides every line as the pure session does, and denies none."""
    t = Term(fp, "fp", set_prompt=False)
    got: dict[str, str] = {}
    try:
        t.wait_prompt()
        assert t.at_prompt(), t.tmux.screen()
        for line in LINES:
            got[line] = t.run(line)
    finally:
        t.close()
    for line, rows in t.timeouts:
        print(f"no prompt after {line!r}:\n{rows}")
    outcomes: dict[str, list[str]] = {}
    for line, o in got.items():
        outcomes.setdefault(o, []).append(line)
    _report("terminal", outcomes)
    pure = _pure_session(LINES)
    why = _reasons(fp)
    for k, v in got.items():
        if pure[k] != v:
            print("differs:", repr(k), v, pure[k], why.get(k.split("\n")[-1]))
    assert {k: (v, why.get(k.split("\n")[-1])) for k, v in got.items() if pure[k] != v} == {}
    assert outcomes.get("deny", []) == []
    held = outcomes.get("approve", [])
    by_design = [x for x in held if x in EXPECTED_HOLDS]
    print(f"terminal: held {len(held)} ({len(by_design)} by design), "
          f"{100 * len(held) / len(LINES):.2f}%")
    if FULL:  # tests/unit/policy/corpus_ordinary.py LONG_SESSION_HOLDS says which, why
        assert len(held) <= 0.02 * len(LINES)
