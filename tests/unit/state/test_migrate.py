"""``bastille state migrate --from sqlite:DIR --to postgresql://...``: an appliance's
SQLite state moves into PostgreSQL (dry run, counts, idempotent, conflicts reported),
and what arrives works through the PostgreSQL stores."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from recorder.index import Index
from recorder.signing import generate, load_signer
from state.approvals import ApprovalStore
from state.backend import StateBackend
from state.bindings import BindingStore
from state.holds import HoldStore
from state.reviews import ReviewStore
from state.settings import StateSettings
from state.tokens import TokenStore
from state.usage import UsageStore
from tests.pg_rig import PgServer


class _Bob:
    def allows(self, user: str, groups: frozenset[str]) -> bool:
        return user == "bob"


def _appliance(data: Path, key: Path) -> dict[str, str]:
    """An appliance's SQLite state with something of every kind; what to look for."""
    approvals = ApprovalStore(data / "approvals.sqlite3")
    req = approvals.create(user="alice", target="web1", session="s1", command="rm -r /x",
                           rule="r", reason="why", timeout=600)
    approvals.decide(req.id, approver="bob", approver_groups=frozenset(), approvers=_Bob(),
                     approve=True, reason="ok")
    grant = approvals.create_access(user="alice", target="db1", seconds=7200, reason="inc",
                                    timeout=600)
    approvals.decide(grant.id, approver="bob", approver_groups=frozenset(), approvers=_Bob(),
                     approve=True)
    approvals.request_kill("s1", by="bob", reason="enough")
    approvals.close()
    tokens = TokenStore(data / "rdp_tokens.sqlite3")
    token = tokens.issue_token("alice", "win1", 3600)
    tokens.close()
    bindings = BindingStore(data / "oidc_bindings.sqlite3")
    bindings.bind(b"alice-key", "alice", frozenset({"ops"}), "sub", "https://idp", 3600)
    bindings.close()
    signer = load_signer(key)
    reviews = ReviewStore(data / "reviews.sqlite3", signer=signer)
    first = reviews.add("s1", "flag", "bob", text="look", at=1.0)
    reviews.add("s1", "unflag", "bob", ref=first.digest)
    reviews.close()
    index = Index(data / "index.sqlite3")
    index.session_opened({"session_id": "s1", "user": "alice", "target": "web1",
                          "start_time": 1000.0}, "2026/01/01/s1.bstl")
    index.session_closed("s1", end=1005.0, exit_status=0, exit_signal=None, status="ended",
                         commands=[(1.0, "rm -r /x", "interactive")], policy_events=1,
                         signature="signed", output_bytes=10)
    index.set_screen_lines("s1", [(1.0, "removed 3 files")])
    index.set_ocr_lines("s1", [(2.0, "Quarterly Invoice")])  # read off an RDP screen
    index.close()
    usage = UsageStore(data / "recording_usage.sqlite3")
    usage.add("alice", "2026-03-01", 123_456)
    usage.close()
    holds = HoldStore(data / "legal_holds.sqlite3")
    holds.set("s1", by="carol", reason="case 42")
    holds.close()
    return {"token": token, "grant": str(grant.id), "request": str(req.id)}


def _migrate(pg: PgServer, data: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "state", "migrate", "--from",
                           f"sqlite:{data}", "--to", url, "--password-file",
                           str(pg.password_file), *extra], capture_output=True, text=True,
                          timeout=120)


def _counts(out: str) -> dict[str, tuple[int, int, int]]:
    found = {}
    for line in out.splitlines():
        m = re.match(r"^(.+?)\s+(\d+) found\s+(\d+) (?:copied|would copy)\s+(\d+) already",
                     line)
        if m:
            found[m.group(1)] = (int(m.group(2)), int(m.group(3)), int(m.group(4)))
    return found


