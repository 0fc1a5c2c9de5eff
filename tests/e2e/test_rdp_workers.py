"""RDP worker processes never outlive their gateway, and a gateway never shares its RDP
port with a leftover worker. Needs pyrdp (the ``rdp`` extra), not xrdp: no RDP client
connects."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.rig import Gateway, free_port, keygen

pytestmark = [pytest.mark.e2e, pytest.mark.rdp]


def _config(root: Path) -> tuple[Path, int, int]:
    try:
        import pyrdp  # noqa: F401
    except ImportError:
        pytest.fail("pyrdp is not installed (scripts/test installs it)")
    alice = " ".join(keygen(root / "alice_key", "alice").split()[:2])
    (root / "win_pw").write_text("not-used\n")
    keygen(root / "gw_host_key")
    ssh_port, rdp_port = free_port(), free_port()
    config = root / "bastille.toml"
    config.write_text(f"""\
[gateway]
listen = "127.0.0.1:{ssh_port}"
host_keys = ["gw_host_key"]
data_dir = "data"
drain_timeout = "2s"

[rdp]
listen = "127.0.0.1:{rdp_port}"
workers = 2

[users.alice]
keys = ["{alice}"]

[targets.win]
protocol = "rdp"
host = "127.0.0.1"
port = 9
user = "x"
password_file = "win_pw"
rdp_cert_sha256 = ["{"00" * 32}"]
users = ["alice"]
""")
    return config, ssh_port, rdp_port


def _workers_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"gateway.rdp.worker" in cmd and f"--parent\0{pid}\0".encode() in cmd:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _two_workers(gw: Gateway) -> list[int]:
    """The gateway's RDP worker pids, once both are running (or what there is after 30 s)."""
    assert gw.proc is not None
    deadline = time.monotonic() + 30
    while len(workers := _workers_of(gw.proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    return workers


def test_workers_end_when_the_gateway_is_killed(tmp_path: Path) -> None:
    config, ssh_port, rdp_port = _config(tmp_path)
    gw = Gateway(config, ssh_port)
    gw.start()
    try:
        workers = _two_workers(gw)
        assert len(workers) == 2, gw.logs()
        gw.proc.send_signal(signal.SIGKILL)
        gw.proc.wait()
        deadline = time.monotonic() + 15
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers), "RDP workers outlived a killed gateway"
        with socket.socket() as s:  # the RDP port is free again
            s.bind(("127.0.0.1", rdp_port))
    finally:
        gw.stop()


def test_workers_leave_no_scratch_directories(tmp_path: Path) -> None:
    """pyrdp wants an output directory: each worker has DATA_DIR/rdp-scratch/PID, removes
    it when it stops, and a worker's that was killed is removed at the next start (an
    appliance restarting workers must not pile them up; nothing goes to /tmp)."""
    config, ssh_port, _ = _config(tmp_path)
    scratch = tmp_path / "data" / "rdp-scratch"
    (scratch / "999999999").mkdir(parents=True)  # a worker killed earlier (no such pid)
    (scratch / "999999999" / "certs").mkdir()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    gw = Gateway(config, ssh_port, env={"TMPDIR": str(tmp)})
    gw.start()
    try:
        workers = _two_workers(gw)
        deadline = time.monotonic() + 10
        while (sorted(p.name for p in scratch.iterdir()) != sorted(map(str, workers))
               and time.monotonic() < deadline):
            time.sleep(0.2)
        assert sorted(p.name for p in scratch.iterdir()) == sorted(map(str, workers)), \
            gw.logs()
        assert (scratch.stat().st_mode & 0o777) == 0o700
    finally:
        assert gw.stop() == 0, gw.logs()
    assert list(scratch.iterdir()) == []
    assert list(tmp.iterdir()) == []


def test_gateway_refuses_an_rdp_port_already_in_use(tmp_path: Path) -> None:
    config, _, rdp_port = _config(tmp_path)
    with socket.socket() as squatter:  # what an orphaned worker looks like to the kernel
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        squatter.bind(("127.0.0.1", rdp_port))
        squatter.listen(1)
        r = subprocess.run([sys.executable, "-m", "gateway", "serve", "-c", str(config)],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert r.returncode != 0
    assert f"RDP port 127.0.0.1:{rdp_port} is already in use" in r.stderr + r.stdout
