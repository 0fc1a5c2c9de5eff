"""The bastion's own credentials for targets: read where the config says, never shown.

A target logs in with exactly one of ``key_file``, ``key_env`` (SSH private keys, parsed
by the SSH adapter), ``password_file`` or ``password_env``. This module reads the
password ones (for SSH password logins, RDP autologon and masking the password if a
target ever echoes it). Failures raise :class:`gateway.errors.VaultError`, whose text
names the file or variable, never its content.
"""

from __future__ import annotations

import os

from gateway.config import TargetConfig
from gateway.errors import VaultError


def target_password(target: TargetConfig) -> str | None:
    """The vaulted password of ``target``; None when it logs in with a key.

    Raises:
        VaultError: the file cannot be read or the variable is not set.
    """
    if target.password_env:
        value = os.environ.get(target.password_env)
        if value is None:
            raise VaultError(target.name, f"its password variable {target.password_env} "
                             "is not set")
        return value
    if target.password_file is not None:
        try:
            return target.password_file.read_text().rstrip("\r\n")
        except OSError as exc:
            raise VaultError(target.name, "cannot read its password file "
                             f"{target.password_file}: {exc.strerror}") from None
    return None


def target_key_text(target: TargetConfig) -> str | None:
    """The private key text of a ``key_env`` target; None for other targets.

    Raises:
        VaultError: the variable is not set.
    """
    if not target.key_env:
        return None
    value = os.environ.get(target.key_env)
    if value is None:
        raise VaultError(target.name, f"its key variable {target.key_env} is not set")
    return value
