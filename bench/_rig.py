"""Shared setup for the benchmarks: a throwaway OpenSSH sshd target on a loopback port and
one or more `bastille serve` gateways in front of it, plus the ssh/scp argument lists for
the direct path (client -> sshd) and the bastion path (client -> gateway -> sshd).

Needs root (``useradd`` for the target account) and Debian's openssh-server/client. It
reuses the e2e rig's helpers (tests/e2e/rig.py), so it runs from the repository root.

Known limits: recording cannot be turned off in bastille (it is fail-closed), so the
"recording off" configuration of the benchmarks is "recording on, stored on tmpfs"
(``/dev/shm``): it removes disk I/O, not the recorder's CPU.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.rig import (
    TARGET_PASSWORD,
    TARGET_USER,
    Sshd,
    ensure_user,
    free_port,
    have_tools,
    keygen,
    wait_port,
)

MIB = 1024 * 1024
RELAY = "openssh-relay"  # ``via`` of the OpenSSH relay (BenchRig(relay=True))
BARE = "bare-asyncssh"  # ``via`` of the bare asyncssh relay (BenchRig(bare=True))
CLK_TCK = os.sysconf("SC_CLK_TCK")
SSH_COMMON = [
    "-F",
    "/dev/null",
    "-o",
    "BatchMode=yes",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "LogLevel=ERROR",
]


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU time of a process (all its threads), from /proc/PID/stat;
    ``children``: plus that of its children it has waited for (cutime + cstime)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def _process_tree(root: int) -> list[int]:
    """``root`` and every live descendant."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parents[int(entry)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    tree = [root]
    i = 0
    while i < len(tree):
        tree += [pid for pid, parent in parents.items() if parent == tree[i]]
        i += 1
    return tree


class TreeMeter:
    """CPU seconds used by a process tree while the meter runs: a thread samples every
    process below ``root`` every ``interval`` seconds and keeps each one's last figure,
    so short-lived children (per-connection sshd, the relay's ssh client) count even
    when their parent never accounts for them (sshd's children are not in its cutime).
    A process that ends loses what it used since the last sample (<= ``interval``)."""

    def __init__(self, root: int, interval: float = 0.05) -> None:
        import threading

        self.root = root
        self.interval = interval
        self._seen: dict[tuple[int, str], tuple[float, float]] = {}  # (pid, start) -> first, last
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for pid in _process_tree(self.root):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
            key = (pid, fields[19])  # pid + start time: a reused pid is another process
            first = self._seen.get(key, (cpu, cpu))[0]
            self._seen[key] = (first, cpu)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> TreeMeter:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def seconds(self) -> float:
        """CPU used since the meter started (processes alive then: from that point)."""
        return sum(last - first for first, last in self._seen.values())

    def now(self) -> float:
        """:attr:`seconds` as of now (a sample taken at once, while the meter runs)."""
        self._sample()
        return self.seconds


def tree_cpu_seconds(root: int) -> float:
    """CPU time of a process tree: every live process below ``root`` (its worker and
    writer processes) plus the children each has already waited for."""
    total = 0.0
    for pid in _process_tree(root):
        try:
            total += cpu_seconds(pid, children=True)
        except (OSError, ValueError, IndexError):
            pass  # exited meanwhile: its parent's cutime has it (or will)
    return total


