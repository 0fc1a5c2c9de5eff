"""``ssh -t auditor@bastion player``: the player TUI served over SSH.

The player runs as a process of the built-in ``player`` target (a
:class:`gateway.ssh.demo_target.LocalShellTarget` in this process), so it takes the
same relay, recording and audit path as any target. It is started with the config it
needs and ``--as USER`` (the approvals pane), with a minimal environment (see
``demo_target.minimal_env``) plus, when recordings are stored in S3, what reading them
needs: the variable named by ``secret_access_key_env`` and boto3's ``AWS_*`` settings,
and with a shared database the variable named by ``state.password_env``.
Vaulted target secrets (``targets.*.key_env``/``password_env``) are never passed: the
player loads the config with ``--no-target-secrets``. It ends with the client (its
process group is hung up) and never outlives the gateway.
"""

from __future__ import annotations

import shlex
import sys

from gateway.config import Config, TargetConfig
from gateway.core.access import Principal
from gateway.ssh.routing import Route

PLAYER_TARGET = "player"


def player_command(config: Config, user: str) -> str:
    """The command line of the player for ``user`` (run by the built-in target)."""
    argv = (sys.executable, "-m", "gateway", "player", "-c", str(config.path), "--as", user,
            "--no-target-secrets")
    return " ".join(shlex.quote(a) for a in argv)


AWS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
           "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE",
           "AWS_SHARED_CREDENTIALS_FILE", "AWS_CA_BUNDLE", "AWS_ENDPOINT_URL",
           "AWS_ENDPOINT_URL_S3")


def player_env_names(config: Config) -> tuple[str, ...]:
    """Environment variables the player needs beyond the minimal environment (S3, and
    the shared database's password variable, ``state.password_env``)."""
    state = config.raw.get("state")
    pg_env = state.get("password_env") if isinstance(state, dict) else None
    pg = (pg_env,) if isinstance(pg_env, str) and pg_env and config.state.shared else ()
    if config.recording.s3 is None:
        return pg
    recording = config.raw.get("recording")
    s3 = recording.get("s3") if isinstance(recording, dict) else None
    name = s3.get("secret_access_key_env") if isinstance(s3, dict) else None
    return (*AWS_ENV, *((name,) if isinstance(name, str) and name else ()), *pg)


def player_route(config: Config, user: str) -> tuple[TargetConfig, Route]:
    """The built-in target serving the player, and the route that runs it for ``user``."""
    target = TargetConfig(name=PLAYER_TARGET, builtin="local-shell",
                          description="the session player")
    return target, Route(target=PLAYER_TARGET, command=player_command(config, user),
                         builtin="player")


def player_refusal(config: Config, principal: Principal, *,
                   has_pty: bool) -> tuple[str, int] | None:
    """Why ``principal`` may not run the player now (message, exit status), or None."""
    if not config.approvals.readers.allows(principal.name, principal.groups):
        return (f"{principal.name} may not use the player (it is for the configured "
                "approvers and auditors)", 1)
    if not has_pty:
        return "the player needs a terminal: ssh -t USER@BASTION player", 2
    return None
