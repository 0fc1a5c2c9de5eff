"""The RDP end-to-end rig: a real xrdp target, a real `bastille serve` with its RDP
workers, and a real xfreerdp client under Xvfb, typed into with xdotool.

Needs root (``useradd``, xrdp's session manager starts sessions as local users) and
Debian's xrdp, xorgxrdp, xvfb, freerdp2-x11, xdotool and xterm (``scripts/test``
installs them), and pyrdp (``pip install --no-deps pyrdp-mitm==2.1.0`` plus the
requirements listed in ``scripts/test``). Started without systemd:

* ``xrdp-sesman --nodaemon -c SESMAN_INI`` and ``xrdp --nodaemon -c XRDP_INI`` with
  their own configs in a temporary directory: xrdp on a free loopback port, TLS only
  (``security_layer=tls``, a throwaway certificate), straight into an Xorg session
  (``autorun``) whose only program is an xterm running bash (``startwm.sh``).
  xrdp finds its session manager through the ``ListenPort`` of the system's
  ``/etc/xrdp/sesman.ini`` (compiled in), so the rig's sesman listens there (3350).
* ``Xvfb :N`` for the client and ``xfreerdp`` on it.
"""

from __future__ import annotations

import configparser
import datetime
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from common.processes import pid_alive
from tests.e2e.rig import free_port, wait_port

RDP_USER = "bastille-rdp1"
RDP_PASSWORD = "rdp1-Target-Pw-7"
TOOLS = ("xrdp", "xrdp-sesman", "Xvfb", "xfreerdp", "xdotool", "xterm")
XORG = "/usr/lib/xorg/Xorg"


def have_tools() -> str | None:
    """Why the RDP rig cannot run here, or None."""
    if os.geteuid() != 0:
        return "the RDP rig needs root (useradd, xrdp sessions as local users)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing or not Path(XORG).exists():
        return f"missing {', '.join(missing) or XORG} (apt-get install xrdp xorgxrdp xvfb " \
               "freerdp2-x11 xdotool xterm)"
    return None


def sesman_port() -> int:
    cfg = configparser.ConfigParser(strict=False, interpolation=None)
    cfg.read("/etc/xrdp/sesman.ini")
    return cfg.getint("Globals", "ListenPort", fallback=3350)


def write_cert(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "xrdp-target")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2)).sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return cert_path, key_path


