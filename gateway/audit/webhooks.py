"""Audit events to webhooks: signed, retried with backoff, dead-lettered when they cannot
be delivered.

Each ``[webhooks.NAME]`` (and ``[approvals] webhook_url``, named ``approvals``) gets the
events its ``events`` patterns select (``KIND`` or ``KIND:OUTCOME``, fnmatch: ``policy``,
``session.*``, ``approval:requested``), one POST each, in order:

* ``format = "json"``: ``{"event": NAME, "audit": RECORD}``, and for a new approval
  request ``request`` (the request) and ``url`` (its page, with ``[web]``);
* ``"slack"``: ``{"text": ...}``, a sentence with the commands that decide, as written;
* ``"ocsf"``: the OCSF-shaped record (:mod:`gateway.audit.ocsf`).

Headers: ``X-Bastille-Event``, ``X-Bastille-Delivery`` (the event id: a retried or
resent event has the same one) and, with ``secret_env``/``secret_file``,
``X-Bastille-Timestamp: T`` and ``X-Bastille-Signature: sha256=HEX``, the HMAC-SHA256 of
``T.BODY`` with the secret (docs/operations.md shows how to check it).

A 2xx answer delivers. A connection error, a timeout, 408, 425, 429 or 5xx is retried
after ``retry_interval``, doubling up to ``max_retry_interval``, ``max_attempts`` times
in all; then (or at once for another 4xx) the event goes to the dead-letter file
``DATA_DIR/webhooks-dead-letter.jsonl`` (0600: webhook name, event, body, last error),
and the next event is sent. The URL (a Slack URL is a credential) is never logged or
written: messages name the webhook and its host.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.safetext import visible
from gateway._version import __version__
from gateway.audit.export import POLL, Exporter
from gateway.audit.ocsf import to_ocsf
from gateway.config.model import WebhookSettings
from state.files import private_file
from state.paths import DataDir

log = logging.getLogger("bastille.audit")

RETRYABLE = {408, 425, 429}

#: request id -> the request as JSON (the approvals store), for approval webhooks
RequestLookup = Callable[[int], "dict[str, Any] | None"]


def event_name(record: dict[str, Any]) -> str:
    """``session.start``, ``policy.deny``, ``approval.requested``, ``login.failed``..."""
    kind, outcome = str(record.get("kind", "")), str(record.get("outcome", ""))
    return kind if outcome in ("", "ok") else f"{kind}.{outcome}"


def selects(patterns: tuple[str, ...], record: dict[str, Any]) -> bool:
    """Does one of ``patterns`` (``KIND`` or ``KIND:OUTCOME``) select this record?"""
    kind, outcome = str(record.get("kind", "")), str(record.get("outcome", ""))
    for pattern in patterns:
        k, _, o = pattern.partition(":")
        if fnmatch.fnmatchcase(kind, k) and (not o or fnmatch.fnmatchcase(outcome, o)):
            return True
    return False


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Bastille-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _slack(text: object) -> str:
    """User- or target-controlled text in a Slack message: no terminal control, no
    mention or link markup, no code-span breakout."""
    out = visible(str(text)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return out.replace("`", "'")


class Texts:
    """The sentences of ``slack`` messages, with commands that work as written.

    Args:
        ssh_host: ``[-p PORT ]HOST`` of the bastion as users reach it.
        link: the approval page of a request id (``[web]``), or None.
    """

    def __init__(self, ssh_host: str, link: Callable[[int], str] | None = None) -> None:
        self.ssh_host = ssh_host
        self.link = link

    def describe(self, record: dict[str, Any]) -> str:
        if record.get("kind") == "approval" and record.get("outcome") == "requested":
            return self.approval_requested(record)
        detail = record.get("detail") or {}
        parts = [f"bastille: {_slack(event_name(record))}"]
        if record.get("user"):
            parts.append(f"user {_slack(record['user'])}")
        if record.get("target"):
            parts.append(f"target {_slack(record['target'])}")
        if record.get("source"):
            parts.append(f"from {_slack(record['source'])}")
        if isinstance(detail, dict):
            for key in ("command", "rule", "reason", "path", "error"):
                if detail.get(key):
                    parts.append(f"{key} `{_slack(detail[key])}`")
        if record.get("session"):
            parts.append(f"(session {_slack(record['session'])})")
        return " ".join(parts)

    def approval_requested(self, record: dict[str, Any]) -> str:
        detail = record.get("detail") or {}
        rid = detail.get("request", "?")
        who, target = _slack(record.get("user", "")), _slack(record.get("target", ""))
        command = _slack(detail.get("command", ""))
        if str(command).startswith("access to "):
            what = f"asks for {command}"
        else:
            what = f"asks to run `{command}` on {target}"
        rule = f", rule {_slack(detail['rule'])}" if detail.get("rule") else ""
        lines = [
            f"bastille: {who} {what} (request #{rid}{rule}).",
            f"Approve: `ssh {self.ssh_host} approvals approve {rid}` "
            f"(or on the bastion: `bastille approvals approve {rid} --as \"$USER\"`)",
            f"Deny: `ssh {self.ssh_host} approvals deny {rid} REASON`",
        ]
        if self.link is not None and isinstance(rid, int):
            lines.append(f"Or open {self.link(rid)}")
        return "\n".join(lines)


class WebhookExporter(Exporter):
    """Delivers the selected audit events to one webhook (see the module docstring)."""

    def __init__(self, settings: WebhookSettings, audit_file: Path, state_dir: Path,
                 data_dir: Path, texts: Texts, requests: RequestLookup | None = None) -> None:
        host = urllib.parse.urlsplit(settings.url.reveal()).hostname or "?"
        super().__init__(f"webhook-{settings.name}", f"webhook {settings.name} ({host})",
                         audit_file, state_dir)
        self.settings = settings
        self.dead_letter = DataDir(data_dir).webhook_dead_letter
        self.texts = texts
        self.requests = requests
        self._failing = False

    # ------------------------------------------------------------ bodies
    def body(self, record: dict[str, Any]) -> bytes:
        fmt = self.settings.format
        payload: dict[str, Any]
        if fmt == "slack":
            payload = {"text": self.texts.describe(record)}
        elif fmt == "ocsf":
            payload = to_ocsf(record)
        else:
            payload = {"event": event_name(record), "audit": record}
            detail = record.get("detail") or {}
            rid = detail.get("request") if isinstance(detail, dict) else None
            if event_name(record) == "approval.requested" and isinstance(rid, int):
                if self.requests is not None:
                    payload["request"] = self.requests(rid)
                if self.texts.link is not None:
                    payload["url"] = self.texts.link(rid)
        return json.dumps(payload, ensure_ascii=False, default=str).encode()

    def headers(self, record: dict[str, Any], body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json",
                   "User-Agent": f"bastille/{__version__}",
                   "X-Bastille-Event": event_name(record),
                   "X-Bastille-Delivery": str(record.get("id", ""))}
        if self.settings.secret is not None:
            stamp = str(int(time.time()))
            headers["X-Bastille-Timestamp"] = stamp
            headers["X-Bastille-Signature"] = sign(
                self.settings.secret.reveal().encode(), stamp, body)
        return headers

    # ------------------------------------------------------------ delivery
    def post(self, record: dict[str, Any], body: bytes) -> tuple[bool, bool, str]:
        """One attempt: (delivered, worth retrying, what happened)."""
        req = urllib.request.Request(self.settings.url.reveal(), data=body, method="POST",
                                     headers=self.headers(record, body))
        try:
            with urllib.request.urlopen(req, timeout=self.settings.timeout) as resp:
                resp.read(4096)
                return True, False, f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            code = exc.code
            return False, code >= 500 or code in RETRYABLE, f"HTTP {code}"
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            return False, True, f"{type(exc).__name__}: {_no_url(str(reason))}"

    def deliver(self, record: dict[str, Any]) -> bool:
        """Send with retries; False when stopped before it could be delivered (the event
        is then sent again at the next start)."""
        body = self.body(record)
        wait = self.settings.retry_interval
        what = ""
        for attempt in range(1, self.settings.max_attempts + 1):
            ok, retry, what = self.post(record, body)
            if ok:
                self.stats.delivered += 1
                if self._failing:
                    log.warning("audit export: %s delivers again", self.stats.destination)
                    self._failing = False
                self.stats.connected = True
                return True
            self.stats.failures += 1
            self.stats.connected = False
            if not self._failing:
                log.warning("audit export: %s failed (%s); retrying", self.stats.destination,
                            what)
                self._failing = True
            if not retry or attempt == self.settings.max_attempts:
                break
            if self.wait(wait):
                return False
            wait = min(self.settings.max_retry_interval, wait * 2)
        self._dead(record, body, what, attempt)
        return True

    def _dead(self, record: dict[str, Any], body: bytes, what: str, attempts: int) -> None:
        self.stats.dead_letters += 1
        log.error("audit export: %s: event %s (%s) not delivered after %d attempt(s) (%s); "
                  "written to %s", self.stats.destination, record.get("id", "?"),
                  event_name(record), attempts, what, self.dead_letter)
        line = json.dumps({"time": time.time(), "webhook": self.settings.name,
                           "event": event_name(record), "id": record.get("id", ""),
                           "attempts": attempts, "error": what,
                           "body": body.decode("utf-8", errors="replace")},
                          ensure_ascii=False)
        try:
            private_file(self.dead_letter)
            fd = os.open(self.dead_letter, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("audit export: cannot write %s: %s", self.dead_letter, exc.strerror)

    def loop(self) -> None:
        while not self.stopping:
            lines = self.follower.read(50)
            if not lines:
                self.wait(POLL)
                continue
            for line in lines:
                try:
                    record = json.loads(line.text)
                except ValueError:
                    record = None
                if isinstance(record, dict) and selects(self.settings.events, record):
                    if not self.deliver(record):
                        return
                self.commit(line.cursor)
                if self.stopping:
                    return


def _no_url(text: str) -> str:
    """An error text without any URL in it (the webhook URL may be a credential)."""
    return " ".join("<url>" if "://" in word else word for word in text.split())
