"""The embedded default: a complete, working config for a demo appliance.

``bastille demo`` writes (once) and serves this config from its data directory;
``bastille demo --write-config DIR`` writes the same files to DIR for editing:

    DIR/bastille.toml            the config (gateway on 127.0.0.1:PORT, user demo/demo,
                                 approver auditor, target demo = a local shell served
                                 by bastille itself, metrics on a free loopback port)
    DIR/auditor.password         the auditor's password (0600; the banner shows it)
    DIR/ssh_host_ed25519_key     the gateway's host key
    DIR/recording.key(.pub)      the Ed25519 key that signs recordings
    DIR/data/                    recordings, index, audit log

An existing ``bastille.toml`` is never replaced (except by ``--write-config --force``).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.auth.passwords import hash_password

if TYPE_CHECKING:
    from gateway.config import Config

CONFIG_NAME = "bastille.toml"
AUDITOR_PASSWORD = "auditor.password"

_TEMPLATE = """\
# bastille demo configuration (written by `bastille demo`).
# Edit freely, check with `bastille config check -c {config}`, run with
# `bastille serve -c {config}`. Every key is documented in README.md.

[gateway]
listen = "127.0.0.1:{port}"
host_keys = ["ssh_host_ed25519_key"]
data_dir = "data"
login_timeout = "2m"
idle_timeout = "1h"
max_session = "12h"
drain_timeout = "30s"
max_auth_failures = 5
auth_failure_window = "5m"

[audit]
file = "data/audit.jsonl"

[recording]
storage = "file"
zstd_level = 3
signing_key = "recording.key"
on_failure = "terminate"

# The demo user: password "demo" (password logins are accepted from loopback only).
# Add your key to log in without a password:  keys = ["ssh-ed25519 AAAA... you@laptop"]
[users.demo]
password_hash = "{password_hash}"
groups = ["demo"]

# An approver (nobody approves their own request): its password is in auditor.password.
[users.auditor]
password_hash = "{auditor_hash}"
groups = ["approvers"]

# A local shell for the user running bastille, served by the bastille process itself.
[targets.demo]
builtin = "local-shell"
description = "a local shell on this machine (built-in demo target)"
users = ["demo"]
allow_local_forwarding = false

# Command policy: evaluated in order, first match wins (docs/policy.md).
# Denied commands never reach the target; "approve" holds the command until an approver
# runs `bastille approvals approve ID --as NAME` (nobody approves their own request).
[policy]
default = "allow"
on_uncertain = "approve"
mask_live = true

{starter_policy}
[approvals]
approvers = ["group:approvers"]
timeout = "5m"

# Prometheus metrics and health checks; port 0: a free port, shown when it starts and by
# `bastille status` (set one for Prometheus to scrape: "127.0.0.1:9322")
[admin]
listen = "127.0.0.1:0"

# A real target looks like this:
# [targets.web1]
# host = "10.0.0.5"
# port = 22
# user = "deploy"
# key_file = "keys/web1_ed25519"            # or key_env / password_file / password_env
# host_keys = ["ssh-ed25519 AAAA..."]        # ssh-keyscan -t ed25519 10.0.0.5
# users = ["alice"]
# groups = ["ops"]
"""


def write_demo_config(directory: Path, port: int = 2222, *, overwrite: bool = False) -> Path:
    """Write the demo config and the keys it needs into ``directory``; return the config."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = directory / CONFIG_NAME
    if config.exists() and not overwrite:
        return config
    host_key = directory / "ssh_host_ed25519_key"
    if not host_key.exists():
        from gateway.ssh.keys import generate_host_key

        generate_host_key(host_key, "bastille demo host key")
    signing = directory / "recording.key"
    if not signing.exists():
        from recorder.signing import generate

        generate(signing)
    (directory / "data").mkdir(exist_ok=True, mode=0o700)
    from gateway.policy import starter_toml

    auditor = secrets.token_urlsafe(12)
    _write_private(directory / AUDITOR_PASSWORD, (auditor + "\n").encode())
    text = _TEMPLATE.format(port=port, password_hash=hash_password("demo"), config=config,
                            auditor_hash=hash_password(auditor),
                            starter_policy=starter_toml())
    _write_private(config, text.encode())
    return config


def demo_users(directory: Path, config: Config) -> list[tuple[str, str, str]]:
    """(name, password, role) of the demo's users, for the banner."""
    out = []
    if "demo" in config.users:
        out.append(("demo", "demo", "uses target demo"))
    pw_file = directory / AUDITOR_PASSWORD
    if "auditor" in config.users and pw_file.exists():
        out.append(("auditor", pw_file.read_text().strip(), "approves, replays (player)"))
    return out


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / "bastille" / "demo"
