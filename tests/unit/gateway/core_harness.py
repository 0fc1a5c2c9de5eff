"""A gateway's real core (config, recorder, approvals, audit, policy) with fakes only at
the channel edge: the user's SSH channel and the target's. Imported by name by the core
and pipe tests (pytest puts this directory on sys.path)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh

from gateway.app import GatewayApp
from gateway.auth.passwords import hash_password
from gateway.config import load_config
from gateway.core.access import Principal
from gateway.core.enforce import Enforcer
from gateway.core.session import SessionCore
from gateway.ssh.keys import generate_host_key
from gateway.ssh.relay import Relay
from recorder import events as ev
from recorder.reader import Recording

TARGET_PW = "Vaulted-Target-Pw-42"

CONFIG = """
[gateway]
listen = "127.0.0.1:2299"
host_keys = ["hk"]

[recording]
{recording}

[users.alice]
password_hash = "{hash}"
groups = ["ops"]

[users.bob]
password_hash = "{hash}"
groups = ["auditors"]

[targets.web1]
host = "127.0.0.1"
user = "deploy"
password_file = "pw"
host_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIdwBE9J1y8/xtPn4j3DtxMjUWDfaKS1KJgOnJDZ/PXk"]
groups = ["ops"]
description = "the web server"

[targets.db1]
host = "127.0.0.1"
user = "deploy"
password_file = "pw"
host_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIdwBE9J1y8/xtPn4j3DtxMjUWDfaKS1KJgOnJDZ/PXk"]
groups = ["dba"]
description = "the database"

[policy]
[[policy.rules]]
name = "no-root-wipe"
match = '^rm -r -f /$'
action = "deny"

[[policy.rules]]
name = "approve-restart"
match = '^systemctl restart '
action = "approve"

[[policy.rules]]
name = "no-shadow"
match = '^sftp-(get|put) /etc/shadow$'
action = "deny"

[approvals]
approvers = ["bob"]
timeout = "2m"
"""


def make_app(root: Path, recording: str = "") -> GatewayApp:
    """A GatewayApp over a fresh config in ``root`` (not listening)."""
    generate_host_key(root / "hk", "test")
    (root / "pw").write_text(TARGET_PW + "\n")
    (root / "bastille.toml").write_text(CONFIG.format(hash=hash_password("pw"),
                                                     recording=recording))
    return GatewayApp(load_config(root / "bastille.toml"))


async def close_app(app: GatewayApp) -> None:
    await app.recorder.close()
    app.approvals.close()
    app.audit_log.close()


class UserChannel:
    """The user's SSH channel, as the relay uses it."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.exit_status: int | None = None
        self.paused = True
        self.eof = False

    def write(self, data: bytes, datatype: Any = None) -> None:
        (self.err if datatype == asyncssh.EXTENDED_DATA_STDERR else self.out).extend(data)

    def write_eof(self) -> None:
        self.eof = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def exit(self, status: int) -> None:
        self.exit_status = status

    def exit_with_signal(self, *args: Any) -> None:
        self.exit_status = -1

    def get_environment(self) -> dict[str, str]:
        return {}

    def get_x11_display(self) -> None:
        return None

    def get_agent_path(self) -> None:
        return None


class TargetChannel:
    """The target's session channel; ``echo`` plays a shell echoing typed keys."""

    def __init__(self, relay: Relay, *, echo: bool = False) -> None:
        self.relay = relay
        self.echo = echo
        self.got = bytearray()
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        self.got += data
        if self.echo:
            shown = data.replace(b"\r", b"\r\n").replace(b"\x03", b"^C\r\n$ ")
            self.relay.from_target(shown, None)

    def write_eof(self) -> None:
        pass

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def close(self) -> None:
        self.closed = True

    def change_terminal_size(self, *args: Any) -> None:
        pass


class Rig:
    """One session's core, enforcer and relay over fake channels."""

    def __init__(self, app: GatewayApp, *, user: str = "alice", pty: bool = False,
                 echo: bool = False) -> None:
        self.app = app
        self.chan = UserChannel()
        self.relay = Relay(self.chan, pty)  # type: ignore[arg-type]
        self.target = TargetChannel(self.relay, echo=echo)
        groups = app.config.users[user].groups
        self.core = SessionCore(app, Principal(user, groups), "192.0.2.7:50000",
                                protocol="ssh", port=self.relay)
        self.enforcer = Enforcer(self.core, app)
        self.ended: list[str | None] = []
        self.core.on_terminate(self.ended.append)

    async def start(self, target: str = "web1", kind: str = "shell",
                    command: str | None = None) -> None:
        self.core.target = target
        assert await self.core.start(kind=kind, command=command, cols=80, rows=24,
                                     detail={"kind": kind})
        self.relay.upstream = self.target  # type: ignore[assignment]
        self.relay.rec = self.core.rec


async def until(check: Callable[[], object], seconds: float = 5.0) -> None:
    """Wait (polling the loop) until ``check()`` is true."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def audit(root: Path) -> list[dict[str, Any]]:
    path = root / "data" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def recording(root: Path) -> Recording:
    (path,) = list((root / "data" / "recordings").rglob("*.bstl"))
    return Recording.from_bytes(path.read_bytes())


def recorded_output(rec: Recording) -> bytes:
    return b"".join(e.data for e in rec.events([ev.OUTPUT, ev.STDERR]))