def rss_bytes(pid: int) -> int:
    """Resident set size of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(143)


@dataclass
class GatewayProc:
    """One `python -m gateway serve -c CONFIG` subprocess (not verbose: logging is not
    what we measure)."""

    name: str
    config: Path
    port: int
    data: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, command: list[str] | None = None) -> None:
        log = self.config.parent / f"{self.name}.log"
        with open(log, "ab") as fh:
            self.proc = subprocess.Popen(
                command or [sys.executable, "-m", "gateway", "serve", "-c", str(self.config)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        try:
            wait_port(self.port, proc=self.proc)
        except Exception:
            raise RuntimeError(
                f"gateway {self.name} did not start:\n{log.read_text(errors='replace')}"
            ) from None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> float:
        """CPU seconds of the gateway: its own process, its SSH worker and recording
        writer processes, and what its finished children used."""
        return tree_cpu_seconds(self.pid)

    def meter(self) -> TreeMeter:
        """A meter of the CPU used by the gateway's process tree (use ``with``)."""
        return TreeMeter(self.pid)

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def settle(self, quiet: float = 0.02, window: float = 0.5, limit: float = 120) -> float:
        """Wait until the gateway is idle (background work after a session, such as
        finishing a recording, is done): CPU use under ``quiet`` of a core over
        ``window`` seconds. Returns the seconds waited."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            c0 = self.cpu()
            time.sleep(window)
            if self.cpu() - c0 <= quiet * window:
                break
        return time.monotonic() - t0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


RELAY_USER = "bastille-relay"
RELAY_SCRIPT = """#!/bin/sh
# The OpenSSH relay's ForceCommand: one ssh to the target per session, as a terminating
# bastion built from OpenSSH does (The Bastion's architecture).
SSH="ssh -F /dev/null -i {key} -p {port} -o BatchMode=yes -o IdentitiesOnly=yes \\
 -o StrictHostKeyChecking=yes -o UserKnownHostsFile={known} -o LogLevel=ERROR"
case "$SSH_ORIGINAL_COMMAND" in
  "") exec $SSH -tt {user}@127.0.0.1 ;;
  */sftp-server*) exec $SSH -T -s {user}@127.0.0.1 sftp ;;
  *) exec $SSH -T {user}@127.0.0.1 "$SSH_ORIGINAL_COMMAND" ;;
