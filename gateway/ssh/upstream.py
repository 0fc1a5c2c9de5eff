"""The bastion's own connection to a target, with credentials only the bastion holds.

Host keys are pinned from the config; ``trust_on_first_use`` targets store the first key
seen in ``DATA_DIR/known_targets`` and pin it from then on. Every failure becomes a
:class:`gateway.errors.TargetError` with a short message fit to show the user; the
credentials themselves never appear in a message or a log line.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import asyncssh

from gateway.config import TargetConfig
from gateway.core.vault import target_key_text, target_password
from gateway.errors import (
    HostKeyMismatch,
    TargetAuthFailed,
    TargetUnreachable,
    VaultError,
)
from gateway.ssh.algorithms import CLIENT_ALGORITHMS
from state.files import private_file

log = logging.getLogger("bastille.upstream")


@dataclass(frozen=True)
class Endpoint:
    """Where and how to log into a target (resolved from config or a builtin target)."""

    host: str
    port: int
    username: str
    client_keys: tuple[asyncssh.SSHKey, ...] = ()
    password: str | None = None
    host_keys: tuple[asyncssh.SSHKey, ...] = ()
    trust_on_first_use: bool = False
    connect_timeout: float = 10.0

    def __repr__(self) -> str:  # never show credentials
        return f"Endpoint({self.username}@{self.host}:{self.port})"


class TofuStore:
    """``name key`` lines remembered for trust-on-first-use targets (file mode 0600).

    A damaged file fails closed: a target whose line cannot be read (or when the file
    cannot be decoded at all) is refused as a host key mismatch, never trusted anew.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def get(self, target: str) -> asyncssh.SSHKey | None:
        try:
            text = self.path.read_bytes().decode()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            self._damaged(target, f"cannot read it: {exc}")
        for line in text.splitlines():
            name, _, key = line.partition(" ")
            if name == target:
                try:
                    return asyncssh.import_public_key(key)
                except (asyncssh.KeyImportError, ValueError) as exc:
                    self._damaged(target, f"the line of {target} is not a public key: {exc}")
        return None

    def _damaged(self, target: str, why: str) -> NoReturn:
        log.error("%s is damaged (%s); trust-on-first-use target %s is refused until an "
                  "administrator repairs or removes its line", self.path, why, target)
        raise HostKeyMismatch(f"the remembered host key of {target} cannot be read (the "
                              "bastion's known_targets file is damaged); tell an administrator")

    def put(self, target: str, key: asyncssh.SSHKey) -> None:
        private_file(self.path)
        with open(self.path, "a") as fh:
            fh.write(f"{target} {key.export_public_key().decode().strip()}\n")


def endpoint_for(target: TargetConfig, tofu: TofuStore) -> Endpoint:
    """Build the endpoint of a configured (non-builtin) target, loading its secret."""
    keys: list[asyncssh.SSHKey] = []
    try:
        key_text = target_key_text(target)
        if target.key_file is not None:
            keys.append(asyncssh.read_private_key(str(target.key_file)))
        elif key_text is not None:
            keys.append(asyncssh.import_private_key(key_text))
        password = target_password(target)
    except VaultError as exc:
        log.error("target %s: cannot load its credential (%s)", target.name, exc.why)
        raise
    except (OSError, asyncssh.KeyImportError) as exc:
        log.error("target %s: cannot load its credential (%s)", target.name, type(exc).__name__)
        raise VaultError(target.name, type(exc).__name__) from None
    pinned = [asyncssh.import_public_key(k) for k in target.host_keys]
    if not pinned and target.trust_on_first_use:
        known = tofu.get(target.name)
        if known is not None:
            pinned.append(known)
    return Endpoint(
        host=target.host, port=target.port, username=target.user, client_keys=tuple(keys),
        password=password, host_keys=tuple(pinned),
        trust_on_first_use=target.trust_on_first_use and not pinned,
        connect_timeout=target.connect_timeout,
    )


class _UpstreamClient(asyncssh.SSHClient):
    """Captures the key a target presented so a mismatch can name its fingerprint."""

    def __init__(self, tofu: bool) -> None:
        self.tofu = tofu
        self.presented: asyncssh.SSHKey | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int,
                                 key: asyncssh.SSHKey) -> bool:
        self.presented = key
        return self.tofu


async def connect(name: str, ep: Endpoint, tofu: TofuStore | None = None, *,
                  agent_path: str | None = None) -> asyncssh.SSHClientConnection:
    """Open the upstream SSH connection; raise a TargetError subclass on failure.

    ``agent_path``: the user's forwarded agent socket, to forward on to the target (only
    when the target allows agent forwarding for the user). The bastion never uses the
    user's agent to authenticate itself.
    """
    client = _UpstreamClient(ep.trust_on_first_use)
    try:
        conn = await asyncio.wait_for(
            asyncssh.connect(
                ep.host, ep.port, username=ep.username,
                client_factory=lambda: client,
                client_keys=list(ep.client_keys) if ep.client_keys else None,
                password=ep.password,
                known_hosts=(list(ep.host_keys), [], []),
                agent_path=None, config=None,
                agent_forwarding=agent_path if agent_path else False,
                preferred_auth=(
                    "publickey" if ep.client_keys else "password,keyboard-interactive"),
                connect_timeout=ep.connect_timeout, login_timeout=ep.connect_timeout,
                keepalive_interval=30, keepalive_count_max=3,
                **CLIENT_ALGORITHMS,
            ),
            timeout=ep.connect_timeout * 2,
        )
    except asyncssh.HostKeyNotVerifiable:
        seen = client.presented.get_fingerprint() if client.presented else "unknown"
        raise HostKeyMismatch(
            f"target {name} presented an unexpected host key ({seen}); "
            "the connection was refused and the event audited") from None
    except asyncssh.PermissionDenied:
        raise TargetAuthFailed(
            f"target {name} refused the bastion's credentials; tell an administrator") from None
    except TimeoutError:
        raise TargetUnreachable(f"target {name} did not answer in time") from None
    except (ConnectionRefusedError, socket.gaierror, OSError) as exc:
        reason = "refused the connection" if isinstance(exc, ConnectionRefusedError) else (
            "is unreachable" if not isinstance(exc, socket.gaierror) else
            "has an address that does not resolve")
        raise TargetUnreachable(f"target {name} {reason}") from None
    except asyncssh.Error as exc:
        raise TargetUnreachable(f"target {name} closed the connection: {exc.reason}") from None
    if ep.trust_on_first_use and tofu is not None and client.presented is not None:
        tofu.put(name, client.presented)
        log.warning("target %s: trusted host key %s on first use", name,
                    client.presented.get_fingerprint())
    return conn
