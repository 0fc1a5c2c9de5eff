"""Approval notifications; the queue itself is :mod:`recorder.approvals` (shared with the
player and the CLI)."""

from __future__ import annotations

import json
import logging
import urllib.request

from recorder.approvals import ApprovalError, ApprovalStore, Request

__all__ = ["ApprovalError", "ApprovalStore", "Request", "notify_webhook"]

log = logging.getLogger("bastille.approvals")


def notify_webhook(url: str, fmt: str, request: Request, *, timeout: float = 5.0,
                   link: str = "") -> None:
    """POST the request to a webhook (generic JSON or Slack-compatible). Runs in a thread;
    failures are logged, never raised (the approver can still use the CLI). ``link``: the
    request's page on the web endpoint ([web]), where approvers decide in a browser."""
    text = (f"bastille: {request.user} asks to run on {request.target}: `{request.command}` "
            f"(rule {request.rule or '-'}). Approve: bastille approvals approve {request.id}")
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
