"""One suite, both backends: every state store behaves the same on SQLite (the default)
and on PostgreSQL (``[state] url``, several gateways). The PostgreSQL cases run against
a real server started by the tests (tests/pg_rig.py) with password authentication."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from recorder.index import SessionIndex, SessionRow
from recorder.signing import generate, load_signer
from state.approvals import ApprovalError
from state.backend import StateBackend
from state.settings import StateSettings

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateBackend]:
    if request.param == "sqlite":
        yield StateBackend(StateSettings(node="node-a"), tmp_path / "data")
        return
    settings: StateSettings = request.getfixturevalue("pg_settings")
    yield StateBackend(settings, tmp_path / "data")


@pytest.fixture(params=["sqlite", "sqlite-workers", "postgresql"])
def limits(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateBackend]:
    """The backends of failed-login counts: in memory, in a file the SSH workers of one
    gateway share, in the database."""
    if request.param.startswith("sqlite"):
        workers = 2 if request.param == "sqlite-workers" else 1
        yield StateBackend(StateSettings(node="node-a"), tmp_path / "data", workers=workers)
        return
    settings: StateSettings = request.getfixturevalue("pg_settings")
    yield StateBackend(settings, tmp_path / "data")


class _Approvers:
    def __init__(self, *names: str) -> None:
        self.names = names

    def allows(self, user: str, groups: frozenset[str]) -> bool:
        return user in self.names


def test_approvals_rules(backend: StateBackend) -> None:
    now = [1000.0]
    store = backend.approvals(clock=lambda: now[0])
    req = store.create(user="alice", target="web1", session="s1", command="rm -r x",
                       rule="r", reason="why", timeout=60)
    assert (req.status, req.user, req.command, req.kind) == ("pending", "alice", "rm -r x",
                                                            "command")
    who = _Approvers("bob")
    with pytest.raises(ApprovalError, match="own request"):
        store.decide(req.id, approver="alice", approver_groups=frozenset(),
                     approvers=_Approvers("alice"), approve=True)
    with pytest.raises(ApprovalError, match="not an approver"):
        store.decide(req.id, approver="carol", approver_groups=frozenset(), approvers=who,
                     approve=True)
    done = store.decide(req.id, approver="bob", approver_groups=frozenset(), approvers=who,
                        approve=True, reason="ok")
    assert (done.status, done.decided_by, done.decision_reason) == ("approved", "bob", "ok")
    assert asyncio.run(store.wait(req.id)).status == "approved"
    with pytest.raises(ApprovalError, match="already approved"):
        store.decide(req.id, approver="bob", approver_groups=frozenset(), approvers=who,
                     approve=False)
    with pytest.raises(ApprovalError, match="no approval request #999"):
        store.decide(999, approver="bob", approver_groups=frozenset(), approvers=who,
                     approve=False)
    late = store.create(user="alice", target="web1", session="s1", command="x", rule=None,
                        reason="", timeout=60)
    now[0] += 61
    assert asyncio.run(store.wait(late.id)).status == "expired"
    with pytest.raises(ApprovalError, match="no approval request #999"):
        asyncio.run(store.wait(999))
    gone = store.create(user="alice", target="web1", session="s1", command="y", rule=None,
                        reason="", timeout=60)
    store.cancel(gone.id, "the user disconnected")
    cancelled = store.get(gone.id)
    assert cancelled is not None and cancelled.status == "cancelled"
    assert [r.id for r in store.list(status=None)] == [gone.id, late.id, req.id]
    assert store.list() == []
    pending = store.create(user="dave", target="web1", session="s2", command="z", rule=None,
                           reason="", timeout=600)
    assert store.expire_all_pending() == 1
    expired = store.get(pending.id)
    assert expired is not None and expired.status == "expired"
    store.close()


def test_grants_and_revocation(backend: StateBackend) -> None:
    now = [5000.0]
    store = backend.approvals(clock=lambda: now[0])
    access = store.create_access(user="bob", target="db1", seconds=3600, reason="incident",
                                 timeout=60)
    assert (access.kind, access.grant_seconds) == ("access", 3600)
    assert store.active_grant("bob", "db1") is None
    store.decide(access.id, approver="carol", approver_groups=frozenset(),
                 approvers=_Approvers("carol"), approve=True)
    grant = store.active_grant("bob", "db1")
    assert grant is not None and grant.id == access.id
    assert store.active_grant("bob", "web1") is None
    latest = store.latest_grant("bob", "db1")
    assert latest is not None and latest.status == "approved"
    revoked = store.revoke_grant(access.id, by="carol", reason="done")
    latest = store.latest_grant("bob", "db1")
    assert latest is not None and latest.status == "revoked"
    assert revoked.status == "revoked" and revoked.decision_reason == "revoked by carol: done"
    assert store.active_grant("bob", "db1") is None
    with pytest.raises(ApprovalError, match="is revoked, not approved"):
        store.revoke_grant(access.id, by="carol", reason="")
    with pytest.raises(ApprovalError, match="no access grant #12345"):
        store.revoke_grant(12345, by="carol", reason="")
    again = store.create_access(user="bob", target="db1", seconds=60, reason="", timeout=60)
    store.decide(again.id, approver="carol", approver_groups=frozenset(),
                 approvers=_Approvers("carol"), approve=True)
    assert store.active_grant("bob", "db1") is not None
    now[0] += 61
    assert store.active_grant("bob", "db1") is None
    store.close()


def test_kill_requests(backend: StateBackend) -> None:
    store = backend.approvals(clock=lambda: 42.0)
    store.request_kill("s9", by="carol", reason="stop")
    assert store.pending_kills() == [("s9", "carol", "stop")]
    assert store.kill_status("s9") is None
    store.kill_done("s9")
    assert store.pending_kills() == [] and store.kill_status("s9") == 42.0
    assert store.kill_status("nope") is None
    store.request_kill("s9", by="dave", reason="again")  # a new request replaces the old
    assert store.pending_kills() == [("s9", "dave", "again")]
    store.close()


def test_a_decision_reaches_a_waiter_of_another_store(backend: StateBackend) -> None:
    """Two handles (two nodes) on one backend: the waiter sees the other's decision
    within a second."""
    waiter = backend.approvals()
    approver = backend.approvals()
    req = waiter.create(user="alice", target="web1", session="s1", command="ls", rule=None,
                        reason="", timeout=60)

    async def main() -> float:
        task = asyncio.ensure_future(waiter.wait(req.id))
        await asyncio.sleep(0.3)
        assert not task.done()
        t0 = time.monotonic()
        approver.decide(req.id, approver="bob", approver_groups=frozenset(),
                        approvers=_Approvers("bob"), approve=True)
        result = await asyncio.wait_for(task, 2.0)
        assert result.status == "approved" and result.decided_by == "bob"
        return time.monotonic() - t0

    assert asyncio.run(main()) < 1.0
    waiter.close()
    approver.close()


def test_tokens_work_once(backend: StateBackend) -> None:
    store = backend.tokens()
    token = store.issue_token("alice", "win1", 60)
    grant = store.consume_token(token)
    assert grant is not None and (grant.user, grant.target) == ("alice", "win1")
    assert store.consume_token(token) is None
    assert store.consume_token("bst1.forged") is None
    pin = store.issue_pin("alice", 60)
    assert not store.consume_pin("bob", pin)
    assert store.consume_pin("alice", pin)
    assert not store.consume_pin("alice", pin)
    sso = store.issue_sso_pin("carol", ["ops", "dba"], 60)
    assert store.consume_sso_pin("carol", sso) == frozenset({"ops", "dba"})
    assert store.consume_sso_pin("carol", sso) is None
    expired = store.issue_token("alice", "win1", -1)
    assert store.consume_token(expired) is None
    store.close()


def test_a_token_consumed_in_parallel_succeeds_once(backend: StateBackend) -> None:
    issuer = backend.tokens()
    token = issuer.issue_token("alice", "win1", 60)
    stores = [backend.tokens() for _ in range(4)]
    results: list[object] = []
    barrier = threading.Barrier(len(stores))

    def consume(store: object) -> None:
        barrier.wait()
        results.append(store.consume_token(token))  # type: ignore[attr-defined]

    threads = [threading.Thread(target=consume, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1
    for s in [issuer, *stores]:
        s.close()


def test_bindings(backend: StateBackend) -> None:
    store = backend.bindings()
    b = store.bind(b"key-blob", "alice", frozenset({"ops"}), "sub-1", "https://idp", 3600)
    found = store.lookup(b"key-blob", "alice")
    assert found is not None and found.groups == frozenset({"ops"}) and found == b
    assert store.lookup(b"key-blob", "bob") is None
    assert store.lookup(b"other", "alice") is None
    store.bind(b"key-blob", "alice", frozenset({"dba"}), "sub-1", "https://idp", 3600)
    again = store.lookup(b"key-blob", "alice")
    assert again is not None and again.groups == frozenset({"dba"})  # replaced
    store.bind(b"k2", "bob", frozenset(), "sub-2", "https://idp", 3600)
    assert [x.user for x in store.list()] == ["alice", "bob"]
    assert [x.user for x in store.list("bob")] == ["bob"]
    assert store.revoke("alice") == 1
    assert store.lookup(b"key-blob", "alice") is None
    store.bind(b"k3", "carol", frozenset(), "s", "i", -1)  # already expired
    assert store.lookup(b"k3", "carol") is None
    store.close()


def _close(*stores: object) -> None:
    for s in stores:
        close = getattr(s, "close", None)
        if close is not None:
            close()


def test_rate_limits_are_counted_across_handles(limits: StateBackend) -> None:
    """Two handles are two processes (or two nodes): with a shared database, or SSH
    workers sharing a file, they count together; in memory each counts its own."""
    one = limits.failures(3, 60, source_limit=4)
    two = limits.failures(3, 60, source_limit=4)
    one.record_failure("10.0.0.1", "alice")
    one.record_failure("10.0.0.1", "alice")
    assert not one.blocked("10.0.0.1", "alice")
    two.record_failure("10.0.0.1", "alice")
    # the third failure of the pair, one of them on the other handle
    together = limits.shared or limits.workers > 1
    assert two.blocked("10.0.0.1", "alice") is together
    assert one.blocked("10.0.0.1", "alice") is together
    # never per user name alone: alice from elsewhere, bob from the same source are free
    assert not one.blocked("10.0.0.2", "alice") and not two.blocked("10.0.0.2", "alice")
    assert not one.blocked("10.0.0.1", "bob") and not one.blocked("10.0.0.1")
    _close(one, two)


def test_rate_limit_rules(limits: StateBackend) -> None:
    """The rules of state.ratelimit on both backends: a source bucket (every failure from
    the address, whatever user, key offers too) and a (source, user) bucket; a success
    resets only its pair; IPv6 clients count by their /64."""
    lim = limits.failures(2, 60, source_limit=5)
    lim.record_failure("10.0.0.1", "alice")
    lim.record_failure("10.0.0.1", "alice")
    assert lim.blocked("10.0.0.1", "alice")
    assert not lim.blocked("10.0.0.1", "bob") and not lim.blocked("10.0.0.1")
    assert not lim.blocked("10.0.0.9", "alice")
    lim.reset("10.0.0.1", "alice")  # alice logged in: her pair is forgotten...
    assert not lim.blocked("10.0.0.1", "alice")
    lim.record_failure("10.0.0.1")  # ...a key offer that matched nothing: the source only
    lim.record_failure("10.0.0.1", "carol")
    assert not lim.blocked("10.0.0.1", "dave")
    lim.record_failure("10.0.0.1", "dave")  # the source's fifth failure (reset kept them)
    for user in ("alice", "bob", None):
        assert lim.blocked("10.0.0.1", user)
    assert not lim.blocked("10.0.0.2", "alice")
    # a port, brackets and IPv4-mapped IPv6 name the same source; IPv6 by its /64
    assert lim.blocked("10.0.0.1:5000") and lim.blocked("[::ffff:10.0.0.1]:22")
    lim.record_failure("2001:db8:1:2::10", "erin")
    lim.record_failure("[2001:db8:1:2::99]:22", "erin")
    assert lim.blocked("2001:db8:1:2:ffff::1", "erin")
    assert not lim.blocked("2001:db8:1:3::10", "erin")
    _close(lim)


def test_rate_limit_odd_names_and_sources(limits: StateBackend) -> None:
    """Whatever a client sends as a user name (a NUL, a very long name) is counted and
    reset without an error; the names themselves are not kept in the database."""
    lim = limits.failures(1, 60, source_limit=10)
    odd = ["a\x00b", "x" * 5000, "\u00e9l\u00e8ve", ""]
    for name in odd:
        lim.record_failure("192.0.2.7", name)
        assert lim.blocked("192.0.2.7", name)
    assert not lim.blocked("192.0.2.7", "a")
    for name in odd:
        lim.reset("192.0.2.7", name)
        assert not lim.blocked("192.0.2.7", name)
    if limits.shared:
        from state.pg.ratelimit import PgFailureLimiter

        assert isinstance(lim, PgFailureLimiter)
        keys = [str(k) for (k,) in lim.db.query("SELECT DISTINCT key FROM login_failures")]
        assert keys == ["src:192.0.2.7"]  # pairs reset; no user name stored anywhere
    elif limits.workers > 1:
        from state.failures import SharedFailureLimiter

        assert isinstance(lim, SharedFailureLimiter)
        rows = lim._db.execute("SELECT DISTINCT key FROM failures").fetchall()
        assert [str(k) for (k,) in rows] == ["src:192.0.2.7"]
    _close(lim)


def test_rate_limits_expire_with_the_window(limits: StateBackend) -> None:
    lim = limits.failures(1, 0.5, source_limit=1)
    lim.record_failure("10.9.9.9", "alice")
    assert lim.blocked("10.9.9.9", "alice") and lim.blocked("10.9.9.9")
    time.sleep(0.7)
    assert not lim.blocked("10.9.9.9", "alice") and not lim.blocked("10.9.9.9")
    _close(lim)


def _flush_usage(store: object) -> None:
    flush = getattr(store, "flush", None)
    if flush is not None:
        assert flush(10.0)


def test_recording_usage_per_user_per_day(backend: StateBackend) -> None:
    one = backend.usage()
    assert one.used("alice", "2026-01-10") == 0
    assert one.add("alice", "2026-01-10", 1000) == 1000
    assert one.add("alice", "2026-01-10", 500) == 1500
    assert one.add("alice", "2026-01-10", -7) == 1500  # nothing negative is counted
    assert one.add("bob", "2026-01-10", 10) == 10
    assert one.add("alice", "2026-01-11", 3) == 3
    assert one.used("alice", "2026-01-10") == 1500
    _flush_usage(one)
    # another process (or node) on the same backend sees and adds to the same totals
    two = backend.usage()
    assert two.used("alice", "2026-01-10") == 1500
    assert two.add("alice", "2026-01-10", 100) == 1600
    _flush_usage(two)
    assert one.used("alice", "2026-01-10") == 1600
    assert one.add("alice", "2026-01-10", 1) == 1601
    assert one.used("bob", "2026-01-10") == 10 and one.used("carol", "2026-01-10") == 0
    # a new day drops rows older than KEEP_DAYS
    one.add("alice", "2026-01-30", 1)
    _flush_usage(one)
    assert two.used("alice", "2026-01-10") == 0 and two.used("alice", "2026-01-30") == 1
    _close(one, two)


def test_recording_usage_counts_concurrent_additions(backend: StateBackend) -> None:
    """Several processes adding at once lose nothing."""
    stores = [backend.usage() for _ in range(3)]

    def add(store: object) -> None:
        for _ in range(50):
            store.add("alice", "2026-02-01", 7)  # type: ignore[attr-defined]

    threads = [threading.Thread(target=add, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        _flush_usage(s)
    assert all(s.used("alice", "2026-02-01") == 3 * 50 * 7 for s in stores)
    _close(*stores)


def test_reviews_chain_and_signatures(backend: StateBackend, tmp_path: Path) -> None:
    key = tmp_path / "rec.key"
    generate(key)
    signer = load_signer(key)
    store = backend.reviews(signer=signer, trusted=[signer.public_raw])
    a = store.add("sess-1", "note", "carol", text="look here", at=3.5)
    b = store.add("sess-1", "flag", "dave", text="odd", at=7.0)
    store.add("sess-1", "unflag", "carol", ref=b.digest)
    store.add("sess-2", "reviewed", "carol")
    other = backend.reviews(signer=signer, trusted=[signer.public_raw])  # a second node
    records = other.records("sess-1")
    assert [r.kind for r in records] == ["note", "flag", "unflag"]
    assert all(r.status == "signed" for r in records)
    assert records[1].prev == a.digest and records[2].prev == b.digest
    summaries = other.summaries(["sess-1", "sess-2", "none"])
    assert summaries["sess-1"].flags == 0 and summaries["sess-1"].notes == 1
    assert summaries["sess-2"].reviewed_by == ("carol",)
    assert "none" not in summaries
    store.close()
    other.close()


def _header(sid: str, user: str, target: str, start: float) -> dict[str, object]:
    return {"session_id": sid, "user": user, "target": target, "protocol": "ssh",
            "kind": "shell", "client_addr": "10.1.2.3:5000", "start_time": start,
            "command": None}


def _ids(rows: list[SessionRow]) -> list[str]:
    return sorted(r.id for r in rows)


def _fill(index: SessionIndex) -> None:
    index.session_opened(_header("s-alice-1", "alice", "web1", 1000.0), "a/s-alice-1.bstl")
    index.session_closed("s-alice-1", end=1010.0, exit_status=0, exit_signal=None,
                         status="ended", commands=[(1.0, "ls -la", "interactive"),
                                                   (0.5, "cd /srv", "interactive")],
                         policy_events=1, signature="signed", output_bytes=99)
    index.set_screen_lines("s-alice-1", [(1.0, "total 0"), (1.5, "SECRET-report.txt")])
    index.session_opened(_header("s-bob-1", "bob", "db1", 2000.0), "b/s-bob-1.bstl")
    index.session_closed("s-bob-1", end=None, exit_status=None, exit_signal="KILL",
                         status="truncated", commands=[(2.0, "psql", "exec")],
                         policy_events=0, signature="unsigned", output_bytes=5)
    index.set_screen_lines("s-bob-1", [(2.0, "postgres=# 100%_done \\ ok")])
    index.session_opened(_header("s-alice-2", "alice", "db1", 3000.0), "a/s-alice-2.bstl")
    index.session_closed("s-alice-2", end=3002.0, exit_status=1, exit_signal=None,
                         status="ended", commands=[(0.1, "rm -rf /tmp/x", "interactive")],
                         policy_events=0, signature="signed", output_bytes=0)
    index.session_opened(_header("s-live", "carol", "web1", 4000.0), "c/s-live.bstl")


def _open_index(backend: StateBackend, tmp_path: Path) -> SessionIndex:
    from recorder.index import open_index
    from recorder.settings import RecorderSettings

    settings = RecorderSettings(data_dir=tmp_path / "data",
                                index_opener=backend.index_opener())
    return open_index(settings)


def test_index_queries_give_the_same_results(backend: StateBackend, tmp_path: Path) -> None:
    index = _open_index(backend, tmp_path)
    _fill(index)
    assert [r.id for r in index.list_sessions()] == ["s-live", "s-alice-2", "s-bob-1",
                                                      "s-alice-1"]  # newest first
    assert _ids(index.list_sessions(user="alice")) == ["s-alice-1", "s-alice-2"]
    assert _ids(index.list_sessions(target="db1")) == ["s-alice-2", "s-bob-1"]
    assert _ids(index.list_sessions(since=2000.0, until=3500.0)) == ["s-alice-2", "s-bob-1"]
    assert _ids(index.list_sessions(status="live")) == ["s-live"]
    assert _ids(index.list_sessions(text="rm -rf")) == ["s-alice-2"]  # a command
    assert _ids(index.list_sessions(text="secret-REPORT")) == ["s-alice-1"]  # screen, any case
    assert _ids(index.list_sessions(text="ps")) == ["s-bob-1"]  # short text
    assert _ids(index.list_sessions(text="%")) == ["s-bob-1"]  # no wildcard
    assert _ids(index.list_sessions(text="_")) == ["s-bob-1"]
    assert _ids(index.list_sessions(text="\\ ok")) == ["s-bob-1"]
    assert _ids(index.list_sessions(text='quote"d')) == []
    assert _ids(index.list_sessions(user="alice", text="psql")) == []
    assert len(index.list_sessions(limit=2)) == 2
    row = index.get("s-alice-1")
    assert row is not None
    assert (row.user, row.target, row.status, row.commands, row.exit_status, row.signature,
            row.output_bytes, row.screen_indexed, row.client, row.end, row.name) == (
        "alice", "web1", "ended", 2, 0, "signed", 99, True, "10.1.2.3:5000", 1010.0,
        "a/s-alice-1.bstl")
    bob = index.get("s-bob-1")
    assert bob is not None and (bob.exit_signal, bob.end, bob.status) == ("KILL", None,
                                                                            "truncated")
    assert index.get("nope") is None
    assert [r.id for r in index.find("s-alice")] == ["s-alice-1", "s-alice-2"] or \
        sorted(r.id for r in index.find("s-alice")) == ["s-alice-1", "s-alice-2"]
    assert index.find("s_") == []  # '_' is not a wildcard
    assert index.commands("s-alice-1") == [(0.5, "cd /srv", "interactive"),
                                           (1.0, "ls -la", "interactive")]
    assert index.matches("s-alice-1", "report") == [(1.5, "screen", "SECRET-report.txt")]
    assert index.matches("s-alice-1", "l") == [(1.0, "command", "ls -la"),
                                               (1.0, "screen", "total 0")] or \
        sorted(index.matches("s-alice-1", "l")) == [(1.0, "command", "ls -la"),
                                                    (1.0, "screen", "total 0")]
    assert index.screen_lines("s-alice-1") == [(1.0, "total 0"), (1.5, "SECRET-report.txt")]
    assert [r.id for r in index.own_live()] == ["s-live"]
    # text read off an RDP screen (OCR): searched like screen lines, replaced as a whole,
    # kept apart from the terminal screen lines
    index.set_ocr_lines("s-bob-1", [(2.0, "Quarterly INVOICE draft"), (3.5, "Recycle Bin")])
    assert _ids(index.list_sessions(text="invoice")) == ["s-bob-1"]
    assert index.matches("s-bob-1", "invoice") == [(2.0, "ocr", "Quarterly INVOICE draft")]
    index.set_ocr_lines("s-bob-1", [(4.0, "Payroll.xlsx")])
    assert _ids(index.list_sessions(text="invoice")) == []
    assert index.matches("s-bob-1", "payroll") == [(4.0, "ocr", "Payroll.xlsx")]
    index.set_screen_lines("s-bob-1", [(1.0, "prompt")])  # the terminal pass keeps OCR
    assert _ids(index.list_sessions(text="payroll")) == ["s-bob-1"]
    assert index.screen_lines("s-bob-1") == [(1.0, "prompt")]
    index.set_status("s-live", "failed")
    live = index.get("s-live")
    assert live is not None and live.status == "failed"
    assert [r.id for r in index.all_sessions()] == ["s-alice-1", "s-bob-1", "s-alice-2",
                                                    "s-live"]
    index.clear()
    assert index.list_sessions() == []
    index.close()


def test_text_with_a_nul_is_kept(backend: StateBackend, tmp_path: Path) -> None:
    """A client can put a NUL in an exec command or a reason: the approval request and the
    session's index row are still written (PostgreSQL stores U+FFFD in its place)."""
    nul = "echo a\x00b"
    store = backend.approvals()
    req = store.create(user="alice", target="web1", session="s-nul", command=nul,
                       rule=None, reason="why\x00", timeout=60)
    got = store.get(req.id)
    assert got is not None and got.command in (nul, "echo a\ufffdb")
    store.close()
    index = _open_index(backend, tmp_path)
    header = {**_header("s-nul", "alice", "web1", 5000.0), "command": nul}
    index.session_opened(header, "a/s-nul.bstl")
    index.session_closed("s-nul", end=5001.0, exit_status=0, exit_signal=None,
                         status="ended", commands=[(0.1, nul, "exec")], policy_events=0,
                         signature=None, output_bytes=1)
    row = index.get("s-nul")
    assert row is not None and row.status == "ended" and row.commands == 1
    assert _ids(index.list_sessions(text="echo a")) == ["s-nul"]
    index.close()


