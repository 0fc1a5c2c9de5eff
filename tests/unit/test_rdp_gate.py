"""The bastion side of RDP connections (gateway/rdp/gate.py), without pyrdp: routing,
login with password or one-time PIN, credential injection, recording, audit."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gateway.audit import AuditLog
from gateway.auth.passwords import hash_password
from gateway.config import Config, load_config
from gateway.rdp.gate import RdpGate, Refused
from gateway.rdp.routing import RouteRequest
from gateway.ssh.keys import generate_host_key
from recorder import events as ev
from recorder.reader import Recording
from recorder.service import Recorder
from state.approvals import ApprovalStore
from state.paths import DataDir
from state.tokens import TokenStore

ALICE_PW = "alice-Pw-secret-1"
TARGET_PW = "Target-Pw-secret-2"


def _config(tmp_path: Path) -> Config:
    generate_host_key(tmp_path / "hk", "test")
    (tmp_path / "pw").write_text(TARGET_PW + "\n")
    (tmp_path / "b.toml").write_text(f"""
[gateway]
listen = "127.0.0.1:2200"
host_keys = ["hk"]
max_auth_failures = 3

[rdp]
listen = "127.0.0.1:3390"

[users.alice]
password_hash = "{hash_password(ALICE_PW)}"
groups = ["ops"]

[users.bob]
password_hash = "{hash_password('bob-pw')}"

