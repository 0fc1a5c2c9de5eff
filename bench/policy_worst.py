"""Worst-case cost of deciding one line, at the gateway's bound (``MAX_POLICY_LINE``).

A client controls the lines the policy parses (exec commands, pasted lines). The gateway
parses at most ``MAX_POLICY_LINE`` characters (a longer line is uncertain without being
parsed) and exec commands are at most ``MAX_EXEC_COMMAND`` bytes: this measures what the
most expensive shapes of line cost at and beyond that bound, i.e. the longest the event
loop can be held by one decision. docs/security.md quotes the figures.

Run: python bench/policy_worst.py [--smoke]
"""

from __future__ import annotations

import argparse
import re
import time

from gateway.core.enforce import too_long
from gateway.limits import MAX_POLICY_LINE
from gateway.policy import Action, PolicyEngine, Rule


def shapes(n: int) -> dict[str, str]:
    """Adversarial lines of about ``n`` characters."""
    return {
        "words": "echo " + "a " * (n // 2),
        "pipes": "a|" * (n // 2),
        "semicolons": "ls;" * (n // 3),
        "quotes": "echo " + "'a'" * (n // 3),
        "substitutions": "echo " + "$(" * (n // 4) + ")" * (n // 4),
        "double-quoted": 'echo "' + "$(a)" * (n // 4) + '"',
        "continuations": "echo " + "\\\n" * (n // 2),
        "one word": "x" * n,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args(argv)
    engine = PolicyEngine([Rule(name="r", match=re.compile(r"^rm -r -f /$"),
                                action=Action.DENY)],
                          default=Action.ALLOW, on_uncertain=Action.APPROVE)
    sizes = [MAX_POLICY_LINE] if a.smoke else [MAX_POLICY_LINE // 4, MAX_POLICY_LINE,
                                               4 * MAX_POLICY_LINE]
    print(f"{'shape':<16} {'chars':>7} {'ms':>8}  decision")
    worst = 0.0
    for n in sizes:
        for name, line in shapes(n).items():
            started = time.perf_counter()
            decision = too_long(engine, line) or engine.decide(
                line, user="u", groups=[], target="t", interactive=False)
            ms = (time.perf_counter() - started) * 1000
            worst = max(worst, ms)
            print(f"{name:<16} {len(line):>7} {ms:>8.1f}  {decision.action}")
    print(f"worst: {worst:.1f} ms per decision (bound {MAX_POLICY_LINE} characters)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
