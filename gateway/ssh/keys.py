"""SSH key helpers for the rest of the gateway (asyncssh stays inside gateway/ssh)."""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh


def public_key_blob(line: str) -> bytes:
    """The wire form of an OpenSSH public key line (compared in constant time later)."""
    return bytes(asyncssh.import_public_key(line).public_data)


def check_private_key(path: Path) -> str | None:
    """None if ``path`` holds a usable unencrypted private key, else why not."""
    try:
        asyncssh.read_private_key(str(path))
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError, ValueError) as exc:
        return f"{path} is not an unencrypted OpenSSH private key ({exc})"
    return None


def check_public_key(line: str) -> str | None:
    """None if ``line`` is an OpenSSH public key line, else why not."""
    try:
        asyncssh.import_public_key(line)
    except (asyncssh.KeyImportError, ValueError) as exc:
        return str(exc)
    return None


def generate_host_key(path: Path, comment: str) -> None:
    """Write a new Ed25519 private key (0600) at ``path`` and ``path.pub``."""
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.export_private_key())
    Path(str(path) + ".pub").write_bytes(key.export_public_key())