def test_migrate_dry_run_counts_then_copies_once(pg_server: PgServer, tmp_path: Path) -> None:
    data = tmp_path / "data"
    key = tmp_path / "rec.key"
    generate(key)
    want = _appliance(data, key)
    url = pg_server.url(pg_server.new_database())

    dry = _migrate(pg_server, data, url, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "nothing was written" in dry.stdout
    counts = _counts(dry.stdout)
    assert counts["approval requests"] == (2, 2, 0)
    assert counts["kill requests"] == (1, 1, 0)
    assert counts["RDP tokens"] == (1, 1, 0)
    assert counts["SSO bindings"] == (1, 1, 0)
    assert counts["review records"] == (2, 2, 0)
    assert counts["indexed sessions"] == (1, 1, 0)
    assert counts["index commands and screen lines"] == (4, 4, 0)
    assert counts["recording usage"] == (1, 1, 0)
    assert counts["legal holds"] == (1, 1, 0)
    assert pg_server.psql("SELECT count(*) FROM requests", url.rsplit("/", 1)[1]).strip() == "0"

    real = _migrate(pg_server, data, url)
    assert real.returncode == 0, real.stderr
    assert _counts(real.stdout)["approval requests"] == (2, 2, 0)
    again = _migrate(pg_server, data, url)  # idempotent: everything is already there
    assert again.returncode == 0, again.stderr
    assert all(new == 0 and present == rows for rows, new, present in
               (v for k, v in _counts(again.stdout).items()
                if k != "index commands and screen lines")), again.stdout

    # what arrived works through the PostgreSQL stores
    backend = StateBackend(StateSettings(url=url, password=pg_server.password_file.read_text()
                                         .strip(), node="n1"), tmp_path / "unused")
    approvals = backend.approvals()
    request = approvals.get(int(want["request"]))
    assert request is not None and (request.status, request.command) == ("approved",
                                                                          "rm -r /x")
    assert approvals.active_grant("alice", "db1") is not None
    assert approvals.kill_request("s1") is not None
    new = approvals.create(user="carol", target="web1", session="s2", command="ls", rule=None,
                           reason="", timeout=60)
    assert new.id > int(want["grant"])  # ids go on after the migrated ones
    approvals.close()
    tokens = backend.tokens()
    grant = tokens.consume_token(want["token"])
    assert grant is not None and grant.target == "win1"
    tokens.close()
    bindings = backend.bindings()
    assert bindings.lookup(b"alice-key", "alice") is not None
    bindings.close()
    reviews = backend.reviews(trusted=[load_signer(key).public_raw])
    assert [r.status for r in reviews.records("s1")] == ["signed", "signed"]
    reviews.close()
    opener = backend.index_opener()
    assert opener is not None
    index = opener()
    assert [r.id for r in index.list_sessions(text="REMOVED 3")] == ["s1"]
    assert index.commands("s1") == [(1.0, "rm -r /x", "interactive")]
    assert index.matches("s1", "invoice") == [(2.0, "ocr", "Quarterly Invoice")]
    index.close()
    usage = backend.usage()
    assert usage.used("alice", "2026-03-01") == 123_456  # today's budget carries over
    usage.close()
    holds = backend.holds()
    assert [(h.session, h.by, h.reason) for h in holds.list()] == [("s1", "carol", "case 42")]
    holds.close()


def test_migrate_reports_conflicts_and_refuses_inline_passwords(pg_server: PgServer,
                                                                tmp_path: Path) -> None:
    data = tmp_path / "data"
    key = tmp_path / "rec.key"
    generate(key)
    _appliance(data, key)
    db = pg_server.new_database()
    url = pg_server.url(db)
    assert _migrate(pg_server, data, url).returncode == 0
    pg_server.psql("UPDATE requests SET command = 'something else' WHERE id = 1", db)
    again = _migrate(pg_server, data, url)
    assert again.returncode == 1
    assert "conflict: request #1 exists with different content" in again.stderr
    assert pg_server.psql("SELECT command FROM requests WHERE id = 1", db).strip() == \
        "something else"  # left alone
    inline = _migrate(pg_server, data, url.replace("bastille@", "bastille:pw@"))
    assert inline.returncode == 2 and "may not be written in the URL" in inline.stderr
    missing = _migrate(pg_server, tmp_path / "nope", url)
    assert missing.returncode == 2 and "is not a directory" in missing.stderr
