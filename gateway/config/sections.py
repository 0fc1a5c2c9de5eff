"""The sections of the config file, each read and checked on its own."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.config.model import (
    BUILTIN_TARGETS,
    NAME_RE,
    OIDC_ALGS,
    RESERVED_TARGET_NAMES,
    ApprovalSettings,
    BudgetSettings,
    GatewaySettings,
    OidcSettings,
    PolicySettings,
    RdpSettings,
    RuleConfig,
    Secret,
    TargetConfig,
    UserConfig,
)
from gateway.config.reader import Reader, join, kind_of, parse_listen
from gateway.limits import MAX_CONNECTIONS_PER_SOURCE, MAX_SESSIONS_PER_USER
from recorder.settings import RecorderSettings

_TOP = {"gateway", "audit", "recording", "users", "targets", "policy", "approvals", "oidc",
        "rdp", "web", "saml", "state", "admin", "webhooks"}
_RDP = {"listen", "tls_cert", "tls_key", "token_ttl", "public_address", "workers",
        "login_timeout", "ocr", "ocr_budget", "ocr_per_minute"}
_TARGET_RDP = {"protocol", "rdp_cert_sha256", "rdp_domain", "rdp_listen_port",
               "allow_clipboard", "allow_drive_redirection"}
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_OIDC = {"issuer", "client_id", "client_secret_env", "client_secret_file", "scopes",
         "username_claim", "groups_claim", "binding_ttl", "allowed_algs", "group_map",
         "http_timeout", "leeway"}
_GATEWAY = {"listen", "host_keys", "banner", "login_timeout", "idle_timeout", "max_session",
            "drain_timeout", "max_auth_failures", "auth_failure_window", "data_dir",
            "allow_passwords", "max_source_failures", "max_connections_per_source",
            "max_sessions_per_user", "proxy_protocol", "public_address", "log_format",
            "workers", "event_loop"}
_EVENT_LOOPS = ("auto", "uvloop", "asyncio")
_BUDGET_KEYS = frozenset({"max_recording_bytes", "max_recording_bytes_per_user_day",
                          "budget_action", "throttle_rate"})  # [recording], read by _budget
_USER = {"keys", "keys_file", "groups", "password_hash"}
_TARGET = {"host", "port", "user", "description", "builtin", "key_file", "key_env",
           "password_file", "password_env", "host_keys", "trust_on_first_use",
           "connect_timeout", "users", "groups", "allow_local_forwarding",
           "allow_remote_forwarding", "allow_agent_forwarding", "allow_x11_forwarding"}


def _listen(r: Reader, table: Mapping[str, Any], section: str,
            default: tuple[str, int]) -> tuple[str, int]:
    """``SECTION.listen`` as (host, port); a bad value is reported, the default used."""
    listen = r.get(table, "listen", section, str, f"{default[0]}:{default[1]}")
    parsed = parse_listen(listen)
    if parsed is None:
        r.problem(f"{section}.listen", f"expected 'host:port', got {listen!r}")
        return default
    return parsed


def _gateway(r: Reader, data: dict[str, Any]) -> tuple[GatewaySettings, Path]:
    g = r.table(data, "gateway", "gateway")
    r.check_keys(g, "gateway", _GATEWAY)
    parsed = _listen(r, g, "gateway", ("127.0.0.1", 2222))
    host_keys = tuple(
        p if p.is_absolute() else r.base / p
        for p in (Path(os.path.expanduser(k)) for k in r.str_list(g, "host_keys", "gateway"))
    )
    if not host_keys:
        r.problem("gateway.host_keys", "at least one host key file is required "
                  "(create one: ssh-keygen -t ed25519 -N '' -f ssh_host_ed25519_key)")
    for i, key in enumerate(host_keys):
        if not key.is_file():
            r.problem("gateway.host_keys", f"host key file [{i}] {key} does not exist")
        elif r.check_key is not None:
            why = r.check_key(key)
            if why:
                r.problem("gateway.host_keys", f"host key file [{i}]: {why}")
    data_dir = r.path_value(g, "data_dir", "gateway", r.base / "data") or r.base / "data"
    settings = GatewaySettings(
        listen_host=parsed[0],
        listen_port=parsed[1],
        host_keys=host_keys,
        banner=r.get(g, "banner", "gateway", str, ""),
        login_timeout=r.duration(g, "login_timeout", "gateway", 120.0),
        idle_timeout=r.duration(g, "idle_timeout", "gateway", 0.0),
        max_session=r.duration(g, "max_session", "gateway", 0.0),
        drain_timeout=r.duration(g, "drain_timeout", "gateway", 30.0),
        max_auth_failures=r.int_range(g, "max_auth_failures", "gateway", 1, 1000, 5),
        auth_failure_window=r.duration(g, "auth_failure_window", "gateway", 300.0),
        max_source_failures=r.int_range(g, "max_source_failures", "gateway", 0, 100_000, 0),
        max_connections_per_source=r.int_range(g, "max_connections_per_source", "gateway", 1,
                                               100_000, MAX_CONNECTIONS_PER_SOURCE),
        max_sessions_per_user=r.int_range(g, "max_sessions_per_user", "gateway", 1, 100_000,
                                          MAX_SESSIONS_PER_USER),
        allow_passwords=r.get(g, "allow_passwords", "gateway", bool, False),
        public_address=r.get(g, "public_address", "gateway", str, ""),
        log_format=r.choice(g, "log_format", "gateway", ("auto", "text", "json"), "auto"),
        workers=r.int_range(g, "workers", "gateway", 1, 256, os.cpu_count() or 1),
        event_loop=_event_loop(r, g),
    )
    return settings, data_dir


def _event_loop(r: Reader, g: Mapping[str, Any]) -> str:
    value = r.get(g, "event_loop", "gateway", str, "asyncio")
    if value not in _EVENT_LOOPS:
        r.problem("gateway.event_loop", f"expected one of {', '.join(_EVENT_LOOPS)}, "
                  f"got {value!r}")
        return "asyncio"
    if value == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            r.problem("gateway.event_loop", "uvloop is not installed "
                      "(pip install 'bastille[speed]')")
    return value


def _secret_from(r: Reader, data: Mapping[str, Any], path: str, env_key: str,
                 file_key: str, *, needed: bool = True) -> str | None:
    env = r.get(data, env_key, path, str, "")
    file = r.path_value(data, file_key, path, None)
    if env and file:
        r.problem(join(path, env_key), f"set only one of {env_key} and {file_key}")
    if not needed:
        return None
    if env:
        if env not in os.environ:
            r.problem(join(path, env_key), f"environment variable {env} is not set")
            return None
        return os.environ[env]
    if file:
        try:
            return file.read_text().strip()
        except OSError as exc:
            r.problem(join(path, file_key), f"cannot read {file}: {exc.strerror}")
    return None


def _recording(r: Reader, data: dict[str, Any], data_dir: Path,
               reading: bool = False) -> RecorderSettings:
    """``[recording]``: parsed and validated by the recorder (every problem, with its key).

    ``reading``: for tools that only read recordings (the storage's write secret need not
    be set: read credentials or the local spool are used).
    """
    from recorder.config import parse_recording

    settings, problems = parse_recording(data.get("recording", {}), data_dir=data_dir,
                                         base=r.base, reading=reading,
                                         extra_keys=_BUDGET_KEYS)
    for p in problems:
        r.problem(p.key, p.message)
    return settings


def _budget(r: Reader, data: dict[str, Any]) -> BudgetSettings:
    """The recording budgets (keys of ``[recording]``, see BudgetSettings)."""
    rec = r.table(data, "recording", "recording")
    rate = r.size(rec, "throttle_rate", "recording", 64 * 1024)
    if rate < 1024:
        r.problem("recording.throttle_rate", f"expected at least 1K (1024 bytes/s), got {rate}")
        rate = 64 * 1024
    return BudgetSettings(
        session_bytes=r.size(rec, "max_recording_bytes", "recording", 0),
        user_day_bytes=r.size(rec, "max_recording_bytes_per_user_day", "recording", 0),
        action=r.choice(rec, "budget_action", "recording", ("terminate", "throttle"),
                        "terminate"),
        throttle_rate=rate,
    )


def _users(r: Reader, data: dict[str, Any]) -> dict[str, UserConfig]:
    users: dict[str, UserConfig] = {}
    for name, u in r.table(data, "users", "users").items():
        path = f"users.{name}"
        if not isinstance(u, dict):
            r.problem(path, f"expected a table, got {kind_of(u)}")
            continue
        if not NAME_RE.match(name) or "+" in name:
            r.problem(path, "user names use letters, digits, '.', '_' and '-' only")
        r.check_keys(u, path, _USER)
        keys = list(r.str_list(u, "keys", path))
        keys_file = r.path_value(u, "keys_file", path, None)
        if keys_file is not None:
            try:
                keys += [ln.strip() for ln in keys_file.read_text().splitlines()
                         if ln.strip() and not ln.lstrip().startswith("#")]
            except OSError as exc:
                r.problem(f"{path}.keys_file", f"cannot read {keys_file}: {exc.strerror}")
        for i, key in enumerate(keys):
            if not re.match(r"^(ssh-|ecdsa-|sk-)\S+ [A-Za-z0-9+/=]+", key):
                r.problem(f"{path}.keys", f"key [{i}] is not an OpenSSH public key line")
        pw = r.get(u, "password_hash", path, str, "")
        if pw and not pw.startswith("scrypt$"):
            r.problem(f"{path}.password_hash",
                      "expected an scrypt hash (create one: bastille hash-password)")
        users[name] = UserConfig(
            name=name,
            keys=tuple(keys),
            groups=frozenset(r.str_list(u, "groups", path)),
            password_hash=Secret(pw) if pw else None,
        )
    return users


def _targets(r: Reader, data: dict[str, Any],
             users: Mapping[str, UserConfig]) -> dict[str, TargetConfig]:
    targets: dict[str, TargetConfig] = {}
    for name, t in r.table(data, "targets", "targets").items():
        path = f"targets.{name}"
        if not isinstance(t, dict):
            r.problem(path, f"expected a table, got {kind_of(t)}")
            continue
        if not NAME_RE.match(name) or name in RESERVED_TARGET_NAMES:
            r.problem(path, "target names use letters, digits, '.', '_' and '-' "
                      f"and may not be one of {', '.join(RESERVED_TARGET_NAMES)}")
        r.check_keys(t, path, _TARGET | _TARGET_RDP)
        protocol = r.choice(t, "protocol", path, ("ssh", "rdp"), "ssh")
        builtin = r.get(t, "builtin", path, str, "") or None
        if builtin is not None and builtin not in BUILTIN_TARGETS:
            r.problem(f"{path}.builtin", f"expected one of {', '.join(BUILTIN_TARGETS)}")
        target = TargetConfig(
            name=name,
            host=r.get(t, "host", path, str, ""),
            port=r.int_range(t, "port", path, 1, 65535, 3389 if protocol == "rdp" else 22),
            user=r.get(t, "user", path, str, ""),
            description=r.get(t, "description", path, str, ""),
            builtin=builtin,
            key_file=r.path_value(t, "key_file", path, None),
            key_env=r.get(t, "key_env", path, str, "") or None,
            password_file=r.path_value(t, "password_file", path, None),
            password_env=r.get(t, "password_env", path, str, "") or None,
            host_keys=host_key_lines(r.str_list(t, "host_keys", path)),
            trust_on_first_use=r.get(t, "trust_on_first_use", path, bool, False),
            connect_timeout=r.duration(t, "connect_timeout", path, 10.0),
            users=frozenset(r.str_list(t, "users", path)),
            groups=frozenset(r.str_list(t, "groups", path)),
            allow_local_forwarding=r.principals(t, "allow_local_forwarding", path),
            allow_remote_forwarding=r.principals(t, "allow_remote_forwarding", path),
            allow_x11_forwarding=r.principals(t, "allow_x11_forwarding", path),
            allow_agent_forwarding=r.principals(t, "allow_agent_forwarding", path),
            protocol=protocol,
            rdp_cert_sha256=tuple(_normalize_fingerprint(f)
                                  for f in r.str_list(t, "rdp_cert_sha256", path)),
            rdp_domain=r.get(t, "rdp_domain", path, str, ""),
            rdp_listen_port=r.int_range(t, "rdp_listen_port", path, 0, 65535, 0),
            allow_clipboard=r.get(t, "allow_clipboard", path, bool, False),
            allow_drive_redirection=r.get(t, "allow_drive_redirection", path, bool, False),
        )
        if protocol == "rdp":
            _check_rdp_target(r, path, target, t)
        elif builtin is None:
            _check_remote_target(r, path, target)
        else:
            for key in sorted(_TARGET_RDP & set(t) - {"protocol"}):
                r.problem(f"{path}.{key}", "only for RDP targets (protocol = \"rdp\")")
        for u in target.users:
            if u not in users:
                r.problem(f"{path}.users", f"unknown user {u!r}")
        targets[name] = target
    return targets


def _check_login(r: Reader, path: str, t: TargetConfig, kinds: tuple[str, ...],
                 exactly: str) -> None:
    """The target's address, account and exactly one credential of ``kinds`` (the file
    exists, the variable is set)."""
    if not t.host:
        r.problem(f"{path}.host", "required (the target's address)")
    if not t.user:
        r.problem(f"{path}.user", "required (the account the bastion logs into)")
    creds = [k for k in kinds if getattr(t, k)]
    if len(creds) != 1:
        r.problem(path, f"{exactly} (found {', '.join(creds) or 'none'})")
    for key in kinds:
        value = getattr(t, key)
        if key.endswith("_file") and value is not None and not value.is_file():
            r.problem(f"{path}.{key}", f"{value} does not exist")
        elif key.endswith("_env") and value and value not in os.environ and r.secrets:
            r.problem(f"{path}.{key}", f"environment variable {value} is not set")


def _check_remote_target(r: Reader, path: str, t: TargetConfig) -> None:
    _check_login(r, path, t, ("key_file", "key_env", "password_file", "password_env"),
                 "set exactly one of key_file, key_env, password_file, password_env")
    if not t.host_keys and not t.trust_on_first_use:
        r.problem(f"{path}.host_keys", "pin the target's host key (ssh-keyscan -t ed25519 "
                  "HOST) or set trust_on_first_use = true")
    for i, key in enumerate(t.host_keys):
        if not re.match(r"^(ssh-|ecdsa-)\S+ [A-Za-z0-9+/=]+", key):
            r.problem(f"{path}.host_keys", f"key [{i}] is not an OpenSSH public key line")


def host_key_lines(values: tuple[str, ...]) -> tuple[str, ...]:
    """``host_keys`` as OpenSSH key lines, accepting what ``ssh-keyscan`` prints: a
    leading host field (``10.0.0.5 ssh-ed25519 AAAA...``, ``[host]:2222 ...``, hashed
    ``|1|...``), ``# host:22 SSH-2.0-...`` comment lines, several lines in one string."""
    out: list[str] = []
    for value in values:
        for line in value.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            words = line.split()
            if len(words) >= 3 and not _KEY_TYPE.match(words[0]) and _KEY_TYPE.match(words[1]):
                words = words[1:]  # known_hosts / ssh-keyscan: HOST TYPE KEY
            out.append(" ".join(words))
    return tuple(out)