[targets.win1]
protocol = "rdp"
host = "10.0.0.9"
user = "Administrator"
rdp_domain = "CORP"
password_file = "pw"
rdp_cert_sha256 = ["{'ab' * 32}"]
groups = ["ops"]
""")
    return load_config(tmp_path / "b.toml")


def _audit(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "data" / "audit.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


async def _gate(tmp_path: Path, *, oidc: bool = False) -> tuple[RdpGate, Recorder]:
    config = _config(tmp_path)
    if oidc:
        text = (tmp_path / "b.toml").read_text() + (
            '\n[oidc]\nissuer = "https://idp.example"\nclient_id = "bastille"\n')
        (tmp_path / "b.toml").write_text(text)
        config = load_config(tmp_path / "b.toml")
        assert config.oidc is not None
    recorder = Recorder(config.recording)
    await recorder.start()
    data = DataDir(config.data_dir)
    gate = RdpGate(config, recorder, AuditLog(config.audit.file), TokenStore(data.rdp_tokens),
                   ApprovalStore(data.approvals))
    return gate, recorder


def test_login_injects_target_credentials_and_records(tmp_path: Path) -> None:
    async def main() -> None:
        gate, recorder = await _gate(tmp_path)
        conn = gate.route(RouteRequest(user="alice", target="win1"), "10.1.1.1:5000", None)
        creds = await conn.login("alice#win1", ALICE_PW, "")
        assert (creds.user, creds.password, creds.domain) == \
            ("Administrator", TARGET_PW, "CORP")
        assert TARGET_PW not in repr(creds)
        conn.on_replay(b"\x01\x02replay")
        for code in (0x12, 0x2E, 0x23, 0x18):  # e c h o
            conn.keys.scancode(code, False)
        conn.keys.scancode(0x1C, False)
        conn.on_clipboard("upload", "copied text")
        await conn.closed()
        await recorder.close()

    asyncio.run(main())
    records = _audit(tmp_path)
    kinds = [r["kind"] for r in records]
    assert kinds[:2] == ["login", "session.start"] and "session.end" in kinds
    text = (tmp_path / "data" / "audit.jsonl").read_text()
    assert ALICE_PW not in text and TARGET_PW not in text
    rec_path = next((tmp_path / "data" / "recordings").rglob("*.bstl"))
    rec = Recording.from_bytes(rec_path.read_bytes())
    events = list(rec.events())
    assert [e.data for e in events if e.type == ev.RDP] == [b"\x01\x02replay"]
    commands = [e.fields() for e in events if e.type == ev.COMMAND]
    assert {"text": "echo", "source": "rdp-keys"} in commands
    assert {"text": "copied text", "source": "rdp-clipboard-upload"} in commands
    blob = b"".join(e.data for e in events)
    assert ALICE_PW.encode() not in blob and TARGET_PW.encode() not in blob
    from recorder.index import Index

    index = Index(tmp_path / "data" / "index.sqlite3")
    assert [r.protocol for r in index.list_sessions(text="echo")] == ["rdp"]
    index.close()


def test_refusals(tmp_path: Path) -> None:
    async def main() -> None:
        gate, recorder = await _gate(tmp_path)
        src = "10.1.1.1:5000"
        with pytest.raises(Refused, match="unknown RDP target"):
            gate.route(RouteRequest(user="alice", target="nosuch"), src, None)
        with pytest.raises(Refused, match="no target"):
            gate.route(RouteRequest(user="alice"), src, None)
        with pytest.raises(Refused, match="routing token"):
            gate.route(RouteRequest(token="bst1.AAAAAAAAAAAAAAAAAAAA"), src, None)
        conn = gate.route(RouteRequest(user="alice", target="win1"), src, None)
        with pytest.raises(Refused, match="wrong user name or password"):
            await conn.login("alice", "wrong", "")
        conn = gate.route(RouteRequest(user="alice", target="win1"), src, None)
        with pytest.raises(Refused, match="differs from the routed user"):
            await conn.login("bob", "bob-pw", "")
        conn = gate.route(RouteRequest(user="bob", target="win1"), src, None)
        with pytest.raises(Refused, match="not allowed"):
            await conn.login("bob", "bob-pw", "")
        conn = gate.route(RouteRequest(user="nobody", target="win1"), src, None)
        with pytest.raises(Refused, match="wrong user name or password"):
            await conn.login("nobody", "x", "")
        await recorder.close()

    asyncio.run(main())
    records = _audit(tmp_path)
    assert not [r for r in records if r["kind"] == "session.start"]
    assert len([r for r in records if r["kind"] == "login" and r["outcome"] == "failed"]) == 2
    assert "wrong" not in (tmp_path / "data" / "audit.jsonl").read_text().replace(
        "wrong user", "")


def test_token_route_and_pin_login(tmp_path: Path) -> None:
    async def main() -> None:
        gate, recorder = await _gate(tmp_path)
        token = gate.tokens.issue_token("alice", "win1", 60)
        pin = gate.tokens.issue_pin("alice", 60)
        conn = gate.route(RouteRequest(token=token), "10.1.1.1:5000", None)
        assert (conn.routed_user, conn.target.name, conn.via) == ("alice", "win1", "token")
        creds = await conn.login("", pin, "")  # no user name typed: the token's user
        assert creds.user == "Administrator"
        await conn.closed()
        with pytest.raises(Refused):
            gate.route(RouteRequest(token=token), "10.1.1.1:5001", None)
        conn = gate.route(RouteRequest(), "10.1.1.1:5002", "win1")  # per-target port
        with pytest.raises(Refused):
            await conn.login("alice", pin, "")  # the PIN was used up
        await recorder.close()

    asyncio.run(main())
    logins = [r for r in _audit(tmp_path) if r["kind"] == "login"]
    assert logins[0]["detail"] == {"protocol": "rdp", "method": "pin", "route": "token"}


def test_rate_limit(tmp_path: Path) -> None:
    async def main() -> None:
        gate, recorder = await _gate(tmp_path)
        for _ in range(3):
            conn = gate.route(RouteRequest(user="alice", target="win1"), "10.9.9.9:1", None)
            with pytest.raises(Refused):
                await conn.login("alice", "bad", "")
        with pytest.raises(Refused, match="too many"):
            gate.route(RouteRequest(user="alice", target="win1"), "10.9.9.9:1", None)
        await recorder.close()

    asyncio.run(main())


def test_client_gone_during_login_leaves_no_live_recording(tmp_path: Path) -> None:
    async def main() -> None:
        gate, recorder = await _gate(tmp_path)
        conn = gate.route(RouteRequest(user="alice", target="win1"), "10.1.1.1:5000", None)
        login = asyncio.ensure_future(conn.login("alice", ALICE_PW, ""))
        await asyncio.sleep(0)  # the password check runs in a thread
        await conn.closed("client disconnected")  # the client leaves meanwhile
        with pytest.raises(Refused, match="went away"):
            await login
        assert not gate.connections
        await recorder.close()

    asyncio.run(main())
    from recorder.index import Index

    index = Index(tmp_path / "data" / "index.sqlite3")
    assert [r.status for r in index.list_sessions()] in ([], ["ended"])
    index.close()
    kinds = [r["kind"] for r in _audit(tmp_path)]
    assert kinds.count("session.start") == kinds.count("session.end")


def test_sso_user_logs_in_with_a_one_time_pin_carrying_idp_groups(tmp_path: Path) -> None:
    """carol is not in [users]: she logged in over SSH by single sign-on, ran
    `ssh carol@bastion rdp`, and types the PIN it printed as her RDP password."""
    async def main() -> None:
        gate, recorder = await _gate(tmp_path, oidc=True)
        pin = gate.tokens.issue_sso_pin("carol", {"ops"}, 60)
        conn = gate.route(RouteRequest(user="carol", target="win1"), "10.1.1.1:5000", None)
        creds = await conn.login("carol#win1", pin, "")
        assert (creds.user, creds.domain) == ("Administrator", "CORP")
        assert conn.user == "carol"
        await conn.closed()
        # used up; and a PIN works for the user it was issued to only
        for user, value in (("carol", pin), ("dave", gate.tokens.issue_sso_pin("carol", {"ops"},
                                                                             60))):
            conn = gate.route(RouteRequest(user=user, target="win1"), "10.1.1.2:5000", None)
            with pytest.raises(Refused):
                await conn.login(user, value, "")
        # the IdP groups decide: without "ops", win1 is not allowed
        pin = gate.tokens.issue_sso_pin("erin", {"dev"}, 60)
        conn = gate.route(RouteRequest(user="erin", target="win1"), "10.1.1.3:5000", None)
        with pytest.raises(Refused, match="not allowed"):
            await conn.login("erin", pin, "")
        # an SSO PIN is not a bastion password or an ordinary PIN of a configured user
        pin = gate.tokens.issue_sso_pin("alice", {"ops"}, 60)
        conn = gate.route(RouteRequest(user="alice", target="win1"), "10.1.1.4:5000", None)
        with pytest.raises(Refused):
            await conn.login("alice", pin, "")
        await recorder.close()

    asyncio.run(main())
    logins = [r for r in _audit(tmp_path) if r["kind"] == "login"]
    assert logins[0]["outcome"] == "ok" and logins[0]["user"] == "carol"
    assert logins[0]["detail"]["method"] == "sso-pin"
    text = (tmp_path / "data" / "audit.jsonl").read_text()
    assert "Target-Pw" not in text


def test_sso_pin_refused_without_oidc(tmp_path: Path) -> None:
    async def main() -> None:
        gate, recorder = await _gate(tmp_path)
        pin = gate.tokens.issue_sso_pin("carol", {"ops"}, 60)
        conn = gate.route(RouteRequest(user="carol", target="win1"), "10.1.1.1:5000", None)
        with pytest.raises(Refused):
            await conn.login("carol", pin, "")
        await recorder.close()

    asyncio.run(main())


def test_token_store_from_before_sso_pins_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE tokens (digest TEXT PRIMARY KEY, kind TEXT NOT NULL, user TEXT "
               "NOT NULL, target TEXT NOT NULL, created REAL NOT NULL, expires REAL NOT NULL, "
               "used REAL)")
    db.commit()
    db.close()
    store = TokenStore(path)
    try:
        pin = store.issue_sso_pin("carol", ["ops", "dba"], 60)
        assert store.consume_sso_pin("carol", pin) == frozenset({"ops", "dba"})
        assert store.consume_sso_pin("carol", pin) is None
        assert store.consume_pin("carol", store.issue_pin("carol", 60))
    finally:
        store.close()


def test_just_in_time_grant_lets_a_user_in(tmp_path: Path) -> None:
    """bob's groups do not allow win1; an approved access request does (the one check)."""
    from gateway.core.access import Principal
    from gateway.rdp.cli import rdp_login_text

    async def main() -> None:
        gate, recorder = await _gate(tmp_path)
        conn = gate.route(RouteRequest(user="bob", target="win1"), "10.1.1.1:5000", None)
        with pytest.raises(Refused, match="not allowed"):
            await conn.login("bob#win1", "bob-pw", "")
        grants = gate.access.grants
        request = grants.create_access(user="bob", target="win1", seconds=600,  # type: ignore[attr-defined]
                                       reason="incident", timeout=60)
        grants.decide(request.id, approver="alice", approver_groups=frozenset(),  # type: ignore[attr-defined]
                      approvers=_Anyone(), approve=True)
        conn = gate.route(RouteRequest(user="bob", target="win1"), "10.1.1.1:5001", None)
        creds = await conn.login("bob#win1", "bob-pw", "")
        assert creds.user == "Administrator"
        await conn.closed()
        text = rdp_login_text(gate.config, gate.access, Principal("bob"), "", "ssh",
                              gate.audit)
        assert "bob#win1" in text and "RDP targets you may use: win1" in text
        await recorder.close()

    asyncio.run(main())
    starts = [r for r in _audit(tmp_path) if r["kind"] == "session.start"]
    assert [r["user"] for r in starts] == ["bob"]