def test_registry_tracks_live_sessions(backend: StateBackend) -> None:
    registry = backend.registry()
    registry.started("s1", "alice", "web1")
    registry.started("s2", "bob", "db1")
    registry.ended("s2")
    flush = getattr(getattr(registry, "writer", None), "flush", None)
    if flush is not None:
        flush(5.0)
    assert registry.where("s1") == "node-a"
    assert registry.where("s2") is None
    assert [(e.session, e.node, e.user, e.target) for e in registry.entries()] == [
        ("s1", "node-a", "alice", "web1")]
    registry.close()


def test_leases_lost_nodes_and_a_database_outage(pg_settings: StateSettings,
                                                 tmp_path: Path) -> None:
    """A node silent past its lease is taken over by one survivor (its live sessions
    ended, its pending requests expired); a node that was itself out of touch (started,
    or the database was away) waits a whole lease before judging the others."""
    import dataclasses

    from state.pg.registry import PgRegistry

    def node(name: str) -> StateBackend:
        return StateBackend(dataclasses.replace(pg_settings, node=name), tmp_path / name)

    a, b = node("node-a"), node("node-b")
    reg_a, reg_b = a.registry(), b.registry()
    assert isinstance(reg_a, PgRegistry) and isinstance(reg_b, PgRegistry)
    index_b = b.index_opener()()  # type: ignore[misc]
    index_b.session_opened(_header("s-on-b", "bob", "db1", 100.0), "b/s-on-b.bstl")
    reg_b.started("s-on-b", "bob", "db1")
    approvals_b = b.approvals()
    pending = approvals_b.create(user="bob", target="db1", session="s-on-b", command="x",
                                 rule=None, reason="", timeout=600)
    index_b.flush(5)  # type: ignore[attr-defined]
    reg_b.writer.flush(5)
    assert reg_a.beat() == [] and reg_b.beat() == []  # both just started: nobody judged
    reg_a.db.execute("UPDATE nodes SET heartbeat = heartbeat - 60 WHERE node = 'node-b'")
    assert reg_a.beat() == []  # node a itself has not been in touch for a lease yet
    reg_a._alive_since = time.monotonic() - 60  # ...now it has
    lost = reg_a.beat()
    assert lost == [("node-b", [("s-on-b", "bob", "db1")])]
    row = index_b.get("s-on-b")
    assert row is not None and row.status == "ended" and row.end is not None
    request = approvals_b.get(pending.id)
    assert request is not None and request.status == "expired"
    assert request.decision_reason == "gateway node-b lost"
    assert reg_a.where("s-on-b") is None and [n.node for n in reg_a.nodes()] == ["node-a"]
    assert reg_a.beat() == []  # taken over once
    assert [r.id for r in index_b.own_live()] == ["s-on-b"]  # node b re-reads it later
    for closing in (reg_a, reg_b, index_b, approvals_b):
        closing.close()


