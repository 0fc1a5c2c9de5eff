"""`bastille reload` reports the answer to its own signal, never an earlier reload's
(CI once saw a refused config reported as reloaded: the previous reload, 0.3 s before,
was inside the look-back window)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from gateway.cli.serve import _reload_event, _reload_events


def _event(ts: float, outcome: str) -> str:
    return json.dumps({"ts": ts, "kind": "gateway", "outcome": outcome,
                       "detail": {"event": "reload", "changed": ["policy"]}}) + "\n"


def test_an_earlier_reload_is_not_the_answer(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    now = time.time()
    audit.write_text(_event(now - 0.2, "ok"))  # the previous reload, just before
    since = now - 0.5
    seen = _reload_events(audit, since)
    assert _reload_event(audit, since, seen) is None  # still waiting for ours
    with audit.open("a") as fh:
        fh.write(_event(now + 0.1, "failed"))
    answer = _reload_event(audit, since, seen)
    assert answer is not None and answer["outcome"] == "failed"
