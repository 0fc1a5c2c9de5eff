"""The recorder's health, as the running gateway sees it, for ``bastille status``.

A running gateway's recorder writes ``DATA_DIR/status.json`` (0600, replaced atomically)
every ``STATUS_INTERVAL`` seconds and whenever its state changes; ``bastille status``
reads it from another process and adds what it can see on disk itself (the spool).

States, worst first: ``failing`` (an administrator must act: storage refuses our
credentials, storage is full so sessions are paused, the store has been unreachable
for a long time, or no gateway is running), ``degraded`` (working around a problem with
nothing lost: the store is unreachable and recordings wait in the spool, a recording
dropped data under ``on_failure = "continue"``), ``ok``. Exit codes: 0, 1, 2.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common.processes import pid_alive
from recorder.sinks.base import SinkStatus

STATUS_FILE = "status.json"
WORKER_PREFIX = "status-worker-"  # + pid + ".json": one per SSH worker process
STATUS_INTERVAL = 2.0  # seconds between rewrites by a running gateway
STALE_AFTER = 10.0  # a status file older than this: the gateway is not running (or hung)
RANK = {"ok": 0, "degraded": 1, "failing": 2}
MAX_LISTED = 10  # sessions named one by one in `bastille status`; the rest are counted
SESSIONS_KEY = "ssh_sessions"  # in "gateway": the SSH sessions of a process, named
SSH_WORKERS_KEY = "ssh workers"  # in "gateway": the gateway's SSH worker processes


def worst(*states: str) -> str:
    return max(states, key=lambda s: RANK.get(s, 2))


@dataclass
class PausedSession:
    session_id: str
    seconds: float
    reason: str
    dropping: bool = False  # continue mode: its output is not recorded meanwhile


@dataclass
class RecorderStatus:
    """One snapshot of a recorder's health (see the module docstring)."""

    pid: int
    updated: float  # unix time of this snapshot
    started: float  # unix time the recorder started
    storage: SinkStatus
    sessions: int = 0  # recordings open
    paused: list[PausedSession] = field(default_factory=list)
    failed_recordings: int = 0  # since start
    last_failure: str | None = None
    index_pending: int = 0  # closed sessions waiting for their index pass (or its retry)
    gateway: dict[str, Any] = field(default_factory=dict)  # what the gateway adds

    @property
    def state(self) -> str:
        state: str = self.storage.state
        if any(p.dropping for p in self.paused):
            state = worst(state, "degraded")
        if any(not p.dropping and p.seconds >= 5 for p in self.paused):
            state = worst(state, "failing")
        return state

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["state"] = self.state
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RecorderStatus:
        storage = SinkStatus(**raw["storage"])
        return cls(
            pid=int(raw["pid"]),
            updated=float(raw["updated"]),
            started=float(raw["started"]),
            storage=storage,
            sessions=int(raw.get("sessions", 0)),
            paused=[PausedSession(**p) for p in raw.get("paused", [])],
            failed_recordings=int(raw.get("failed_recordings", 0)),
            last_failure=raw.get("last_failure"),
            index_pending=int(raw.get("index_pending", 0)),
            gateway=dict(raw.get("gateway", {})),
        )


def sessions_line(named: list[str]) -> str:
    """The ``ssh`` line of ``bastille status``: how many sessions, the first named."""
    more = f" and {len(named) - MAX_LISTED} more" if len(named) > MAX_LISTED else ""
    return f"{len(named)} session(s)" + (f": {', '.join(named[:MAX_LISTED])}{more}"
                                         if named else "")


def worker_status_name(pid: int) -> str:
    """The status file of a helper process that serves sessions (an SSH worker): its
    sessions and paused recordings are added to the gateway's by :func:`read_status`."""
    return f"{WORKER_PREFIX}{pid}.json"


