"""Fixtures for end-to-end tests: one sshd target and one gateway for the whole module set."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.rig import (
    TARGET_PASSWORD,
    TARGET_USER,
    Gateway,
    Rig,
    Sshd,
    ensure_user,
    free_port,
    have_tools,
    keygen,
)

pytestmark = pytest.mark.e2e


def write_config(root: Path, sshd: Sshd, port: int, *, extra: str = "",
                 gateway_extra: str = "", recording_extra: str = "",
                 name: str = "bastille.toml", data: str = "data") -> Path:
    for who in ("alice", "bob", "mallory"):
        if not (root / f"{who}_key").exists():
            keygen(root / f"{who}_key", who)
    keys = {who: Path(root / f"{who}_key.pub").read_text().strip()
            for who in ("alice", "bob", "mallory")}
    if not (root / "gw_host_key").exists():
        keygen(root / "gw_host_key")
    if not (root / "recording.key").exists():
        from recorder.signing import generate

        generate(root / "recording.key")
    other = root / "other_host_key"
    if not other.exists():
        keygen(other)
    other_pub = " ".join(Path(str(other) + ".pub").read_text().split()[:2])
    down_port = free_port()
    target = f"""host = "127.0.0.1"
port = {sshd.port}
user = "{TARGET_USER}"
key_file = "target_key"
host_keys = ["{sshd.host_key_pub}"]"""
    # BASTILLE_TEST_WORKERS=2 runs every e2e gateway with two SSH worker processes;
    # BASTILLE_TEST_EVENT_LOOP=uvloop|auto picks the event loop (default: "asyncio")
    defaults = {"drain_timeout": '"5s"', "max_auth_failures": "50",
                "workers": os.environ.get("BASTILLE_TEST_WORKERS", "1"),
                "event_loop": '"{}"'.format(os.environ.get("BASTILLE_TEST_EVENT_LOOP",
                                                           "asyncio"))}
    gateway_defaults = "\n".join(f"{k} = {v}" for k, v in defaults.items()
                                  if f"{k} =" not in gateway_extra)
    config = root / name
    config.write_text(f"""\
[gateway]
listen = "127.0.0.1:{port}"
host_keys = ["gw_host_key"]
data_dir = "{data}"
{gateway_defaults}
{gateway_extra}

[recording]
signing_key = "recording.key"
{recording_extra}

[users.alice]
keys = ["{keys['alice']}"]
groups = ["ops"]

[users.bob]
keys = ["{keys['bob']}"]
groups = ["dev"]

[targets.web1]
{target}
description = "web frontend"
groups = ["ops"]

[targets.web1fwd]
{target}
groups = ["ops"]
allow_local_forwarding = ["alice"]

[targets.web1rfwd]
{target}
groups = ["ops"]
allow_remote_forwarding = ["alice"]

[targets.web1x11]
{target}
groups = ["ops"]
allow_x11_forwarding = ["alice"]

[targets.web1agent]
{target}
groups = ["ops"]
allow_agent_forwarding = ["group:ops"]

[targets.wrongkey]
{target.replace(sshd.host_key_pub, other_pub)}
groups = ["ops"]

[targets.down]
{target.replace(f"port = {sshd.port}", f"port = {down_port}")}
groups = ["ops"]
connect_timeout = "3s"

[targets.badcreds]
{target.replace('key_file = "target_key"', 'key_file = "mallory_key"')}
groups = ["ops"]

[targets.pwtarget]
{target.replace('key_file = "target_key"', 'password_env = "BASTILLE_T1_PW"')}
groups = ["ops"]

[targets.secret]
{target}
groups = ["admins"]

[targets.demo]
builtin = "local-shell"
users = ["alice"]
{extra}
""")
    return config


@pytest.fixture(scope="session")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    reason = have_tools()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("rig")
    os.chmod(root, 0o755)
    ensure_user(TARGET_USER, TARGET_PASSWORD)
    target_pub = keygen(root / "target_key", "bastion-to-target")
    # sshd reads authorized keys as the target user: they must live in a readable place
    sshd_root = Path(tempfile.mkdtemp(prefix="bastille-sshd-"))
    os.chmod(sshd_root, 0o755)
    sshd = Sshd(sshd_root)
    sshd.start({TARGET_USER: [target_pub]})
    os.environ["BASTILLE_T1_PW"] = TARGET_PASSWORD
    port = free_port()
    config = write_config(root, sshd, port)
    gw = Gateway(config, port)
    gw.start()
    known = root / "known_hosts"
    host_pub = " ".join((root / "gw_host_key.pub").read_text().split()[:2])
    known.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    rig = Rig(root=root, sshd=sshd, gateway=gw, known_hosts=known,
              keys={n: root / f"{n}_key" for n in ("alice", "bob", "mallory")})
    yield rig
    gw.stop()
    sshd.stop()
    shutil.rmtree(sshd_root, ignore_errors=True)


def wait_audit_events(rig: Rig, timeout: float = 15, **match: Any) -> list[dict[str, Any]]:
    """:func:`audit_events`, waiting up to ``timeout`` seconds for at least one (a
    session's end is written after its recording closes, after the client exited)."""
    deadline = time.monotonic() + timeout
    while not (found := audit_events(rig, **match)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def audit_events(rig: Rig, **match: Any) -> list[dict[str, Any]]:
    """Audit records whose fields (or detail fields) equal every ``match`` item."""
    path = rig.data / "audit.jsonl"
    out = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        flat = {**record.get("detail", {}), **record}
        if all(flat.get(k) == v for k, v in match.items()):
            out.append(record)
    return out


@pytest.fixture
def make_gateway(rig: Rig) -> Iterator[Any]:
    """Start an extra gateway (same keys and target as ``rig``) with config additions."""
    started: list[Gateway] = []

    def start(**kw: str) -> Rig:
        port = free_port()
        tag = f"{os.getpid()}-{time.monotonic_ns()}"
        config = write_config(rig.root, rig.sshd, port, name=f"extra-{tag}.toml",
                              data=f"data-{tag}", **kw)
        gw = Gateway(config, port)
        gw.start()
        started.append(gw)
        known = rig.root / f"known_hosts-{tag}"
        host_pub = " ".join((rig.root / "gw_host_key.pub").read_text().split()[:2])
        known.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
        return Rig(root=rig.root, sshd=rig.sshd, gateway=gw, known_hosts=known, keys=rig.keys,
                   data_dir=rig.root / f"data-{tag}")

    yield start
    for gw in started:
        gw.stop(signal.SIGKILL)
