"""The typed, frozen configuration: what ``load_config`` returns (see ``gateway.config``)."""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.limits import MAX_CONNECTIONS_PER_SOURCE, MAX_SESSIONS_PER_USER
from recorder.settings import RecorderSettings
from state.settings import StateSettings

BUILTIN_TARGETS = ("local-shell",)
RESERVED_TARGET_NAMES = ("approvals", "player", "help", "request")
#: user and target names: letters, digits, '.', '_' and '-'
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


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

    def __eq__(self, other: object) -> bool:  # constant time: reload compares configs
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(Secret)


@dataclass(frozen=True)
class Principals:
    """Who a permission applies to: everyone, no one, or named users and ``group:NAME``."""

    everyone: bool = False
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    def allows(self, user: str, groups: frozenset[str]) -> bool:
        return self.everyone or user in self.users or bool(self.groups & groups)

    def allows_anyone(self) -> bool:
        """True unless this is :data:`NOBODY`."""
        return self.everyone or bool(self.users) or bool(self.groups)

    def __or__(self, other: Principals) -> Principals:
        return Principals(self.everyone or other.everyone, self.users | other.users,
                          self.groups | other.groups)


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
    max_source_failures: int = 0  # failures per source address in the window (0: 6x the above)
    max_connections_per_source: int = MAX_CONNECTIONS_PER_SOURCE
    max_sessions_per_user: int = MAX_SESSIONS_PER_USER  # concurrent sessions of one user
    allow_passwords: bool = False  # password logins are loopback-only unless this is true
    workers: int = 1  # SSH processes sharing the port (1: this process serves SSH itself)
    # "asyncio" (fair reads: keystrokes stay fast beside a bulk session), "uvloop" (faster
    # bulk, coarser reads) or "auto" (uvloop when installed); gateway/eventloop.py
    event_loop: str = "asyncio"
    public_address: str = ""  # host[:port] users reach (texts that show an ssh command)
    log_format: str = "auto"  # auto (text on a terminal, else JSON) | text | json
    #: addresses/networks (load balancers) whose PROXY protocol v2 header is trusted;
    #: empty: no PROXY protocol (gateway/ssh/proxyproto.py)
    proxy_protocol: tuple[Any, ...] = ()


@dataclass(frozen=True)
class SyslogSettings:
    """``[audit] syslog*``: where the gateway sends each audit event (docs/operations.md).

    ``transport``: ``unix`` (a datagram socket such as /dev/log), ``udp``, ``tcp`` or
    ``tls`` (RFC 5424, octet-counted framing over TCP, RFC 6587 / RFC 5425).
    """

    transport: str = "unix"
    path: str = "/dev/log"  # unix
    host: str = ""  # udp, tcp, tls
    port: int = 514
    facility: str = "auth"
    format: str = "json"  # json (the audit record) | ocsf (an OCSF-shaped record)
    hostname: str = ""  # the HOSTNAME field; "" = this host's name
    tls_ca: Path | None = None  # CA bundle that signs the collector's certificate
    tls_cert: Path | None = None  # client certificate (mutual TLS), with tls_key
    tls_key: Path | None = None
    tls_server_name: str = ""  # the name in the collector's certificate ("" = host)
    buffer: int = 10000  # events sent and not yet acknowledged by TCP, at most

    def describe(self) -> str:
        """Where events go (never a secret)."""
        if self.transport == "unix":
            return f"unix:{self.path}"
        return f"{self.transport}://{self.host}:{self.port}"


@dataclass(frozen=True)
class AuditSettings:
    file: Path
    syslog: SyslogSettings | None = None


@dataclass(frozen=True)
class WebhookSettings:
    """``[webhooks.NAME]`` (and ``[approvals] webhook_url``, named ``approvals``).

    The URL is treated as a secret (a Slack URL is its own credential): it is never
    logged, audited or written to the dead-letter file; messages name the webhook.
    """

    name: str
    url: Secret
    format: str = "json"  # json | slack | ocsf
    secret: Secret | None = None  # HMAC-SHA256 key: X-Bastille-Signature
    events: tuple[str, ...] = ("approval:requested",)  # KIND or KIND:OUTCOME, fnmatch
    timeout: float = 5.0
    max_attempts: int = 6
    retry_interval: float = 1.0  # first wait between attempts, doubled each time
    max_retry_interval: float = 60.0


