"""The failed-login limiter cannot be turned against a real user, and guessing is cut.

Key offers that fail to match count for the source address only, never for the user
name; wrong passwords count for the source and the (source, user) pair; a success
forgets its pair's failures; one connection gets at most six password answers. Stock
OpenSSH clients from two loopback addresses (127.0.0.1 and 127.0.0.2), and an asyncssh
client for many passwords in one connection (OpenSSH stops after three prompts).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import asyncssh
import pytest

from gateway.auth.passwords import hash_password
from tests.e2e.conftest import audit_events
from tests.e2e.rig import Rig

pytestmark = pytest.mark.e2e

CAROL_PW = "carol-Right-Pw-7"
CAROL = f"""
[users.carol]
password_hash = "{hash_password(CAROL_PW)}"
groups = ["ops"]
"""
OTHER = ["-b", "127.0.0.2"]  # a second source address on loopback


def test_random_keys_as_bob_do_not_lock_bob_out(make_gateway: Any) -> None:
    """Five connections offering a wrong key as bob (an attacker who knows his name):
    bob's real key still logs in from another address, and from the attacker's address
    once the window has passed (the per-source limit is set to 5 here to show it; by
    default it is 6 x max_auth_failures, and bob would get in at once)."""
    g: Rig = make_gateway(gateway_extra='max_auth_failures = 3\nmax_source_failures = 5\n'
                          'auth_failure_window = "4s"')
    for _ in range(5):
        r = g.ssh("bob", "help", key="mallory")
        assert r.returncode == 255 and b"Permission denied" in r.stderr, r
    started = time.monotonic()
    r = g.ssh("bob", "help", extra=OTHER)
    assert r.returncode == 0, r
    assert b"Targets available to bob" in r.stdout
    r = g.ssh("bob", "help")  # the attacker's address: its own limit is reached
    assert r.returncode == 255 and b"too many failed logins" in r.stderr, r
    time.sleep(max(0.0, 4.5 - (time.monotonic() - started)))
    r = g.ssh("bob", "help")
    assert r.returncode == 0, r
    failed = audit_events(g, kind="login", outcome="failed")
    assert len(failed) == 5 and all(e["user"] == "bob" for e in failed)
    assert audit_events(g, kind="login.rate_limited", user="bob")


def test_key_scans_never_block_the_user_name(make_gateway: Any) -> None:
    """With the default limits, wrong keys as bob from one address, past the per-user
    limit: bob logs in from that same address right after."""
    g: Rig = make_gateway(gateway_extra="max_auth_failures = 3")
    for _ in range(4):
        assert g.ssh("bob", "help", key="mallory").returncode == 255
    r = g.ssh("bob", "help")
    assert r.returncode == 0, r


def _client(passwords: Iterator[str], tried: list[str]) -> type[asyncssh.SSHClient]:
    class Guesser(asyncssh.SSHClient):
        def password_auth_requested(self) -> str | None:
            try:
                password = next(passwords)
            except StopIteration:
                return None
            tried.append(password)
            return password

    return Guesser


async def _password_login(g: Rig, user: str, passwords: list[str],
                          tried: list[str]) -> str:
    """Log in with ``passwords`` in order in ONE connection; the outcome."""
    try:
        async with asyncssh.connect(
                "127.0.0.1", g.gateway.port, username=user, known_hosts=None,
                client_keys=None, agent_path=None, preferred_auth="password",
                client_factory=_client(iter(passwords), tried)) as conn:
            result = await conn.run("help", check=False, timeout=20)
            return f"in: {result.stdout}"
    except asyncssh.DisconnectError as exc:
        return f"cut: {exc.reason}"
    except asyncssh.PermissionDenied as exc:
        return f"denied: {exc.reason}"


def test_password_guessing_in_one_connection_is_cut(make_gateway: Any) -> None:
    """29 wrong passwords then the right one, in one connection: the connection is cut
    after the sixth answer and never logs in (before: the 30th logged in)."""
    g: Rig = make_gateway(extra=CAROL)  # max_auth_failures = 50 in the e2e configs
    tried: list[str] = []
    passwords = [f"wrong-{i}" for i in range(29)] + [CAROL_PW]
    outcome = asyncio.run(_password_login(g, "carol", passwords, tried))
    assert outcome.startswith("cut: "), outcome
    assert "too many authentication attempts" in outcome
    assert CAROL_PW not in tried and len(tried) <= 7, tried
    assert not audit_events(g, kind="login", outcome="ok", user="carol")
    assert len(audit_events(g, kind="login", outcome="failed", user="carol")) == 6


def test_a_success_resets_the_users_failures(make_gateway: Any) -> None:
    """Two wrong passwords, a success, two more wrong ones: carol still logs in (her
    pair's counter restarted at her success; the limit is 3)."""
    g: Rig = make_gateway(extra=CAROL, gateway_extra="max_auth_failures = 3")

    async def main() -> list[str]:
        out = []
        for passwords in (["bad-1"], ["bad-2"], [CAROL_PW], ["bad-3"], ["bad-4"],
                          [CAROL_PW]):
            out.append(await _password_login(g, "carol", passwords, []))
        return out

    outcomes = asyncio.run(main())
    assert outcomes[2].startswith("in: ") and outcomes[5].startswith("in: "), outcomes
    assert "Targets available to carol" in outcomes[5]


def test_wrong_passwords_block_the_pair_not_the_user(make_gateway: Any) -> None:
    """Wrong passwords for carol from 127.0.0.1 up to the limit: carol is refused from
    there, and still logs in from 127.0.0.2 (bob, from 127.0.0.1, too)."""
    g: Rig = make_gateway(extra=CAROL, gateway_extra="max_auth_failures = 3")

    async def main() -> list[str]:
        return [await _password_login(g, "carol", [f"bad-{i}"], []) for i in range(3)]

    asyncio.run(main())
    blocked = asyncio.run(_password_login(g, "carol", [CAROL_PW], []))
    assert blocked.startswith("cut: ") and "too many failed logins" in blocked, blocked

    async def from_other() -> str:
        async with asyncssh.connect(
                "127.0.0.1", g.gateway.port, username="carol", password=CAROL_PW,
                known_hosts=None, client_keys=None, agent_path=None,
                local_addr=("127.0.0.2", 0)) as conn:
            result = await conn.run("help", check=False, timeout=20)
            return str(result.stdout)

    assert "Targets available to carol" in asyncio.run(from_other())
    assert g.ssh("bob", "help").returncode == 0
