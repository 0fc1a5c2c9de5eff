"""Typed, frozen configuration loaded from TOML and validated once at start.

Every problem is collected (not just the first) and reported with the file, the key and
the line: ``bastille.toml:12: targets.web1.port: expected an integer 1-65535, got "x"``.
Relative paths in the file are relative to the directory holding the file.

The reference of every key is in README.md ("Configuration reference"); keep both in step.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gateway.errors import ConfigError, ConfigProblem
from gateway.tomlpos import key_lines, line_of
from recorder.settings import RecorderSettings, S3Settings

T = TypeVar("T")

BUILTIN_TARGETS = ("local-shell",)
RESERVED_TARGET_NAMES = ("approvals", "player", "help", "request")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Secret:
    """A secret value whose repr and str are redacted."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__


@dataclass(frozen=True)
class Principals:
    """Who a permission applies to: everyone, no one, or named users and ``group:NAME``."""

    everyone: bool = False
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    def allows(self, user: str, groups: frozenset[str]) -> bool:
        return self.everyone or user in self.users or bool(self.groups & groups)


NOBODY = Principals()


@dataclass(frozen=True)
class GatewaySettings:
    listen_host: str = "127.0.0.1"
    listen_port: int = 2222
    host_keys: tuple[Path, ...] = ()
    banner: str = ""
    login_timeout: float = 120.0
    idle_timeout: float = 0.0  # 0 = no idle timeout
    max_session: float = 0.0  # 0 = unlimited
    drain_timeout: float = 30.0
    max_auth_failures: int = 5
    auth_failure_window: float = 300.0
    allow_passwords: bool = False  # password logins are loopback-only unless this is true


@dataclass(frozen=True)
class AuditSettings:
    file: Path
    syslog: bool = False
    syslog_address: str = "/dev/log"
    syslog_facility: str = "auth"


@dataclass(frozen=True)
class UserConfig:
    name: str
    keys: tuple[str, ...] = ()  # OpenSSH public key lines
    groups: frozenset[str] = frozenset()
    password_hash: Secret | None = None  # "scrypt$N$r$p$salt_b64$hash_b64"


@dataclass(frozen=True)
class TargetConfig:
    name: str
    host: str = ""
    port: int = 22
    user: str = ""
    description: str = ""
    builtin: str | None = None  # "local-shell": served by the bastille process itself
    key_file: Path | None = None
    key_env: str | None = None
    password_file: Path | None = None
    password_env: str | None = None
    host_keys: tuple[str, ...] = ()
    trust_on_first_use: bool = False
    connect_timeout: float = 10.0
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    allow_local_forwarding: Principals = NOBODY
    allow_remote_forwarding: Principals = NOBODY
    allow_x11_forwarding: Principals = NOBODY
    allow_agent_forwarding: Principals = NOBODY
    # RDP (protocol = "rdp"; see docs/rdp.md)
    protocol: str = "ssh"  # "ssh" | "rdp"
    rdp_cert_sha256: tuple[str, ...] = ()  # pinned SHA-256 of the target's TLS certificate
    rdp_domain: str = ""
    rdp_listen_port: int = 0  # a gateway port that always leads to this target (0: none)
    allow_clipboard: bool = False
    allow_drive_redirection: bool = False

    def permits(self, user: UserConfig) -> bool:
        return user.name in self.users or bool(self.groups & user.groups)


@dataclass(frozen=True)
class RuleConfig:
    name: str
    match: str  # "" for a rule about effects only
    action: str  # allow | deny | approve
    targets: tuple[str, ...] = ("*",)
    users: tuple[str, ...] = ("*",)
    groups: tuple[str, ...] = ("*",)
    writes: tuple[str, ...] = ()  # path globs the command writes
    deletes: tuple[str, ...] = ()  # path globs the command removes


