"""Typed secrets are masked wherever a command line is stored or shown.

A user types a line with an AWS secret key, an access key id and a card number in a real
shell (``ssh -tt`` in tmux), runs ``ssh host -- 'echo ghp_...'``, and asks for approval
of a command carrying a GitHub token. Afterwards the files themselves are read: the
audit log, the index database, every event of every recording, the approvals database,
``bastille sessions show``, ``bastille audit``, the approver's ``approvals list``, the
webhook's body and the player's search. None holds a secret; each shows the command with
``*`` where the secret was. Then a recording made before masking (unmasked command
lines) is indexed by ``bastille reindex``: the rebuilt index is masked too.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import audit_events
from tests.e2e.rig import Rig, Tmux

pytestmark = pytest.mark.e2e

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_ID = "AKIAIOSFODNN7EXAMPLE"
CARD = "4111111111111111"
TOKEN = "ghp_" + "Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6"
EXEC_TOKEN = "ghp_" + "Zz9yX8wV7uT6sR5qP4oN3mL2kJ1iH0gF9eD8"
SECRETS = (AWS_SECRET, AWS_ID, CARD, TOKEN, EXEC_TOKEN)

POLICY = """
[policy]
default = "allow"

[[policy.rules]]
name = "deploys-need-approval"
match = '^deploy-tool '
action = "approve"

[approvals]
approvers = ["bob"]
timeout = "60s"
webhook_url = "{url}"
"""


def _bastille(g: Rig, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args, "-c", str(g.gateway.config)],
                          capture_output=True, text=True, errors="replace", timeout=60)


def _no_secret(where: str, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    for secret in SECRETS:
        assert secret.encode() not in data, f"{secret} in {where}"


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[bytes]]]:
    bodies: list[bytes] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    server.shutdown()


def _type_secret_line(g: Rig) -> None:
    t = Tmux(g.root, [*g.ssh_args("alice", tty=True), "web1"])
    try:
        t.wait_re(r"[$#] ?$")
        t.type(f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET}; echo {AWS_ID} {CARD} done-$((6*7))\n")
        t.wait_for("done-42")
        _no_secret("the user's terminal", t.screen())
        t.type("exit\n")
        t.dead_status()
    finally:
        t.close()


def _approval_denied(g: Rig, bodies: list[bytes]) -> tuple[str, str]:
    """alice asks to run a command with a token; bob lists and denies it."""
    proc = subprocess.Popen([*g.ssh_args("alice"), "web1", "--", f"deploy-tool --token {TOKEN}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not audit_events(g, kind="approval", outcome="requested"):
        assert time.monotonic() < deadline, "no approval request"
        time.sleep(0.2)
    listed = g.ssh("bob", "approvals", "list")
    rid = str(audit_events(g, kind="approval", outcome="requested")[0]["detail"]["request"])
    decided = g.ssh("bob", "approvals", "deny", rid, "not today")
    _, err = proc.communicate(timeout=30)
    assert b"denied by bob" in err
    deadline = time.monotonic() + 10
    while not bodies and time.monotonic() < deadline:
        time.sleep(0.1)
    return listed.stdout.decode(), decided.stdout.decode()


def _recording_text(g: Rig) -> bytes:
    """Every byte and field of every event of every recording."""
    from recorder import events as ev
    from recorder.reader import Recording
    from recorder.service import open_sink
    from recorder.settings import RecorderSettings

    sink = open_sink(RecorderSettings(data_dir=g.data))
    out = bytearray()
    try:
        for name in sink.names():
            rec = Recording.from_sink(sink, name)
            out += json.dumps(rec.header).encode()
            for e in rec.events():
                out += e.data if isinstance(e.data, bytes) else str(e.data).encode()
                if e.type in ev.JSON_TYPES:
                    out += json.dumps(e.fields()).encode()
    finally:
        sink.close()
    return bytes(out)


def _database_text(path: Path) -> bytes:
    """All text in a SQLite database, and its files' raw bytes (WAL included)."""
    out = bytearray()
    for f in path.parent.glob(path.name + "*"):
        out += f.read_bytes()
    db = sqlite3.connect(path)
    try:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            for row in db.execute(f'SELECT * FROM "{table}"'):
                out += repr(row).encode()
    finally:
        db.close()
    return bytes(out)


