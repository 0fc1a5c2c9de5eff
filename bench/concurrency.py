"""Many concurrent interactive recorded sessions through one gateway.

An asyncssh load client (a real SSH client, in this process) opens N interactive PTY
shell sessions through the gateway (`alice+web1@gateway`, recorded, default settings),
``--parallel`` setups at a time, and reports the setup rate (sessions whose shell printed
its first output, per second). Then every session types one key every ``--interval``
seconds (random phase) for ``--seconds``, timing each echo; every 60 keys a Ctrl-U
clears the line. At the end: sessions dropped (closed early or an echo that never came),
echo p50/p99, and the gateway's RSS growth per session (RSS with N sessions open minus
RSS before, over N) and CPU.

The direct figures (same load straight to sshd) are measured in the same run for the
ratio, unless ``--no-direct``.

Known limits: the load client shares the machine with the gateway, sshd and N bash
processes, and its own event loop adds to every echo time (it is the same for direct and
bastion runs); the setup rate is bounded by sshd and bash start-up as much as by the
gateway (the direct row shows by how much).

Run: python bench/concurrency.py [--sessions 500] [--seconds 60] [--interval 0.2]
     python bench/concurrency.py --smoke
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import asyncssh

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._rig import MIB, TARGET_USER, BenchRig, machine, percentile

KEYS = b"abcdefghijklmnopqrstuvwxyz"


class Typist(asyncssh.SSHClientSession[bytes]):
    """One interactive session: records when output arrives and waits for echoes."""

    def __init__(self) -> None:
        self.first_output = asyncio.get_running_loop().create_future()
        self.buf = bytearray()
        self.waiting: bytes | None = None
        self.echoed: asyncio.Event = asyncio.Event()
        self.closed = False

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if not self.first_output.done():
            self.first_output.set_result(time.perf_counter())
        if self.waiting is not None:
            self.buf += data
            if self.waiting in self.buf:
                self.waiting = None
                self.echoed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.echoed.set()
        if not self.first_output.done():
            self.first_output.set_exception(exc or ConnectionError("closed"))


Opened = tuple[asyncssh.SSHClientConnection, asyncssh.SSHClientChannel[bytes], "Typist"]


@dataclass
class Result:
    setup_s: float = 0.0
    opened: int = 0
    failed_setup: int = 0
    dropped: int = 0
    echoes: list[float] = field(default_factory=list)
    rss_per_session: float = 0.0
    cpu_s: float = 0.0


async def open_one(
    port: int,
    user: str,
    key: str,
    known: str,
) -> tuple[asyncssh.SSHClientConnection, asyncssh.SSHClientChannel[bytes], Typist]:
    conn = await asyncssh.connect(
        "127.0.0.1",
        port,
        username=user,
        client_keys=[key],
        known_hosts=known,
        config=None,
        agent_path=None,
    )
    chan, session = await conn.create_session(
        Typist, request_pty="force", term_type="xterm", term_size=(120, 40), encoding=None
    )
    sess = cast(Typist, session)
    await asyncio.wait_for(sess.first_output, 60)
    await asyncio.sleep(0.3)  # let the prompt finish
    return conn, chan, sess


async def type_keys(
    chan: asyncssh.SSHClientChannel[bytes],
    sess: Typist,
    stop_at: float,
    interval: float,
    echoes: list[float],
) -> bool:
    """Type until ``stop_at``; False if the session dropped."""
    await asyncio.sleep(random.random() * interval)
    i = 0
    while time.monotonic() < stop_at:
        if i and i % 60 == 0:
            chan.write(b"\x15")
            await asyncio.sleep(0.05)
        key = KEYS[i % len(KEYS) : i % len(KEYS) + 1]
        sess.buf.clear()
        sess.echoed.clear()
        sess.waiting = key
        t0 = time.perf_counter()
        chan.write(key)
        try:
            await asyncio.wait_for(sess.echoed.wait(), 10)
        except TimeoutError:
            return False
        if sess.closed:
            return False
        echoes.append(time.perf_counter() - t0)
        i += 1
        await asyncio.sleep(max(0.0, interval - (time.perf_counter() - t0)))
    return True


async def run_load(
    port: int,
    user: str,
    key: str,
    known: str,
    n: int,
    parallel: int,
    seconds: float,
    interval: float,
    rig: BenchRig,
    via: str | None,
) -> Result:
    res = Result()
    gw = rig.gws[via] if via else None
    rss0 = gw.rss() if gw else 0
    cpu0 = gw.cpu() if gw else 0.0
    sem = asyncio.Semaphore(parallel)

    async def guarded() -> Opened | None:
        async with sem:
            try:
                return await open_one(port, user, key, known)
            except (OSError, asyncssh.Error, TimeoutError, ConnectionError) as exc:
                print(f"# setup failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                return None

    t0 = time.perf_counter()
    opened = await asyncio.gather(*(guarded() for _ in range(n)))
    res.setup_s = time.perf_counter() - t0
    sessions = [o for o in opened if o is not None]
    res.opened = len(sessions)
    res.failed_setup = n - len(sessions)
    if gw:
        res.rss_per_session = (gw.rss() - rss0) / max(1, len(sessions))
    stop_at = time.monotonic() + seconds
    ok = await asyncio.gather(
        *(type_keys(chan, sess, stop_at, interval, res.echoes) for _, chan, sess in sessions)
    )
    res.dropped = ok.count(False)
    if gw:
        res.cpu_s = gw.cpu() - cpu0
    for _conn, chan, _ in sessions:
        chan.write(b"\x15exit\r")
    await asyncio.sleep(0.5)
    for conn, _, _ in sessions:
        conn.close()
    await asyncio.gather(*(c.wait_closed() for c, _, _ in sessions), return_exceptions=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between keys")
    ap.add_argument("--parallel", type=int, default=20, help="setups in flight")
    ap.add_argument("--no-direct", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="5 sessions for 2 s")
    a = ap.parse_args(argv)
    if a.smoke:
        a.sessions, a.seconds = 5, 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 8 * a.sessions + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # inherited by the gateway
    print(f"# concurrency: {machine()}")
    print(
        f"# {a.sessions} interactive PTY sessions, one key per {a.interval}s each for "
        f"{a.seconds:.0f}s, {a.parallel} setups in flight"
    )
    with BenchRig(max_startups=max(100, 2 * a.parallel)) as rig:
        assert rig.sshd is not None and rig.known_hosts is not None
        known = str(rig.known_hosts)
        rows = []
        if not a.no_direct:
            rows.append(
                (
                    "direct",
                    asyncio.run(
                        run_load(
                            rig.sshd.port,
                            TARGET_USER,
                            str(rig.root / "target_key"),
                            known,
                            a.sessions,
                            a.parallel,
                            a.seconds,
                            a.interval,
                            rig,
                            None,
                        )
                    ),
                )
            )
        gw = rig.gws["bastion"]
        rows.append(
            (
                "bastion",
                asyncio.run(
                    run_load(
                        gw.port,
                        "alice+web1",
                        str(rig.root / "alice_key"),
                        known,
                        a.sessions,
                        a.parallel,
                        a.seconds,
                        a.interval,
                        rig,
                        "bastion",
                    )
                ),
            )
        )
        print(
            f"{'path':<8} {'opened':>6} {'failed':>6} {'dropped':>7} {'setup/s':>8} "
            f"{'echo p50 ms':>11} {'p99 ms':>7} {'keys':>7} {'gw MiB/sess':>11} "
            f"{'gw CPU %':>8}"
        )
        for name, r in rows:
            print(
                f"{name:<8} {r.opened:>6} {r.failed_setup:>6} {r.dropped:>7} "
                f"{r.opened / r.setup_s:>8.1f} {percentile(r.echoes, 50) * 1e3:>11.2f} "
                f"{percentile(r.echoes, 99) * 1e3:>7.2f} {len(r.echoes):>7} "
                f"{r.rss_per_session / MIB if name != 'direct' else float('nan'):>11.2f} "
                f"{r.cpu_s / a.seconds * 100 if name != 'direct' else float('nan'):>8.0f}"
            )
        if len(rows) == 2:
            d, b = rows[0][1], rows[1][1]
            rate = (b.opened / b.setup_s) / (d.opened / d.setup_s)
            print(
                f"ratio    setup rate bastion/direct {rate:.2f}"
                f"; echo p99 bastion/direct "
                f"{percentile(b.echoes, 99) / percentile(d.echoes, 99):.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