@dataclass(frozen=True)
class AdminSettings:
    """``[admin]``: the admin listener (Prometheus ``/metrics``, ``/healthz``, ``/readyz``)."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 9322
    token: Secret | None = None  # bearer token; required when listening beyond loopback


@dataclass(frozen=True)
class BudgetSettings:
    """Recording budgets (keys of ``[recording]``): bytes recorded (before compression)
    per session and per user per UTC day, and what happens past them."""

    session_bytes: int = 0  # max_recording_bytes (0: no limit)
    user_day_bytes: int = 0  # max_recording_bytes_per_user_day (0: no limit)
    action: str = "terminate"  # budget_action: "terminate" | "throttle"
    throttle_rate: int = 64 * 1024  # throttle_rate: bytes per second once throttled

    @property
    def enabled(self) -> bool:
        return bool(self.session_bytes or self.user_day_bytes)


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


@dataclass(frozen=True)
class RuleConfig:
    name: str
    match: str  # "" for a rule about effects only (writes/deletes)
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
    programs: tuple[str, ...] = ()  # operator-declared plain programs (names, paths, globs)

    @property
    def enabled(self) -> bool:
        return bool(self.rules) or self.default != "allow"


@dataclass(frozen=True)
class ApprovalSettings:
    approvers: Principals = NOBODY  # approve/deny, end sessions, and everything auditors do
    auditors: Principals = NOBODY  # read-only: find, replay, search, watch, review, list
    timeout: float = 300.0
    webhook_url: str = ""  # kept for `config check`; the webhook itself is in Config.webhooks
    webhook_format: str = "json"  # json | slack

    @property
    def readers(self) -> Principals:
        """Who may find, replay and search sessions: approvers and auditors."""
        return self.approvers | self.auditors


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
    # the screen pass after each session (gateway/rdp/screens.py): desktop frames for the
    # player and, with ocr, the screen text for search
    ocr: bool = True  # read the screen text (Tesseract) into the session index
    ocr_budget: float = 120.0  # CPU seconds per session for drawing and reading together
    ocr_per_minute: int = 6  # OCR runs per minute of session time, at most


# ----------------------------------------------------------- [web] and [saml] (docs/sso.md)

@dataclass(frozen=True)
class WebSettings:
    """``[web]``: the bastion's HTTPS endpoint (SAML logins, approving from a browser)."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 8443
    public_url: str = ""  # https://HOST[:PORT] that browsers reach; links are built from it
    tls_cert: Path | None = None  # None: a self-signed certificate in DATA_DIR/web
    tls_key: Path | None = None
    session_ttl: float = 900.0  # a browser session (approver login) lasts this long at most
    login_ttl: float = 300.0  # a one-time SSH login link is usable this long

    @property
    def base_url(self) -> str:
        """``public_url`` without a trailing slash (default: https://LISTEN)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        return f"https://{host}:{self.listen_port}"


@dataclass(frozen=True)
class SamlSettings:
    """``[saml]``: SAML 2.0 single sign-on; the bastion is the Service Provider."""

    idp_metadata: Path  # the IdP's metadata, a local file: its signing certificate is pinned
    idp_entity_id: str = ""  # "" = the only IdP in the metadata file
    entity_id: str = ""  # "" = PUBLIC_URL/saml/metadata
    sp_key: Path | None = None  # signs AuthnRequests; None: generated in DATA_DIR/web
    sp_cert: Path | None = None
    username_attribute: str = "uid"  # "" = the NameID
    groups_attribute: str = "groups"
    group_map: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    binding_ttl: float = 8 * 3600.0
    clock_skew: float = 60.0
    xmlsec_binary: str = "xmlsec1"

    def map_groups(self, idp_groups: list[str] | tuple[str, ...]) -> frozenset[str]:
        """The bastille groups for IdP groups (``group_map``; empty: used as they are)."""
        if not self.group_map:
            return frozenset(idp_groups)
        return frozenset(g for idp in idp_groups for g in self.group_map.get(idp, ()))


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
    budget: BudgetSettings = BudgetSettings()
    oidc: OidcSettings | None = None
    rdp: RdpSettings | None = None
    web: WebSettings | None = None
    saml: SamlSettings | None = None
    admin: AdminSettings | None = None
    webhooks: tuple[WebhookSettings, ...] = ()
    state: StateSettings = field(default_factory=StateSettings)  # [state]: where state lives
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)
