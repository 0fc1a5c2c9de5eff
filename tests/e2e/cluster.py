"""Several `bastille serve` nodes on one PostgreSQL database and one S3 bucket, and
HAProxy in front of some of them (the scale-out tests and bench/scale_out.py).

Every part is real: Debian's PostgreSQL (tests/pg_rig.py), moto_server, HAProxy, the
gateway processes, OpenSSH clients.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.conftest import write_config
from tests.e2e.rig import Gateway, Rig, Sshd, free_port, wait_port
from tests.pg_rig import PASSWORD, PgServer

POLICY = """
[policy]
default = "allow"

[[policy.rules]]
name = "needs-approval"
match = '^echo approve-me'
action = "approve"

[approvals]
approvers = ["bob"]
timeout = "60s"
"""


@dataclass
class Node:
    name: str
    rig: Rig
    config: Path

    @property
    def gateway(self) -> Gateway:
        return self.rig.gateway

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``bastille ARGS -c CONFIG`` of this node."""
        return subprocess.run([sys.executable, "-m", "gateway", *args, "-c", str(self.config)],
                              capture_output=True, text=True, errors="replace",
                              timeout=timeout)

    def audit(self, **match: Any) -> list[dict[str, Any]]:
        path = self.rig.data / "audit.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            record = json.loads(line)
            flat = {**record.get("detail", {}), **record}
            if all(flat.get(k) == v for k, v in match.items()):
                out.append(record)
        return out

    def sessions(self, **filters: str) -> list[dict[str, Any]]:
        args = ["sessions", "list", "--json"]
        for k, v in filters.items():
            args += [f"--{k}", v]
        r = self.cli(*args)
        assert r.returncode == 0, r.stderr
        return list(json.loads(r.stdout))


@dataclass
class Cluster:
    root: Path
    pg: PgServer
    database: str
    nodes: dict[str, Node] = field(default_factory=dict)
    haproxy: subprocess.Popen[bytes] | None = None
    haproxy_port: int = 0

    def state_section(self, node: str) -> str:
        return f"""
[state]
url = "{self.pg.url(self.database)}"
password_file = "{self.pg.password_file}"
node = "{node}"
lease = "3s"
heartbeat = "1s"
poll_interval = "0.3s"
"""

    def start_haproxy(self, names: list[str]) -> int:
        exe = shutil.which("haproxy") or "/usr/sbin/haproxy"
        self.haproxy_port = free_port()
        servers = "\n".join(f"    server {n} 127.0.0.1:{self.nodes[n].gateway.port} "
                            "send-proxy-v2" for n in names)
        cfg = self.root / "haproxy.cfg"
        cfg.write_text(f"""global
    maxconn 256
defaults
    mode tcp
    timeout connect 5s
    timeout client 10m
    timeout server 10m
frontend ssh
    bind 127.0.0.1:{self.haproxy_port}
    default_backend gateways
backend gateways
    balance roundrobin
{servers}
""")
        check = subprocess.run([exe, "-c", "-f", str(cfg)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.haproxy = subprocess.Popen([exe, "-db", "-f", str(cfg)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.haproxy_port)
        known = self.root / "known_hosts"
        host_pub = " ".join((self.root / "gw_host_key.pub").read_text().split()[:2])
        with known.open("a") as fh:
            fh.write(f"[127.0.0.1]:{self.haproxy_port} {host_pub}\n")
        return self.haproxy_port

    def stop(self) -> None:
        if self.haproxy is not None and self.haproxy.poll() is None:
            self.haproxy.terminate()
            self.haproxy.wait(10)
        for node in self.nodes.values():
            node.gateway.stop()


def start_node(cluster: Cluster, sshd: Sshd, name: str, *, s3: str,
               keys: dict[str, Path], proxy: bool = False, extra: str = "") -> Node:
    port = free_port()
    gateway_extra = 'proxy_protocol = ["127.0.0.1"]' if proxy else ""
    config = write_config(cluster.root, sshd, port, name=f"{name}.toml", data=f"data-{name}",
                          gateway_extra=gateway_extra, recording_extra=s3,
                          extra=POLICY + cluster.state_section(name) + extra)
    gw = Gateway(config, port)
    gw.start()
    known = cluster.root / "known_hosts"
    host_pub = " ".join((cluster.root / "gw_host_key.pub").read_text().split()[:2])
    with known.open("a") as fh:
        fh.write(f"[127.0.0.1]:{port} {host_pub}\n")
    node = Node(name, Rig(root=cluster.root, sshd=sshd, gateway=gw, known_hosts=known,
                          keys=keys, data_dir=cluster.root / f"data-{name}"), config)
    cluster.nodes[name] = node
    return node


def restart(node: Node) -> None:
    """Start a stopped (or killed) node again on its port."""
    node.gateway.start()


def until(pred: Any, timeout: float = 20.0, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(every)


def s3_recording(endpoint: str, bucket: str, ak: str, sk: str) -> str:
    os.environ["BASTILLE_TEST_S3_SECRET"] = sk
    return f"""storage = "s3://{bucket}/ssh"
[recording.s3]
endpoint_url = "{endpoint}"
region = "us-east-1"
access_key_id = "{ak}"
secret_access_key_env = "BASTILLE_TEST_S3_SECRET"
part_size_mib = 5
retry_interval = "0.5s"
"""


__all__ = ["PASSWORD", "Cluster", "Node", "restart", "s3_recording", "start_node", "until"]