def _group_kill(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def user_pids(user: str) -> list[int]:
    """Processes of a (test) user, from /proc."""
    import pwd

    uid = pwd.getpwnam(user).pw_uid
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


DISPLAY_OFFSET = 40  # sesman's X11DisplayOffset; it uses OFFSET .. OFFSET + MaxSessions
MAX_SESSIONS = 20


def clean_stale_displays() -> None:
    """Remove X sockets and locks of the rig's display range whose server is gone (a
    killed Xorg leaves them, and sesman then counts the display as taken)."""
    for n in range(DISPLAY_OFFSET, DISPLAY_OFFSET + MAX_SESSIONS + 1):
        lock = Path(f"/tmp/.X{n}-lock")
        try:
            pid = int(lock.read_text().strip())
        except (OSError, ValueError):
            pid = 0
        if pid and pid_alive(pid):
            continue
        for path in (lock, Path(f"/tmp/.X11-unix/X{n}")):
            path.unlink(missing_ok=True)


def end_user_sessions(user: str) -> None:
    """End the sessions sesman started for the (test) user, then clean their displays."""
    pids = user_pids(user)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
            time.sleep(0.1)
        pids = [p for p in pids if pid_alive(p)]
        if not pids:
            break
    clean_stale_displays()


def user_has_process(user: str, name: str) -> bool:
    for pid in user_pids(user):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                return True
        except OSError:
            pass
    return False


@dataclass
class Xrdp:
    """xrdp + xrdp-sesman on loopback, TLS only, a bash-in-xterm session per user."""

    root: Path
    port: int = 0
    cert: Path | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)  # the session user runs startwm.sh from here
        self.cert, key = write_cert(self.root)
        self.port = free_port()
        startwm = self.root / "startwm.sh"
        startwm.write_text("#!/bin/sh\nexec xterm -geometry 160x50+0+0 -e /bin/bash\n")
        os.chmod(startwm, 0o755)
        sesman_ini = self.root / "sesman.ini"
        sesman_ini.write_text(f"""\
[Globals]
ListenAddress=127.0.0.1
ListenPort={sesman_port()}
EnableUserWindowManager=false
UserWindowManager=startwm.sh
DefaultWindowManager={startwm}
ReconnectScript=/bin/true

[Security]
AllowRootLogin=false
MaxLoginRetry=4
AlwaysGroupCheck=false

[Sessions]
X11DisplayOffset={DISPLAY_OFFSET}
MaxSessions={MAX_SESSIONS}
KillDisconnected=true
DisconnectedTimeLimit=0
IdleTimeLimit=0
Policy=UBDC

[Logging]
LogFile={self.root / 'sesman.log'}
LogLevel=INFO
EnableSyslog=false
EnableConsole=false

[Xorg]
param={XORG}
param=-config
param=xrdp/xorg.conf
param=-noreset
param=-nolisten
param=tcp
param=-logfile
param=.xorgxrdp.%s.log

[Chansrv]
FuseMountName=thinclient_drives
FileUmask=077

[SessionVariables]
""")
        xrdp_ini = self.root / "xrdp.ini"
        xrdp_ini.write_text(f"""\
[Globals]
ini_version=1
fork=true
port=tcp://127.0.0.1:{self.port}
tcp_nodelay=true
security_layer=tls
crypt_level=high
certificate={self.cert}
key_file={key}
ssl_protocols=TLSv1.2, TLSv1.3
autorun=Xorg
allow_channels=true
allow_multimon=false
bitmap_cache=true
bitmap_compression=true
bulk_compression=true
max_bpp=24
new_cursors=true
use_fastpath=both

[Logging]
LogFile={self.root / 'xrdp.log'}
LogLevel=INFO
EnableSyslog=false
EnableConsole=false

[Channels]
rdpdr=true
rdpsnd=false
drdynvc=true
cliprdr=true
rail=false
xrdpvr=false
tcutils=false

[Xorg]
name=Xorg
lib=libxup.so
username=ask
password=ask
ip=127.0.0.1
port=-1
code=20
""")
        clean_stale_displays()
        sockdir = Path("/run/xrdp/sockdir")
        sockdir.mkdir(parents=True, exist_ok=True)
        os.chmod(sockdir, 0o1777)
        for cmd in (["xrdp-sesman", "--nodaemon", "-c", str(sesman_ini)],
                    ["xrdp", "--nodaemon", "-c", str(xrdp_ini)]):
            out = open(self.root / f"{cmd[0]}.out", "ab")
            self.procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                               start_new_session=True))
            out.close()
        wait_port(self.port, proc=self.procs[-1])

    def stop(self) -> None:
        for proc in reversed(self.procs):
            _group_kill(proc)
        self.procs.clear()
        shutil.rmtree(self.root, ignore_errors=True)  # its configuration, logs and keys


@dataclass
class Xvfb:
    display: str = ""
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        for n in range(140, 200):
            if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
                break
        self.display = f":{n}"
        self.proc = subprocess.Popen(["Xvfb", self.display, "-screen", "0", "1280x1024x24",
                                      "-nolisten", "tcp"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while not Path(f"/tmp/.X11-unix/X{n}").exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("Xvfb did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        _group_kill(self.proc)


@dataclass
class RdpClient:
    """One xfreerdp on the rig's Xvfb."""

    display: str
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def start(self, log: Path) -> RdpClient:
        self.log = log
        out = open(log, "ab")
        env = {**os.environ, "DISPLAY": self.display}
        self.proc = subprocess.Popen(["xfreerdp", *self.args, "/cert:ignore", "/size:1024x768",
                                      "-grab-keyboard"],
                                     stdout=out, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        out.close()
        return self

    def xdotool(self, *args: str) -> str:
        env = {**os.environ, "DISPLAY": self.display}
        done = subprocess.run(["xdotool", *args], env=env, capture_output=True, timeout=30)
        return done.stdout.decode(errors="replace")

    def window(self, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.xdotool("search", "--class", "xfreerdp").split()
            if found:
                return found[-1]
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"xfreerdp exited with {self.proc.returncode}: "
                                   f"{self.output()[-2000:]}")
            time.sleep(0.2)
        raise TimeoutError("no xfreerdp window")

    def type_line(self, text: str) -> None:
        """Focus the client window, point at the remote xterm, type text and Enter."""
        win = self.window()
        self.xdotool("windowfocus", win)
        self.xdotool("mousemove", "--window", win, "200", "200")
        self.xdotool("click", "1")
        time.sleep(0.3)
        self.xdotool("type", "--delay", "40", text)
        self.xdotool("key", "Return")

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log else ""

    def stop(self) -> None:
        _group_kill(self.proc)


def loadbalanceinfo(rdp_file_text: str) -> str:
    m = re.search(r"^loadbalanceinfo:s:(\S+)", rdp_file_text, re.M)
    assert m, rdp_file_text
    return m.group(1)


def scratch_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o755)
    return path