esac
"""


@dataclass
class OpensshRelay:
    """The peer a terminating bastion is measured against: a second throwaway sshd
    whose ``ForceCommand`` runs the OpenSSH client to the target (C on both legs, the
    same four crypto operations per byte as bastille, on the same cores).

    Its CPU is the relay sshd's own plus everything its connections used (the per-
    connection sshd processes and the ssh client under them are reaped by it, so
    their time lands in its cutime/cstime once each session has ended).
    """

    root: Path
    sshd: Sshd | None = None

    def start(self, client_pub: str, target: Sshd, target_key: Path) -> None:
        import pwd

        ensure_user(RELAY_USER, "relay-" + os.urandom(8).hex())
        pw = pwd.getpwnam(RELAY_USER)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        own = self.root / "own"  # the relay account's key and known_hosts, readable by it
        own.mkdir(exist_ok=True)
        key = own / "to_target"
        shutil.copy(target_key, key)
        known = own / "known_hosts"
        known.write_text(f"[127.0.0.1]:{target.port} {target.host_key_pub}\n")
        script = self.root / "relay.sh"
        script.write_text(RELAY_SCRIPT.format(key=key, port=target.port, known=known,
                                              user=TARGET_USER))
        os.chmod(script, 0o755)
        for path in (own, key, known):
            os.chown(path, pw.pw_uid, pw.pw_gid)
        os.chmod(own, 0o700)
        os.chmod(key, 0o600)
        self.sshd = Sshd(self.root / "sshd")
        self.sshd.start({RELAY_USER: [client_pub]})
        self.sshd.stop()  # sshd reads its config at start: restart with the ForceCommand
        cfg = self.sshd.root / "sshd_config"
        cfg.write_text(cfg.read_text() + f"ForceCommand {script}\nMaxStartups 100\n"
                       "MaxSessions 100\n")
        self.sshd.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)],
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_port(self.sshd.port, proc=self.sshd.proc)

    @property
    def port(self) -> int:
        assert self.sshd is not None
        return self.sshd.port

    def meter(self) -> TreeMeter:
        """A meter of the CPU used by the relay and its connections (use ``with``)."""
        assert self.sshd is not None and self.sshd.proc is not None
        return TreeMeter(self.sshd.proc.pid)

    def stop(self) -> None:
        if self.sshd is not None:
            self.sshd.stop()


@dataclass
class BenchRig:
    """sshd + gateways. Use as a context manager; everything lives under a temp dir.

    Args:
        gateways: name -> recording dir ("" = the default, under the gateway's data dir
            on disk; a path = `[recording] dir` there, e.g. on /dev/shm).
        max_startups: sshd MaxStartups/MaxSessions (the concurrency benchmark needs many).
        extra: name -> TOML appended to that gateway's config (e.g. a ``[policy]``).
        gateway_keys: ``[gateway]`` lines for every gateway (e.g. ``workers = 1``).
        relay: also start the OpenSSH relay (``via=RELAY``).
        bare: also start a bare asyncssh relay, no recording (``via=BARE``,
            bench/bare_relay.py): the yardstick for CPU per MiB.
    """

    gateways: dict[str, str] = field(default_factory=lambda: {"bastion": ""})
    max_startups: int = 100
    extra: dict[str, str] = field(default_factory=dict)
    relay: bool = False
    bare: bool = False
    gateway_keys: str = ""
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bastille-bench-")))
    sshd: Sshd | None = None
    gws: dict[str, GatewayProc] = field(default_factory=dict)
    known_hosts: Path | None = None
    shm_dirs: list[Path] = field(default_factory=list)
    openssh_relay: OpensshRelay | None = None
    bare_relay: GatewayProc | None = None

    def __enter__(self) -> BenchRig:
        reason = have_tools()
        if reason:
            raise SystemExit(f"cannot run the benchmark: {reason}")
        signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so `kill PID` still cleans up
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        os.chmod(self.root, 0o755)
        ensure_user(TARGET_USER, TARGET_PASSWORD)
        target_pub = keygen(self.root / "target_key", "bastion-to-target")
        keygen(self.root / "alice_key", "alice")
        keygen(self.root / "gw_host_key")
        from recorder.signing import generate

        generate(self.root / "recording.key")
        self.sshd = Sshd(self.root / "sshd")
        self.sshd.start({TARGET_USER: [target_pub]})
        if self.max_startups > 10:  # sshd reads the config at start: restart with more room
            self.sshd.stop()
            cfg = self.sshd.root / "sshd_config"
            cfg.write_text(
                cfg.read_text() + f"MaxStartups {self.max_startups}\n"
                f"MaxSessions {self.max_startups}\n"
            )
            self.sshd.proc = subprocess.Popen(
                ["/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            wait_port(self.sshd.port, proc=self.sshd.proc)
        alice = (self.root / "alice_key.pub").read_text().strip()
        gw_pub = " ".join((self.root / "gw_host_key.pub").read_text().split()[:2])
        lines = [f"[127.0.0.1]:{self.sshd.port} {self.sshd.host_key_pub}"]
        for name, rec_dir in self.gateways.items():
            port = free_port()
            data = self.root / f"data-{name}"
            rec_line = ""
            if rec_dir:
                d = Path(tempfile.mkdtemp(prefix=f"bastille-bench-{name}-", dir=rec_dir))
                self.shm_dirs.append(d)
                rec_line = f'dir = "{d}"'
            config = self.root / f"{name}.toml"
            config.write_text(f"""\
[gateway]
listen = "127.0.0.1:{port}"
host_keys = ["gw_host_key"]
data_dir = "{data}"
drain_timeout = "10s"
max_auth_failures = 50
{self.gateway_keys}

[recording]
signing_key = "recording.key"
{rec_line}

[users.alice]
keys = ["{alice}"]
groups = ["ops"]

