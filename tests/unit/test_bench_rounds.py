"""bench/throughput.py ``--repeat N``: the paths are measured in turn, round after round
(so a change of the machine's load falls on every path), the best run of each is kept,
and a path that fails is reported once and not run again."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _throughput() -> Any:
    spec = importlib.util.spec_from_file_location("bench_throughput",
                                                  ROOT / "bench" / "throughput.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_throughput"] = module
    spec.loader.exec_module(module)
    return module


class _Meter:
    seconds = 0.25

    def now(self) -> float:  # the CPU used while the transfer ran: part of ``seconds``
        return 0.2

    def __enter__(self) -> _Meter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class _Relay:
    def meter(self) -> _Meter:
        return _Meter()


class _Rig:
    gws: dict[str, Any] = {}
    openssh_relay = _Relay()
    bare_relay = _Relay()
    logs: dict[str | None, str] = {}

    def log_tail(self, via: str | None) -> str:
        return self.logs.get(via, "")


def test_paths_take_turns_and_the_best_run_of_each_is_kept() -> None:
    tp = _throughput()
    order: list[str | None] = []
    times = {None: [3.0, 2.0, 4.0], tp.RELAY: [5.0, 6.0, 1.5], tp.BARE: [1.0, 1.0, 1.0]}

    def run(via: str | None) -> float:
        order.append(via)
        return times[via][sum(1 for v in order if v == via) - 1]

    failures: list[str] = []
    paths = [None, tp.RELAY, tp.BARE]
    best = tp.measure_paths(_Rig(), run, paths, 3, 0.0, failures, "w")
    assert order == paths * 3
    assert [b[0] if b else None for b in best] == [2.0, 1.5, 1.0]
    assert [b[1:] if b else None for b in best] == [(0.0, 0.0), (0.25, 0.2), (0.25, 0.2)]
    assert failures == []


def test_a_failing_path_is_reported_once_and_skipped_after() -> None:
    tp = _throughput()
    order: list[str | None] = []

    def run(via: str | None) -> float:
        order.append(via)
        if via == tp.RELAY:
            raise RuntimeError("sshd refused")
        return 1.0

    failures: list[str] = []
    best = tp.measure_paths(_Rig(), run, [None, tp.RELAY], 3, 0.0, failures, "w")
    assert order == [None, tp.RELAY, None, None]
    assert best[1] is None and best[0] is not None
    assert failures == [f"w via {tp.RELAY}: sshd refused"]


def test_a_failed_relay_cell_reports_the_end_of_its_log() -> None:
    tp = _throughput()

    def run(via: str | None) -> float:
        if via == tp.BARE:
            raise RuntimeError("ssh ... exited 255: ")
        return 1.0

    rig = _Rig()
    rig.logs = {tp.BARE: "Traceback\nConnectionResetError: peer"}
    failures: list[str] = []
    tp.measure_paths(rig, run, [None, tp.BARE], 2, 0.0, failures, "exec-zero")
    assert failures == [f"exec-zero via {tp.BARE}: ssh ... exited 255: \n  its log ends:\n"
                        "Traceback\nConnectionResetError: peer"]
