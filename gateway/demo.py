"""The embedded default: a complete, working config for a demo appliance.

``bastille demo`` writes (once) and serves this config from its data directory;
``bastille demo --write-config DIR`` writes the same files to DIR for editing:

    DIR/bastille.toml            the config (gateway on 127.0.0.1:PORT, user demo/demo,
                                 target demo = a local shell served by bastille itself)
    DIR/ssh_host_ed25519_key     the gateway's host key
    DIR/recording.key(.pub)      the Ed25519 key that signs recordings
    DIR/data/                    recordings, index, audit log
"""

from __future__ import annotations

import os
from pathlib import Path

from gateway.auth.passwords import hash_password

CONFIG_NAME = "bastille.toml"

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
groups = ["demo", "approvers"]

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

    text = _TEMPLATE.format(port=port, password_hash=hash_password("demo"), config=config,
                            starter_policy=starter_toml())
    _write_private(config, text.encode())
    return config


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / "bastille" / "demo"