[targets.web1]
host = "127.0.0.1"
port = {self.sshd.port}
user = "{TARGET_USER}"
key_file = "target_key"
host_keys = ["{self.sshd.host_key_pub}"]
groups = ["ops"]
""" + self.extra.get(name, ""))
            gw = GatewayProc(name, config, port, data)
            self.gws[name] = gw
            gw.start()
            lines.append(f"[127.0.0.1]:{port} {gw_pub}")
        if self.relay:
            self.openssh_relay = OpensshRelay(self.root / "relay")
            self.openssh_relay.start(alice, self.sshd, self.root / "target_key")
            assert self.openssh_relay.sshd is not None
            lines.append(f"[127.0.0.1]:{self.openssh_relay.port} "
                         f"{self.openssh_relay.sshd.host_key_pub}")
        if self.bare:
            port = free_port()
            self.bare_relay = GatewayProc(BARE, self.root / "bare.toml", port, self.root)
            self.bare_relay.start([
                sys.executable, str(Path(__file__).resolve().parent / "bare_relay.py"),
                "--port", str(port), "--host-key", str(self.root / "gw_host_key"),
                "--client-key", str(self.root / "alice_key.pub"),
                "--target-port", str(self.sshd.port), "--target-user", TARGET_USER,
                "--target-key", str(self.root / "target_key"),
                "--target-host-key", self.sshd.host_key_pub])
            lines.append(f"[127.0.0.1]:{port} {gw_pub}")
        self.known_hosts = self.root / "known_hosts"
        self.known_hosts.write_text("\n".join(lines) + "\n")

    def close(self) -> None:
        for gw in self.gws.values():
            gw.stop()
        if self.bare_relay is not None:
            self.bare_relay.stop()
        if self.openssh_relay is not None:
            self.openssh_relay.stop()
        if self.sshd is not None:
            self.sshd.stop()
        for d in self.shm_dirs:
            shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)

    # -- argument lists ---------------------------------------------------------------

    def _common(self, port_flag: str, port: int, key: str) -> list[str]:
        return [
            *SSH_COMMON,
            port_flag,
            str(port),
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-i",
            str(self.root / key),
        ]

    def log_tail(self, via: str | None, lines: int = 15) -> str:
        """The last lines of the log of the relay ``via`` (bastille or the bare relay),
        for a failed cell's report ("" for direct or the OpenSSH relay)."""
        if via is None or (via != BARE and via not in self.gws):
            return ""
        gw = self._gateway(via)
        log = gw.config.parent / f"{gw.name}.log"
        try:
            text = log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _gateway(self, via: str) -> GatewayProc:
        if via == BARE:
            assert self.bare_relay is not None, "BenchRig(bare=True) starts the bare relay"
            return self.bare_relay
        return self.gws[via]

    def _relay_port(self) -> int:
        assert self.openssh_relay is not None, "BenchRig(relay=True) starts the relay"
        return self.openssh_relay.port

    def ssh(self, via: str | None, *, tty: bool = False) -> list[str]:
        """`ssh ... DEST` for a command or a shell: direct (via=None), through the
        OpenSSH relay (via=RELAY) or through gateway ``via``. Append the remote command."""
        assert self.sshd is not None
        flag = ["-tt"] if tty else ["-T"]
        if via is None:
            return [
                "ssh",
                *self._common("-p", self.sshd.port, "target_key"),
                *flag,
                f"{TARGET_USER}@127.0.0.1",
            ]
        if via == RELAY:
            return ["ssh", *self._common("-p", self._relay_port(), "alice_key"), *flag,
                    f"{RELAY_USER}@127.0.0.1"]
        gw = self._gateway(via)
        return ["ssh", *self._common("-p", gw.port, "alice_key"), *flag, "alice+web1@127.0.0.1"]

    def scp(self, via: str | None) -> tuple[list[str], str]:
        """(`scp` options, remote prefix "USER@127.0.0.1:") for direct or via a gateway."""
        assert self.sshd is not None
        if via is None:
            return (
                ["scp", "-q", *self._common("-P", self.sshd.port, "target_key")],
                f"{TARGET_USER}@127.0.0.1:",
            )
        if via == RELAY:
            return (["scp", "-q", *self._common("-P", self._relay_port(), "alice_key")],
                    f"{RELAY_USER}@127.0.0.1:")
        gw = self._gateway(via)
        return (["scp", "-q", *self._common("-P", gw.port, "alice_key")], "alice+web1@127.0.0.1:")

    def sftp(self, via: str | None) -> list[str]:
        """`sftp -b -` options and destination, direct or via a gateway."""
        assert self.sshd is not None
        if via is None:
            return [
                "sftp",
                "-q",
                *self._common("-P", self.sshd.port, "target_key"),
                "-b",
                "-",
                f"{TARGET_USER}@127.0.0.1",
            ]
        if via == RELAY:
            return ["sftp", "-q", *self._common("-P", self._relay_port(), "alice_key"),
                    "-b", "-", f"{RELAY_USER}@127.0.0.1"]
        gw = self._gateway(via)
        return [
            "sftp",
            "-q",
            *self._common("-P", gw.port, "alice_key"),
            "-b",
            "-",
            "alice+web1@127.0.0.1",
        ]