_KEY_TYPE = re.compile(r"^(ssh-|ecdsa-|sk-)\S+$")


def _normalize_fingerprint(value: str) -> str:
    """'AB:CD:...' or 'abcd...' (optionally prefixed 'sha256:') -> lowercase hex."""
    v = value.strip().lower()
    v = v.removeprefix("sha256:").removeprefix("sha256/")
    return v.replace(":", "").replace(" ", "")


def _check_rdp_target(r: Reader, path: str, t: TargetConfig, raw: Mapping[str, Any]) -> None:
    if t.builtin is not None:
        r.problem(f"{path}.builtin", "an RDP target cannot be a built-in target")
    _check_login(r, path, t, ("password_file", "password_env"),
                 "an RDP target needs exactly one of password_file, password_env")
    for key in ("key_file", "key_env", "host_keys", "trust_on_first_use",
                "allow_local_forwarding", "allow_remote_forwarding", "allow_agent_forwarding",
                "allow_x11_forwarding"):
        if key in raw:
            r.problem(f"{path}.{key}", "not used by RDP targets (protocol = \"rdp\")")
    if not t.rdp_cert_sha256:
        r.problem(f"{path}.rdp_cert_sha256", "pin the target's TLS certificate (its SHA-256, "
                  "from `bastille rdp-fingerprint HOST:PORT`)")
    for i, fp in enumerate(t.rdp_cert_sha256):
        if not _SHA256_HEX.match(fp):
            r.problem(f"{path}.rdp_cert_sha256", f"[{i}] is not a SHA-256 fingerprint "
                      "(64 hex digits, colons allowed)")


