"""Storage URL schemes: each remote store parses and validates its own settings.

``recording.storage`` is ``"file"`` (the local directory sink) or a URL whose scheme
names a registered store type (``s3://bucket/prefix``). The store's settings live in a
sub-table of ``[recording]`` named by the type (``[recording.s3]``). Adding a store (GCS,
Azure...) is one module in ``recorder/sinks/`` that defines its settings (a subclass of
:class:`~recorder.settings.StoreSettings`), its :class:`~recorder.sinks.store.ObjectStore`
and calls :func:`register` with a parser and an opener; see :mod:`recorder.sinks.s3`.
Every module of the package is imported when the registry is first used.

Parsers never stop at the first problem: they return every problem they find, each
with its dotted key (``recording.s3.sse``) so that ``bastille config check`` can print
``FILE:LINE: KEY: PROBLEM``.

Known limits: a store living outside ``recorder/sinks/`` must be imported (so that it
registers) before the config is read.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from recorder.settings import StoreSettings
from recorder.sinks.store import ObjectStore

T = TypeVar("T")


@dataclass(frozen=True)
class Problem:
    """One configuration problem: the dotted key and what is wrong with it.

    ``serve_only``: the problem prevents recording (e.g. a write secret is not set) but
    not reading existing recordings, so the read-only tools may ignore it.
    """

    key: str
    message: str
    serve_only: bool = False


class TableReader:
    """Typed access to one TOML table, collecting problems with their dotted keys.

    Args:
        table: the parsed table (a non-table value is reported and read as empty).
        path: its dotted key, e.g. ``recording.s3``.
        base: directory that relative paths are relative to (the config file's).
        env: environment for ``*_env`` secrets (default: ``os.environ``).
    """

    def __init__(
        self,
        table: object,
        path: str,
        *,
        base: Path,
        problems: list[Problem] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.path = path
        self.base = base
        self.env = os.environ if env is None else env
        self.problems: list[Problem] = [] if problems is None else problems
        if not isinstance(table, dict):
            self.problem("", f"expected a table, got {kind_of(table)}")
            table = {}
        self.table: dict[str, Any] = table

    def key(self, key: str) -> str:
        return f"{self.path}.{key}" if key and self.path else (key or self.path)

    def problem(self, key: str, message: str, *, serve_only: bool = False) -> None:
        self.problems.append(Problem(self.key(key), message, serve_only))

    def check_keys(self, allowed: set[str]) -> None:
        for key in self.table:
            if key not in allowed:
                match = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.75)
                hint = f" (did you mean {match[0]!r}?)" if match else ""
                self.problem(key, f"unknown key{hint}")

    def sub(self, key: str) -> TableReader:
        return TableReader(
            self.table.get(key, {}), self.key(key), base=self.base, problems=self.problems,
            env=self.env,
        )

    def get(self, key: str, kind: type[T], default: T) -> T:
        if key not in self.table:
            return default
        value = self.table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)  # type: ignore[return-value]
        if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
            self.problem(key, f"expected {name_of(kind)}, got {kind_of(value)}")
            return default
        return value

    def text(self, key: str) -> str | None:
        value = self.get(key, str, "")
        return value or None

    def int_range(self, key: str, lo: int, hi: int, default: int) -> int:
        value = self.get(key, int, default)
        if not lo <= value <= hi:
            self.problem(key, f"expected an integer {lo}-{hi}, got {value}")
            return default
        return value

    def duration(self, key: str, default: float, *, lo: float = 0.0, hi: float | None = None,
                 ) -> float:
        if key not in self.table:
            return default
        value = parse_duration(self.table[key])
        if value is None:
            self.problem(
                key,
                f"expected seconds or a duration like '500ms', '30s', '5m', '8h', got "
                f"{self.table[key]!r}",
            )
            return default
        if value < lo or (hi is not None and value > hi):
            top = f" and {hi:g}" if hi is not None else ""
            self.problem(key, f"expected a duration between {lo:g}{top} seconds, got {value:g}")
            return default
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str | None) -> str | None:
        if key not in self.table:
            return default
        value = self.get(key, str, "")
        if value not in choices:
            self.problem(key, f"expected one of {', '.join(choices)}, got {self.table[key]!r}")
            return default
        return value

    def path_value(self, key: str) -> Path | None:
        value = self.get(key, str, "")
        if not value:
            return None
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else self.base / p

    def secret(self, env_key: str, file_key: str, *, serve_only: bool) -> str | None:
        """A secret from an environment variable or a file (never inline)."""
        env = self.get(env_key, str, "")
        file = self.path_value(file_key)
        if env and file:
            self.problem(env_key, f"set only one of {env_key} and {file_key}")
        if env:
            if env not in self.env:
                self.problem(env_key, f"environment variable {env} is not set",
                             serve_only=serve_only)
                return None
            return self.env[env]
        if file is not None:
            try:
                return file.read_text().strip()
            except OSError as exc:
                self.problem(file_key, f"cannot read {file}: {exc.strerror}",
                             serve_only=serve_only)
        return None


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object) -> float | None:
    """Seconds from a number or a string like ``'500ms'``, ``'30s'``, ``'5m'``, ``'8h'``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    return None


def kind_of(value: object) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def name_of(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            list: "a list", dict: "a table"}.get(kind, kind.__name__)


# -- the registry ---------------------------------------------------------------------

# parse(url, table reader of [recording.<table>], reading) -> settings or None
Parser = Callable[[str, TableReader, bool], StoreSettings | None]
# open(settings, reading) -> store
Opener = Callable[[StoreSettings, bool], ObjectStore]


@dataclass(frozen=True)
class StoreType:
    scheme: str  # URL scheme, e.g. "s3"
    table: str  # sub-table of [recording] holding its settings, e.g. "s3"
    parse: Parser
    open: Opener
    example: str  # shown in messages: "s3://bucket/prefix"


_TYPES: dict[str, StoreType] = {}


def register(store_type: StoreType) -> None:
    """Make a store type available as ``recording.storage = "<scheme>://..."``."""
    _TYPES[store_type.scheme] = store_type


_loaded = False


def _load_builtin() -> None:
    """Import every module of ``recorder.sinks``: store modules register themselves, so a
    new store is one new file there (none of them imports its client library before a
    store is opened)."""
    global _loaded
    if _loaded:
        return
    import importlib
    import pkgutil

    import recorder.sinks as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")
    _loaded = True


def store_types() -> dict[str, StoreType]:
    _load_builtin()
    return dict(_TYPES)


def store_type_of(settings: StoreSettings) -> StoreType:
    _load_builtin()
    try:
        return _TYPES[settings.scheme]
    except KeyError:
        raise ValueError(f"no store type registered for {settings.scheme!r}") from None


def parse_storage(
    recording: TableReader, *, reading: bool = False
) -> tuple[StoreSettings | None, set[str]]:
    """Parse ``storage`` and the store's sub-table of a ``[recording]`` table reader.

    Problems go to ``recording.problems``. Returns the store settings (None for
    ``"file"`` or when the value is invalid) and the sub-table names the store uses
    (so the caller's unknown-key check accepts them).
    """
    types = store_types()
    tables = {t.table for t in types.values()}
    value = recording.get("storage", str, "file")
    if value == "file":
        for t in types.values():
            if t.table in recording.table:
                recording.problem(
                    t.table,
                    f"[recording.{t.table}] is set but storage is \"file\" "
                    f"(did you mean storage = \"{t.example}\"?)",
                )
        return None, tables
    scheme, sep, _ = value.partition("://")
    st = types.get(scheme) if sep else None
    if st is None:
        known = ", ".join(f'"{t.example}"' for t in types.values())
        recording.problem("storage", f'expected "file" or {known}, got {value!r}')
        return None, tables
    return st.parse(value, recording.sub(st.table), reading), tables


def open_store(settings: StoreSettings, *, reading: bool = False) -> ObjectStore:
    """The store for settings parsed by :func:`parse_storage`."""
    return store_type_of(settings).open(settings, reading)