def test_typed_and_exec_secrets_are_masked_at_rest(make_gateway: Any,
                                                   webhook: tuple[str, list[bytes]]) -> None:
    url, bodies = webhook
    g: Rig = make_gateway(extra=POLICY.format(url=url))
    _type_secret_line(g)
    r = g.ssh("alice", "web1", "--", f"echo {EXEC_TOKEN} exec-done")
    assert r.returncode == 0 and b"exec-done" in r.stdout
    listed, decided = _approval_denied(g, bodies)
    assert "deploy-tool --token ****" in listed, listed
    assert "deploy-tool --token ****" in decided, decided
    _no_secret("approvals list over ssh", listed)
    assert bodies and b"deploy-tool --token ****" in bodies[0]
    _no_secret("the webhook", b"".join(bodies))
    time.sleep(1.5)  # the post-processor indexes the closed sessions' screen text
    # the files
    audit = (g.data / "audit.jsonl").read_text()
    _no_secret("audit.jsonl", audit)
    commands = [e["detail"]["command"] for e in audit_events(g, kind="command")]
    assert any(c.startswith("export AWS_SECRET_ACCESS_KEY=****")
               and f"echo {'*' * len(AWS_ID)} {'*' * len(CARD)} done-$((6*7))" in c
               for c in commands), commands
    assert any(e["detail"]["command"] == "echo " + "*" * len(EXEC_TOKEN) + " exec-done"
               for e in audit_events(g, kind="exec"))
    assert any("deploy-tool --token ****" in str(e["detail"].get("command"))
               for e in audit_events(g, kind="policy"))
    _no_secret("the index", _database_text(g.data / "index.sqlite3"))
    _no_secret("the approvals database", _database_text(g.data / "approvals.sqlite3"))
    recorded = _recording_text(g)
    _no_secret("the recordings", recorded)
    assert b"export AWS_SECRET_ACCESS_KEY=****" in recorded
    # what the tools show
    shown = _bastille(g, "audit")
    assert shown.returncode == 0
    _no_secret("bastille audit", shown.stdout)
    exec_session = audit_events(g, kind="exec")[0]["session"]
    show = _bastille(g, "sessions", "show", exec_session)
    assert show.returncode == 0, show.stderr
    assert f"command   echo {'*' * len(EXEC_TOKEN)} exec-done" in show.stdout
    _no_secret("sessions show", show.stdout)
    _player_search_masked(g)


def _player_search_masked(g: Rig) -> None:
    from player.archive import Archive
    from recorder.settings import RecorderSettings

    archive = Archive(RecorderSettings(data_dir=g.data))
    try:
        for secret in SECRETS:
            assert archive.sessions(text=secret) == [], secret
        found = archive.sessions(text="AWS_SECRET_ACCESS_KEY=****")
        assert found
        data = archive.open(found[0].id)
        assert not archive.search(data, AWS_ID[:12])
        hits = archive.search(data, "AWS_SECRET_ACCESS_KEY")
        assert hits and all(AWS_SECRET not in h.text for h in hits)
    finally:
        archive.close()


def test_reindex_masks_recordings_made_before_masking(make_gateway: Any) -> None:
    """An old recording (unmasked command lines, as gateways wrote them before) is
    rebuilt into the index masked by ``bastille reindex``; ``sessions show`` masks it."""
    g: Rig = make_gateway()
    assert g.gateway.stop() == 0
    session = asyncio.run(_old_recording(g))
    r = _bastille(g, "reindex")
    assert r.returncode == 0, r.stderr
    _no_secret("the rebuilt index", _database_text(g.data / "index.sqlite3"))
    db = sqlite3.connect(g.data / "index.sqlite3")
    try:
        (command,) = db.execute("SELECT command FROM sessions WHERE id=?", (session,)).fetchone()
        texts = [t for (t,) in db.execute("SELECT text FROM commands WHERE session=?",
                                          (session,))]
    finally:
        db.close()
    assert command == f"echo {'*' * len(EXEC_TOKEN)}"
    assert texts == [f"export AWS_SECRET_ACCESS_KEY={'*' * 40}"]
    show = _bastille(g, "sessions", "show", session)
    _no_secret("sessions show of an old recording", show.stdout)
    assert "AWS_SECRET_ACCESS_KEY=****" in show.stdout


async def _old_recording(g: Rig) -> str:
    from gateway.config import load_config
    from recorder.service import Recorder, SessionHeader

    config = load_config(g.gateway.config)
    recorder = Recorder(config.recording)
    await recorder.start()
    try:
        sid = recorder.new_session_id()
        rec = await recorder.open_session(SessionHeader(
            session_id=sid, user="alice", target="web1", protocol="ssh", kind="exec",
            client_addr="127.0.0.1:1", start_time=time.time(), cols=80, rows=24,
            term="", command=f"echo {EXEC_TOKEN}", gateway_version="0.0.9"))
        rec.command(f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET}", source="interactive")
        rec.output(b"ok\n", 1)
        await rec.close(exit_status=0)
    finally:
        await recorder.close()
    return sid