@dataclass(frozen=True)
class PolicySettings:
    """``[policy]``: command rules and masking. No rules and default allow = no policy."""

    rules: tuple[RuleConfig, ...] = ()
    default: str = "allow"
    on_uncertain: str = "approve"
    mask_live: bool = True  # mask secrets in what users see (recordings are always masked)
    mask_exec: bool = True  # mask the recordings of exec sessions (costs bulk throughput)
    mask_transfers: bool = True  # mask file contents (sftp/scp/rsync) in recordings
    mask_patterns: tuple[tuple[str, str | None], ...] = ()  # extra (regex, prefix) to mask
    escapes: str = "allow"  # starting a REPL/editor/pager with its own prompt: allow | approve
    programs: tuple[str, ...] = ()  # operator-declared plain programs (names or paths)

    @property
    def enabled(self) -> bool:
        return bool(self.rules) or self.default != "allow"


@dataclass(frozen=True)
class ApprovalSettings:
    approvers: Principals = NOBODY
    timeout: float = 300.0
    webhook_url: str = ""
    webhook_format: str = "json"  # json | slack


#: gateway.login_timeout when [oidc] is set and login_timeout is not (IdP codes live ~10 min)
SSO_LOGIN_TIMEOUT = 600.0

#: Signature algorithms an ID token may use. Symmetric (HS*) and "none" are never
#: accepted: a client secret must not be able to mint identities.
OIDC_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
             "EdDSA")


@dataclass(frozen=True)
class OidcSettings:
    """``[oidc]``: single sign-on with the OAuth 2.0 device flow (see docs/sso.md)."""

    issuer: str
    client_id: str
    client_secret: Secret | None = None
    scopes: tuple[str, ...] = ("openid", "profile", "groups")
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    binding_ttl: float = 8 * 3600.0
    allowed_algs: tuple[str, ...] = ("RS256", "ES256")
    #: IdP group -> bastille groups; empty: IdP groups are used as they are
    group_map: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    http_timeout: float = 10.0
    leeway: float = 60.0

    def map_groups(self, idp_groups: list[str] | tuple[str, ...]) -> frozenset[str]:
        """The bastille groups (used by ``targets.*.groups`` and approvers) for IdP groups."""
        if not self.group_map:
            return frozenset(idp_groups)
        return frozenset(g for idp in idp_groups for g in self.group_map.get(idp, ()))