def _rdp(r: Reader, data: dict[str, Any], targets: Mapping[str, TargetConfig],
         gw: GatewaySettings) -> RdpSettings | None:
    if "rdp" not in data:
        for t in targets.values():
            if t.protocol == "rdp":
                r.problem(f"targets.{t.name}.protocol",
                          "RDP targets need an [rdp] section (its listen address)")
                break
        return None
    d = r.table(data, "rdp", "rdp")
    r.check_keys(d, "rdp", _RDP)
    parsed = _listen(r, d, "rdp", ("127.0.0.1", 3389))
    cert = r.path_value(d, "tls_cert", "rdp", None)
    key = r.path_value(d, "tls_key", "rdp", None)
    if (cert is None) != (key is None):
        r.problem("rdp.tls_cert", "set both tls_cert and tls_key, or neither (a self-signed "
                  "certificate is then created in DATA_DIR/rdp)")
    for name, p in (("tls_cert", cert), ("tls_key", key)):
        if p is not None and not p.is_file():
            r.problem(f"rdp.{name}", f"{p} does not exist")
    ports = {parsed[1]: "rdp.listen", gw.listen_port: "gateway.listen"}
    for t in targets.values():
        if t.rdp_listen_port:
            where = ports.get(t.rdp_listen_port)
            if where:
                r.problem(f"targets.{t.name}.rdp_listen_port",
                          f"port {t.rdp_listen_port} is already used by {where}")
            ports[t.rdp_listen_port] = f"targets.{t.name}.rdp_listen_port"
    return RdpSettings(
        listen_host=parsed[0],
        listen_port=parsed[1],
        tls_cert=cert,
        tls_key=key,
        token_ttl=r.duration(d, "token_ttl", "rdp", 300.0),
        public_address=r.get(d, "public_address", "rdp", str, ""),
        workers=r.int_range(d, "workers", "rdp", 1, 64, 1),
        login_timeout=r.duration(d, "login_timeout", "rdp", 60.0),
        ocr=r.get(d, "ocr", "rdp", bool, True),
        ocr_budget=_ocr_budget(r, d),
        ocr_per_minute=r.int_range(d, "ocr_per_minute", "rdp", 1, 600, 6),
    )


