"""RDP pieces without pyrdp: routing cookies, one-time tokens and PINs, keystroke text,
the .rdp file, and the [rdp] / protocol = "rdp" configuration checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.rdp.cli import rdp_file_text
from gateway.rdp.keys import KeyDecoder
from gateway.rdp.routing import RouteRequest, client_user, parse_cookie
from gateway.ssh.keys import generate_host_key
from state.tokens import TokenStore

# ------------------------------------------------------------------ routing


@pytest.mark.parametrize("cookie, expected", [
    (b"Cookie: mstshash=alice#web1", RouteRequest(user="alice", target="web1")),
    (b"Cookie: mstshash=CORP\\alice#web1", RouteRequest(user="alice", target="web1")),
    (b"Cookie: mstshash=alice", RouteRequest(user="alice", target="")),
    (b"bst1.AAAAAAAAAAAAAAAAAAAAAAAA", RouteRequest(token="bst1.AAAAAAAAAAAAAAAAAAAAAAAA")),
    (b"Cookie: msts=bst1.abcdefghijklmnop_-12", RouteRequest(token="bst1.abcdefghijklmnop_-12")),
    (b"", RouteRequest()),
    (None, RouteRequest()),
    (b"garbage", RouteRequest()),
    (b"bst1.short", RouteRequest()),
])
def test_parse_cookie(cookie: bytes | None, expected: RouteRequest) -> None:
    assert parse_cookie(cookie) == expected


def test_client_user() -> None:
    assert client_user("alice#web1") == ("alice", "web1")
    assert client_user("DOM\\alice") == ("alice", "")
    assert client_user("") == ("", "")


# ------------------------------------------------------------------ tokens


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_works_once_for_its_target(tmp_path: Path) -> None:
    clock = Clock()
    store = TokenStore(tmp_path / "t.sqlite3", clock=clock)
    token = store.issue_token("alice", "web1", ttl=60)
    assert token.startswith("bst1.") and parse_cookie(token.encode()).token == token
    grant = store.consume_token(token)
    assert grant is not None and (grant.user, grant.target) == ("alice", "web1")
    assert store.consume_token(token) is None  # reused
    assert (tmp_path / "t.sqlite3").stat().st_mode & 0o777 == 0o600
    assert token not in (tmp_path / "t.sqlite3").read_bytes().decode("latin-1")


def test_token_expires(tmp_path: Path) -> None:
    clock = Clock()
    store = TokenStore(tmp_path / "t.sqlite3", clock=clock)
    token = store.issue_token("alice", "web1", ttl=60)
    clock.now += 61
    assert store.consume_token(token) is None
    assert store.consume_token("bst1.not-issued-at-all-xxxxxx") is None
    assert store.consume_token("nonsense") is None


def test_pin_is_one_time_and_per_user(tmp_path: Path) -> None:
    clock = Clock()
    store = TokenStore(tmp_path / "t.sqlite3", clock=clock)
    pin = store.issue_pin("alice", ttl=60)
    assert len(pin) == 8 and pin.isdigit()
    assert not store.consume_pin("bob", pin)
    assert store.consume_pin("alice", pin)
    assert not store.consume_pin("alice", pin)
    pin2 = store.issue_pin("alice", ttl=60)
    assert store.consume_token(pin2) is None  # a PIN is not a routing token
    clock.now += 120
    assert not store.consume_pin("alice", pin2)


def test_token_store_shared_between_handles(tmp_path: Path) -> None:
    a = TokenStore(tmp_path / "t.sqlite3")
    b = TokenStore(tmp_path / "t.sqlite3")
    token = a.issue_token("alice", "web1", ttl=60)
    assert b.consume_token(token) is not None
    assert a.consume_token(token) is None


# ------------------------------------------------------------------ keystrokes

SHIFT, ENTER, BS, CAPS = 0x2A, 0x1C, 0x0E, 0x3A
US = {"e": 0x12, "c": 0x2E, "h": 0x23, "o": 0x18, " ": 0x39, "i": 0x17, "4": 0x05,
      "l": 0x26, "s": 0x1F}


def press(d: KeyDecoder, code: int, extended: bool = False) -> None:
    d.scancode(code, False, extended)
    d.scancode(code, True, extended)


def test_keys_to_lines() -> None:
    lines: list[str] = []
    d = KeyDecoder(lines.append)
    for ch in "echo ":
        press(d, US[ch])
    d.scancode(SHIFT, False)
    press(d, US["h"])
    press(d, US["4"])  # shifted 4 -> $
    d.scancode(SHIFT, True)
    press(d, US["i"])
    press(d, US["s"])
    press(d, BS)  # removes the s
    press(d, 0x4B, extended=True)  # left arrow
    press(d, ENTER)
    assert lines == ["echo H$i<left>"]
    press(d, CAPS)
    press(d, US["l"])
    press(d, US["s"])
    press(d, ENTER)
    assert lines[-1] == "LS"
    d.unicode("é", False)
    d.unicode("\r", False)
    assert lines[-1] == "é"
    press(d, ENTER)  # empty lines are not reported
    assert len(lines) == 3 and d.keys > 10


def test_ctrl_combinations_are_named() -> None:
    lines: list[str] = []
    d = KeyDecoder(lines.append)
    d.scancode(0x1D, False)
    press(d, US["c"])
    d.scancode(0x1D, True)
    d.flush()
    assert lines == ["<ctrl-c>"]


# ------------------------------------------------------------------ .rdp file


def test_rdp_file() -> None:
    text = rdp_file_text("bastion.example:3389", "alice", "bst1.xyz")
    assert text.endswith("\r\n")
    lines = text.split("\r\n")
    assert "full address:s:bastion.example:3389" in lines
    assert "loadbalanceinfo:s:bst1.xyz" in lines
    assert "enablecredsspsupport:i:0" in lines  # the bastion does TLS, not NLA


# ------------------------------------------------------------------ config

FP = "ab" * 32


def _write(tmp_path: Path, text: str) -> Path:
    if not (tmp_path / "hk").exists():
        generate_host_key(tmp_path / "hk", "test")
    (tmp_path / "pw").write_text("Target-Pw\n")
    p = tmp_path / "b.toml"
    p.write_text(text)
    return p


GOOD = f"""
[gateway]
listen = "127.0.0.1:2200"
host_keys = ["hk"]