@dataclass(frozen=True)
class RdpSettings:
    """``[rdp]``: the RDP listener (optional extra ``bastille[rdp]``; see docs/rdp.md)."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 3389
    tls_cert: Path | None = None  # None: a self-signed certificate in DATA_DIR/rdp
    tls_key: Path | None = None
    token_ttl: float = 300.0  # lifetime of `bastille rdp-file` routing tokens and PINs
    public_address: str = ""  # host[:port] written into .rdp files (default: listen)
    workers: int = 1  # worker processes (SO_REUSEPORT); RDP never runs in the SSH process
    login_timeout: float = 60.0


@dataclass(frozen=True)
class Config:
    path: Path
    data_dir: Path
    gateway: GatewaySettings
    audit: AuditSettings
    recording: RecorderSettings
    users: Mapping[str, UserConfig]
    targets: Mapping[str, TargetConfig]
    policy: PolicySettings = PolicySettings()
    approvals: ApprovalSettings = ApprovalSettings()
    oidc: OidcSettings | None = None
    rdp: RdpSettings | None = None
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    def targets_for(self, user: UserConfig) -> list[TargetConfig]:
        """The SSH targets ``user`` may use (RDP targets are reached with RDP clients)."""
        return [t for t in self.targets.values() if t.permits(user) and t.protocol != "rdp"]


# --------------------------------------------------------------------------- reader


class _Reader:
    """Typed access to the parsed TOML, collecting problems with their lines."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.base = path.parent
        self.lines = key_lines(text)
        self.problems: list[ConfigProblem] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(
            ConfigProblem(str(self.path), key, line_of(self.lines, key), message)
        )

    def table(self, data: Mapping[str, Any], key: str, path: str) -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            self.problem(path, f"expected a table, got {_kind(value)}")
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
            self.problem(_join(path, key), f"expected {_name(kind)}, got {_kind(value)}")
            return default
        return value

    def str_list(self, data: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        value = data.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(_join(path, key), f"expected a list of strings, got {_kind(value)}")
            return ()
        return tuple(value)

    def duration(self, data: Mapping[str, Any], key: str, path: str, default: float) -> float:
        if key not in data:
            return default
        value = data[key]
        parsed = parse_duration(value)
        if parsed is None:
            self.problem(
                _join(path, key),
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

    def choice(self, data: Mapping[str, Any], key: str, path: str, choices: tuple[str, ...],
               default: str) -> str:
        value = self.get(data, key, path, str, default)
        if value not in choices:
            self.problem(_join(path, key), f"expected one of {', '.join(choices)}, got {value!r}")
            return default
        return value

    def int_range(self, data: Mapping[str, Any], key: str, path: str, lo: int, hi: int,
                  default: int) -> int:
        value = self.get(data, key, path, int, default)
        if not lo <= value <= hi:
            self.problem(_join(path, key), f"expected an integer {lo}-{hi}, got {value}")
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


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: object) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def _name(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            list: "a list", dict: "a table"}.get(kind, kind.__name__)


def _closest(key: str, allowed: set[str]) -> str | None:
    import difflib

    match = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.75)
    return match[0] if match else None


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: object) -> float | None:
    """Seconds from an int/float or a string like '90', '30s', '5m', '8h', '1d'."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    return None


def parse_listen(value: str) -> tuple[str, int] | None:
    """'host:port' or '[v6]:port' -> (host, port)."""
    m = re.match(r"^\[([^\]]+)\]:(\d+)$", value) or re.match(r"^([^:]*):(\d+)$", value)
    if not m or not 0 < int(m.group(2)) < 65536:
        return None
    return (m.group(1) or "0.0.0.0", int(m.group(2)))


# --------------------------------------------------------------------------- sections

_TOP = {"gateway", "audit", "recording", "users", "targets", "policy", "approvals", "oidc",
        "rdp"}
_RDP = {"listen", "tls_cert", "tls_key", "token_ttl", "public_address", "workers",
        "login_timeout"}
_TARGET_RDP = {"protocol", "rdp_cert_sha256", "rdp_domain", "rdp_listen_port",
               "allow_clipboard", "allow_drive_redirection"}
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_OIDC = {"issuer", "client_id", "client_secret_env", "client_secret_file", "scopes",
         "username_claim", "groups_claim", "binding_ttl", "allowed_algs", "group_map",
         "http_timeout", "leeway"}
_GATEWAY = {"listen", "host_keys", "banner", "login_timeout", "idle_timeout", "max_session",
            "drain_timeout", "max_auth_failures", "auth_failure_window", "data_dir",
            "allow_passwords"}
_AUDIT = {"file", "syslog", "syslog_address", "syslog_facility"}
_RECORDING = {"storage", "dir", "zstd_level", "flush_interval", "keyframe_interval",
              "signing_key", "on_failure", "s3", "queue_kib"}
_S3 = {"endpoint_url", "region", "access_key_id", "secret_access_key_env",
       "secret_access_key_file", "sse", "sse_kms_key_id", "object_lock_mode",
       "object_lock_retain_days", "part_size_mib", "spool_cap_mib", "retry_interval"}
_USER = {"keys", "keys_file", "groups", "password_hash"}
_TARGET = {"host", "port", "user", "description", "builtin", "key_file", "key_env",
           "password_file", "password_env", "host_keys", "trust_on_first_use",
           "connect_timeout", "users", "groups", "allow_local_forwarding",
           "allow_remote_forwarding", "allow_agent_forwarding", "allow_x11_forwarding"}


def _listen(r: _Reader, table: Mapping[str, Any], section: str,
            default: tuple[str, int]) -> tuple[str, int]:
    """``SECTION.listen`` as (host, port); a bad value is reported, the default used."""
    listen = r.get(table, "listen", section, str, f"{default[0]}:{default[1]}")
    parsed = parse_listen(listen)
    if parsed is None:
        r.problem(f"{section}.listen", f"expected 'host:port', got {listen!r}")
        return default
    return parsed


def _gateway(r: _Reader, data: dict[str, Any]) -> tuple[GatewaySettings, Path]:
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
        else:
            from gateway.ssh.keys import check_private_key

            why = check_private_key(key)
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
        allow_passwords=r.get(g, "allow_passwords", "gateway", bool, False),
    )
    return settings, data_dir


def _audit(r: _Reader, data: dict[str, Any], data_dir: Path) -> AuditSettings:
    a = r.table(data, "audit", "audit")
    r.check_keys(a, "audit", _AUDIT)
    return AuditSettings(
        file=r.path_value(a, "file", "audit", data_dir / "audit.jsonl") or data_dir,
        syslog=r.get(a, "syslog", "audit", bool, False),
        syslog_address=r.get(a, "syslog_address", "audit", str, "/dev/log"),
        syslog_facility=r.get(a, "syslog_facility", "audit", str, "auth"),
    )


def _secret_from(r: _Reader, data: Mapping[str, Any], path: str, env_key: str,
                 file_key: str) -> str | None:
    env = r.get(data, env_key, path, str, "")
    file = r.path_value(data, file_key, path, None)
    if env and file:
        r.problem(_join(path, env_key), f"set only one of {env_key} and {file_key}")
    if env:
        if env not in os.environ:
            r.problem(_join(path, env_key), f"environment variable {env} is not set")
            return None
        return os.environ[env]
    if file:
        try:
            return file.read_text().strip()
        except OSError as exc:
            r.problem(_join(path, file_key), f"cannot read {file}: {exc.strerror}")
    return None


def _recording(r: _Reader, data: dict[str, Any], data_dir: Path) -> RecorderSettings:
    rec = r.table(data, "recording", "recording")
    r.check_keys(rec, "recording", _RECORDING)
    storage = r.get(rec, "storage", "recording", str, "file")
    s3: S3Settings | None = None
    if storage.startswith("s3://"):
        bucket, _, prefix = storage[5:].partition("/")
        if not bucket:
            r.problem("recording.storage", "an S3 URL needs a bucket: s3://bucket/prefix")
        s = r.table(rec, "s3", "recording.s3")
        r.check_keys(s, "recording.s3", _S3)
        part = r.int_range(s, "part_size_mib", "recording.s3", 5, 5120, 8)
        s3 = S3Settings(
            bucket=bucket,
            prefix=prefix.strip("/"),
            endpoint_url=r.get(s, "endpoint_url", "recording.s3", str, "") or None,
            region=r.get(s, "region", "recording.s3", str, "") or None,
            access_key_id=r.get(s, "access_key_id", "recording.s3", str, "") or None,
            secret_access_key=_secret_from(r, s, "recording.s3", "secret_access_key_env",
                                           "secret_access_key_file"),
            sse=r.get(s, "sse", "recording.s3", str, "") or None,
            sse_kms_key_id=r.get(s, "sse_kms_key_id", "recording.s3", str, "") or None,
            object_lock_mode=r.get(s, "object_lock_mode", "recording.s3", str, "") or None,
            object_lock_retain_days=r.get(s, "object_lock_retain_days", "recording.s3", int, 0)
            or None,
            part_size=part * 1024 * 1024,
            spool_cap_bytes=r.int_range(s, "spool_cap_mib", "recording.s3", 16, 10**7, 1024)
            * 1024 * 1024,
            retry_interval=r.duration(s, "retry_interval", "recording.s3", 2.0),
        )
    elif storage != "file":
        r.problem("recording.storage",
                  f"expected \"file\" or \"s3://bucket/prefix\", got {storage!r}")
    signing_key = r.path_value(rec, "signing_key", "recording", None)
    if signing_key is not None and not signing_key.is_file():
        r.problem("recording.signing_key",
                  f"{signing_key} does not exist (create it: bastille keygen -o {signing_key})")
    elif signing_key is not None:
        from recorder.errors import RecorderError
        from recorder.signing import load_signer

        try:
            load_signer(signing_key)
        except RecorderError as exc:
            r.problem("recording.signing_key", str(exc))
    on_failure = r.choice(rec, "on_failure", "recording", ("terminate", "continue"), "terminate")
    return RecorderSettings(
        data_dir=data_dir,
        recordings_dir=r.path_value(rec, "dir", "recording", None),
        s3=s3,
        zstd_level=r.int_range(rec, "zstd_level", "recording", 1, 22, 3),
        flush_interval=r.duration(rec, "flush_interval", "recording", 1.0),
        keyframe_interval=r.duration(rec, "keyframe_interval", "recording", 10.0),
        signing_key=signing_key,
        on_failure=on_failure,  # type: ignore[arg-type]
        queue_bytes=r.int_range(rec, "queue_kib", "recording", 64, 1024 * 1024, 4096) * 1024,
    )


def _users(r: _Reader, data: dict[str, Any]) -> dict[str, UserConfig]:
    users: dict[str, UserConfig] = {}
    for name, u in r.table(data, "users", "users").items():
        path = f"users.{name}"
        if not isinstance(u, dict):
            r.problem(path, f"expected a table, got {_kind(u)}")
            continue
        if not _NAME.match(name) or "+" in name:
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


def _targets(r: _Reader, data: dict[str, Any],
             users: Mapping[str, UserConfig]) -> dict[str, TargetConfig]:
    targets: dict[str, TargetConfig] = {}
    for name, t in r.table(data, "targets", "targets").items():
        path = f"targets.{name}"
        if not isinstance(t, dict):
            r.problem(path, f"expected a table, got {_kind(t)}")
            continue
        if not _NAME.match(name) or name in RESERVED_TARGET_NAMES:
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
            host_keys=r.str_list(t, "host_keys", path),
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


def _check_remote_target(r: _Reader, path: str, t: TargetConfig) -> None:
    if not t.host:
        r.problem(f"{path}.host", "required (the target's address)")
    if not t.user:
        r.problem(f"{path}.user", "required (the account the bastion logs into)")
    creds = [k for k, v in (("key_file", t.key_file), ("key_env", t.key_env),
                            ("password_file", t.password_file),
                            ("password_env", t.password_env)) if v]
    if len(creds) != 1:
        r.problem(path, "set exactly one of key_file, key_env, password_file, password_env "
                  f"(found {', '.join(creds) or 'none'})")
    for key in ("key_file", "password_file"):
        value = getattr(t, key)
        if value is not None and not value.is_file():
            r.problem(f"{path}.{key}", f"{value} does not exist")
    for key in ("key_env", "password_env"):
        value = getattr(t, key)
        if value and value not in os.environ:
            r.problem(f"{path}.{key}", f"environment variable {value} is not set")
    if not t.host_keys and not t.trust_on_first_use:
        r.problem(f"{path}.host_keys", "pin the target's host key (ssh-keyscan -t ed25519 "
                  "HOST) or set trust_on_first_use = true")
    for i, key in enumerate(t.host_keys):
        if not re.match(r"^(ssh-|ecdsa-)\S+ [A-Za-z0-9+/=]+", key):
            r.problem(f"{path}.host_keys", f"key [{i}] is not an OpenSSH public key line")


def _normalize_fingerprint(value: str) -> str:
    """'AB:CD:...' or 'abcd...' (optionally prefixed 'sha256:') -> lowercase hex."""
    v = value.strip().lower()
    v = v.removeprefix("sha256:").removeprefix("sha256/")
    return v.replace(":", "").replace(" ", "")


def _check_rdp_target(r: _Reader, path: str, t: TargetConfig, raw: Mapping[str, Any]) -> None:
    if t.builtin is not None:
        r.problem(f"{path}.builtin", "an RDP target cannot be a built-in target")
    if not t.host:
        r.problem(f"{path}.host", "required (the target's address)")
    if not t.user:
        r.problem(f"{path}.user", "required (the account the bastion logs into)")
    creds = [k for k, v in (("password_file", t.password_file),
                            ("password_env", t.password_env)) if v]
    if len(creds) != 1:
        r.problem(path, "an RDP target needs exactly one of password_file, password_env "
                  f"(found {', '.join(creds) or 'none'})")
    for key in ("key_file", "key_env", "host_keys", "trust_on_first_use",
                "allow_local_forwarding", "allow_remote_forwarding", "allow_agent_forwarding",
                "allow_x11_forwarding"):
        if key in raw:
            r.problem(f"{path}.{key}", "not used by RDP targets (protocol = \"rdp\")")
    if t.password_file is not None and not t.password_file.is_file():
        r.problem(f"{path}.password_file", f"{t.password_file} does not exist")
    if t.password_env and t.password_env not in os.environ:
        r.problem(f"{path}.password_env", f"environment variable {t.password_env} is not set")
    if not t.rdp_cert_sha256:
        r.problem(f"{path}.rdp_cert_sha256", "pin the target's TLS certificate (its SHA-256, "
                  "from `bastille rdp-fingerprint HOST:PORT`)")
    for i, fp in enumerate(t.rdp_cert_sha256):
        if not _SHA256_HEX.match(fp):
            r.problem(f"{path}.rdp_cert_sha256", f"[{i}] is not a SHA-256 fingerprint "
                      "(64 hex digits, colons allowed)")


def _rdp(r: _Reader, data: dict[str, Any], targets: Mapping[str, TargetConfig],
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
    )


_POLICY = {"rules", "default", "on_uncertain", "mask_live", "mask_exec", "mask_transfers",
           "mask_patterns", "escapes", "programs"}
_RULE = {"name", "match", "action", "targets", "users", "groups", "writes", "deletes"}
_APPROVALS = {"approvers", "timeout", "webhook_url", "webhook_format"}
_ACTIONS = ("allow", "deny", "approve")


def _policy(r: _Reader, data: dict[str, Any]) -> PolicySettings:
    p = r.table(data, "policy", "policy")
    r.check_keys(p, "policy", _POLICY)
    rules: list[RuleConfig] = []
    raw_rules = p.get("rules", [])
    if not isinstance(raw_rules, list):
        r.problem("policy.rules", "expected [[policy.rules]] tables")
        raw_rules = []
    seen: set[str] = set()
    for i, rule in enumerate(raw_rules):
        path = f"policy.rules[{i}]"
        if not isinstance(rule, dict):
            r.problem(path, f"expected a table, got {_kind(rule)}")
            continue
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
        rules.append(RuleConfig(
            name=name, match=match,
            action=r.choice(rule, "action", path, _ACTIONS, "deny"),
            targets=r.str_list(rule, "targets", path) or ("*",),
            users=r.str_list(rule, "users", path) or ("*",),
            groups=r.str_list(rule, "groups", path) or ("*",),
            writes=writes, deletes=deletes,
        ))
    patterns: list[tuple[str, str | None]] = []
    raw_patterns = p.get("mask_patterns", [])
    if not isinstance(raw_patterns, list):
        r.problem("policy.mask_patterns", "expected a list of regexes or {regex, prefix} tables")
        raw_patterns = []
    for i, item in enumerate(raw_patterns):
        regex, prefix = (item, None) if isinstance(item, str) else (
            (item.get("regex"), item.get("prefix")) if isinstance(item, dict) else (None, None))
        if not isinstance(regex, str) or not (prefix is None or isinstance(prefix, str)):
            r.problem("policy.mask_patterns", f"pattern [{i}]: expected a regex string or "
                      "{regex = '...', prefix = '...'}")
            continue
        for what, rx in (("regex", regex), ("prefix", prefix)):
            if rx is None:
                continue
            try:
                re.compile(rx.encode())
            except re.error as exc:
                r.problem("policy.mask_patterns", f"pattern [{i}] {what} is not a valid "
                          f"regex: {exc}")
        patterns.append((regex, prefix))
    return PolicySettings(
        rules=tuple(rules),
        default=r.choice(p, "default", "policy", _ACTIONS, "allow"),
        on_uncertain=r.choice(p, "on_uncertain", "policy", _ACTIONS, "approve"),
        mask_live=r.get(p, "mask_live", "policy", bool, True),
        mask_exec=r.get(p, "mask_exec", "policy", bool, True),
        mask_transfers=r.get(p, "mask_transfers", "policy", bool, True),
        mask_patterns=tuple(patterns),
        escapes=r.choice(p, "escapes", "policy", ("allow", "approve"), "allow"),
        programs=r.str_list(p, "programs", "policy"),
    )


def _approvals(r: _Reader, data: dict[str, Any]) -> ApprovalSettings:
    a = r.table(data, "approvals", "approvals")
    r.check_keys(a, "approvals", _APPROVALS)
    url = r.get(a, "webhook_url", "approvals", str, "")
    if url and not url.startswith(("http://", "https://")):
        r.problem("approvals.webhook_url", "expected an http:// or https:// URL")
    return ApprovalSettings(
        approvers=r.principals(a, "approvers", "approvals"),
        timeout=r.duration(a, "timeout", "approvals", 300.0),
        webhook_url=url,
        webhook_format=r.choice(a, "webhook_format", "approvals", ("json", "slack"), "json"),
    )


def _oidc(r: _Reader, data: dict[str, Any]) -> OidcSettings | None:
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
    secret = _secret_from(r, o, "oidc", "client_secret_env", "client_secret_file")
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


def load_config(path: str | os.PathLike[str]) -> Config:
    """Load and validate a config file; raise ConfigError listing every problem."""
    file = Path(path).resolve()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        problem = ConfigProblem(str(file), "", None, f"cannot read: {exc.strerror}")
        raise ConfigError([problem]) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError([ConfigProblem(str(file), "", int(m.group(1)) if m else None,
                                         f"not valid TOML: {exc}")]) from exc
    r = _Reader(file, text)
    r.check_keys(data, "", _TOP)
    gateway, data_dir = _gateway(r, data)
    audit = _audit(r, data, data_dir)
    recording = _recording(r, data, data_dir)
    users = _users(r, data)
    targets = _targets(r, data, users)
    policy = _policy(r, data)
    approvals = _approvals(r, data)
    oidc = _oidc(r, data)
    rdp = _rdp(r, data, targets, gateway)
    gw_table = data.get("gateway")
    if oidc is not None and not (isinstance(gw_table, dict) and "login_timeout" in gw_table):
        # a device-flow login waits for the user's browser: 120 s is too short
        gateway = dataclasses.replace(gateway, login_timeout=SSO_LOGIN_TIMEOUT)
    for name, user in users.items():
        if not user.keys and user.password_hash is None:
            r.problem(f"users.{name}", "has no keys and no password_hash: it can never log in")
    if r.problems:
        raise ConfigError(r.problems)
    return Config(path=file, data_dir=data_dir, gateway=gateway, audit=audit,
                  recording=recording, users=users, targets=targets, policy=policy,
                  approvals=approvals, oidc=oidc, rdp=rdp, raw=data)