class _Anyone:
    def allows(self, user: str, groups: frozenset[str]) -> bool:
        return True


def test_full_storage_pauses_an_rdp_session_instead_of_failing_it(tmp_path: Path) -> None:
    """Storage refuses data (disk at its low-water mark): reading from client and target
    stops once the recording's backlog reaches its bound, and resumes when storage takes
    data again; the recording does not overflow and holds every byte (issue 16)."""
    import os

    from recorder.sinks.file import FileSink
    from state.paths import DataDir

    async def main() -> tuple[list[bool], int, bool]:
        config = _config(tmp_path)
        sink = FileSink(config.recording.file_dir, min_free_bytes=1 << 62)  # "full"
        recorder = Recorder(config.recording, sink=sink)
        await recorder.start()
        data = DataDir(config.data_dir)
        gate = RdpGate(config, recorder, AuditLog(config.audit.file),
                       TokenStore(data.rdp_tokens), ApprovalStore(data.approvals))
        conn = gate.route(RouteRequest(user="alice", target="win1"), "10.1.1.1:5000", None)
        await conn.login("alice#win1", ALICE_PW, "")
        paused: list[bool] = []
        conn.pause_reading = paused.append
        chunk = os.urandom(64 * 1024)
        sent = 0
        while not paused and sent < 32 * 1024 * 1024:  # like a transport: stops when told
            conn.on_replay(chunk)
            sent += len(chunk)
            await asyncio.sleep(0)
        await asyncio.sleep(1.0)
        assert conn.rec is not None
        failed = conn.rec.failed is not None
        sink.free.min_free = 0  # space returns
        deadline = asyncio.get_running_loop().time() + 20
        while paused[-1:] == [True] and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110 - polls a list the code under test appends to
            await asyncio.sleep(0.05)
        await conn.closed()
        await recorder.close()
        return paused, sent, failed

    paused, sent, failed = asyncio.run(main())
    assert not failed
    assert paused == [True, False]
    rec = Recording.from_bytes(next((tmp_path / "data" / "recordings").rglob("*.bstl"))
                               .read_bytes())
    assert sum(len(e.data) for e in rec.events() if e.type == ev.RDP) == sent
    assert rec.status == "ended"
