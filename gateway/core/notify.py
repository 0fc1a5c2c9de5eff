"""Telling approvers that a request waits: the approvals webhook."""

from __future__ import annotations

import json
import logging
import urllib.request

from common.safetext import visible
from state.approvals import Request

log = logging.getLogger("bastille.approvals")


def notify_webhook(url: str, fmt: str, request: Request, *, timeout: float = 5.0,
                   link: str = "") -> None:
    """POST the request to a webhook (generic JSON or Slack-compatible). Runs in a thread;
    failures are logged, never raised (the approver can still use the CLI). ``link``: the
    request's page on the web endpoint ([web]), where approvers decide in a browser."""
    text = (f"bastille: {visible(request.user)} asks to run on {visible(request.target)}: "
            f"`{visible(request.command)}` (rule {visible(request.rule or '-')}). "
            f"Approve: bastille approvals approve {request.id}")
    if link:
        text += f" or open {link}"
    body: dict[str, object] = {"text": text} if fmt == "slack" else {
        "event": "approval.requested", "request": request.to_json()}
    if link:
        body["url"] = link
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read(1024)
    except OSError as exc:
        log.warning("approval webhook failed for request #%d: %s", request.id, exc)
