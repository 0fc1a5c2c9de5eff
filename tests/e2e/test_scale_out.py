"""Several gateways, one bastion: three `bastille serve` nodes on one PostgreSQL database
(started by the test, password authentication) and one S3 bucket (moto_server), two of
them behind HAProxy (PROXY protocol v2).

* a session through node A, approved by an approver logged into node B, found by
  `sessions list`/the player on node B, killed from node C's CLI;
* HAProxy in front of two gateways: the audit trail shows the real client address; a
  PROXY header from an untrusted address is refused;
* PostgreSQL restarted mid-session: the session goes on, a command needing approval
  waits with a notice and is approved once the database is back, the recording verifies;
* a node killed with -9: the others keep serving, its session is marked ended by one of
  them (lease), and its spooled recording reaches S3 when it starts again.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster, Node, s3_recording, start_node, until
from tests.e2e.rig import Rig, Tmux
from tests.integration.conftest import (  # noqa: F401 - fixtures used by name
    MOTO_AK,
    MOTO_SK,
    moto_server,
    s3_client,
)
from tests.pg_rig import PgServer, available

pytestmark = [pytest.mark.e2e, pytest.mark.s3, pytest.mark.slow]

CLIENT_ADDR = "127.0.0.5"  # the "real client": ssh binds to it, HAProxy sees it


@pytest.fixture(scope="module")
def cluster(rig: Rig, moto_server: str, s3_client, tmp_path_factory) -> Iterator[Cluster]:  # type: ignore[no-untyped-def]  # noqa: F811
    if not available():
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    if not any(Path(p, "haproxy").exists() for p in ("/usr/sbin", "/usr/bin")):
        pytest.skip("HAProxy is not installed (Debian: apt-get install haproxy)")
    root = tmp_path_factory.mktemp("cluster")
    os.chmod(root, 0o755)
    for name in ("alice_key", "alice_key.pub", "bob_key", "bob_key.pub", "mallory_key",
                 "mallory_key.pub", "gw_host_key", "gw_host_key.pub", "recording.key",
                 "recording.key.pub", "target_key", "target_key.pub"):
        src = rig.root / name
        if src.exists():
            (root / name).write_bytes(src.read_bytes())
            os.chmod(root / name, src.stat().st_mode & 0o777)
    pg = PgServer()
    pg.init()
    database = pg.new_database()
    bucket = f"cluster-{os.getpid()}"
    s3_client.create_bucket(Bucket=bucket)
    s3 = s3_recording(moto_server, bucket, MOTO_AK, MOTO_SK)
    c = Cluster(root=root, pg=pg, database=database)
    keys = {n: root / f"{n}_key" for n in ("alice", "bob", "mallory")}
    try:
        for name, proxy in (("a", True), ("b", True), ("c", False)):
            start_node(c, rig.sshd, name, s3=s3, keys=keys, proxy=proxy)
        c.start_haproxy(["a", "b"])
        yield c
    finally:
        c.stop()
        pg.close()


def _term(node: Node, *, user: str = "alice") -> Tmux:
    t = Tmux(node.rig.root, [*node.rig.ssh_args(user, tty=True), "web1"])
    t.wait_re(r"[$#]$")
    t.type("export PS1='PROMPT$ '\n")
    t.wait_for("\nPROMPT$")
    return t


def _pending(node: Node) -> int:
    def find() -> int | None:
        r = node.cli("approvals", "list", "--json")
        rows = __import__("json").loads(r.stdout or "[]")
        return rows[0]["id"] if rows else None

    return int(until(find))


def _verified(node: Node, session: str, timeout: float = 30) -> None:
    """Wait until ``bastille verify`` on ``node`` accepts the recording (from S3)."""
    last: list[str] = []

    def ok() -> bool:
        r = node.cli("verify", session)
        last[:] = [r.stdout + r.stderr]
        return r.returncode == 0

    try:
        until(ok, timeout=timeout, every=0.5)
    except AssertionError:
        raise AssertionError(f"verify on node {node.name}: {last}") from None


def _ids(node: Node, user: str = "alice") -> set[str]:
    """The sessions of ``user`` in the index before a test opens its own."""
    return {str(s["id"]) for s in node.sessions(user=user)}


def _live_session(node: Node, user: str, known: set[str]) -> str:
    """The session the test just opened, once the index shows it live: an earlier
    test's session may still read "live" for a moment (its end is written behind), so
    the ones ``known`` before are not it."""
    return str(until(lambda: next((s["id"] for s in node.sessions(user=user)
                                   if s["status"] == "live" and s["id"] not in known), None)))


def test_approved_on_b_found_on_b_killed_from_c(cluster: Cluster) -> None:
    a, b, c = (cluster.nodes[n] for n in "abc")
    known = _ids(b)
    t = _term(a)
    try:
        session = _live_session(b, "alice", known)  # node B's index sees node A's live session
        status = until(lambda: (lambda r: r.stdout if session in r.stdout else None)(
            c.cli("state", "status")))
        assert re.search(r"node a .* 1 live session", status), status
        assert all(f"node {n} " in status for n in "abc") and "alice@web1 on a" in status
        shown = json.loads(c.cli("state", "status", "--json").stdout)
        assert shown["backend"] == "postgresql" and "password" not in json.dumps(shown)
        assert {n["node"] for n in shown["nodes"]} == {"a", "b", "c"}
        assert {(e["session"], e["node"], e["user"]) for e in shown["sessions"]} >= {
            (session, "a", "alice")}
        t.type("echo approve-me-$((6*7))\n")
        t.wait_for("waiting for approval #")
        rid = _pending(c)  # every node lists the request
        t0 = time.monotonic()
        ok = b.rig.ssh("bob", "approvals", "approve", str(rid), "fine by me")
        assert ok.returncode == 0 and b"approved" in ok.stdout, ok.stdout + ok.stderr
        t.wait_for("approved by bob", timeout=5)
        t.wait_for("approve-me-42")
        approval_seconds = time.monotonic() - t0
        t0 = time.monotonic()
        killed = c.cli("sessions", "kill", session[:14], "--reason", "cluster drill",
                       "--as", "bob")
        assert killed.returncode == 0, killed.stdout + killed.stderr
        assert "terminated" in killed.stdout
        t.wait_for("session terminated by bob: cluster drill", timeout=5)
        kill_seconds = time.monotonic() - t0
    finally:
        t.close()
    print(f"approval across nodes: {approval_seconds:.2f}s; kill across nodes: "
          f"{kill_seconds:.2f}s (including the CLI's own start)")
    assert a.audit(kind="session.kill", session=session)  # carried out by node A
    # node B finds the session by its commands (the shared index, written by node A)
    until(lambda: session in b.cli("sessions", "list", "--json", "--text",
                                   "approve-me").stdout)
    # the recording reaches S3 from node A; node B verifies and replays it
    _verified(b, session)
    shown = b.cli("sessions", "show", session)
    assert shown.returncode == 0 and "alice" in shown.stdout
    # the player on node B, in a terminal, opens it
    env = {k: v for k, v in os.environ.items() if k.startswith("BASTILLE_")}
    p = Tmux(cluster.root, [sys.executable, "-m", "gateway", "player", session, "-c",
                            str(b.config), "--as", "bob"], env=env)
    try:
        p.wait_for("Timeline", timeout=30)

        def at_end() -> bool:
            p.send("End")  # the last screen: what alice saw before the kill
            time.sleep(0.5)
            return "session terminated by bob: cluster drill" in p.screen()

        until(at_end, timeout=20)
        assert "approve-me-42" in p.screen()
    finally:
        p.close()


def test_haproxy_passes_the_real_client_address(cluster: Cluster) -> None:
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    port = cluster.haproxy_port
    base = a.rig.ssh_args("alice")
    args = [x if x != str(a.gateway.port) else str(port) for x in base]
    for i in range(2):  # round robin: one connection to each gateway
        r = subprocess.run([*args[:-1], "-b", CLIENT_ADDR, args[-1], "web1", "--", "echo",
                            f"through-lb-{i}"], capture_output=True, timeout=60)
        assert r.returncode == 0 and f"through-lb-{i}".encode() in r.stdout, r.stderr
    for node in (a, b):  # each gateway served one, and audited the real client
        sources = {e["source"].rsplit(":", 1)[0] for e in node.audit(kind="login",
                                                                    user="alice")}
        assert CLIENT_ADDR in sources, (node.name, sources)
    # an untrusted address that claims another one with a PROXY header is refused
    header = (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", 12)
              + socket.inet_aton("203.0.113.9") + socket.inet_aton("127.0.0.1")
              + struct.pack("!HH", 40000, 22))
    with socket.create_connection(("127.0.0.1", a.gateway.port), timeout=5,
                                  source_address=("127.0.0.7", 0)) as s:
        s.sendall(header + b"SSH-2.0-OpenSSH_9.2\r\n")
        s.settimeout(5)
        try:
            data = s.recv(100)
        except ConnectionResetError:
            data = b""
    assert not data.startswith(b"SSH-"), data
    refused = until(lambda: a.audit(kind="refused", reason="PROXY header from an untrusted "
                                    "address"))
    assert refused[-1]["source"].startswith("127.0.0.7:")
    assert not a.audit(source="203.0.113.9:40000")
    # an untrusted client without a header is a normal direct client
    direct = a.rig.ssh_args("alice")
    r = subprocess.run([*direct[:-1], "-b", "127.0.0.6", direct[-1], "web1", "--", "true"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert any(e["source"].startswith("127.0.0.6:") for e in a.audit(kind="login"))


def test_postgresql_restart_mid_session(cluster: Cluster) -> None:
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    known = _ids(a)
    t = _term(a)
    try:
        session = _live_session(a, "alice", known)
        cluster.pg.stop()
        try:
            t.type("echo still-$((20+1))\n")
            t.wait_for("still-21")  # the session goes on without the database
            t.type("echo approve-me-$((2*3))\n")
            t.wait_for("database is unreachable", timeout=10)
            # what needs the database to answer says so, and nothing else breaks
            asked = a.rig.ssh("alice", "request", "secret", "1h", "during the outage")
            assert b"database is unavailable; try again shortly" in asked.stdout + \
                asked.stderr, asked.stdout + asked.stderr
            grant_only = a.rig.ssh("alice", "secret", "--", "true")
            assert grant_only.returncode == 1
            assert b"cannot check the access grants" in grant_only.stderr, grant_only.stderr
            allowed = a.rig.ssh("alice", "web1", "--", "echo", "new-session-ok")
            assert allowed.returncode == 0 and b"new-session-ok" in allowed.stdout
            time.sleep(1.0)
        finally:
            cluster.pg.start()
        t.wait_for("waiting for approval #", timeout=20)  # asked once the database is back
        rid = _pending(b)
        # node B's gateway may still hold off its database for RETRY_AFTER (3 s) after
        # its last failed call: it says so, and bob tries again shortly, as told
        tries: list[bytes] = []

        def approved() -> bool:
            r = b.rig.ssh("bob", "approvals", "approve", str(rid))
            tries.append(r.stdout + r.stderr)
            if r.returncode != 0:
                assert b"database is unavailable; try again shortly" in tries[-1], tries
            return r.returncode == 0

        until(approved, timeout=15, every=1.0)
        t.wait_for("approved by bob", timeout=5)
        t.wait_for("approve-me-6")
        cluster.pg.stop()  # again; this time the user gives up with Ctrl-C
        try:
            t.type("echo approve-me-never\n")
            until(lambda: t.screen().count("database is unreachable") >= 2, timeout=10)
            t.send("C-c")
            t.wait_for("cancelled by the user; the command was not run", timeout=5)
        finally:
            cluster.pg.start()
        t.type("exit 0\n")
        assert t.dead_status() == 0
    finally:
        t.close()
    _verified(b, session)
    # the index updates queued on node A land once its breaker lets them through (3 s):
    # first the session's end, then what the after-close index pass read (commands), as
    # two updates, so a read between them sees "ended" with no command yet
    last: list[object] = []

    def indexed() -> bool:
        row = next((s for s in b.sessions(user="alice") if s["id"] == session), None)
        last[:] = [row]
        return row is not None and row["status"] == "ended" and row["commands"] >= 3

    try:
        until(indexed, timeout=30, every=0.5)
    except AssertionError:
        raise AssertionError(f"the index on node B: {last}") from None


def test_node_killed_its_session_ended_by_another(cluster: Cluster) -> None:
    a, b, c = (cluster.nodes[n] for n in "abc")
    known = _ids(a)
    t = _term(c)
    try:
        session = _live_session(a, "alice", known)
        t.type("echo before-the-crash\n")
        t.wait_for("before-the-crash\n")
        time.sleep(1.5)  # recording.flush_interval (1 s): what a crash may lose at most
        c.gateway.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        c.gateway.proc.wait(10)  # type: ignore[union-attr]
        # the others keep serving
        r = a.rig.ssh("alice", "web1", "--", "echo", "a-still-serves")
        assert r.returncode == 0 and b"a-still-serves" in r.stdout
        # within the lease (3 s) + a heartbeat, a survivor marks the session ended
        row = until(lambda: next((s for s in b.sessions(user="alice") if s["id"] == session
                                  and s["status"] != "live"), None), timeout=15)
        assert row["status"] == "ended"
        lost = until(lambda: a.audit(kind="session.end", session=session) or
                     b.audit(kind="session.end", session=session))
        assert lost[-1]["outcome"] == "node lost" and lost[-1]["detail"]["node"] == "c"
    finally:
        t.close()
    assert b.cli("verify", session).returncode != 0  # not in S3 yet: spooled on node C
    c.gateway.start()  # restarts: its spool uploads, its index row is re-read
    last: list[str] = []

    def exported() -> bool:
        r = b.cli("export", session, "--format", "asciicast", "-o", "-")
        last[:] = [r.stdout[-500:] + r.stderr]
        return "before-the-crash" in r.stdout

    try:
        until(exported, timeout=40, every=0.5)
    except AssertionError:
        raise AssertionError(f"{last}\n{c.gateway.logs()[-3000:]}") from None
    # node C's crash recovery finished the recording (a signed recovery trailer) and its
    # row says so, on every node
    shown = b.cli("sessions", "show", session)
    assert re.search(r"status\s+recovered\b", shown.stdout), shown.stdout
    checked = b.cli("verify", session)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_grant_revoked_on_c_ends_the_session_on_a(cluster: Cluster) -> None:
    a, b, c = (cluster.nodes[n] for n in "abc")
    asked = a.rig.ssh("alice", "request", "secret", "1h", "incident 7")
    assert asked.returncode == 0, asked.stdout + asked.stderr
    rid = _pending(b)
    ok = b.rig.ssh("bob", "approvals", "approve", str(rid), "go")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    t = Tmux(a.rig.root, [*a.rig.ssh_args("alice", tty=True), "secret"])
    try:
        t.wait_re(r"[$#]$")
        t0 = time.monotonic()
        revoked = c.cli("approvals", "revoke", str(rid), "incident", "over", "--as", "bob")
        assert revoked.returncode == 0 and "revoked" in revoked.stdout, revoked.stderr
        t.wait_for(f"access grant #{rid} revoked: incident over", timeout=5)
        seconds = time.monotonic() - t0
    finally:
        t.close()
    print(f"grant revocation across nodes: {seconds:.2f}s (including the CLI's start)")
    again = a.rig.ssh("alice", "secret", "--", "true")
    assert again.returncode != 0 and b"not allowed" in again.stderr


def test_player_on_b_watches_a_live_session_on_a(cluster: Cluster) -> None:
    """The recording of a live session is in node A's spool until it ends: node B's
    player gets it relayed through the database while it watches."""
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    known = _ids(b)
    t = _term(a)
    env = {k: v for k, v in os.environ.items() if k.startswith("BASTILLE_")}
    p: Tmux | None = None
    try:
        session = _live_session(b, "alice", known)
        t.type("echo before-the-watch\n")
        t.wait_for("before-the-watch\n")
        p = Tmux(cluster.root, [sys.executable, "-m", "gateway", "player", session, "-c",
                                str(b.config), "--as", "bob"], env=env)
        p.wait_for("chain intact so far", timeout=30)  # live, following its end
        assert "before-the-watch" in p.screen()
        t.type("echo watched-$((5*5))\n")
        t.wait_for("watched-25")
        t0 = time.monotonic()
        p.wait_for("watched-25", timeout=15)
        print(f"watched from node b {time.monotonic() - t0:.1f}s after alice saw it "
              "(player refresh 1.5 s + recorder flush 1 s + relay poll 0.3 s)")
    finally:
        if p is not None:
            p.close()
        t.close()
