"""The gateway's own logs (not the audit trail): text on a terminal, JSON lines otherwise.

* :func:`setup` installs one handler on the root logger: ``text`` (the default on a
  terminal), ``json`` (one object per line: ``time``, ``level``, ``logger``, ``message``,
  ``pid`` and the bound context), or ``auto`` (text on a TTY, else JSON: journald,
  a container runtime or a log shipper get JSON).
* :func:`bind` adds fields to the context of the current task or thread (asyncio copies
  it into tasks started from there): a session binds ``session``, ``user`` and
  ``target``; an RDP worker binds ``worker``. Every log line written in that context
  carries them.
* Secrets never reach a log line: values registered with :func:`register_secret` (the
  bastion's target passwords and keys, IdP and storage secrets, tokens, webhook URLs)
  and secret-shaped text (private key blocks, ``password=...``, bearer tokens) are
  replaced by ``[redacted]`` in every record of every library, exceptions included.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import threading
import time
import types
from collections.abc import Iterable, Mapping
from typing import IO, Any

REDACTED = "[redacted]"
FIELDS = ("session", "user", "target", "worker")

_EMPTY: Mapping[str, str] = types.MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "bastille_log_context", default=_EMPTY)
_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_secret_re: re.Pattern[str] | None = None

_PATTERNS = (
    (re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE "
                r"KEY-----|$)", re.S), "[private key redacted]"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + REDACTED),
    (re.compile(r"(?i)\b((?:[a-z_]*_)?(?:password|passwd|passphrase|secret|token|api_key)"
                r"[\"']?\s*[:=]\s*[\"']?)([^\s\"',;]+)"), r"\1" + REDACTED),
)


def bind(**fields: object) -> None:
    """Add ``fields`` (session, user, target, worker...) to the current log context."""
    current = dict(_context.get())
    current.update({k: str(v) for k, v in fields.items() if v not in (None, "")})
    _context.set(current)


def context() -> Mapping[str, str]:
    return _context.get()


def register_secret(value: str | None) -> None:
    """Never log ``value`` (nor any line of it, for multi-line secrets like keys)."""
    global _secret_re
    if not value:
        return
    parts = {value} | {ln.strip() for ln in value.splitlines() if len(ln.strip()) >= 8}
    with _secrets_lock:
        before = len(_secrets)
        _secrets.update(p for p in parts if len(p) >= 4)
        if len(_secrets) != before:
            ordered = sorted(_secrets, key=len, reverse=True)
            _secret_re = re.compile("|".join(re.escape(s) for s in ordered))


def register_secrets(values: Iterable[str | None]) -> None:
    for v in values:
        register_secret(v)


def redact(text: str) -> str:
    """``text`` without registered secrets and secret-shaped parts."""
    pattern = _secret_re
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    for rx, repl in _PATTERNS:
        text = rx.sub(repl, text)
    return text


class Redact(logging.Filter):
    """Renders each record's message and exception once, redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the line
            message = f"{record.msg!r} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.exc_info = None  # formatted (and redacted) above
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record.bastille_context = dict(_context.get())
        return True


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": _iso(record.created), "level": record.levelname.lower(),
                               "logger": record.name, "message": record.getMessage(),
                               "pid": record.process}
        out.update(getattr(record, "bastille_context", {}))
        if record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER: MESSAGE [session=... user=... target=...]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ctx = getattr(record, "bastille_context", {})
        if ctx:
            text += " [" + " ".join(f"{k}={ctx[k]}" for k in FIELDS if k in ctx) + "]"
        return text


def resolve_format(fmt: str, stream: IO[str]) -> str:
    """``auto``: text on a terminal, JSON otherwise."""
    if fmt != "auto":
        return fmt
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


ENV = "BASTILLE_LOG_FORMAT"  # the chosen format, for child processes (RDP workers)


def setup(level: int, fmt: str = "auto", stream: IO[str] | None = None) -> str:
    """Install the handler on the root logger; returns the format used (also put in
    ``$BASTILLE_LOG_FORMAT`` so that worker processes log the same way)."""
    stream = stream if stream is not None else sys.stderr
    chosen = resolve_format(fmt, stream)
    os.environ[ENV] = chosen
    handler = logging.StreamHandler(stream)
    handler.addFilter(Redact())
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return chosen