def _ocr_budget(r: Reader, d: Mapping[str, Any]) -> float:
    budget = r.duration(d, "ocr_budget", "rdp", 120.0)
    if budget <= 0:
        r.problem("rdp.ocr_budget", "expected a positive CPU time per session, e.g. '2m' "
                  "(to read no screen text at all: ocr = false)")
        return 120.0
    return budget


_POLICY = {"rules", "default", "on_uncertain", "mask_live", "mask_exec", "mask_transfers",
           "mask_patterns", "escapes", "programs"}
_RULE = {"name", "match", "action", "targets", "users", "groups", "writes", "deletes"}
_APPROVALS = {"approvers", "auditors", "timeout", "webhook_url", "webhook_format"}


def _policy(r: Reader, data: dict[str, Any]) -> PolicySettings:
    from gateway.policy.rules import Action  # the actions are the policy engine's

    actions = tuple(a.value for a in Action)
    p = r.table(data, "policy", "policy")
    r.check_keys(p, "policy", _POLICY)
    raw_rules = p.get("rules", [])
    if not isinstance(raw_rules, list):
        r.problem("policy.rules", "expected [[policy.rules]] tables")
        raw_rules = []
    seen: set[str] = set()
    rules = [rule for i, item in enumerate(raw_rules)
             if (rule := _rule(r, item, f"policy.rules[{i}]", actions, seen)) is not None]
    raw_patterns = p.get("mask_patterns", [])
    if not isinstance(raw_patterns, list):
        r.problem("policy.mask_patterns", "expected a list of regexes or {regex, prefix} tables")
        raw_patterns = []
    patterns = [pattern for i, item in enumerate(raw_patterns)
                if (pattern := _mask_pattern(r, i, item)) is not None]
    return PolicySettings(
        rules=tuple(rules),
        default=r.choice(p, "default", "policy", actions, "allow"),
        on_uncertain=r.choice(p, "on_uncertain", "policy", actions, "approve"),
        mask_live=r.get(p, "mask_live", "policy", bool, True),
        mask_exec=r.get(p, "mask_exec", "policy", bool, True),
        mask_transfers=r.get(p, "mask_transfers", "policy", bool, True),
        mask_patterns=tuple(patterns),
        escapes=r.choice(p, "escapes", "policy", ("allow", "approve"), "allow"),
        programs=r.str_list(p, "programs", "policy"),
    )


