"""Typed, frozen configuration loaded from TOML and validated once at start.

Every problem is collected (not just the first) and reported with the file, the key and
the line: ``bastille.toml:12: targets.web1.port: expected an integer 1-65535, got "x"``.
Relative paths in the file are relative to the directory holding the file.

* :mod:`gateway.config.model`: the typed configuration (``Config``, ``TargetConfig``...).
* :mod:`gateway.config.reader`: typed access to the parsed TOML, problems with lines.
* :mod:`gateway.config.sections`: each section read and checked.

The reference of every key is in README.md ("Configuration reference"); keep both in step.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from pathlib import Path

from gateway.config import ops as o
from gateway.config import sections as s
from gateway.config import state as st
from gateway.config import web as w
from gateway.config.model import (
    BUILTIN_TARGETS,
    NOBODY,
    OIDC_ALGS,
    RESERVED_TARGET_NAMES,
    SSO_LOGIN_TIMEOUT,
    AdminSettings,
    ApprovalSettings,
    AuditSettings,
    BudgetSettings,
    Config,
    GatewaySettings,
    OidcSettings,
    PolicySettings,
    Principals,
    RdpSettings,
    RuleConfig,
    SamlSettings,
    Secret,
    SyslogSettings,
    TargetConfig,
    UserConfig,
    WebhookSettings,
    WebSettings,
)
from gateway.config.reader import KeyCheck, Reader, parse_listen
from gateway.errors import ConfigError, ConfigProblem

__all__ = ["BUILTIN_TARGETS", "NOBODY", "OIDC_ALGS", "RESERVED_TARGET_NAMES",
           "SSO_LOGIN_TIMEOUT", "AdminSettings", "ApprovalSettings", "AuditSettings",
           "BudgetSettings", "Config",
           "GatewaySettings", "KeyCheck", "OidcSettings", "PolicySettings", "Principals",
           "RdpSettings", "RuleConfig", "SamlSettings", "Secret", "SyslogSettings",
           "TargetConfig", "UserConfig", "WebSettings", "WebhookSettings", "load_config",
           "parse_listen"]


def load_config(path: str | os.PathLike[str], *, check_key: KeyCheck | None = None,
                secrets: bool = True, reading: bool = False) -> Config:
    """Load and validate a config file; raise ConfigError listing every problem.

    Args:
        path: the TOML file.
        check_key: checks that each ``gateway.host_keys`` file is a usable private key
            (the SSH adapter's loader; without it only their existence is checked).
        secrets: check that the variables holding target and IdP secrets are set (and
            read the IdP secret). False for processes that never use them (the player
            started by the gateway, which does not get them).
        reading: for tools that only read recordings: the recording storage's write
            secret need not be set either (implied by ``secrets=False``).
    """
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
    r = Reader(file, text, check_key=check_key, secrets=secrets)
    r.check_keys(data, "", s._TOP)
    gateway, data_dir = s._gateway(r, data)
    audit = o.audit(r, data, data_dir)
    recording = s._recording(r, data, data_dir, reading or not secrets)
    budget = s._budget(r, data)
    users = s._users(r, data)
    targets = s._targets(r, data, users)
    policy = s._policy(r, data)
    approvals = s._approvals(r, data)
    webhooks = o.webhooks(r, data, approvals)
    admin = o.admin(r, data)
    oidc = s._oidc(r, data)
    rdp = s._rdp(r, data, targets, gateway)
    web = w._web(r, data, gateway, oidc)
    saml = w._saml(r, data)
    state = st.read_state(r, data)
    recording = st.with_shared_index(recording, state, data_dir)
    gw_data = data.get("gateway")
    proxies = st.read_proxy_sources(r, gw_data if isinstance(gw_data, dict) else {})
    if proxies:
        gateway = dataclasses.replace(gateway, proxy_protocol=proxies)
    gw_table = data.get("gateway")
    if (oidc is not None or saml is not None) and not (
            isinstance(gw_table, dict) and "login_timeout" in gw_table):
        # a device-flow login waits for the user's browser: 120 s is too short
        gateway = dataclasses.replace(gateway, login_timeout=SSO_LOGIN_TIMEOUT)
    for name, user in users.items():
        if not user.keys and user.password_hash is None:
            r.problem(f"users.{name}", "has no keys and no password_hash: it can never log in")
    if r.problems:
        raise ConfigError(r.problems)
    return Config(path=file, data_dir=data_dir, gateway=gateway, audit=audit,
                  recording=recording, users=users, targets=targets, policy=policy,
                  approvals=approvals, budget=budget, oidc=oidc, rdp=rdp, web=web,
                  saml=saml, state=state, admin=admin, webhooks=webhooks, raw=data)
