"""The end-to-end rig: a real OpenSSH sshd target, a real `bastille serve` gateway
subprocess, and the real OpenSSH clients (ssh, scp, sftp, rsync), all on loopback.

Needs root (to create target accounts with `useradd`) and Debian's openssh-server,
openssh-client, sshpass, rsync and tmux; `.ci/run` installs them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
TARGET_USER = "bastille-t1"
TARGET_PASSWORD = "t1-Target-Pw-9"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0,
              proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"process exited with {proc.returncode}: {out}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port}")


def wait_until(cond: Callable[[], object], timeout: float = 15.0,
               what: object = "") -> None:
    """Poll ``cond`` every 0.1 s until it is true; fail after ``timeout`` seconds, saying
    ``what`` (called if callable: the state at the time of failure)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out: {what() if callable(what) else what}")


def keygen(path: Path, comment: str = "") -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f",
                    str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip() if path.suffix else \
        Path(str(path) + ".pub").read_text().strip()


def ensure_user(name: str, password: str) -> None:
    if subprocess.run(["id", name], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True)
    subprocess.run(["chpasswd"], input=f"{name}:{password}\n".encode(), check=True)


@dataclass
class Sshd:
    """A throwaway sshd on a free loopback port."""

    root: Path
    port: int = 0
    host_key_pub: str = ""
    proc: subprocess.Popen[bytes] | None = None

    def start(self, authorized: dict[str, Sequence[str]]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        host_key = self.root / "host_ed25519"
        self.host_key_pub = " ".join(keygen(host_key).split()[:2])
        keys_dir = self.root / "authorized"
        keys_dir.mkdir(exist_ok=True)
        for user, keys in authorized.items():
            (keys_dir / user).write_text("\n".join(keys) + "\n")
        self.port = free_port()
        config = self.root / "sshd_config"
        config.write_text(f"""\
Port {self.port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {self.root / 'sshd.pid'}
AuthorizedKeysFile {keys_dir}/%u
StrictModes no
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin no
Subsystem sftp {SFTP_SERVER}
AcceptEnv LANG LC_*
AllowTcpForwarding yes
X11Forwarding yes
X11UseLocalhost yes
LogLevel ERROR
""")
        Path("/run/sshd").mkdir(exist_ok=True)
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_port(self.port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@dataclass
class Gateway:
    """`bastille serve -c CONFIG` as a subprocess."""

    config: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    env: dict[str, str] | None = None  # added to the environment

    def start(self) -> None:
        self.log = self.config.parent / f"gateway-{self.config.stem}.log"  # one per gateway
        fh = open(self.log, "ab")
        offset = fh.tell()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(self.env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "-v", "--log-format",
                                      "text", "serve", "-c", str(self.config)], stdout=fh,
                                     stderr=subprocess.STDOUT, env=env)
        fh.close()
        try:
            wait_port(self.port, proc=self.proc)
            self._wait_listening(offset)
        except Exception:
            raise RuntimeError(f"gateway did not start:\n{self.log.read_text()}") from None

    def _wait_listening(self, offset: int, timeout: float = 30.0) -> None:
        """Until the gateway says it listens: with SSH workers the port is open (and
        connections wait) before every worker serves."""
        assert self.log is not None and self.proc is not None
        line = f"listening on 127.0.0.1:{self.port}".encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            with open(self.log, "rb") as fh:
                fh.seek(offset)
                if line in fh.read():
                    return
            time.sleep(0.05)
        raise RuntimeError("the gateway did not say it listens")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log else ""


@dataclass
class Rig:
    """Everything an e2e test needs: paths, keys, the target, the gateway."""

    root: Path
    sshd: Sshd
    gateway: Gateway
    known_hosts: Path
    keys: dict[str, Path] = field(default_factory=dict)
    data_dir: Path | None = None

    @property
    def data(self) -> Path:
        return self.data_dir or self.root / "data"

    def ssh_args(self, user: str, *, key: str | None = None, tty: bool = False,
                 extra: Sequence[str] = ()) -> list[str]:
        args = ["ssh", "-F", "/dev/null", "-p", str(self.gateway.port),
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10"]
        k = key or user.split("+")[0]
        if k in self.keys:
            args += ["-i", str(self.keys[k])]
        args += ["-tt"] if tty else ["-T"]
        if not any(str(e).startswith("LogLevel") for e in extra):
            args += ["-o", "LogLevel=ERROR"]
        return [*args, *extra, f"{user}@127.0.0.1"]

    def ssh(self, user: str, *command: str, input: bytes | None = None, key: str | None = None,
            extra: Sequence[str] = (), timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*self.ssh_args(user, key=key, extra=extra), *command],
                              input=input, capture_output=True, timeout=timeout)

    def scp_args(self, user: str = "alice") -> list[str]:
        return ["-F", "/dev/null", "-P", str(self.gateway.port), "-o",
                f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", str(self.keys[user])]

    def ssh_command_string(self) -> str:
        """For rsync -e."""
        return " ".join(["ssh", "-F", "/dev/null", "-p", str(self.gateway.port), "-o",
                         f"UserKnownHostsFile={self.known_hosts}", "-o",
                         "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o",
                         "IdentitiesOnly=yes", "-i", str(self.keys["alice"])])


class Tmux:
    """An interactive terminal: tmux running a command; send keys, read the screen."""

    def __init__(self, root: Path, command: Sequence[str], cols: int = 120, rows: int = 40,
                 env: dict[str, str] | None = None, history: int = 2000) -> None:
        self.sock = str(root / f"tmux-{os.getpid()}-{time.monotonic_ns()}")
        import shlex

        self.status_file = Path(self.sock + ".status")
        # the exit status goes to a file (tmux's own pane_dead_status is unreliable when a
        # client exits quickly); the pane then stays open so its last screen can be read
        cmd = " ".join(shlex.quote(c) for c in command)
        wrapped = f"{cmd}; echo $? > {shlex.quote(str(self.status_file))}; sleep 600"
        # the scrollback is a property of the pane: set before the pane exists
        subprocess.run(["tmux", "-S", self.sock, "start-server", ";", "set-option", "-g",
                        "history-limit", str(history), ";", "new-session", "-d", "-x",
                        str(cols), "-y", str(rows), wrapped], check=True,
                       env={**os.environ, **(env or {})})

    def send(self, *keys: str, literal: bool = False) -> None:
        subprocess.run(["tmux", "-S", self.sock, "send-keys", *(["-l"] if literal else []),
                        *keys], check=True)

    def type(self, text: str) -> None:
        self.send(text, literal=True)

    def screen(self) -> str:
        return subprocess.run(["tmux", "-S", self.sock, "capture-pane", "-p"],
                              capture_output=True, check=True).stdout.decode()

    def wait_for(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not on screen after {timeout}s:\n{screen}")

    def wait_re(self, pattern: str, timeout: float = 15.0) -> str:
        import re

        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if re.search(pattern, screen, re.M):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"/{pattern}/ not on screen after {timeout}s:\n{screen}")

    def resize(self, cols: int, rows: int) -> None:
        subprocess.run(["tmux", "-S", self.sock, "resize-window", "-x", str(cols), "-y",
                        str(rows)], check=True)

    def dead_status(self, timeout: float = 15.0) -> int:
        """Wait for the command to exit; return its exit status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                text = self.status_file.read_text().strip()
            except FileNotFoundError:
                text = ""
            if text:
                return int(text)
            time.sleep(0.1)
        raise AssertionError(f"the ssh client did not exit:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.sock, "kill-server"], capture_output=True)


def have_tools() -> str | None:
    for tool in ("ssh", "scp", "sftp", "tmux", "ssh-keygen", SSHD, "rsync", "sshpass"):
        if shutil.which(tool) is None and not Path(tool).exists():
            return f"{tool} is not installed (apt-get install openssh-server openssh-client " \
                   "tmux rsync sshpass)"
    if os.geteuid() != 0:
        return "needs root to create target accounts"
    return None