def _rule(r: Reader, rule: object, path: str, actions: tuple[str, ...],
          seen: set[str]) -> RuleConfig | None:
    if not isinstance(rule, dict):
        r.problem(path, f"expected a table, got {kind_of(rule)}")
        return None
    r.check_keys(rule, path, _RULE)
    name = r.get(rule, "name", path, str, "")
    match = r.get(rule, "match", path, str, "")
    if not name:
        r.problem(f"{path}.name", "required")
    elif name in seen:
        r.problem(f"{path}.name", f"duplicate rule name {name!r}")
    seen.add(name)
    writes = r.str_list(rule, "writes", path)
    deletes = r.str_list(rule, "deletes", path)
    if not match and not writes and not deletes:
        r.problem(f"{path}.match", "required (a regex over the normalized command), "
                  "unless writes or deletes name the paths the rule is about")
    elif match:
        try:
            re.compile(match)
        except re.error as exc:
            r.problem(f"{path}.match", f"not a valid regex: {exc}")
    return RuleConfig(
        name=name, match=match,
        action=r.choice(rule, "action", path, actions, "deny"),
        targets=r.str_list(rule, "targets", path) or ("*",),
        users=r.str_list(rule, "users", path) or ("*",),
        groups=r.str_list(rule, "groups", path) or ("*",),
        writes=writes, deletes=deletes,
    )