def write_status(data_dir: Path, status: RecorderStatus, name: str = STATUS_FILE) -> None:
    """Replace the status file atomically (0600). Raises OSError."""
    path = data_dir / name
    tmp = path.with_name(f".{STATUS_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(status.to_json(), indent=1, sort_keys=True).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_status(data_dir: Path) -> tuple[RecorderStatus | None, str]:
    """The running gateway's last snapshot, and why there is none or it is stale.

    Returns:
        (status, "") when fresh; (status or None, reason) otherwise.
    """
    path = data_dir / STATUS_FILE
    try:
        raw = json.loads(path.read_text())
        status = RecorderStatus.from_json(raw)
    except FileNotFoundError:
        return None, f"no gateway has run with this data directory ({path} is missing)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"cannot read {path}: {exc}"
    add_worker_status(data_dir, status)
    age = time.time() - status.updated
    if not pid_alive(status.pid):
        return status, f"the gateway (pid {status.pid}) is not running"
    if age > STALE_AFTER:
        return status, f"the gateway (pid {status.pid}) has not updated its status for {age:.0f} s"
    return status, ""


def add_worker_status(data_dir: Path, status: RecorderStatus) -> None:
    """Add the sessions of the gateway's live SSH workers (their own status files); a
    status without SSH workers is left as it is."""
    if SSH_WORKERS_KEY not in status.gateway:
        return
    now = time.time()
    named: list[str] = []
    for path in sorted(data_dir.glob(f"{WORKER_PREFIX}*.json")):
        try:
            worker = RecorderStatus.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not pid_alive(worker.pid) or now - worker.updated > STALE_AFTER:
            continue  # a worker that is gone: its sessions ended with it
        status.sessions += worker.sessions
        status.paused.extend(worker.paused)
        status.failed_recordings += worker.failed_recordings
        status.last_failure = status.last_failure or worker.last_failure
        status.storage = worker.storage if RANK.get(worker.storage.state, 0) > RANK.get(
            status.storage.state, 0) else status.storage
        named += [str(n) for n in worker.gateway.get(SESSIONS_KEY, [])]
    status.gateway["ssh"] = sessions_line(named)


def _mib(n: int | None) -> str:
    if n is None:
        return "?"
    if n >= 10 * 1024**3:
        return f"{n / 1024**3:.1f} GiB"
    return f"{n / 1024**2:.1f} MiB"


def _ago(t: float | None, now: float) -> str:
    if t is None:
        return "-"
    secs = max(0.0, now - t)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
    if secs < 120:
        return f"{when} ({secs:.0f} s ago)"
    if secs < 7200:
        return f"{when} ({secs / 60:.0f} min ago)"
    return f"{when} ({secs / 3600:.1f} h ago)"


def render_status(
    status: RecorderStatus | None, problem: str, local: SinkStatus | None
) -> tuple[str, list[str]]:
    """The overall state and the lines ``bastille status`` prints.

    Args:
        status: the running gateway's snapshot (None if there is none).
        problem: why it is missing or stale ("" when fresh).
        local: what this process sees of the storage (spool on disk), or None.
    """
    from common.safetext import visible

    now = time.time()
    lines = []
    storage = status.storage if status is not None else local
    if status is None or problem:
        state = "failing"
    else:
        state = status.state
    if local is not None and local.problems:
        state = worst(state, "degraded")
    lines.append(f"state       {state.upper()}")
    if status is not None and not problem:
        age = now - status.updated
        lines.append(f"gateway     running, pid {status.pid}, since "
                     f"{_ago(status.started, now)}; status {age:.0f} s old")
    else:
        lines.append(f"gateway     NOT RUNNING: {visible(problem)}")
    if storage is not None:
        detail = f": {visible(storage.detail)}" if storage.detail else ""
        since = f" since {_ago(storage.since, now)}" if storage.since else ""
        lines.append(f"storage     {visible(storage.location)}: {storage.state}{since}{detail}")
    spool = local if local is not None and local.spool_cap_bytes is not None else storage
    if spool is not None and spool.spool_cap_bytes is not None:
        cap = spool.spool_cap_bytes
        pct = 100 * spool.spool_bytes / cap if cap else 0
        lines.append(
            f"spool       {_mib(spool.spool_bytes)} waiting for upload in {spool.spool_entries} "
            f"recordings (cap {_mib(cap)}, {pct:.0f}%); {spool.uploads_pending} closed and "
            "not yet confirmed"
        )
        if spool.oldest_entry is not None:
            lines.append(f"oldest      {_ago(spool.oldest_entry, now)}")
        for p in spool.problems:
            lines.append(f"problem     malformed spool entry left in place: {visible(p)}")
    if storage is not None and storage.free_bytes is not None:
        keep = f" (keeps {_mib(storage.min_free_bytes)} free)" if storage.min_free_bytes else ""
        lines.append(f"disk        {_mib(storage.free_bytes)} free{keep}")
    if status is not None and not problem:
        lines.append(f"sessions    {status.sessions} recording, {len(status.paused)} paused")
        for ps in status.paused:
            what = "not recorded (continue mode)" if ps.dropping else "paused"
            lines.append(f"  {visible(ps.session_id)}  {what} for {ps.seconds:.0f} s: "
                         f"{visible(ps.reason)}")
        if status.failed_recordings:
            lines.append(f"failures    {status.failed_recordings} recordings failed since start; "
                         f"last: {visible(status.last_failure or '')}")
        if status.index_pending:
            lines.append(f"index       {status.index_pending} sessions wait for indexing")
        for key, value in sorted(status.gateway.items()):
            if isinstance(value, str):  # not the lists lines are made of
                lines.append(f"{visible(key):11} {visible(value)}")
    if storage is not None and storage.last_error:
        lines.append(f"last error  {_ago(storage.last_error_at, now)}: "
                     f"{visible(storage.last_error)}")
    return state, lines
