"""The Ansible role, run for real against a debootstrap'd Debian 12 root.

What is real: ``debootstrap`` builds a Debian bookworm root from the mirror this machine's
apt uses (cached per day under /var/cache/bastille-test/); ``ansible-playbook`` runs
``ansible/roles/bastille`` against it; bastille is installed into a venv inside the root
with the root's own Python and pip, from a wheel the role builds on the controller from
this repository (the default), from a private index (a PEP 503 directory), and with the
RDP extra; ``bastille config check`` and
``systemd-analyze verify`` check what the role wrote; the second run must report
``changed=0``.

What stands in for the real thing, and why:
  * The connection is ``tests/ansible/connection_plugins/bastille_chroot.py`` (``chroot``
    instead of SSH). community.general.chroot is not installed here; a user's run goes
    through SSH, which this does not exercise.
  * No systemd runs inside the root, so the play sets ``bastille_manage_service: false``:
    the unit is installed and enabled (symlink) and verified, never started.
  * Python packages come from a wheelhouse downloaded on this machine and placed in the
    root (``bastille_pip_extra_args: --no-index --find-links``): the root has none of this
    machine's pip settings, and each run then installs the same wheels without the index.
  * The host's sshd move (``bastille_host_sshd_port``) is not exercised (no sshd in the
    root).

Needs root, debootstrap, systemd-analyze and ansible-core (ansible-lint for the lint
test); skipped with the reason otherwise. About 60 s with a warm cache, about 2 min
cold (debootstrap ~50 s, wheel download ~10 s).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ansible, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
PLUGINS = Path(__file__).resolve().parent / "connection_plugins"
CACHE = Path(os.environ.get("BASTILLE_TEST_CACHE", "/var/cache/bastille-test"))
PACKAGES = [
    "python3",
    "python3-venv",
    "python3-packaging",
    "python3-apt",
    "systemd",
    "openssh-client",
    "logrotate",
]
SOURCE_IGNORE = shutil.ignore_patterns(
    ".*",
    "__pycache__",
    "*.pyc",
    "*.so",
    "*.egg-info",
    "build",
    "dist",
    "tests",
    "bench",
    "docs",
    "ansible",
    "node_modules",
)
RECAP = re.compile(
    r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+"
    r"failed=(\d+)",
    re.M,
)


def _tool(name: str) -> str | None:
    """Prefer the tool installed next to this Python (a venv), then PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (debootstrap and chroot)"
    for tool, hint in (
        ("debootstrap", "apt-get install debootstrap"),
        ("systemd-analyze", "apt-get install systemd"),
        ("ansible-playbook", "pip install 'ansible-core==2.19.*'"),
    ):
        if _tool(tool) is None:
            return f"{tool} not found ({hint})"
    return None


def _debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line format)."""
    if os.environ.get("BASTILLE_TEST_DEBIAN_MIRROR"):
        return os.environ["BASTILLE_TEST_DEBIAN_MIRROR"]
    sources = [
        Path("/etc/apt/sources.list"),
        *sorted(Path("/etc/apt/sources.list.d").glob("*.sources")),
        *sorted(Path("/etc/apt/sources.list.d").glob("*.list")),
    ]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for m in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text, re.M):
            url = m.group(1)
            if url.rstrip("/").endswith("/debian"):
                return url
    return "http://deb.debian.org/debian"


def _locked_build(target: Path, build: Callable[[Path], None]) -> Path:
    """Build ``target`` once (under a lock, into a temp dir renamed at the end)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        build(tmp)
        tmp.rename(target)
        # Drop older days' copies of the same kind (ours only: same name prefix).
        prefix = target.name.rsplit("-", 2)[0]
        for old in CACHE.glob(prefix + "-*"):
            if old != target and old.is_dir() and not old.name.endswith(".tmp"):
                shutil.rmtree(old, ignore_errors=True)
    return target


