"""Who ran the appliance CLI: every audit event it writes names the operating-system user.

``bastille approvals approve ID --as carol`` on the appliance acts as carol, but nothing
authenticated carol: whoever can run the CLI there (root, or an admin through sudo) may
name any approver. So each event the CLI writes carries, next to the ``--as`` name in
``user``, the account that ran the command (``os_user``) and, under sudo, the account
that ran sudo (``sudo_user``). Approvers who are not administrators use the
authenticated path: ``ssh NAME@bastion approvals ...`` and ``ssh -t NAME@bastion
player`` (there ``os_user`` is the gateway's own service account).
"""

from __future__ import annotations

import dataclasses
import os
import pwd

from gateway.audit import AuditEvent, AuditLog
from gateway.config import Config


def operator() -> dict[str, str]:
    """``{"os_user": NAME, "sudo_user": NAME}`` of this process (sudo_user under sudo)."""
    uid = os.getuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid {uid}"
    out = {"os_user": name}
    sudo = os.environ.get("SUDO_USER")
    if sudo:
        out["sudo_user"] = sudo
    return out


class OperatorAudit:
    """The audit trail as the appliance CLI writes it (the file, which the gateway exports
    to syslog and webhooks); every event carries :func:`operator`."""

    def __init__(self, config: Config) -> None:
        settings = config.audit
        self._log = AuditLog(settings.file)  # exported (syslog, webhooks) by the gateway
        self._who = operator()

    def emit(self, event: AuditEvent) -> None:
        self._log.emit(dataclasses.replace(event, detail={**event.detail, **self._who}))

    def close(self) -> None:
        self._log.close()


def emit_once(config: Config, event: AuditEvent) -> None:
    """Write one CLI event (opens and closes the log)."""
    log = OperatorAudit(config)
    try:
        log.emit(event)
    finally:
        log.close()
