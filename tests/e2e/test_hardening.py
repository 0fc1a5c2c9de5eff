"""One user must not take the bastion down: hostile requests from a real SSH client
(asyncssh, which sends whatever it is told) through the real gateway, while another
user logs in with the OpenSSH client in the same test."""

from __future__ import annotations

import asyncio
import resource
import time
from pathlib import Path

import asyncssh
import pytest

from tests.e2e.rig import Rig

pytestmark = pytest.mark.e2e

POLICY = """
[policy]
default = "allow"
on_uncertain = "approve"

[[policy.rules]]
name = "canary"
match = '^touch /tmp/canary'
action = "deny"
"""

MEMORY_CAP = 3 << 30  # the gateway may not grow past this: a runaway fails, not the machine


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _hostile_shell(g: Rig, size: tuple[int, int], resize: tuple[int, int],
                         lines: int) -> str:
    async with asyncssh.connect(
            "127.0.0.1", g.gateway.port, username="alice+web1", known_hosts=None,
            client_keys=[str(g.keys["alice"])], agent_path=None) as conn:
        proc = await conn.create_process(term_type="xterm", term_size=size)
        out = ""
        deadline = time.monotonic() + 20
        while "$" not in out and time.monotonic() < deadline:
            out += await asyncio.wait_for(proc.stdout.read(4096), 20)
        proc.change_terminal_size(*resize)
        for i in range(lines):
            proc.stdin.write(f"echo hostile-{i}-$((6*7))\n")
            await asyncio.sleep(0.2)
        proc.stdin.write("exit\n")
        rest = await asyncio.wait_for(proc.stdout.read(), 60)
        return out + rest


@pytest.mark.parametrize("size,resize", [
    ((4294967295, 4294967295), (4294967295, 4294967295)),
    ((80, 24), (65535, 65535)),
    ((0, 0), (4294967295, 1)),
])
def test_window_size_from_a_client_is_bounded(make_gateway, size: tuple[int, int],  # type: ignore[no-untyped-def]
                                              resize: tuple[int, int]) -> None:
    g: Rig = make_gateway(extra=POLICY)
    assert g.gateway.proc is not None
    pid = g.gateway.proc.pid
    resource.prlimit(pid, resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    before = _rss_mib(pid)
    logins: list[float] = []

    async def main() -> str:
        hostile = asyncio.create_task(_hostile_shell(g, size, resize, lines=5))
        while not hostile.done():  # another user logs in meanwhile, with stock OpenSSH
            started = time.monotonic()
            r = await asyncio.to_thread(g.ssh, "bob", "help", timeout=30)
            assert r.returncode == 0, r
            logins.append(time.monotonic() - started)
            await asyncio.sleep(0.3)
        return await hostile

    out = asyncio.run(main())
    assert "hostile-4-42" in out  # every Enter was decided and ran
    assert g.gateway.proc.poll() is None, g.gateway.logs()
    assert max(logins) < 5.0, logins
    assert _rss_mib(pid) - before < 300, (before, _rss_mib(pid))
