"""The operations sections of the config: ``[audit]`` (with its syslog export),
``[webhooks.NAME]`` and ``[admin]`` (metrics and health).

Each is read and checked like the other sections (every problem with its key and line);
the reference is in README.md ("Configuration reference") and docs/operations.md.
"""

from __future__ import annotations

import ipaddress
import logging.handlers
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.config.model import (
    NAME_RE,
    AdminSettings,
    ApprovalSettings,
    AuditSettings,
    Secret,
    SyslogSettings,
    WebhookSettings,
)
from gateway.config.reader import Reader, join, kind_of, parse_listen

AUDIT_KEYS = {"file", "syslog", "syslog_address", "syslog_facility", "syslog_transport",
              "syslog_format", "syslog_hostname", "syslog_tls_ca", "syslog_tls_cert",
              "syslog_tls_key", "syslog_tls_server_name", "syslog_buffer"}
WEBHOOK_KEYS = {"url", "url_env", "url_file", "format", "secret_env", "secret_file", "events",
                "timeout", "max_attempts", "retry_interval", "max_retry_interval"}
ADMIN_KEYS = {"listen", "token_env", "token_file"}
TRANSPORTS = ("unix", "udp", "tcp", "tls")
#: an event pattern: KIND or KIND:OUTCOME, with fnmatch wildcards
_EVENT_RE = re.compile(r"^[a-z*?.\[\]_-]+(:[a-z*?\[\]_-]+)?$")


def audit(r: Reader, data: dict[str, Any], data_dir: Path) -> AuditSettings:
    """``[audit]``: the JSON-lines file and the optional syslog export."""
    a = r.table(data, "audit", "audit")
    r.check_keys(a, "audit", AUDIT_KEYS)
    file = r.path_value(a, "file", "audit", data_dir / "audit.jsonl") or data_dir
    syslog_keys = sorted(k for k in a if k.startswith("syslog_"))
    if not r.get(a, "syslog", "audit", bool, False):
        for key in syslog_keys:
            r.problem(f"audit.{key}", "has no effect without syslog = true")
        return AuditSettings(file=file)
    return AuditSettings(file=file, syslog=_syslog(r, a))


def _syslog(r: Reader, a: Mapping[str, Any]) -> SyslogSettings:
    address = r.get(a, "syslog_address", "audit", str, "/dev/log")
    is_path = address.startswith("/")
    default = "unix" if is_path else "udp"
    transport = r.choice(a, "syslog_transport", "audit", TRANSPORTS, default)
    facility = r.get(a, "syslog_facility", "audit", str, "auth")
    if facility not in logging.handlers.SysLogHandler.facility_names:
        names = ", ".join(sorted(logging.handlers.SysLogHandler.facility_names))
        r.problem("audit.syslog_facility", f"expected one of {names}, got {facility!r}")
        facility = "auth"
    host, port = _syslog_address(r, transport, address)
    tls = {k: r.path_value(a, k, "audit", None)
           for k in ("syslog_tls_ca", "syslog_tls_cert", "syslog_tls_key")}
    if transport != "tls":
        for key in ("syslog_tls_ca", "syslog_tls_cert", "syslog_tls_key",
                    "syslog_tls_server_name"):
            if key in a:
                r.problem(f"audit.{key}", "only with syslog_transport = \"tls\"")
    for key, path in tls.items():
        if path is not None and not path.is_file():
            r.problem(f"audit.{key}", f"{path} does not exist")
    if (tls["syslog_tls_cert"] is None) != (tls["syslog_tls_key"] is None):
        r.problem("audit.syslog_tls_cert", "set both syslog_tls_cert and syslog_tls_key "
                  "(a client certificate for mutual TLS), or neither")
    return SyslogSettings(
        transport=transport, path=address if transport == "unix" else "", host=host,
        port=port, facility=facility,
        format=r.choice(a, "syslog_format", "audit", ("json", "ocsf"), "json"),
        hostname=r.get(a, "syslog_hostname", "audit", str, ""),
        tls_ca=tls["syslog_tls_ca"], tls_cert=tls["syslog_tls_cert"],
        tls_key=tls["syslog_tls_key"],
        tls_server_name=r.get(a, "syslog_tls_server_name", "audit", str, ""),
        buffer=r.int_range(a, "syslog_buffer", "audit", 10, 1_000_000, 10000),
    )


def _syslog_address(r: Reader, transport: str, address: str) -> tuple[str, int]:
    if transport == "unix":
        if not address.startswith("/"):
            r.problem("audit.syslog_address", "syslog_transport = \"unix\" needs a socket "
                      "path such as /dev/log")
        return "", 514
    parsed = parse_listen(address) if not address.startswith("/") else None
    if parsed is None or not parsed[0] or ":" not in address:
        r.problem("audit.syslog_address", f"expected HOST:PORT for syslog_transport = "
                  f"\"{transport}\", got {address!r}")
        return "", 514
    return parsed


