"""Helpers for the recorder tests (imported by name; pytest puts this directory on sys.path)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from recorder.service import WINDOW_LOG, SessionHeader, header_fields, sink_name
from recorder.settings import RecorderSettings
from recorder.signing import Signer
from recorder.sinks.memory import MemorySink
from recorder.writer import SessionState, Writer

ROOT = Path(__file__).resolve().parents[3]


def run_without_sha_ext(code: str) -> None:
    """Run ``code`` in a fresh interpreter with ``BASTILLE_NO_SHA_EXT=1`` (hashlib, not
    common._sha2x); it must print ``ok``."""
    env = dict(os.environ, BASTILLE_NO_SHA_EXT="1")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


START = 1_763_900_000.0  # a fixed wall-clock start (2025-11-23)

# (time in seconds, event type, payload); None as an item = force a chunk boundary
Batch = list[tuple[float, int, bytes]]


def make_header(session_id: str = "golden0001", **kw: object) -> SessionHeader:
    fields: dict[str, object] = {
        "session_id": session_id,
        "user": "alice",
        "target": "web1",
        "protocol": "ssh",
        "kind": "shell",
        "client_addr": "203.0.113.5:51234",
        "start_time": START,
        "cols": 80,
        "rows": 24,
        "term": "xterm-256color",
        "gateway_version": "0.1.0",
    }
    fields.update(kw)
    return SessionHeader(**fields)  # type: ignore[arg-type]


def build_recording(
    batches: Iterable[Batch],
    *,
    header: SessionHeader | None = None,
    signer: Signer | None = None,
    close: bool = True,
    settings: RecorderSettings | None = None,
    sink: MemorySink | None = None,
    exit_status: int | None = 0,
) -> tuple[bytes, str]:
    """Write a recording with the writer's own code, one data chunk per batch, no threads.

    Returns (bytes, sink name). Deterministic for fixed inputs.
    """
    header = header or make_header()
    settings = settings or RecorderSettings(data_dir=Path("/nonexistent"))
    sink = sink or MemorySink()
    writer = Writer(settings, sink, signer)
    state = SessionState(
        sink_name(header), header_fields(header, settings, signer), settings, WINDOW_LOG
    )
    writer.open(state)
    last = 0.0
    for batch in batches:
        for t, etype, data in batch:
            state.pending.append((etype, round(t * 1e6), data))
            state.enqueued += len(data)
            last = max(last, t)
        state.write_pending(settings.flush_bytes)
    if close:
        from recorder import events as ev

        state.pending.append(
            (ev.EXIT, round(last * 1e6), ev.dumps({"status": exit_status, "signal": None}))
        )
        writer.finish(state, header.start_time + last, exit_status, None)
        assert state.error is None, state.error
    else:
        assert state.stream is not None
        state.stream.flush()
    return sink.read(state.name), state.name


class FakeClock:
    """A controllable wall clock for deterministic event times."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wait_until(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()
