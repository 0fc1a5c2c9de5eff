"""Every size and count a client controls is bounded where it enters the gateway
(gateway/limits.py): login names, exec commands, environment variables, subsystem names,
forwarding host names, channels per connection, connections per source address and
sessions per user. Hostile requests come from asyncssh (which sends whatever it is told),
another user logs in meanwhile with the stock OpenSSH client, from another address.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.limits import (
    MAX_EXEC_COMMAND,
    MAX_FORWARD_HOST,
    MAX_LOGIN_NAME,
    MAX_SESSIONS_PER_CONNECTION,
)
from tests.e2e.conftest import audit_events
from tests.e2e.rig import Rig

pytestmark = pytest.mark.e2e

OTHER = ["-b", "127.0.0.2"]  # bob logs in from another loopback address


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _connect(g: Rig, username: str = "alice", **kw: Any) -> Any:
    return asyncssh.connect("127.0.0.1", g.gateway.port, username=username,
                            known_hosts=None, client_keys=[str(g.keys["alice"])],
                            agent_path=None, **kw)


def test_long_names_and_requests_are_refused(make_gateway: Any) -> None:
    g: Rig = make_gateway()

    async def main() -> dict[str, str]:
        out: dict[str, str] = {}
        try:
            async with _connect(g, "a" * 1000):
                out["name"] = "logged in"
        except asyncssh.DisconnectError as exc:
            out["name"] = exc.reason
        async with _connect(g) as conn:
            r = await conn.run("web1 -- echo " + "x" * (MAX_EXEC_COMMAND + 10), check=False,
                               timeout=30)
            out["exec"] = f"{r.exit_status} {r.stderr}"
            r = await conn.run("t" * 10_000 + " -- true", check=False, timeout=30)
            out["target"] = f"{r.exit_status} {r.stderr}"
            r = await conn.run("web1 -- echo " + "y" * (MAX_EXEC_COMMAND - 100), check=False,
                               timeout=30)
            out["exec_ok"] = f"{r.exit_status} {len(str(r.stdout))}"
            try:
                await conn.create_session(asyncssh.SSHClientSession, subsystem="s" * 5000)
                out["subsystem"] = "opened"
            except asyncssh.ChannelOpenError as exc:
                out["subsystem"] = exc.reason
        async with _connect(g, "alice+web1fwd") as conn:
            try:
                await conn.open_connection("h" * (MAX_FORWARD_HOST + 1), 80)
                out["forward"] = "opened"
            except asyncssh.ChannelOpenError as exc:
                out["forward"] = exc.reason
        return out

    out = asyncio.run(main())
    assert f"login name longer than {MAX_LOGIN_NAME} characters" in out["name"], out
    assert out["exec"].startswith("1 ") and f"longer than {MAX_EXEC_COMMAND} bytes" in \
        out["exec"], out
    assert out["exec_ok"] == f"0 {MAX_EXEC_COMMAND - 100 + 1}", out
    assert out["target"].startswith("1 bastille: unknown target 'tttt") and \
        "...[9936 more]'" in out["target"] and len(out["target"]) < 300, out["target"]
    assert out["subsystem"] != "opened"
    assert f"longer than {MAX_FORWARD_HOST} characters" in out["forward"], out
    refused = audit_events(g, kind="refused")
    channels = [e["detail"].get("channel", "") for e in refused]
    assert any(c.startswith("subsystem:sss") and c.endswith("more]") and len(c) < 200
               for c in channels), channels
    assert all(len(json.dumps(e)) < 1024 for e in refused)  # names and commands cut short
    too_long = [e for e in refused if "command is longer" in e["detail"].get("reason", "")]
    assert too_long and too_long[0]["detail"]["command"].endswith("more]")


def test_environment_requests_are_bounded(make_gateway: Any,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Four channels each sending 1500 variables of 30 KB (180 MB in all) and staying
    open: the gateway keeps at most MAX_ENV_VARS / MAX_ENV_BYTES per channel (it kept
    them all before: RSS +180 MB), and each session runs with the locale it asked for.
    (glibc is told to give blocks of 16 KiB and more back when they are freed, so that
    RSS shows what is kept, not what passed through.)"""
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "16384")
    g: Rig = make_gateway()
    assert g.gateway.proc is not None
    pid = g.gateway.proc.pid
    env = {"LANG": "C.UTF-8", **{f"X{i}": "v" * 30_000 for i in range(1500)}}

    async def main() -> tuple[list[str], float]:
        before = _rss_mib(pid)
        async with _connect(g) as conn:
            procs = [await conn.create_process("web1 -- printenv LANG; sleep 3", env=env)
                     for _ in range(4)]
            firsts = [await asyncio.wait_for(p.stdout.readline(), 30) for p in procs]
            grown = _rss_mib(pid) - before
            for p in procs:
                await p.wait(timeout=30)
            return firsts, grown

    firsts, grown = asyncio.run(main())
    assert [f.strip() for f in firsts] == ["C.UTF-8"] * 4
    assert grown < 60, grown  # the packets pass through; what is kept is bounded


