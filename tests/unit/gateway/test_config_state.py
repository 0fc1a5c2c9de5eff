"""``[state]`` and ``gateway.proxy_protocol`` in the config: a database URL never holds
its password, every problem names its line, and the PROXY v2 parser."""

from __future__ import annotations

import ipaddress
import socket
import struct
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.ssh.keys import generate_host_key
from gateway.ssh.proxyproto import SIGNATURE, ProxyError, parse_v2, trusted
from state.settings import check_url

BASE = """
[gateway]
host_keys = ["hk"]
{gateway}

[users.alice]
keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGd1c3Rvbm9tZXRoaW5nZWxzZWhlcmUxMjM0NTY3ODk0 a"]

{state}
"""


def _load(tmp_path: Path, state: str, gateway: str = "") -> object:
    if not (tmp_path / "hk").exists():
        generate_host_key(tmp_path / "hk", "test")
    path = tmp_path / "b.toml"
    path.write_text(BASE.format(state=state, gateway=gateway))
    return load_config(path)


def _problems(tmp_path: Path, state: str, gateway: str = "") -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, state, gateway)
    return str(info.value)


def test_default_is_sqlite(tmp_path: Path) -> None:
    c = _load(tmp_path, "")
    assert not c.state.shared and c.recording.index_opener is None  # type: ignore[attr-defined]


def test_postgresql_with_a_password_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret-pw\n")
    c = _load(tmp_path, '[state]\nurl = "postgresql://bastille@db.example:5433/bastion"\n'
              'password_file = "pw"\nnode = "gw-a"\nlease = "20s"\n')
    state = c.state  # type: ignore[attr-defined]
    assert state.shared and state.node == "gw-a" and state.lease == 20.0
    assert state.password == "s3cret-pw"
    assert "s3cret" not in repr(state) and "s3cret" not in repr(c)
    assert c.recording.index_opener is not None  # type: ignore[attr-defined]


def test_password_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTILLE_PG_PW", "from-env")
    c = _load(tmp_path, '[state]\nurl = "postgresql://u@h/db"\npassword_env = "BASTILLE_PG_PW"')
    assert c.state.password == "from-env"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("state", "message"), [
    ('url = "postgresql://u:hunter2@h/db"', "may not be written in the URL"),
    ('url = "postgresql://u@h/db?password=hunter2"', "may not carry password"),
    ('url = "mysql://u@h/db"', "expected postgresql://"),
    ('url = "postgresql://u@h"', "names no database"),
    ('url = "postgresql://u@h/db"\npassword_env = "NOPE_NOT_SET_42"', "is not set"),
    ('url = "postgresql://u@h/db"\nlease = "2s"\nheartbeat = "2s"', "state.heartbeat"),
    ('url = "postgresql://u@h/db"\npoll_interval = "3s"', "at most 1s"),
    ('lease = "5s"', "only used with state.url"),
    ('url = "postgresql://u@h/db"\nnode = "bad name!"', "state.node"),
    ('urll = "postgresql://u@h/db"', "did you mean 'url'"),
])
def test_state_problems_name_key_and_line(tmp_path: Path, state: str, message: str) -> None:
    text = _problems(tmp_path, "[state]\n" + state)
    assert message in text
    assert "b.toml:" in text and "state" in text
    assert "hunter2" not in text  # a password written where it must not be is not echoed


def test_proxy_protocol_sources(tmp_path: Path) -> None:
    c = _load(tmp_path, "", 'proxy_protocol = ["10.0.0.5", "192.168.0.0/24"]')
    assert c.gateway.proxy_protocol == (  # type: ignore[attr-defined]
        ipaddress.ip_network("10.0.0.5/32"), ipaddress.ip_network("192.168.0.0/24"))
    assert "is not an address" in _problems(tmp_path, "", 'proxy_protocol = ["lb.example"]')


def test_check_url() -> None:
    assert check_url("postgresql://bastille@127.0.0.1:5432/bastion") is None
    assert check_url("postgres:///bastion?host=/run/postgresql") is None
    assert check_url("postgresql://bastille:pw@h/db") is not None


def _v2(command: int, family: int, body: bytes) -> bytes:
    return SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def test_proxy_v2_headers() -> None:
    v4 = _v2(1, 0x11, socket.inet_aton("203.0.113.9") + socket.inet_aton("10.0.0.1")
             + struct.pack("!HH", 40000, 22))
    h = parse_v2(v4 + b"SSH-2.0-x\r\n")
    assert h.source == ("203.0.113.9", 40000) and h.length == len(v4)
    v6 = _v2(1, 0x21, socket.inet_pton(socket.AF_INET6, "2001:db8::7")
             + socket.inet_pton(socket.AF_INET6, "2001:db8::1") + struct.pack("!HH", 5555, 22)
             + b"\x04\x00\x01x")  # a TLV after the addresses
    assert parse_v2(v6).source == ("2001:db8::7", 5555)
    assert parse_v2(_v2(0, 0x00, b"")).source is None  # LOCAL: the balancer's health check
    for bad, why in [(v4[:20], "cut short"), (b"SSH-2.0-OpenSSH_9.2\r\n" + bytes(10), "not a"),
                     (_v2(1, 0x12, bytes(12)), "non-stream"),
                     (_v2(1, 0x31, bytes(216)), "family 3"),
                     (_v2(2, 0x11, bytes(12)), "command 2"),
                     (SIGNATURE + b"\x11\x11\x00\x00", "version 1")]:
        with pytest.raises(ProxyError, match=why):
            parse_v2(bad)


def test_trusted_sources() -> None:
    nets = (ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("::1/128"))
    assert trusted("10.0.0.9", nets) and trusted("::1", nets)
    assert trusted("::ffff:10.0.0.9", nets)  # v4-mapped
    assert not trusted("10.0.1.9", nets) and not trusted("nonsense", nets)
