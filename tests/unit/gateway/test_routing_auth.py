"""Routing of logins and commands, rate limiting, passwords, the menu."""

from __future__ import annotations

import pytest

from gateway.auth.passwords import hash_password, verify_password
from gateway.ssh.menu import QUIT, MenuEntry, TargetMenu
from gateway.ssh.routing import Login, Route, parse_login, route_request
from state.ratelimit import FailureLimiter, source_key


@pytest.mark.parametrize(("username", "login"), [
    ("alice", Login("alice", None)),
    ("alice+web1", Login("alice", "web1")),
    ("alice+", Login("alice", None)),
])
def test_parse_login(username: str, login: Login) -> None:
    assert parse_login(username) == login


@pytest.mark.parametrize(("login", "command", "route"), [
    (Login("a", None), None, Route(None, None)),
    (Login("a", None), "web1", Route("web1", None)),
    (Login("a", None), "web1 -- uptime", Route("web1", "uptime")),
    (Login("a", None), "web1 --", Route("web1", None)),
    (Login("a", None), "web1 ls -la /", Route("web1", "ls -la /")),
    (Login("a", None), "web1 -- ls -- x", Route("web1", "ls -- x")),
    (Login("a", None), "help", Route(None, None, "help", "")),
    (Login("a", "web1"), "scp -t /tmp", Route("web1", "scp -t /tmp")),
    (Login("a", "web1"), None, Route("web1", None)),
    (Login("a", "web1"), "help", Route("web1", "help")),
])
def test_route_request(login: Login, command: str | None, route: Route) -> None:
    assert route_request(login, command) == route


def test_rate_limiter_window() -> None:
    now = [0.0]
    lim = FailureLimiter(3, 60, source_limit=5, clock=lambda: now[0])
    for _ in range(3):
        assert not lim.blocked("1.2.3.4", "a")
        lim.record_failure("1.2.3.4", "a")
    assert lim.blocked("1.2.3.4", "a")  # the pair
    assert not lim.blocked("9.9.9.9", "a")  # never the user name alone
    assert not lim.blocked("1.2.3.4", "b") and not lim.blocked("1.2.3.4")
    lim.record_failure("1.2.3.4", "b")
    lim.record_failure("1.2.3.4")  # a key-only failure: the source only
    assert lim.blocked("1.2.3.4") and lim.blocked("1.2.3.4", "c")  # 5 for the source
    now[0] = 61
    assert not lim.blocked("1.2.3.4", "a")


def test_rate_limiter_success_resets_the_pair_only() -> None:
    lim = FailureLimiter(2, 60, source_limit=3)
    lim.record_failure("10.0.0.1:5000", "a")  # the port is not part of the source
    lim.record_failure("10.0.0.1:5001", "a")
    assert lim.blocked("10.0.0.1", "a")
    lim.reset("10.0.0.1", "a")
    assert not lim.blocked("10.0.0.1", "a")
    lim.record_failure("10.0.0.1", "b")
    assert lim.blocked("10.0.0.1", "z")  # the source's 3 failures were not forgotten


def test_rate_limiter_source_keys() -> None:
    assert source_key("10.1.2.3:22") == "10.1.2.3"
    assert source_key("[2001:db8:1:2::5]:22") == "2001:db8:1:2::/64"
    assert source_key("2001:db8:1:2:aaaa::9") == "2001:db8:1:2::/64"
    assert source_key("::ffff:10.1.2.3") == "10.1.2.3"
    assert source_key("fe80::1%eth0") == "fe80::/64"
    assert source_key("not-an-address") == "not-an-address"


def test_rate_limiter_memory_bounded() -> None:
    lim = FailureLimiter(1, 60, max_keys=100)
    for i in range(1000):
        lim.record_failure(f"10.0.{i // 256}.{i % 256}", "u")
    assert len(lim._failures) <= 100


def test_passwords() -> None:
    h = hash_password("s3cret")
    assert h.startswith("scrypt$") and "s3cret" not in h
    assert verify_password("s3cret", h)
    assert not verify_password("s3creT", h)
    assert not verify_password("s3cret", "scrypt$garbage")
    assert not verify_password("x", "plain$x")


def test_menu_by_number_name_and_quit() -> None:
    entries = [MenuEntry("web1", "frontend"), MenuEntry("db1", "database")]
    m = TargetMenu("alice", entries)
    assert b"web1" in m.intro() and b"database" in m.intro()
    out = m.feed(b"x\x7f2\r")
    assert b"\b \b" in out and m.result == "db1"
    m = TargetMenu("alice", entries)
    m.intro()
    assert b"No target 'zz'" in m.feed(b"zz\r")
    m.feed(b"web1\r")
    assert m.result == "web1"
    m = TargetMenu("alice", entries)
    m.feed(b"\x03")
    assert m.result is QUIT
    assert TargetMenu("bob", []).intro().startswith(b"bastille: no targets")