def test_legal_holds(backend: StateBackend) -> None:
    """A hold set through one handle is seen by another (another node, or prune)."""
    store, other = backend.holds(), backend.holds()
    try:
        assert store.list() == [] and store.held() == set()
        store.set("s1", by="carol", reason="case 42")
        store.set("s2", by="carol", reason="case 43")
        store.set("s1", by="dave", reason="case 42, again")  # replaces who and why
        assert other.held() == {"s1", "s2"}
        assert {(h.session, h.by, h.reason) for h in other.list()} == {
            ("s1", "dave", "case 42, again"), ("s2", "carol", "case 43")}
        released = other.release("s2")
        assert released is not None and released.reason == "case 43"
        assert other.release("s2") is None
        assert store.held() == {"s1"}
    finally:
        store.close()
        other.close()


def test_a_reindexed_row_is_never_seen_half_written(backend: StateBackend,
                                                    tmp_path: Path) -> None:
    """Re-reading a finished recording rewrites its whole row; a reader (``bastille
    list``, a test waiting for the signature) must see the old row or the new one, never
    the state between (status ended, no signature, no commands). CI caught that gap once."""
    index = _open_index(backend, tmp_path)
    header = _header("s-rw", "alice", "web1", 1000.0)
    closed = {"end": 1010.0, "exit_status": 0, "exit_signal": None, "status": "ended",
              "commands": [(1.0, "whoami", "interactive")], "policy_events": 1,
              "signature": "signed", "output_bytes": 6}
    index.session_indexed(header, "a/s-rw.bstl", **closed)  # type: ignore[arg-type]
    flush = getattr(index, "flush", None)
    if flush is not None:
        assert flush(10)
    stop = threading.Event()
    half: list[SessionRow] = []

    def read() -> None:
        while not stop.is_set():
            row = index.get("s-rw")
            if row is None or row.signature is None or row.commands != 1:
                half.append(row)  # type: ignore[arg-type]

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(300):
            index.session_indexed(header, "a/s-rw.bstl", **closed)  # type: ignore[arg-type]
        if flush is not None:
            assert flush(20)
    finally:
        stop.set()
        reader.join()
    assert half == []
    index.close()