def test_session_channels_per_connection_are_bounded(make_gateway: Any) -> None:
    g: Rig = make_gateway()

    async def main() -> tuple[int, str]:
        async with _connect(g) as conn:
            menus = []
            for _ in range(MAX_SESSIONS_PER_CONNECTION):  # each waits in the target menu
                menus.append(await conn.create_process(term_type="xterm"))
            try:
                await conn.create_process(term_type="xterm")
                refusal = "opened"
            except asyncssh.ChannelOpenError as exc:
                refusal = exc.reason
            for menu in menus:
                menu.close()
            return len(menus), refusal

    opened, refusal = asyncio.run(main())
    assert opened == MAX_SESSIONS_PER_CONNECTION
    assert "too many sessions on one connection" in refusal


def test_connections_per_source_and_sessions_per_user(make_gateway: Any) -> None:
    g: Rig = make_gateway(gateway_extra="max_connections_per_source = 4\n"
                          "max_sessions_per_user = 2")

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        conns = [await _connect(g) for _ in range(4)]
        try:
            async with _connect(g):
                out["fifth"] = "logged in"
        except asyncssh.DisconnectError as exc:
            out["fifth"] = exc.reason
        out["bob_elsewhere"] = await asyncio.to_thread(g.ssh, "bob", "help", extra=OTHER)
        running = [await conns[i].create_process("web1 -- sleep 5") for i in range(2)]
        third = await conns[2].run("web1 -- echo third", check=False, timeout=30)
        out["third"] = f"{third.exit_status} {third.stderr}"
        for p in running:
            p.close()
        conns[3].close()
        await conns[3].wait_closed()
        await asyncio.sleep(0.3)
        async with _connect(g) as again:
            r = await again.run("help", check=False, timeout=30)
            out["after_close"] = r.exit_status
        for c in conns[:3]:
            c.close()
        return out

    out = asyncio.run(main())
    assert "too many connections from 127.0.0.1 (at most 4)" in out["fifth"], out
    assert out["bob_elsewhere"].returncode == 0, out["bob_elsewhere"]
    assert out["third"].startswith("1 ") and "2 sessions running" in out["third"], out
    assert out["after_close"] == 0


async def _guess(g: Rig, refusals: list[str]) -> None:
    try:
        async with _connect(g, password="x" * 100, preferred_auth="password"):
            pass
    except (asyncssh.Error, OSError) as exc:
        refusals.append(str(exc))


async def _connection_flood(g: Rig, refusals: list[str]) -> None:
    for _ in range(2):
        await asyncio.gather(*(_guess(g, refusals) for _ in range(24)))


