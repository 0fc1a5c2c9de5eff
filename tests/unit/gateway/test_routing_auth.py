"""Routing of logins and commands, rate limiting, passwords, the menu."""

from __future__ import annotations

import pytest

from gateway.auth.passwords import hash_password, verify_password
from gateway.ssh.menu import QUIT, MenuEntry, TargetMenu
from gateway.ssh.routing import Login, Route, parse_login, route_request
from state.ratelimit import FailureLimiter


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
    lim = FailureLimiter(3, 60, clock=lambda: now[0])
    for _ in range(3):
        assert not lim.blocked("1.2.3.4")
        lim.record_failure("1.2.3.4", "user:a")
    assert lim.blocked("1.2.3.4") and lim.blocked("9.9.9.9", "user:a")
    assert not lim.blocked("9.9.9.9")
    now[0] = 61
    assert not lim.blocked("1.2.3.4")


def test_rate_limiter_memory_bounded() -> None:
    lim = FailureLimiter(1, 60, max_keys=100)
    for i in range(1000):
        lim.record_failure(f"10.0.{i // 256}.{i % 256}")
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