[rdp]
listen = "127.0.0.1:3390"
token_ttl = "2m"

[users.alice]
password_hash = "scrypt$16384$8$1$c2FsdA==$aGFzaA=="
groups = ["ops"]

[targets.win1]
protocol = "rdp"
host = "10.0.0.9"
user = "Administrator"
password_file = "pw"
rdp_cert_sha256 = ["{':'.join(FP[i:i + 2].upper() for i in range(0, 64, 2))}"]
groups = ["ops"]
allow_clipboard = true
"""


def test_good_rdp_config(tmp_path: Path) -> None:
    c = load_config(_write(tmp_path, GOOD))
    assert c.rdp is not None
    assert (c.rdp.listen_host, c.rdp.listen_port, c.rdp.token_ttl) == ("127.0.0.1", 3390, 120)
    t = c.targets["win1"]
    assert (t.protocol, t.port, t.rdp_cert_sha256) == ("rdp", 3389, (FP,))
    assert t.allow_clipboard and not t.allow_drive_redirection


def _problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, text))
    return [str(p) for p in exc.value.problems]


def test_rdp_target_problems_name_file_line_key(tmp_path: Path) -> None:
    bad = GOOD.replace('password_file = "pw"', 'key_file = "hk"').replace(
        f'rdp_cert_sha256 = ["{":".join(FP[i:i + 2].upper() for i in range(0, 64, 2))}"]',
        'rdp_cert_sha256 = ["nothex"]')
    problems = _problems(tmp_path, bad)
    lines = bad.splitlines()
    key_line = lines.index('key_file = "hk"') + 1
    fp_line = lines.index('rdp_cert_sha256 = ["nothex"]') + 1
    path = tmp_path / "b.toml"
    assert f"{path}:{key_line}: targets.win1.key_file: not used by RDP targets " \
           '(protocol = "rdp")' in problems
    assert f"{path}:{fp_line}: targets.win1.rdp_cert_sha256: [0] is not a SHA-256 " \
           "fingerprint (64 hex digits, colons allowed)" in problems
    assert any("exactly one of password_file, password_env" in p for p in problems)


def test_rdp_target_needs_pin_and_rdp_section(tmp_path: Path) -> None:
    no_section = GOOD.replace('[rdp]\nlisten = "127.0.0.1:3390"\ntoken_ttl = "2m"\n', "")
    assert any("targets.win1.protocol: RDP targets need an [rdp] section" in p
               for p in _problems(tmp_path, no_section))
    start = GOOD.index("rdp_cert_sha256")
    no_pin = GOOD[:start] + GOOD[GOOD.index("\n", start) + 1:]
    assert any("targets.win1.rdp_cert_sha256: pin the target's TLS certificate" in p
               for p in _problems(tmp_path, no_pin))


def test_rdp_keys_on_ssh_target_and_port_clash(tmp_path: Path) -> None:
    bad = GOOD + f"""
[targets.shell]
builtin = "local-shell"
users = ["alice"]
allow_clipboard = true

[targets.win2]
protocol = "rdp"
host = "10.0.0.10"
user = "u"
password_file = "pw"
rdp_cert_sha256 = ["{FP}"]
rdp_listen_port = 3390
"""
    problems = _problems(tmp_path, bad)
    assert any('targets.shell.allow_clipboard: only for RDP targets' in p for p in problems)
    assert any("targets.win2.rdp_listen_port: port 3390 is already used by rdp.listen" in p
               for p in problems)


# ------------------------------------------------------------------ worker watchdog


def test_worker_watchdog_ends_a_stuck_worker() -> None:
    """A worker whose event loop stops turning (a parser stuck in a loop) exits with 70,
    so that the gateway replaces it; a healthy loop keeps running."""
    import subprocess
    import sys

    code = """
import asyncio, threading, time
from gateway.rdp.worker import _Watchdog
loop = asyncio.new_event_loop()
dog = _Watchdog(loop, 1.0)
async def main():
    dog.tick()
    threading.Thread(target=dog.run, daemon=True).start()
    await asyncio.sleep(2.5)   # healthy: ticks keep coming
    print("healthy", flush=True)
    time.sleep(30)             # stuck: the loop never turns again
loop.run_until_complete(main())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 70, done.stderr
    assert done.stdout.strip() == "healthy"
    assert "event loop stalled" in done.stderr


def test_ssh_gateway_never_loads_pyrdp_or_twisted() -> None:
    """pyrdp (GPLv3) and Twisted are only imported in the RDP worker processes."""
    import subprocess
    import sys

    code = ("import sys, gateway.app, gateway.cli, gateway.rdp.supervisor, gateway.rdp.gate, "
            "gateway.rdp.cli, gateway.rdp.tls, state.tokens; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pyrdp', 'twisted'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