async def _channel_and_env_flood(g: Rig, refusals: list[str]) -> None:
    env = {f"V{i}": "e" * 20_000 for i in range(300)}
    async with _connect(g) as conn:
        for _ in range(3):
            procs = []
            for _ in range(MAX_SESSIONS_PER_CONNECTION + 5):
                try:
                    procs.append(await conn.create_process(term_type="xterm", env=env,
                                                           term_size=(65535, 65535)))
                except asyncssh.ChannelOpenError as exc:
                    refusals.append(exc.reason)
            await asyncio.sleep(0.5)
            for p in procs:
                p.close()


def test_a_hostile_client_does_not_slow_another_users_login(make_gateway: Any) -> None:
    """Connection, channel and environment floods and password guessing from 127.0.0.1
    while bob logs in again and again from 127.0.0.2 with OpenSSH."""
    g: Rig = make_gateway(gateway_extra="max_connections_per_source = 16")
    assert g.gateway.proc is not None
    logins: list[float] = []
    refusals: list[str] = []

    async def main() -> None:
        hostile = asyncio.gather(_connection_flood(g, refusals),
                                 _channel_and_env_flood(g, refusals), return_exceptions=True)
        while not hostile.done():
            started = time.monotonic()
            r = await asyncio.to_thread(g.ssh, "bob", "help", extra=OTHER, timeout=30)
            assert r.returncode == 0, r
            logins.append(time.monotonic() - started)
        results = await hostile
        assert not [r for r in results if isinstance(r, BaseException)], results

    asyncio.run(main())
    assert g.gateway.proc.poll() is None, g.gateway.logs()
    assert "Traceback" not in g.gateway.logs()  # channels closed mid-start end quietly
    assert len(logins) >= 3 and max(logins) < 5.0, logins  # idle: ~0.07 s
    assert any("too many sessions" in r for r in refusals), refusals[:5]
    assert any("too many connections" in r for r in refusals), refusals[:5]


def test_client_controlled_sizes_fuzzed(make_gateway: Any) -> None:
    """Hypothesis picks the sizes a client sends (login name, exec command, environment,
    terminal, subsystem); every request gets an answer (a session or a refusal with a
    reason), and the gateway stays up and small."""
    g: Rig = make_gateway()
    assert g.gateway.proc is not None
    pid = g.gateway.proc.pid
    before = _rss_mib(pid)
    sizes = st.integers(min_value=0, max_value=2**32 - 1)

    @settings(max_examples=30, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(name=st.integers(1, 1100), command=st.integers(0, 30_000),
           env_count=st.integers(0, 200), env_size=st.integers(0, 30_000),
           cols=sizes, rows=sizes, subsystem=st.integers(1, 20_000))
    def one(name: int, command: int, env_count: int, env_size: int, cols: int, rows: int,
            subsystem: int) -> None:
        async def main() -> None:
            user = "alice" if name <= MAX_LOGIN_NAME else "a" * name
            try:
                conn = await _connect(g, user)
            except asyncssh.DisconnectError as exc:  # asyncssh itself refuses >= 1024
                assert name > MAX_LOGIN_NAME and ("login name longer" in exc.reason or (
                    name >= 1024 and "Username too long" in exc.reason)), exc.reason
                return
            async with conn:
                env = {f"E{i}": "z" * env_size for i in range(env_count)}
                r = await conn.run("web1 -- echo " + "c" * command, env=env,
                                   term_type="xterm", term_size=(cols, rows), check=False,
                                   timeout=30)
                said = f"{r.stdout}{r.stderr}"
                if len(f"web1 -- echo {'c' * command}") > MAX_EXEC_COMMAND:
                    assert r.exit_status == 1 and "longer than" in said, said[-300:]
                else:
                    assert r.exit_status == 0, said[-300:]
                    assert "c" * min(command, 50) in said
                try:
                    await conn.create_session(asyncssh.SSHClientSession,
                                              subsystem="q" * subsystem)
                except asyncssh.ChannelOpenError:
                    pass

        asyncio.run(main())
        assert g.gateway.proc is not None and g.gateway.proc.poll() is None

    one()
    assert _rss_mib(pid) - before < 200, (before, _rss_mib(pid))
    assert g.ssh("bob", "help").returncode == 0
