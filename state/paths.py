"""The data directory's layout: every state file name, in one place.

``gateway.data_dir`` (``bastille demo``: ``DIR/data``) holds::

    approvals.sqlite3       approval requests, just-in-time grants, kill requests
    rdp_tokens.sqlite3      RDP routing tokens and one-time PINs (digests only)
    oidc_bindings.sqlite3   single sign-on key bindings
    login_failures.sqlite3  failed logins, shared by the SSH worker processes
    ssh_tallies             open connections per source and sessions per user, shared
                            by the SSH worker processes (state/tallies.py)
    recording_usage.sqlite3 bytes recorded per user per day (recording budgets)
    index.sqlite3           the recordings' search index (written by the recorder)
    known_targets           trust-on-first-use host keys of SSH targets
    audit.jsonl             the audit trail (default of audit.file)
    recordings/             recordings of the file sink (default of recording.dir)
    spool/                  the S3 sink's write-ahead spool
    x11/Xauthority          the X11 cookie file shared by the relayed X11 channels
    rdp/                    the RDP listener's self-signed certificate
    export/                 where each audit exporter (syslog, webhooks) stopped reading
    webhooks-dead-letter.jsonl   webhook events that could not be delivered
    legal_holds.sqlite3     sessions under a legal hold (never pruned)

The recorder names its own files (``index.sqlite3``, ``recordings/``, ``spool/``) from
its settings; they are listed here so that gateway and player code never spells them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

APPROVALS = "approvals.sqlite3"
RDP_TOKENS = "rdp_tokens.sqlite3"
OIDC_BINDINGS = "oidc_bindings.sqlite3"
LOGIN_FAILURES = "login_failures.sqlite3"
SSH_TALLIES = "ssh_tallies"
RECORDING_USAGE = "recording_usage.sqlite3"
INDEX = "index.sqlite3"
KNOWN_TARGETS = "known_targets"
AUDIT = "audit.jsonl"
RECORDINGS = "recordings"
SPOOL = "spool"
X11_AUTH = "x11/Xauthority"
RDP_DIR = "rdp"
EXPORT_DIR = "export"
WEBHOOK_DEAD_LETTER = "webhooks-dead-letter.jsonl"
LEGAL_HOLDS = "legal_holds.sqlite3"


@dataclass(frozen=True)
class DataDir:
    """Paths of the state files under one data directory (nothing is created here)."""

    root: Path

    @property
    def approvals(self) -> Path:
        return self.root / APPROVALS

    @property
    def rdp_tokens(self) -> Path:
        return self.root / RDP_TOKENS

    @property
    def oidc_bindings(self) -> Path:
        return self.root / OIDC_BINDINGS

    @property
    def login_failures(self) -> Path:
        return self.root / LOGIN_FAILURES

    @property
    def ssh_tallies(self) -> Path:
        return self.root / SSH_TALLIES

    @property
    def recording_usage(self) -> Path:
        return self.root / RECORDING_USAGE

    @property
    def index(self) -> Path:
        return self.root / INDEX

    @property
    def known_targets(self) -> Path:
        return self.root / KNOWN_TARGETS

    @property
    def audit(self) -> Path:
        return self.root / AUDIT

    @property
    def recordings(self) -> Path:
        return self.root / RECORDINGS

    @property
    def x11_auth(self) -> Path:
        return self.root / X11_AUTH

    @property
    def rdp(self) -> Path:
        return self.root / RDP_DIR

    @property
    def export(self) -> Path:
        return self.root / EXPORT_DIR

    @property
    def webhook_dead_letter(self) -> Path:
        return self.root / WEBHOOK_DEAD_LETTER

    @property
    def legal_holds(self) -> Path:
        return self.root / LEGAL_HOLDS