def shared_file(name: str) -> Path:
    """A path in a world-readable scratch dir that both the benchmark and the target
    account can read and write."""
    d = Path(tempfile.gettempdir()) / "bastille-bench-files"
    d.mkdir(exist_ok=True)
    os.chmod(d, 0o1777)
    return d / name


def make_random_file(path: Path, size: int) -> Path:
    """A file of ``size`` random bytes (kept between runs if the size matches)."""
    if not path.exists() or path.stat().st_size != size:
        with open(path, "wb") as fh:
            left = size
            while left:
                n = min(left, 8 * MIB)
                fh.write(os.urandom(n))
                left -= n
    os.chmod(path, 0o644)
    return path


def make_terminal_corpus(path: Path, size: int, seed: int = 7) -> Path:
    """A synthetic terminal-output corpus: `ls -l`-style listings, coloured compiler and
    log lines, progress bars with carriage returns, a few hex dumps. Deterministic."""
    import random

    if path.exists() and path.stat().st_size == size:
        return path
    rnd = random.Random(seed)
    words = (
        "src build main util config test server client handler request response "
        "error warning info debug cache index token session record policy target "
        "gateway relay channel stream buffer queue worker thread"
    ).split()
    out = bytearray()
    while len(out) < size:
        kind = rnd.random()
        if kind < 0.35:
            name = "_".join(rnd.choice(words) for _ in range(rnd.randint(1, 3)))
            out += (
                f"-rw-r--r-- 1 {rnd.choice(['root', 'alice', 'www-data'])} staff "
                f"{rnd.randint(0, 10**7):>9} Nov {rnd.randint(1, 30):>2} "
                f"{rnd.randint(0, 23):02}:{rnd.randint(0, 59):02} "
                f"\x1b[01;34m{name}.{rnd.choice(['py', 'c', 'h', 'log', 'txt'])}\x1b[0m\n"
            ).encode()
        elif kind < 0.7:
            lvl, col = rnd.choice([("INFO", 32), ("WARN", 33), ("ERROR", 31), ("DEBUG", 36)])
            msg = " ".join(rnd.choice(words) for _ in range(rnd.randint(4, 14)))
            out += (
                f"2026-11-24T{rnd.randint(0, 23):02}:{rnd.randint(0, 59):02}:"
                f"{rnd.randint(0, 59):02}.{rnd.randint(0, 999):03}Z \x1b[{col}m{lvl}\x1b[0m "
                f"[{rnd.choice(words)}:{rnd.randint(1, 999)}] {msg} "
                f"id={rnd.getrandbits(32):08x}\n"
            ).encode()
        elif kind < 0.9:
            for pct in range(0, 101, 20):
                bar = "#" * (pct // 5) + " " * (20 - pct // 5)
                out += f"\r[{bar}] {pct:3}% {rnd.randint(1, 999)} kB/s".encode()
            out += b"\n"
        else:
            base = rnd.getrandbits(24)
            for i in range(4):
                chunk = rnd.randbytes(16)
                out += (
                    f"{base + 16 * i:08x}  "
                    + " ".join(f"{b:02x}" for b in chunk)
                    + "  |"
                    + "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
                    + "|\n"
                ).encode()
    path.write_bytes(bytes(out[:size]))
    os.chmod(path, 0o644)
    return path


def timed_run(
    args: Sequence[str],
    *,
    input: bytes | None = None,
    timeout: float = 600,
    stdout: int | None = subprocess.DEVNULL,
) -> float:
    """Run a client command to completion; wall seconds. Fails loudly on a non-zero exit."""
    t0 = time.perf_counter()
    p = subprocess.run(
        list(args),
        input=input,
        stdout=stdout,
        stderr=subprocess.PIPE,
        timeout=timeout,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args[:1])} ... exited {p.returncode}: "
            f"{p.stderr.decode(errors='replace')[-500:]}"
        )
    return dt


def machine() -> str:
    """One line describing the machine and the software measured."""
    import asyncssh

    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    ssh_v = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    return (
        f"{os.cpu_count()} CPUs ({cpu}); {ssh_v}; Python {sys.version.split()[0]}; "
        f"asyncssh {asyncssh.__version__}"
    )
