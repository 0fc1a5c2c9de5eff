"""The screen pass of an RDP session: desktop frames for the player, screen text for search.

``python -m gateway.rdp.screens -c CONFIG SESSION_ID`` (started by the RDP worker when a
session ends, :mod:`gateway.rdp.passes`; or by hand as ``bastille rdp-screens``):

1. reads the recording (waiting up to ``WAIT_RECORDING`` s for its trailer);
2. draws its desktop offscreen with pyrdp (:mod:`gateway.rdp.desktop`) and writes the
   sampled frames to the frame cache (:mod:`recorder.frames`), which the player shows;
3. unless ``[rdp] ocr = false``, OCRs some frames (:mod:`gateway.rdp.ocr`: on change,
   at most ``[rdp] ocr_per_minute`` per minute of session) and writes each line with
   the time it appeared into the session index (kind ``ocr``: found by ``bastille
   sessions list --text`` and the player's searches) and into the frame cache (so that
   ``bastille rdp-screens --index-only`` can restore it after ``bastille reindex``).

Its CPU is bounded: the process lowers its priority (nice ``NICE``), uses one thread,
and stops drawing and reading after ``[rdp] ocr_budget`` CPU seconds (the frames and
text up to there are kept; ``RLIMIT_CPU`` backs this up). Whatever it did not do is
audited (kind ``recording``, ``event`` ``rdp screen pass``, outcome ``skipped`` or
``partial``, with the reason); a complete pass is audited ``ok`` with its figures.

``--frames-only`` draws frames without OCR, index or audit (what the player asks for
when it opens an RDP session that has none yet, e.g. a live one).

Exit status: 0 done (also partial), 1 the recording cannot be read, 2 the configuration
is invalid, 3 drawing needs the ``bastille[rdp-video]`` extra.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recorder import events as ev
from recorder import frames as fc
from recorder.errors import FormatError, RecorderError, SinkError
from recorder.reader import Recording
from recorder.settings import RecorderSettings

NICE = 10  # added to the pass's niceness: it yields to sessions
WAIT_RECORDING = 30.0  # seconds to wait for the recording's trailer (uploads, spool)
KEY_INTERVAL = 30.0  # seconds of changes between full frames in the cache, at most
KEY_RATIO = 4  # ... or when the changes since the last one add up to 4 of it (seek cost)
MAX_CACHE_BYTES = 256 << 20  # frames beyond this are not stored (the pass stops drawing)
EXIT_FAILED, EXIT_CONFIG, EXIT_NO_RENDER = 1, 2, 3
BUILD_BUDGET = 600.0  # CPU seconds when the player asks for frames (--frames-only)
BUILD_TIMEOUT = 900.0  # seconds the player waits for them


@dataclass(frozen=True)
class PassOptions:
    """What one pass does and may spend."""

    ocr: bool = True
    budget: float = 120.0  # CPU seconds for drawing and reading together
    per_minute: int = 6  # OCR runs per minute of session time
    frames_only: bool = False  # no OCR, no index, no audit (the player's request)


@dataclass
class PassResult:
    """What a pass did, for the audit record and the command line."""

    session_id: str
    outcome: str = "ok"  # ok | partial | skipped
    reasons: list[str] = field(default_factory=list)
    frames: int = 0
    ocr_lines: int = 0
    ocr_runs: int = 0
    cpu: float = 0.0
    drawn_until: float = 0.0
    duration: float = 0.0
    cache: Path | None = None
    lines: list[fc.OcrLine] = field(default_factory=list)

    def skip(self, reason: str, *, partial: bool = False) -> None:
        self.reasons.append(reason)
        if partial and self.outcome == "ok":
            self.outcome = "partial"
        elif not partial:
            self.outcome = "skipped"

    def detail(self) -> dict[str, object]:
        d: dict[str, object] = {
            "event": "rdp screen pass", "frames": self.frames, "ocr_lines": self.ocr_lines,
            "ocr_runs": self.ocr_runs, "cpu_s": round(self.cpu, 2),
            "drawn_until_s": round(self.drawn_until, 1), "duration_s": round(self.duration, 1)}
        if self.reasons:
            d["reason"] = "; ".join(self.reasons)
        return d


def read_recording(settings: RecorderSettings, session_id: str,
                   wait: float = WAIT_RECORDING) -> Recording:
    """The recording of ``session_id``; waits up to ``wait`` s for its trailer (a file
    still being uploaded). RecorderError when it cannot be found or read."""
    from recorder.index import open_index
    from recorder.service import open_sink

    index = open_index(settings, checked=False)  # the SQLite file or the shared index
    try:
        row = index.get(session_id)
        rows = [row] if row is not None else index.find(session_id)
    finally:
        index.close()
    if len(rows) != 1:
        raise RecorderError(f"{'no' if not rows else 'more than one'} session matches "
                            f"{session_id!r}")
    sink = open_sink(settings)
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                rec = Recording.from_sink(sink, rows[0].name)
            except (FormatError, SinkError) as exc:
                if time.monotonic() >= deadline:
                    raise RecorderError(f"cannot read the recording of {rows[0].id}: "
                                        f"{exc}") from exc
                rec = None
            if rec is not None and (rec.trailer is not None or time.monotonic() >= deadline
                                    or rows[0].status == "live"):
                return rec
            time.sleep(0.5)
    finally:
        sink.close()


class _Budget:
    def __init__(self, seconds: float) -> None:
        self.start = time.process_time()
        self.seconds = seconds
        self.exhausted_at: float | None = None

    @property
    def used(self) -> float:
        return time.process_time() - self.start

    def over(self, t: float) -> bool:
        if self.exhausted_at is None and self.used > self.seconds:
            self.exhausted_at = t
        return self.exhausted_at is not None


def _planner(opts: PassOptions, result: PassResult) -> Any:
    """The OCR planner, or None (OCR off, or unavailable: recorded in ``result``)."""
    if opts.frames_only:
        return None
    if not opts.ocr:
        result.skip("screen text not read: [rdp] ocr = false", partial=True)
        return None
    from gateway.rdp.ocr import OcrPlanner, OcrUnavailable, TesseractEngine

    try:
        engine = TesseractEngine()
    except OcrUnavailable as exc:
        result.skip(f"screen text not read: {exc}", partial=True)
        return None
    from PIL import Image

    return OcrPlanner(engine, opts.per_minute, lambda a: Image.fromarray(a).convert("L"))


def draw(rec: Recording, data_dir: Path, opts: PassOptions) -> PassResult:
    """Draw (and read) one recording; write its frame cache. RenderUnavailable when the
    rdp-video extra is missing."""
    from gateway.rdp.desktop import clock_base, rects, samples

    result = PassResult(rec.session_id, duration=rec.duration)
    events = [(e.time, e.data) for e in rec.events([ev.RDP])]
    data = b"".join(d for _, d in events)
    if not data:
        result.skip("the recording has no RDP screen stream")
        return result
    budget = _Budget(opts.budget)
    planner = _planner(opts, result)
    writer = fc.FrameWriter(fc.cache_path(data_dir, rec.session_id), session_id=rec.session_id,
                            source_size=rec.src.size())
    last_key = -KEY_INTERVAL
    try:
        for s in samples(data, base=clock_base(events), stop=budget.over):
            if writer.payload_bytes > MAX_CACHE_BYTES:
                result.skip(f"frame cache limit ({MAX_CACHE_BYTES >> 20} MiB) reached at "
                            f"{s.time:.0f} s", partial=True)
                break
            h, w = s.rgb.shape[:2]
            if s.key or s.time - last_key >= KEY_INTERVAL or \
                    writer.bytes_since_key > KEY_RATIO * writer.last_key_bytes:
                writer.key(s.time, w, h, s.rgb.tobytes())
                last_key = s.time
            else:
                for x, y, bw, bh in rects(s):
                    writer.rect(s.time, x, y, bw, bh, s.rgb[y:y + bh, x:x + bw].tobytes())
            result.frames += 1
            result.drawn_until = s.time
            if planner is not None and not budget.over(s.time):
                planner.feed(s)
        if budget.exhausted_at is not None:
            result.skip(f"CPU budget of {opts.budget:.0f} s used up at "
                        f"{budget.exhausted_at:.0f} s of {rec.duration:.0f} s", partial=True)
        else:
            result.drawn_until = max(result.drawn_until, rec.duration)
        if planner is not None:
            result.lines = planner.finish()
            result.ocr_runs = planner.runs
            planner.engine.close()
        result.ocr_lines = len(result.lines)
        result.cache = writer.finish(
            until=result.drawn_until, complete=rec.trailer is not None and
            budget.exhausted_at is None and result.outcome != "skipped", ocr=result.lines,
            notes={"reasons": result.reasons, "ocr": planner is not None})
    except BaseException:
        writer.abort()
        raise
    result.cpu = budget.used
    return result


def index_lines(settings: RecorderSettings, session_id: str, lines: list[fc.OcrLine]) -> None:
    """Write OCR lines into the session index (kind ``ocr``)."""
    from recorder.index import open_index

    index = open_index(settings, checked=False)  # the SQLite file or the shared index
    try:
        index.set_ocr_lines(session_id, [(line.time, line.text) for line in lines])
    finally:
        index.close()


def restore_index(settings: RecorderSettings, session_id: str) -> int:
    """Put the OCR lines of a session's frame cache back into the index (after
    ``bastille reindex``); returns how many."""
    cache = fc.FrameCache.open(fc.cache_path(settings.data_dir, session_id))
    try:
        index_lines(settings, session_id, cache.ocr)
        return len(cache.ocr)
    finally:
        cache.close()


def run_pass(settings: RecorderSettings, session_id: str, opts: PassOptions,
             audit: Callable[[str, PassResult], None] | None = None) -> PassResult:
    """Read, draw, OCR and index one session; audit what was skipped."""
    from gateway.errors import RenderUnavailable

    rec = read_recording(settings, session_id, wait=0.0 if opts.frames_only else
                         WAIT_RECORDING)
    try:
        result = draw(rec, settings.data_dir, opts)
    except RenderUnavailable as exc:
        result = PassResult(rec.session_id, duration=rec.duration)
        result.skip(str(exc))
        if audit is not None:
            audit(rec.header.get("user", ""), result)
        raise
    if not opts.frames_only and result.outcome != "skipped" and result.lines:
        index_lines(settings, rec.session_id, result.lines)
    if audit is not None:
        audit(str(rec.header.get("user", "")), result)
    return result


def lower_priority(budget: float) -> None:
    """Nice this process, one OCR thread, and a hard CPU limit past the budget."""
    with contextlib.suppress(OSError):
        os.nice(NICE)
    os.environ["OMP_THREAD_LIMIT"] = "1"  # Tesseract's OpenMP: one core, not all
    limit = int(budget) + 30
    with contextlib.suppress(ValueError, OSError):
        _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
        if hard == resource.RLIM_INFINITY or hard > limit:
            resource.setrlimit(resource.RLIMIT_CPU, (limit, hard))


def _settings(args: argparse.Namespace) -> tuple[RecorderSettings, Any]:
    if args.config:
        from gateway.config import load_config

        config = load_config(args.config, secrets=False)  # never needs target secrets
        return config.recording, config
    return RecorderSettings(data_dir=Path(args.data)), None


def _options(args: argparse.Namespace, config: Any) -> PassOptions:
    rdp = getattr(config, "rdp", None)
    ocr = bool(getattr(rdp, "ocr", True)) and not args.no_ocr
    budget = args.budget if args.budget is not None else float(getattr(rdp, "ocr_budget", 120.0))
    if args.frames_only and args.budget is None:
        budget = max(budget, BUILD_BUDGET)  # an auditor is waiting for these frames
    per_minute = int(getattr(rdp, "ocr_per_minute", 6))
    return PassOptions(ocr=ocr, budget=budget, per_minute=per_minute,
                       frames_only=args.frames_only)


def auditor(config: Any) -> Callable[[str, PassResult], None] | None:
    if config is None:
        return None
    from gateway.audit import AuditEvent, AuditLog, Kind

    def audit(user: str, result: PassResult) -> None:
        log = AuditLog(config.audit.file)  # exported (syslog, webhooks) by the gateway
        try:
            log.emit(AuditEvent(Kind.RECORDING, result.outcome, user=user,
                                session=result.session_id, detail=result.detail()))
        finally:
            log.close()

    return audit


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PDEATHSIG


def frame_builder(config: Path | None, settings: RecorderSettings) -> Callable[[str], None]:
    """What ``bastille player`` registers with the player: draws the frames of a session
    in a child process (``--frames-only``; niced, ends with the player), blocking.

    Raises (from the returned function):
        RuntimeError: with the child's message, when the frames cannot be drawn.
    """
    import subprocess

    where = ["-c", str(config)] if config is not None else ["--data", str(settings.data_dir)]

    def build(session_id: str) -> None:
        cmd = [sys.executable, "-m", "gateway.rdp.screens", *where, "--frames-only", "--",
               session_id]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT,
                                  stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"drawing the desktop took more than {BUILD_TIMEOUT:.0f} s") \
                from exc
        except OSError as exc:
            raise RuntimeError(f"cannot draw the desktop: {exc}") from exc
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            raise RuntimeError(lines[-1] if lines else f"drawing the desktop failed "
                               f"(exit {done.returncode})")

    return build


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.rdp.screens", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("-c", "--config")
    where.add_argument("--data", help="a data directory (no config: no audit)")
    p.add_argument("session")
    p.add_argument("--no-ocr", action="store_true", help="draw frames, read no text")
    p.add_argument("--frames-only", action="store_true",
                   help="frames for the player: no OCR, no index, no audit")
    p.add_argument("--budget", type=float, help="CPU seconds (default [rdp] ocr_budget)")
    args = p.parse_args(argv)
    from gateway.errors import ConfigError

    try:
        settings, config = _settings(args)
    except ConfigError as exc:
        print(f"bastille: invalid configuration:\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    opts = _options(args, config)
    lower_priority(opts.budget)
    from gateway.errors import RenderUnavailable

    audit = None if opts.frames_only else auditor(config)
    try:
        result = run_pass(settings, args.session, opts, audit)
    except RenderUnavailable as exc:
        print(f"bastille: {exc}", file=sys.stderr)
        return EXIT_NO_RENDER
    except (RecorderError, OSError) as exc:
        print(f"bastille: {exc}", file=sys.stderr)
        if audit is not None:
            failed = PassResult(args.session)
            failed.skip(str(exc))
            audit("", failed)
        return EXIT_FAILED
    print(summary(result), flush=True)
    return 0


def summary(result: PassResult) -> str:
    """One line about a pass, for people."""
    text = (f"{result.session_id}: {result.outcome}: {result.frames} frames up to "
            f"{result.drawn_until:.1f} s of {result.duration:.1f} s, {result.ocr_lines} "
            f"lines of screen text ({result.ocr_runs} OCR runs), {result.cpu:.1f} s CPU")
    if result.reasons:
        text += " (" + "; ".join(result.reasons) + ")"
    return text


if __name__ == "__main__":
    sys.exit(main())