def secret_value(r: Reader, data: Mapping[str, Any], path: str, env_key: str,
                 file_key: str) -> str | None:
    """A secret from ``ENV_KEY`` (a variable's name) or ``FILE_KEY`` (a file); never
    inline. Problems name the variable or file, never the value."""
    env = r.get(data, env_key, path, str, "")
    file = r.path_value(data, file_key, path, None)
    if env and file:
        r.problem(join(path, env_key), f"set only one of {env_key} and {file_key}")
        return None
    if env:
        if env not in os.environ:
            if r.secrets:
                r.problem(join(path, env_key), f"environment variable {env} is not set")
            return None
        return os.environ[env]
    if file is not None:
        try:
            return file.read_text().strip()
        except OSError as exc:
            r.problem(join(path, file_key), f"cannot read {file}: {exc.strerror}")
    return None


def webhooks(r: Reader, data: dict[str, Any], approvals: ApprovalSettings
             ) -> tuple[WebhookSettings, ...]:
    """``[webhooks.NAME]`` tables, plus ``[approvals] webhook_url`` as ``approvals``."""
    out: list[WebhookSettings] = []
    if approvals.webhook_url:
        out.append(WebhookSettings(name="approvals", url=Secret(approvals.webhook_url),
                                   format=approvals.webhook_format))
    for name, w in r.table(data, "webhooks", "webhooks").items():
        path = f"webhooks.{name}"
        if not isinstance(w, dict):
            r.problem(path, f"expected a table, got {kind_of(w)}")
            continue
        if not NAME_RE.match(name) or (name == "approvals" and approvals.webhook_url):
            r.problem(path, "webhook names use letters, digits, '.', '_' and '-' (and "
                      "'approvals' is [approvals] webhook_url's)")
        r.check_keys(w, path, WEBHOOK_KEYS)
        hook = _webhook(r, name, path, w)
        if hook is not None:
            out.append(hook)
    return tuple(out)


def _webhook(r: Reader, name: str, path: str, w: Mapping[str, Any]) -> WebhookSettings | None:
    url = r.get(w, "url", path, str, "")
    from_secret = secret_value(r, w, path, "url_env", "url_file")
    if url and from_secret:
        r.problem(f"{path}.url", "set only one of url, url_env and url_file")
    url = url or from_secret or ""
    if not url and r.secrets and not any(k in w for k in ("url_env", "url_file")):
        r.problem(f"{path}.url", "required (or url_env / url_file when the URL is a secret)")
    elif url and not url.startswith(("http://", "https://")):
        r.problem(f"{path}.url", "expected an http:// or https:// URL")
    events = r.str_list(w, "events", path) if "events" in w else ("approval:requested",)
    for pattern in events:
        if not _EVENT_RE.match(pattern):
            r.problem(f"{path}.events", f"{pattern!r}: expected KIND or KIND:OUTCOME "
                      "(e.g. 'policy', 'session.*', 'approval:requested')")
    secret = secret_value(r, w, path, "secret_env", "secret_file")
    return WebhookSettings(
        name=name, url=Secret(url),
        format=r.choice(w, "format", path, ("json", "slack", "ocsf"), "json"),
        secret=Secret(secret) if secret else None,
        events=tuple(events),
        timeout=r.duration(w, "timeout", path, 5.0),
        max_attempts=r.int_range(w, "max_attempts", path, 1, 100, 6),
        retry_interval=r.duration(w, "retry_interval", path, 1.0),
        max_retry_interval=r.duration(w, "max_retry_interval", path, 60.0),
    )


def admin(r: Reader, data: dict[str, Any]) -> AdminSettings | None:
    """``[admin]``: metrics and health on a listener of their own (loopback by default)."""
    if "admin" not in data:
        return None
    a = r.table(data, "admin", "admin")
    r.check_keys(a, "admin", ADMIN_KEYS)
    listen = r.get(a, "listen", "admin", str, "127.0.0.1:9322")
    parsed = parse_listen(listen) or (  # port 0: any free port (bastille status shows it)
        (listen.rpartition(":")[0].strip("[]"), 0) if listen.endswith(":0") else None)
    if parsed is None or not parsed[0]:
        r.problem("admin.listen", f"expected 'host:port', got {listen!r}")
        parsed = ("127.0.0.1", 9322)
    token = secret_value(r, a, "admin", "token_env", "token_file")
    if not _loopback(parsed[0]) and token is None and r.secrets:
        r.problem("admin.listen", f"{parsed[0]} is not a loopback address: set token_env "
                  "or token_file (a bearer token scrapers send), or listen on 127.0.0.1")
    return AdminSettings(listen_host=parsed[0], listen_port=parsed[1],
                         token=Secret(token) if token else None)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
