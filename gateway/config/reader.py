"""Reading the parsed TOML: typed values, defaults, and every problem with its line."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from gateway.config.model import Principals
from gateway.errors import ConfigProblem
from gateway.tomlpos import key_lines, line_of
from state.timeparse import parse_duration

T = TypeVar("T")

#: Checks one private key file: None if usable, else why not (``gateway.ssh.keys``).
KeyCheck = Callable[[Path], "str | None"]


class Reader:
    """Typed access to the parsed TOML, collecting problems with their lines."""

    def __init__(self, path: Path, text: str, *, check_key: KeyCheck | None = None,
                 secrets: bool = True) -> None:
        self.path = path
        self.base = path.parent
        self.lines = key_lines(text)
        self.problems: list[ConfigProblem] = []
        self.check_key = check_key
        self.secrets = secrets

    def problem(self, key: str, message: str) -> None:
        self.problems.append(
            ConfigProblem(str(self.path), key, line_of(self.lines, key), message)
        )

    def table(self, data: Mapping[str, Any], key: str, path: str) -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            self.problem(path, f"expected a table, got {kind_of(value)}")
            return {}
        return value

    def check_keys(self, data: Mapping[str, Any], path: str, allowed: set[str]) -> None:
        for key in data:
            if key not in allowed:
                hint = _closest(key, allowed)
                extra = f" (did you mean {hint!r}?)" if hint else ""
                self.problem(f"{path}.{key}" if path else key, f"unknown key{extra}")

    def get(self, data: Mapping[str, Any], key: str, path: str, kind: type[T], default: T) -> T:
        if key not in data:
            return default
        value = data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)  # type: ignore[return-value]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.problem(join(path, key), f"expected {_name(kind)}, got {kind_of(value)}")
            return default
        return value

    def str_list(self, data: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        value = data.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(join(path, key), f"expected a list of strings, got {kind_of(value)}")
            return ()
        return tuple(value)

    def duration(self, data: Mapping[str, Any], key: str, path: str, default: float) -> float:
        if key not in data:
            return default
        value = data[key]
        parsed = parse_duration(value)
        if parsed is None:
            self.problem(
                join(path, key),
                f"expected seconds or a duration like '30s', '5m', '8h', got {value!r}",
            )
            return default
        return parsed

    def path_value(self, data: Mapping[str, Any], key: str, path: str, default: Path | None,
                   base: Path | None = None) -> Path | None:
        value = self.get(data, key, path, str, "")
        if not value:
            return default
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else (base or self.base) / p

    def size(self, data: Mapping[str, Any], key: str, path: str, default: int) -> int:
        """A byte count: an integer, or a string like ``"512K"``, ``"64M"``, ``"2G"``
        (binary multiples; ``KiB``/``MiB``/``GiB``/``B`` suffixes accepted)."""
        if key not in data:
            return default
        value = data[key]
        parsed = parse_size(value)
        if parsed is None:
            self.problem(join(path, key), f"expected a size in bytes like 1048576, '512K', "
                         f"'64M' or '2G', got {value!r}")
            return default
        return parsed

    def choice(self, data: Mapping[str, Any], key: str, path: str, choices: tuple[str, ...],
               default: str) -> str:
        value = self.get(data, key, path, str, default)
        if value not in choices:
            self.problem(join(path, key), f"expected one of {', '.join(choices)}, got {value!r}")
            return default
        return value

    def int_range(self, data: Mapping[str, Any], key: str, path: str, lo: int, hi: int,
                  default: int) -> int:
        value = self.get(data, key, path, int, default)
        if not lo <= value <= hi:
            self.problem(join(path, key), f"expected an integer {lo}-{hi}, got {value}")
            return default
        return value

    def principals(self, data: Mapping[str, Any], key: str, path: str) -> Principals:
        value = data.get(key, False)
        if isinstance(value, bool):
            return Principals(everyone=value)
        names = self.str_list(data, key, path)
        users = frozenset(n for n in names if not n.startswith("group:"))
        groups = frozenset(n[6:] for n in names if n.startswith("group:"))
        return Principals(everyone="*" in users, users=users - {"*"}, groups=groups)


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def kind_of(value: object) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def _name(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            list: "a list", dict: "a table"}.get(kind, kind.__name__)


def _closest(key: str, allowed: set[str]) -> str | None:
    import difflib

    match = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.75)
    return match[0] if match else None


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(value: object) -> int | None:
    """``1048576``, ``"512K"``, ``"64MiB"``, ``"2G"`` -> bytes; None if not a size."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if not isinstance(value, str):
        return None
    m = _SIZE.match(value)
    if m is None:
        return None
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def parse_listen(value: str) -> tuple[str, int] | None:
    """'host:port' or '[v6]:port' -> (host, port)."""
    m = re.match(r"^\[([^\]]+)\]:(\d+)$", value) or re.match(r"^([^:]*):(\d+)$", value)
    if not m or not 0 < int(m.group(2)) < 65536:
        return None
    return (m.group(1) or "0.0.0.0", int(m.group(2)))
