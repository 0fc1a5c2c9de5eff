"""The ``[recording]`` table of the gateway's config, parsed and validated by the recorder.

:func:`parse_recording` is what ``bastille config check`` and ``bastille serve`` call (via
``gateway/config.py``): it returns the :class:`RecorderSettings` and *every* problem,
each with its dotted key, so the gateway can print ``FILE:LINE: KEY: PROBLEM``. The
storage URL and its sub-table are parsed by the store type that owns the scheme
(:mod:`recorder.sinks.registry`).

Keys (README "Configuration reference" is the user's copy of this list):

``storage``, ``dir``, ``zstd_level``, ``flush_interval``, ``keyframe_interval``,
``signing_key``, ``on_failure``, ``queue_kib``, ``min_free_mib``, ``stall_timeout``,
``max_pause``, ``retention``, ``trusted_keys``, and the store's sub-table
(``[recording.s3]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from recorder.errors import RecorderError
from recorder.settings import MIB, OnFailure, RecorderSettings
from recorder.sinks.registry import Problem, TableReader, parse_storage

_KEYS = {
    "storage", "dir", "zstd_level", "flush_interval", "keyframe_interval", "signing_key",
    "on_failure", "queue_kib", "min_free_mib", "stall_timeout", "max_pause", "retention",
    "trusted_keys",
}


def parse_recording(
    table: object,
    *,
    data_dir: Path,
    base: Path,
    reading: bool = False,
    env: Mapping[str, str] | None = None,
    extra_keys: frozenset[str] = frozenset(),
) -> tuple[RecorderSettings, list[Problem]]:
    """Parse ``[recording]``.

    Args:
        table: the parsed ``[recording]`` table (``{}`` when absent).
        data_dir: the gateway's data directory.
        base: the config file's directory (relative paths are relative to it).
        reading: for the read-only tools: problems marked ``serve_only`` (such as an
            unset write secret) are left out.
        env: environment for ``*_env`` secrets (default: ``os.environ``).
        extra_keys: keys of ``[recording]`` that the caller reads itself (the gateway's
            recording budgets): accepted, not parsed here.

    Returns:
        The settings (defaults where a value was invalid) and every problem found.
    """
    r = TableReader(table, "recording", base=base, env=env)
    storage, tables = parse_storage(r, reading=reading)
    r.check_keys(_KEYS | tables | set(extra_keys))
    signing_key = r.path_value("signing_key")
    if signing_key is not None and not signing_key.is_file():
        r.problem("signing_key",
                  f"{signing_key} does not exist (create it: bastille keygen -o {signing_key})")
    elif signing_key is not None:
        from recorder.signing import load_signer

        try:
            load_signer(signing_key)
        except RecorderError as exc:
            r.problem("signing_key", str(exc))
    on_failure = r.choice("on_failure", ("terminate", "continue"), "terminate")
    queue_kib = r.int_range("queue_kib", 64, 1024 * 1024, 4096)
    settings = RecorderSettings(
        data_dir=data_dir,
        recordings_dir=r.path_value("dir"),
        storage=storage,
        zstd_level=r.int_range("zstd_level", 1, 22, 3),
        flush_interval=r.duration("flush_interval", 1.0, lo=0.05, hi=60),
        keyframe_interval=r.duration("keyframe_interval", 10.0, lo=0.1, hi=86400),
        signing_key=signing_key,
        on_failure=_on_failure(on_failure),
        queue_bytes=queue_kib * 1024,
        min_free_bytes=r.int_range("min_free_mib", 0, 10**7, 64) * MIB,
        stall_timeout=r.duration("stall_timeout", 30.0, lo=1.0, hi=3600),
        max_pause=r.duration("max_pause", 10.0, lo=0.0, hi=86400),
        retention=r.duration("retention", 0.0, lo=0.0),
        trusted_keys=_trusted_keys(r),
    )
    problems = [p for p in r.problems if not (reading and p.serve_only)]
    return settings, problems


def _trusted_keys(r: TableReader) -> tuple[Path, ...]:
    """``trusted_keys``: public keys of earlier signing keys (key rotation)."""
    from recorder.signing import load_public_key

    raw = r.get("trusted_keys", list, [])
    keys: list[Path] = []
    for i, item in enumerate(raw):
        path = Path(item).expanduser() if isinstance(item, str) else None
        if path is None:
            r.problem("trusted_keys", f"[{i}]: expected the path of a public key (PEM)")
            continue
        path = path if path.is_absolute() else r.base / path
        try:
            load_public_key(path)
        except RecorderError as exc:
            r.problem("trusted_keys", f"[{i}]: {exc}")
            continue
        keys.append(path)
    return tuple(keys)


def _on_failure(value: str | None) -> OnFailure:
    return "continue" if value == "continue" else "terminate"


def check_storage(table: object, *, base: Path, reading: bool = False) -> list[Problem]:
    """Only the storage problems of a ``[recording]`` table (what ``config check`` needs
    from the recorder when the gateway parses the other keys itself)."""
    r = TableReader(table, "recording", base=base)
    parse_storage(r, reading=reading)
    return [p for p in r.problems if not (reading and p.serve_only)]
