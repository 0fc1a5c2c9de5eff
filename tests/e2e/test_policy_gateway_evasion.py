"""The evasion corpus (tests/unit/policy/corpus_evasion.py, cases marked ``e2e``) through
the real gateway to a real bash on sshd, as an exec request (``ssh alice@gw web1 --
TEXT``) and typed in a terminal (``ssh -tt`` in tmux), with the starter policy and the
canary rule. Every case must be denied or held for approval, and no canary file may
exist on the target afterwards (sshd runs on this machine: the test looks at /tmp).

Held requests are abandoned: the exec client goes away, the terminal presses Ctrl-C.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.policy_gateway import (
    TargetHome,
    Term,
    canaries,
    clear_canaries,
    exec_line,
    policy_extra,
    start_gateway,
    stop_gateway,
)
from tests.e2e.rig import TARGET_USER, Rig
from tests.unit.policy.corpus_evasion import Case, rendered

pytestmark = pytest.mark.e2e

Row = tuple[str, Case, str, tuple[str, ...]]


@pytest.fixture(scope="module")
def gws(rig: Rig) -> Iterator[dict[bool, Rig]]:
    """One gateway with the canary rule, one with the canary effect rule as well."""
    clear_canaries()
    texts = [t for m in ("exec", "interactive") for r in rendered(m) for t in (r[2], *r[3])]
    home = TargetHome(TARGET_USER, texts)
    plain, gw1 = start_gateway(rig, policy_extra())
    effect, gw2 = start_gateway(rig, policy_extra(effect=True))
    yield {False: plain, True: effect}
    stop_gateway(gw1)
    stop_gateway(gw2)
    home.restore()


def _cases(mode: str) -> list[Row]:
    return [r for r in rendered(mode) if r[1].e2e]


def _wrong(case: Case, got: str) -> str | None:
    if got not in ("deny", "approve"):
        return got
    if case.expect != "block" and got != case.expect:
        return f"{got} (expected {case.expect})"
    return None


def test_the_e2e_share_of_the_corpus() -> None:
    both = {r[0] for r in _cases("exec")} | {r[0] for r in _cases("interactive")}
    assert len(both) >= 120


@pytest.mark.timeout(1200)
def test_evasions_as_exec_requests(gws: dict[bool, Rig]) -> None:
    rows = _cases("exec")

    def one(row: Row) -> tuple[Row, str, str]:
        n = int(row[0].split("-")[1])  # the payload on its input, if any
        r = exec_line(gws[row[1].effect], "web1", row[2],
                      stdin=row[1].render_stdin(n).encode())
        return row, r.outcome, r.stderr

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(one, rows))
    print("exec:", {o: sum(1 for r in results if r[1] == o) for o in ("deny", "approve")})
    failures = [(cid, text, got, err[-300:]) for (cid, case, text, _), got, err in results
                if _wrong(case, got)]
    assert failures == []
    assert canaries() == []


@pytest.mark.timeout(1800)
def test_evasions_typed_in_a_terminal(gws: dict[bool, Rig]) -> None:
    rows = _cases("interactive")
    failures: list[tuple[str, str, str]] = []
    outcomes: dict[str, int] = {}
    shared: dict[bool, Term] = {}
    try:
        for cid, case, text, setup in rows:
            g = gws[case.effect]
            if setup:  # state from earlier lines: a terminal of its own
                t = Term(g)
                try:
                    for line in setup:
                        ran = t.run_approved(line)
                        assert ran in ("ran", "approved"), (cid, line, ran)
                    got = t.run(text)
                finally:
                    t.close()
            else:
                if case.effect not in shared:
                    shared[case.effect] = Term(g)
                got = shared[case.effect].run(text)
            outcomes[got] = outcomes.get(got, 0) + 1
            wrong = _wrong(case, got)
            if wrong or canaries():
                t = shared.get(case.effect)
                rows = t.history().splitlines()[-6:] if t is not None and not setup else []
                failures.append((cid, text, f"{wrong} {canaries()} {rows}"))
                clear_canaries()
    finally:
        for t in shared.values():
            t.close()
    print("terminal:", len(rows), outcomes)
    assert failures == []