def _mask_pattern(r: Reader, i: int, item: object) -> tuple[str, str | None] | None:
    regex, prefix = (item, None) if isinstance(item, str) else (
        (item.get("regex"), item.get("prefix")) if isinstance(item, dict) else (None, None))
    if not isinstance(regex, str) or not (prefix is None or isinstance(prefix, str)):
        r.problem("policy.mask_patterns", f"pattern [{i}]: expected a regex string or "
                  "{regex = '...', prefix = '...'}")
        return None
    for what, rx in (("regex", regex), ("prefix", prefix)):
        if rx is None:
            continue
        try:
            re.compile(rx.encode())
        except re.error as exc:
            r.problem("policy.mask_patterns", f"pattern [{i}] {what} is not a valid "
                      f"regex: {exc}")
    return regex, prefix


def _approvals(r: Reader, data: dict[str, Any]) -> ApprovalSettings:
    a = r.table(data, "approvals", "approvals")
    r.check_keys(a, "approvals", _APPROVALS)
    url = r.get(a, "webhook_url", "approvals", str, "")
    if url and not url.startswith(("http://", "https://")):
        r.problem("approvals.webhook_url", "expected an http:// or https:// URL")
    return ApprovalSettings(
        approvers=r.principals(a, "approvers", "approvals"),
        auditors=r.principals(a, "auditors", "approvals"),
        timeout=r.duration(a, "timeout", "approvals", 300.0),
        webhook_url=url,
        webhook_format=r.choice(a, "webhook_format", "approvals", ("json", "slack"), "json"),
    )


def _oidc(r: Reader, data: dict[str, Any]) -> OidcSettings | None:
    if "oidc" not in data:
        return None
    o = r.table(data, "oidc", "oidc")
    r.check_keys(o, "oidc", _OIDC)
    issuer = r.get(o, "issuer", "oidc", str, "").rstrip("/")
    if not issuer.startswith(("http://", "https://")):
        r.problem("oidc.issuer", "expected the IdP's issuer URL (https://...)")
    client_id = r.get(o, "client_id", "oidc", str, "")
    if not client_id:
        r.problem("oidc.client_id", "required: the client id registered at the IdP")
    secret = _secret_from(r, o, "oidc", "client_secret_env", "client_secret_file",
                          needed=r.secrets)
    algs = r.str_list(o, "allowed_algs", "oidc") if "allowed_algs" in o else ("RS256", "ES256")
    for alg in algs:
        if alg not in OIDC_ALGS:
            r.problem("oidc.allowed_algs",
                      f"{alg!r} is not allowed; use asymmetric ones: {', '.join(OIDC_ALGS)}")
    if not algs:
        r.problem("oidc.allowed_algs", "expected at least one algorithm")
    group_map: dict[str, tuple[str, ...]] = {}
    for idp_group, value in r.table(o, "group_map", "oidc.group_map").items():
        group_map[idp_group] = r.str_list({"v": value}, "v", f"oidc.group_map.{idp_group}")
    scopes = r.str_list(o, "scopes", "oidc") if "scopes" in o else \
        ("openid", "profile", "groups")
    if "openid" not in scopes:
        r.problem("oidc.scopes", "must include 'openid' (the ID token carries the identity)")
    return OidcSettings(
        issuer=issuer,
        client_id=client_id,
        client_secret=Secret(secret) if secret else None,
        scopes=scopes,
        username_claim=r.get(o, "username_claim", "oidc", str, "preferred_username"),
        groups_claim=r.get(o, "groups_claim", "oidc", str, "groups"),
        binding_ttl=r.duration(o, "binding_ttl", "oidc", 8 * 3600.0),
        allowed_algs=algs,
        group_map=group_map,
        http_timeout=r.duration(o, "http_timeout", "oidc", 10.0),
        leeway=r.duration(o, "leeway", "oidc", 60.0),
    )
