"""Prometheus metrics of a gateway: counted from the audit trail, sampled at scrape time.

:class:`AuditCounter` follows the audit file (every process's events: the gateway, RDP
workers, the CLI) from the moment the gateway starts and keeps the counters:
sessions started and running (by protocol, kind and target), session bytes, policy
decisions (by action and rule), approvals, logins and authentication failures, logins
refused by the rate limits, worker restarts, recording failures, recordings finished by
crash recovery, storage pauses, recording budgets exceeded, other gateways found dead
(a cluster), config reloads. :class:`GatewayCollector` adds, at each
scrape, what is true now: approvals pending and the age of the oldest, the recorder's
status (storage state, spool bytes and oldest entry, uploads and index backlog, paused
sessions, free disk) and the audit exporters (lag, deliveries, dead letters).

Known limits: counters start at zero when the gateway starts (Prometheus handles the
reset); session bytes are counted when a session ends; a session whose process crashed
stays "running" until crash recovery finishes its recording (at once for an RDP
worker, at the next start for the gateway itself).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.audit.export import POLL, Exporter, ExportStats

STATES = ("ok", "degraded", "failing")

disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series needed


class AuditCounter(Exporter):
    """Counts audit events into Prometheus counters (a thread; see the module docstring)."""

    def __init__(self, audit_file: Path, registry: CollectorRegistry) -> None:
        super().__init__("metrics", "metrics", audit_file, None)
        c = registry
        self.events = Counter("bastille_audit_events", "Audit events by kind and outcome.",
                              ["kind", "outcome"], registry=c)
        self.sessions = Counter("bastille_sessions", "Sessions started.",
                                ["protocol", "kind", "target"], registry=c)
        self.bytes = Counter("bastille_session_bytes", "Bytes relayed by ended sessions "
                             "(in: from the user, out: to the user).",
                             ["protocol", "target", "direction"], registry=c)
        self.decisions = Counter("bastille_policy_decisions", "Policy decisions on commands, "
                                 "paths and forwardings.", ["action", "rule"], registry=c)
        self.approvals = Counter("bastille_approvals", "Approval requests and their outcomes.",
                                 ["outcome"], registry=c)
        self.logins = Counter("bastille_logins", "Login attempts.", ["outcome"], registry=c)
        self.auth_failures = Counter("bastille_auth_failures", "Failed or rate-limited logins.",
                                     ["reason"], registry=c)
        self.worker_restarts = Counter("bastille_worker_restarts", "Worker processes that "
                                       "exited unexpectedly and were replaced.", ["worker"],
                                       registry=c)
        self.recording_failures = Counter("bastille_recording_failures", "Recordings that "
                                          "failed or could not start.", registry=c)
        self.reloads = Counter("bastille_config_reloads", "Configuration reloads.",
                               ["outcome"], registry=c)
        self.lockouts = Counter("bastille_login_lockouts", "Logins refused by the rate "
                                "limits (failed logins per source and user, attempts or keys "
                                "per connection).", ["protocol"], registry=c)
        self.recovered = Counter("bastille_recordings_recovered", "Recordings a dead process "
                                 "left unfinished, finished by crash recovery (recovered) or "
                                 "left as found (unrecovered).", ["outcome"], registry=c)
        self.pauses = Counter("bastille_storage_pauses", "Sessions paused by full or slow "
                              "recording storage (paused), or going on while their output is "
                              "dropped (dropping).", ["event"], registry=c)
        self.budgets = Counter("bastille_recording_budget_exceeded", "Recording budgets "
                               "exceeded (scope: session or day; action: terminate, throttle "
                               "or refused).", ["scope", "action"], registry=c)
        self.nodes_lost = Counter("bastille_nodes_lost", "Other gateways of the cluster that "
                                  "missed their lease (their live sessions were ended).",
                                  registry=c)
        self._lock = threading.Lock()
        self._live: dict[str, tuple[str, str, str]] = {}  # session id -> labels

    def live(self) -> dict[tuple[str, str, str], int]:
        """Running sessions by (protocol, kind, target)."""
        out: dict[tuple[str, str, str], int] = {}
        with self._lock:
            for labels in self._live.values():
                out[labels] = out.get(labels, 0) + 1
        return out

    def loop(self) -> None:
        while not self.stopping:
            lines = self.follower.read(500)
            for line in lines:
                try:
                    record = json.loads(line.text)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    self.observe(record)
            if not lines:
                self.wait(POLL)

    def observe(self, record: dict[str, Any]) -> None:
        """Count one audit record."""
        kind, outcome = str(record.get("kind", "")), str(record.get("outcome", ""))
        detail = record.get("detail") if isinstance(record.get("detail"), dict) else {}
        assert isinstance(detail, dict)
        self.events.labels(kind, outcome).inc()
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, record, outcome, detail)

    def _session_start(self, record: dict[str, Any], outcome: str,
                       detail: dict[str, Any]) -> None:
        labels = (str(detail.get("protocol", "ssh")), str(detail.get("kind", "")),
                  str(record.get("target", "")))
        self.sessions.labels(*labels).inc()
        session = str(record.get("session", ""))
        if session:
            with self._lock:
                self._live[session] = labels

    def _session_end(self, record: dict[str, Any], outcome: str,
                     detail: dict[str, Any]) -> None:
        with self._lock:
            labels = self._live.pop(str(record.get("session", "")), None)
        if outcome in ("recovered", "unrecovered"):
            self.recovered.labels(outcome).inc()
        protocol = labels[0] if labels else str(detail.get("protocol") or "ssh")
        target = str(record.get("target", ""))
        for key, direction in (("bytes_in", "in"), ("bytes_out", "out")):
            value = detail.get(key)
            if isinstance(value, int) and value > 0:
                self.bytes.labels(protocol, target, direction).inc(value)

    def _policy(self, record: dict[str, Any], outcome: str, detail: dict[str, Any]) -> None:
        self.decisions.labels(outcome, str(detail.get("rule") or "")).inc()

    def _command(self, record: dict[str, Any], outcome: str, detail: dict[str, Any]) -> None:
        self.decisions.labels("allow", str(detail.get("rule") or "")).inc()

    def _approval(self, record: dict[str, Any], outcome: str, detail: dict[str, Any]) -> None:
        self.approvals.labels(outcome).inc()

    def _login(self, record: dict[str, Any], outcome: str, detail: dict[str, Any]) -> None:
        self.logins.labels(outcome).inc()
        if outcome != "ok":
            self.auth_failures.labels(str(detail.get("reason") or detail.get("method")
                                          or outcome)).inc()

    def _rate_limited(self, record: dict[str, Any], outcome: str,
                      detail: dict[str, Any]) -> None:
        self.auth_failures.labels("rate_limited").inc()
        self.lockouts.labels(str(detail.get("protocol") or "ssh")).inc()

    def _gateway(self, record: dict[str, Any], outcome: str, detail: dict[str, Any]) -> None:
        event = str(detail.get("event", ""))
        if event.endswith("worker exited"):
            self.worker_restarts.labels(event.split()[0]).inc()
        elif event == "reload":
            self.reloads.labels(outcome).inc()
        elif event == "node lost":
            self.nodes_lost.inc()

    def _recording(self, record: dict[str, Any], outcome: str,
                   detail: dict[str, Any]) -> None:
        if outcome == "failed":
            self.recording_failures.inc()
        elif outcome in ("paused", "dropping"):
            self.pauses.labels(outcome).inc()
        elif outcome == "budget_exceeded":
            self.budgets.labels(str(detail.get("scope", "")), str(detail.get("action", ""))
                                ).inc()


_Handler = Callable[[AuditCounter, dict[str, Any], str, dict[str, Any]], None]
_HANDLERS: dict[str, _Handler] = {
    "session.start": AuditCounter._session_start,
    "session.end": AuditCounter._session_end,
    "policy": AuditCounter._policy,
    "command": AuditCounter._command,
    "approval": AuditCounter._approval,
    "login": AuditCounter._login,
    "login.rate_limited": AuditCounter._rate_limited,
    "gateway": AuditCounter._gateway,
    "recording": AuditCounter._recording,
}


class GatewayCollector(Collector):
    """What is true at scrape time (see the module docstring).

    Args:
        counter: the audit counter (running sessions).
        sample: returns the facts to publish: ``{"status": RecorderStatus JSON,
            "pending": [request created times], "exports": [ExportStats], "ready": bool,
            "draining": bool, "started": float, "version": str, "reloaded": float|None}``;
            called on the scrape's thread.
    """

    def __init__(self, counter: AuditCounter, sample: Callable[[], dict[str, Any]]) -> None:
        self.counter = counter
        self.sample = sample

    def collect(self) -> Iterator[Metric]:
        facts = self.sample()
        now = time.time()
        yield InfoMetricFamily("bastille_build", "bastille's version.",
                               value={"version": str(facts.get("version", ""))})
        yield _gauge("bastille_start_time_seconds", "When the gateway started (unix time).",
                     facts.get("started", 0))
        yield _gauge("bastille_ready", "1 when the gateway accepts sessions and storage is "
                     "not failing.", 1 if facts.get("ready") else 0)
        yield _gauge("bastille_draining", "1 while the gateway shuts down.",
                     1 if facts.get("draining") else 0)
        if facts.get("reloaded"):
            yield _gauge("bastille_config_last_reload_time_seconds", "When the configuration "
                         "was last reloaded successfully (unix time).", facts["reloaded"])
        active = GaugeMetricFamily("bastille_sessions_active", "Sessions running now.",
                                   labels=["protocol", "kind", "target"])
        for labels, n in sorted(self.counter.live().items()):
            active.add_metric(list(labels), n)
        yield active
        pending = [float(t) for t in facts.get("pending", [])]
        yield _gauge("bastille_approvals_pending", "Approval requests waiting for a "
                     "decision.", len(pending))
        yield _gauge("bastille_approvals_oldest_pending_age_seconds", "Age of the oldest "
                     "pending approval request (0: none).",
                     max(0.0, now - min(pending)) if pending else 0)
        yield from _recorder(facts.get("status") or {}, now)
        yield from _exports(facts.get("exports") or [])


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value))


def _recorder(status: dict[str, Any], now: float) -> Iterator[Metric]:
    if not status:
        return
    storage = status.get("storage") or {}
    state = GaugeMetricFamily("bastille_storage_state", "Recording storage state (1 for "
                              "the current one): ok, degraded, failing.", labels=["state"])
    current = status.get("state", "failing")
    for s in STATES:
        state.add_metric([s], 1 if s == current else 0)
    yield state
    yield _gauge("bastille_recordings_open", "Recordings being written.",
                 status.get("sessions", 0))
    yield _gauge("bastille_recordings_paused", "Sessions paused by storage back-pressure.",
                 len(status.get("paused") or []))
    yield _gauge("bastille_recording_index_backlog", "Ended sessions waiting to be "
                 "indexed.", status.get("index_pending", 0))
    yield _gauge("bastille_recording_uploads_pending", "Closed recordings not yet "
                 "confirmed in the object store.", storage.get("uploads_pending", 0))
    yield _gauge("bastille_recordings_failed", "Recordings failed since the gateway "
                 "started.", status.get("failed_recordings", 0))
    yield _gauge("bastille_spool_bytes", "Recording bytes waiting in the spool for "
                 "upload.", storage.get("spool_bytes", 0))
    yield _gauge("bastille_spool_entries", "Recordings in the spool.",
                 storage.get("spool_entries", 0))
    if storage.get("spool_cap_bytes") is not None:
        yield _gauge("bastille_spool_cap_bytes", "The spool's cap (spool_cap_mib).",
                     storage["spool_cap_bytes"])
    oldest = storage.get("oldest_entry")
    yield _gauge("bastille_spool_oldest_entry_age_seconds", "Age of the oldest recording "
                 "in the spool (0: empty).", max(0.0, now - oldest) if oldest else 0)
    if storage.get("free_bytes") is not None:
        yield _gauge("bastille_storage_free_bytes", "Free space on the recordings' (or "
                     "spool's) filesystem.", storage["free_bytes"])


def _exports(exports: list[ExportStats]) -> Iterator[Metric]:
    up = GaugeMetricFamily("bastille_audit_export_up", "1 when the exporter's last attempt "
                           "reached its destination.", labels=["exporter"])
    lag = GaugeMetricFamily("bastille_audit_export_lag_bytes", "Audit bytes not yet "
                            "delivered.", labels=["exporter"])
    sent = GaugeMetricFamily("bastille_audit_export_delivered", "Events delivered since "
                             "start.", labels=["exporter"])
    dead = GaugeMetricFamily("bastille_audit_export_dead_letters", "Events written to the "
                             "dead-letter file since start.", labels=["exporter"])
    for e in exports:
        up.add_metric([e.name], 1 if e.connected else 0)
        lag.add_metric([e.name], e.lag_bytes)
        sent.add_metric([e.name], e.delivered)
        dead.add_metric([e.name], e.dead_letters)
    yield from (up, lag, sent, dead)


class Metrics:
    """The registry of one gateway: the audit counter and the scrape-time collector."""

    def __init__(self, audit_file: Path, sample: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry()
        self.counter = AuditCounter(audit_file, self.registry)
        self.registry.register(GatewayCollector(self.counter, sample))
