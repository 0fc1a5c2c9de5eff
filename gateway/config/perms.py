"""Secret files the config names, checked for who else may read them.

``bastille config check`` (and ``bastille serve``, in its log) warns about every secret
file that its group or other users may read or write: the gateway's host keys, the
recording signing key, targets' ``key_file``/``password_file``, the OIDC
``client_secret_file``, the S3 ``secret_access_key_file``, and the TLS/SAML private keys
of ``[web]``, ``[saml]`` and ``[rdp]``. They are warnings, not errors: a deployment may
share a key through a group on purpose, but it should say so by choosing to ignore the
warning. A file that cannot be examined is left to the loader, which reports it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.config.model import Config
from gateway.errors import ConfigProblem
from gateway.tomlpos import key_lines, line_of


def _raw_path(config: Config, table: tuple[str, ...], key: str) -> Path | None:
    """A path-valued key read from the raw TOML (relative to the config file)."""
    node: Any = config.raw
    for name in table:
        node = node.get(name) if isinstance(node, dict) else None
    value = node.get(key) if isinstance(node, dict) else None
    if not isinstance(value, str) or not value:
        return None
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else config.path.parent / path


def secret_files(config: Config) -> Iterator[tuple[str, Path]]:
    """``(config key, file)`` for every secret file the config names."""
    for i, host_key in enumerate(config.gateway.host_keys):
        yield f"gateway.host_keys[{i}]", host_key
    if config.recording.signing_key is not None:
        yield "recording.signing_key", config.recording.signing_key
    for name, target in config.targets.items():
        for field in ("key_file", "password_file"):
            value = getattr(target, field)
            if value is not None:
                yield f"targets.{name}.{field}", value
    for table, field in ((("oidc",), "client_secret_file"),
                         (("recording", "s3"), "secret_access_key_file")):
        path = _raw_path(config, table, field)
        if path is not None:
            yield ".".join((*table, field)), path
    for section, field in (("web", "tls_key"), ("saml", "sp_key"), ("rdp", "tls_key")):
        settings = getattr(config, section)
        value = getattr(settings, field, None) if settings is not None else None
        if value is not None:
            yield f"{section}.{field}", value


def secret_file_warnings(config: Config) -> list[ConfigProblem]:
    """One warning per secret file its group or others may read or write."""
    try:
        lines = key_lines(config.path.read_text(encoding="utf-8"))
    except OSError:
        lines = {}
    out: list[ConfigProblem] = []
    seen: set[Path] = set()
    for key, path in secret_files(config):
        try:
            mode = path.stat().st_mode
        except OSError:
            continue
        if path in seen or not stat.S_ISREG(mode) or not mode & 0o077:
            continue
        seen.add(path)
        out.append(ConfigProblem(
            str(config.path), key, line_of(lines, key),
            f"warning: {path} is readable by group or others (mode "
            f"{stat.S_IMODE(mode):04o}); it holds a secret: chmod 600 {path}"))
    return out