def _debian_root() -> Path:
    key = hashlib.sha256(",".join(PACKAGES).encode()).hexdigest()[:8]
    target = CACHE / f"bookworm-{key}-{dt.date.today():%Y%m%d}"

    def build(tmp: Path) -> None:
        proc = subprocess.run(
            [
                _tool("debootstrap") or "debootstrap",
                "--variant=minbase",
                "--include=" + ",".join(PACKAGES),
                "bookworm",
                str(tmp),
                _debian_mirror(),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            pytest.fail(f"debootstrap failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        shutil.rmtree(tmp / "var/cache/apt/archives", ignore_errors=True)
        (tmp / "var/cache/apt/archives/partial").mkdir(parents=True)

    return _locked_build(target, build)


PYRDP = "pyrdp-mitm==2.1.0"


def _wheelhouse(source: Path) -> Path:
    """bastille's dependencies (with the rdp extra), pyrdp-mitm, setuptools and wheel."""
    key = hashlib.sha256((source / "pyproject.toml").read_bytes() + PYRDP.encode()
                         ).hexdigest()[:8]
    target = CACHE / f"wheels-{key}-{dt.date.today():%Y%m%d}"

    def build(tmp: Path) -> None:
        for extra in ([f"{source}[rdp]", "setuptools>=68", "wheel"],
                      ["--no-deps", PYRDP]):
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q",
                 "--disable-pip-version-check", "-d", str(tmp), *extra],
                capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                shutil.rmtree(tmp, ignore_errors=True)
                pytest.fail(f"pip download failed:\n{proc.stderr[-3000:]}")
        for built in tmp.glob("bastille-*"):  # the index test publishes its own build
            built.unlink()

    return _locked_build(target, build)


@dataclass
class Rig:
    """A provisioned root and the means to run the play against it again."""

    work: Path
    root: Path
    vars: dict[str, object]
    first: subprocess.CompletedProcess[str] | None = None

    def play(self, extra_vars: dict[str, object] | None = None) -> subprocess.CompletedProcess[str]:
        """Run the playbook with the base variables (updated by ``extra_vars``)."""
        variables = {**self.vars, **(extra_vars or {})}
        vars_file = self.work / "vars.json"
        vars_file.write_text(json.dumps(variables))
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.work / "home"),
            "LANG": "C.UTF-8",
            "ANSIBLE_CONFIG": str(self.work / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
        }
        return subprocess.run(
            [
                _tool("ansible-playbook") or "ansible-playbook",
                "-i",
                str(self.work / "inventory.ini"),
                "-e",
                f"@{vars_file}",
                str(self.work / "play.yml"),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=self.work,
            env=env,
        )

    def chroot(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run a command inside the root."""
        return subprocess.run(
            ["chroot", str(self.root), *argv],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
        )

    def uid(self, user: str) -> int:
        """The uid of ``user`` in the root's /etc/passwd."""
        for line in (self.root / "etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == user:
                return int(fields[2])
        raise AssertionError(f"no user {user} in the root's /etc/passwd")


def _secret_line(rig: Rig) -> str:
    """A line of the target's private key, which must never be shown."""
    return (rig.work / "target_key").read_text().splitlines()[1]


def recap(proc: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """The PLAY RECAP counters of a run (exactly one host)."""
    found = RECAP.findall(proc.stdout)
    assert len(found) == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    _, ok, changed, unreachable, failed = found[0]
    return {
        "ok": int(ok),
        "changed": int(changed),
        "unreachable": int(unreachable),
        "failed": int(failed),
    }


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("ansible")
    # A snapshot of the sources, so edits made meanwhile in the tree do not change runs.
    source = work / "src"
    shutil.copytree(REPO, source, ignore=SOURCE_IGNORE)
    wheels = _wheelhouse(source)
    root = work / "root"
    subprocess.run(["cp", "-a", "--reflink=auto", str(_debian_root()), str(root)], check=True)
    shutil.copytree(wheels, root / "srv/wheels")
    (work / "home").mkdir()
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "deploy@test",
            "-f",
            str(work / "target_key"),
        ],
        check=True,
    )
    (work / "inventory.ini").write_text(
        f"{root} ansible_connection=bastille_chroot ansible_python_interpreter=/usr/bin/python3\n"
    )
    (work / "ansible.cfg").write_text(
        "[defaults]\n"
        f"roles_path = {ANSIBLE_DIR / 'roles'}\n"
        f"connection_plugins = {PLUGINS}\n"
        "host_key_checking = false\n"
        "retry_files_enabled = false\n"
    )
    (work / "play.yml").write_text(
        "- name: Provision a bastion\n  hosts: all\n  roles: [bastille]\n"
    )
    pub = (work / "target_key.pub").read_text().split()
    base: dict[str, object] = {
        "bastille_install_from": "wheel",  # the default; built from this snapshot
        "bastille_source_dir": str(source),
        "bastille_pip_extra_args": "--no-index --find-links /srv/wheels",
        "bastille_recording": {"retention": "180d"},
        "bastille_admin": {"listen": "127.0.0.1:9322"},
        "bastille_manage_service": False,
        "bastille_listen": "0.0.0.0:22",
        "bastille_gateway": {"idle_timeout": "30m", "login_timeout": "1m"},
        "bastille_users": [{"name": "alice", "keys": [" ".join(pub)], "groups": ["ops"]}],
        "bastille_targets": [
            {
                "name": "web1",
                "host": "192.0.2.10",
                "user": "deploy",
                "private_key": (work / "target_key").read_text(),
                "host_keys": [" ".join(pub[:2])],
                "groups": ["ops"],
                "allow_local_forwarding": ["group:ops"],
                "description": 'web "one"',
            }
        ],
        "bastille_policy": {
            "default": "allow",
            "rules": [
                {"name": "no-root-delete", "match": "^rm -r -f /$", "action": "deny"},
                {
                    "name": "approve-stop",
                    "match": "^systemctl (stop|restart) ",
                    "action": "approve",
                    "targets": ["db*"],
                },
            ],
        },
    }
    rig = Rig(work=work, root=root, vars=base)
    rig.first = rig.play()
    yield rig
    shutil.rmtree(work, ignore_errors=True)


def test_first_run_provisions_a_checked_config(rig: Rig) -> None:
    assert rig.first is not None
    counts = recap(rig.first)
    assert counts["failed"] == 0 and counts["unreachable"] == 0, rig.first.stdout[-4000:]
    assert counts["changed"] > 0
    # The target's private key is no_log: it never appears in Ansible's output.
    key_body = _secret_line(rig)
    assert key_body not in rig.first.stdout + rig.first.stderr

    check = rig.chroot(
        "/opt/bastille/venv/bin/bastille", "config", "check", "-c", "/etc/bastille/bastille.toml"
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "1 user(s), 1 target(s), listening on 0.0.0.0:22" in check.stdout

    config = (rig.root / "etc/bastille/bastille.toml").read_text()
    assert 'retention = "180d"' in config and '[admin]\nlisten = "127.0.0.1:9322"' in config
    assert "Build the wheel from the checkout" in rig.first.stdout
    assert list((rig.root / "opt/bastille/dist").glob("bastille-*-py3-none-any.whl"))
    assert os.readlink(rig.root / "usr/local/bin/bastille") == "/opt/bastille/venv/bin/bastille"
    assert config.count("[[policy.rules]]") == 2
    assert 'key_file = "/etc/bastille/targets/web1.key"' in config
    assert 'description = "web \\"one\\""' in config
    assert key_body not in config


def test_keys_and_directories_are_private_to_the_service_user(rig: Rig) -> None:
    uid = rig.uid("bastille")
    for rel in (
        "etc/bastille/ssh_host_ed25519_key",
        "etc/bastille/recording.key",
        "etc/bastille/targets/web1.key",
    ):
        st = (rig.root / rel).stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, uid), rel
    st = (rig.root / "var/lib/bastille").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o700, uid)
    assert stat.S_IMODE((rig.root / "etc/bastille/bastille.toml").stat().st_mode) == 0o640
    assert (rig.root / "etc/bastille/recording.key.pub").is_file()
    assert (rig.root / "etc/bastille/targets/web1.key").read_text() == (
        rig.work / "target_key"
    ).read_text()
    passwd = [
        ln
        for ln in (rig.root / "etc/passwd").read_text().splitlines()
        if ln.startswith("bastille:")
    ]
    assert passwd and passwd[0].endswith(":/usr/sbin/nologin")


def test_unit_is_enabled_hardened_and_verifies(rig: Rig) -> None:
    unit = rig.root / "etc/systemd/system/bastille.service"
    link = rig.root / "etc/systemd/system/multi-user.target.wants/bastille.service"
    assert os.readlink(link) == "/etc/systemd/system/bastille.service"
    text = unit.read_text()
    for line in (
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "ReadWritePaths=/var/lib/bastille",
        "User=bastille",
        # listen is port 22: exactly the one capability to bind it
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        # readiness, reload and the watchdog (gateway/sdnotify.py), and limits
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30s",
        "ExecReload=/opt/bastille/venv/bin/bastille reload -c /etc/bastille/bastille.toml",
        "MemoryMax=2G",
        "TasksMax=4096",
    ):
        assert line in text.splitlines(), line
    timer = "etc/systemd/system/timers.target.wants/bastille-prune.timer"
    assert os.readlink(rig.root / timer) == "/etc/systemd/system/bastille-prune.timer"
    prune = (rig.root / "etc/systemd/system/bastille-prune.service").read_text()
    assert "bastille prune -c /etc/bastille/bastille.toml" in prune
    for unit_name in ("bastille.service", "bastille-prune.service", "bastille-prune.timer"):
        verify = subprocess.run(
            [_tool("systemd-analyze") or "systemd-analyze", "verify", f"--root={rig.root}",
             f"/etc/systemd/system/{unit_name}"],
            capture_output=True, text=True, timeout=60)
        output = verify.stdout + verify.stderr
        assert verify.returncode == 0, output
        assert unit_name not in output, output  # no warning about our unit
    rotate = rig.chroot("logrotate", "--debug", "/etc/logrotate.d/bastille")
    assert rotate.returncode == 0, rotate.stdout + rotate.stderr
    assert "/var/lib/bastille/audit.jsonl" in rotate.stderr + rotate.stdout


def test_second_run_changes_nothing_and_keeps_the_keys(rig: Rig) -> None:
    keys = {p: p.read_bytes() for p in (rig.root / "etc/bastille").glob("*key*")}
    second = rig.play()
    counts = recap(second)
    assert counts["failed"] == 0, second.stdout[-4000:]
    assert counts["changed"] == 0, second.stdout[-6000:]
    assert {p: p.read_bytes() for p in keys} == keys


def test_invalid_variable_fails_the_argument_spec(rig: Rig) -> None:
    before = (rig.root / "etc/bastille/bastille.toml").read_bytes()
    targets = [
        {
            "name": "db1",
            "user": "deploy",
            "trust_on_first_use": True,
            "key_file": "/etc/bastille/targets/web1.key",
        }
    ]  # no host
    proc = rig.play({"bastille_targets": targets})
    assert proc.returncode != 0
    assert "missing required arguments: host" in proc.stdout, proc.stdout[-3000:]
    assert "bastille_targets" in proc.stdout
    assert _secret_line(rig) not in proc.stdout + proc.stderr
    assert recap(proc)["failed"] == 1
    assert (rig.root / "etc/bastille/bastille.toml").read_bytes() == before


def test_config_bastille_rejects_never_replaces_the_running_one(rig: Rig) -> None:
    before = (rig.root / "etc/bastille/bastille.toml").read_bytes()
    web1 = json.loads(json.dumps(rig.vars["bastille_targets"]))[0]
    targets = [{**web1, "port": 70000}]
    proc = rig.play({"bastille_targets": targets})
    assert proc.returncode != 0
    assert recap(proc)["failed"] == 1
    # the failing task is the checked template, and bastille's own message is shown
    assert "failed to validate" in proc.stdout, proc.stdout[-3000:]
    assert "targets.web1.port: expected an integer 1-65535, got 70000" in proc.stdout
    assert _secret_line(rig) not in proc.stdout + proc.stderr
    assert (rig.root / "etc/bastille/bastille.toml").read_bytes() == before


def _simple_index(rig: Rig) -> str:
    """A private index (PEP 503 layout in a directory) with a bastille wheel built from the
    snapshot and every dependency: what an organisation's index serves."""
    wheels = rig.root / "srv/wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(rig.work / "dist"),
         str(rig.work / "src")],
        capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    simple = rig.root / "srv/simple"
    projects: dict[str, list[str]] = {}
    for wheel in [*wheels.iterdir(), *(rig.work / "dist").glob("*.whl")]:
        project = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
        (simple / project).mkdir(parents=True, exist_ok=True)
        shutil.copy(wheel, simple / project / wheel.name)
        projects.setdefault(project, []).append(wheel.name)
    for project, files in projects.items():  # the PEP 503 pages an index serves
        links = "".join(f'<a href="{f}">{f}</a>\n' for f in sorted(files))
        (simple / project / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")
    links = "".join(f'<a href="{p}/">{p}</a>\n' for p in sorted(projects))
    (simple / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")
    return "file:///srv/simple"


def test_installs_from_a_private_index_idempotently(rig: Rig) -> None:
    spec = {"bastille_install_from": "index", "bastille_index_url": _simple_index(rig),
            "bastille_version": "0.1.0", "bastille_pip_extra_args": "",
            "bastille_venv": "/opt/bastille/venv-index"}
    first = rig.play(spec)
    assert recap(first)["failed"] == 0, first.stdout[-4000:]
    assert "Install bastille from the private index" in first.stdout
    check = rig.chroot(
        "/opt/bastille/venv-index/bin/bastille",
        "config",
        "check",
        "-c",
        "/etc/bastille/bastille.toml",
    )
    assert check.returncode == 0, check.stdout + check.stderr
    again = rig.play(spec)
    assert recap(again)["changed"] == 0, again.stdout[-6000:]


def test_rdp_when_asked(rig: Rig) -> None:
    spec = {"bastille_rdp": {"listen": "0.0.0.0:3389", "workers": 2},
            "bastille_venv": "/opt/bastille/venv-rdp"}
    first = rig.play(spec)
    assert recap(first)["failed"] == 0, first.stdout[-4000:]
    config = (rig.root / "etc/bastille/bastille.toml").read_text()
    assert '[rdp]\nlisten = "0.0.0.0:3389"\nworkers = 2' in config
    imports = rig.chroot("/opt/bastille/venv-rdp/bin/python", "-c",
                         "import pyrdp, twisted, OpenSSL; print('rdp ok')")
    assert imports.stdout.strip() == "rdp ok", imports.stderr
    check = rig.chroot("/opt/bastille/venv-rdp/bin/bastille", "config", "check", "-c",
                       "/etc/bastille/bastille.toml")
    assert check.returncode == 0 and "RDP on 0.0.0.0:3389" in check.stdout, check.stderr
    again = rig.play(spec)
    assert recap(again)["changed"] == 0, again.stdout[-6000:]


def test_role_is_ansible_lint_clean() -> None:
    lint = _tool("ansible-lint")
    if lint is None:
        pytest.skip("ansible-lint not found (pip install ansible-lint)")
    proc = subprocess.run(
        [lint, "--profile", "production", "--offline", "--nocolor"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ANSIBLE_DIR,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def test_optional_sections_render_to_a_config_bastille_accepts(tmp_path: Path) -> None:
    """S3 storage, no signing, audit, approvals, mask patterns, quoted names: no root."""
    playbook = _tool("ansible-playbook")
    if playbook is None:
        pytest.skip("ansible-playbook not found (pip install 'ansible-core==2.19.*')")
    role = ANSIBLE_DIR / "roles/bastille"
    etc = tmp_path / "etc"
    etc.mkdir()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(etc / "ssh_host_ed25519_key")],
        check=True,
    )
    (etc / "s3_secret_access_key").write_text("not-a-real-secret\n")
    hashed = subprocess.run(
        [sys.executable, "-m", "gateway", "hash-password"],
        input="pw\n",
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout.strip()
    variables = {
        "bastille_config_dir": str(etc),
        "bastille_data_dir": str(tmp_path / "data"),
        "bastille_recording_sign": False,
        "bastille_recording_storage": "s3://bucket/rec",
        "bastille_recording_s3": {
            "region": "eu-west-1",
            "access_key_id": "AKIAEXAMPLE",
            "secret_access_key": "not-a-real-secret",
            "part_size_mib": 8,
        },
        "bastille_audit": {"syslog": False},
        "bastille_approvals": {"approvers": ["group:ops"], "timeout": "5m"},
        "bastille_policy": {
            "on_uncertain": "deny",
            "mask_patterns": ["abc[0-9]+", {"regex": "tok_[a-z]+", "prefix": "tok_"}],
        },
        "bastille_users": [{"name": "bob.smith", "password_hash": hashed, "groups": ["ops"]}],
    }
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    out = tmp_path / "out.toml"
    (tmp_path / "play.yml").write_text(
        "- name: Render\n  hosts: localhost\n  gather_facts: false\n"
        f"  vars_files: [{role}/defaults/main.yml, {role}/vars/main.yml]\n"
        "  tasks:\n    - name: Render the config\n      ansible.builtin.template:\n"
        f"        src: {role}/templates/bastille.toml.j2\n        dest: {out}\n"
        '        mode: "0600"\n'
    )
    proc = subprocess.run(
        [
            playbook,
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"@{tmp_path / 'vars.json'}",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(tmp_path / "play.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "HOME": str(tmp_path), "ANSIBLE_NOCOLOR": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    assert "not-a-real-secret" not in text
    assert f'secret_access_key_file = "{etc}/s3_secret_access_key"' in text
    assert "signing_key" not in text
    assert '[users."bob.smith"]' in text
    assert 'mask_patterns = ["abc[0-9]+", { regex = "tok_[a-z]+", prefix = "tok_" }]' in text
    check = subprocess.run(
        [sys.executable, "-m", "gateway", "config", "check", "-c", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert check.returncode == 0, check.stdout + check.stderr
