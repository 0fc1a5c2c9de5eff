"""Retention through the real CLI: `bastille prune` (file storage and S3 on moto_server),
legal holds, and what it refuses to delete (held, live, tampered, not yet uploaded)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from recorder.service import Recorder, SessionHeader
from recorder.settings import RecorderSettings
from tests.integration.conftest import MOTO_AK, MOTO_SK

DAY = 86400.0


def _header(sid: str, start: float) -> SessionHeader:
    return SessionHeader(session_id=sid, user="alice", target="web1", protocol="ssh",
                         kind="shell", client_addr="203.0.113.5:5000", start_time=start,
                         cols=80, rows=24, term="xterm", gateway_version="0.1.0")


def _record(settings: RecorderSettings, sessions: list[tuple[str, float]],
            wait_uploaded: bool = True) -> None:
    async def main() -> None:
        r = Recorder(settings)
        await r.start()
        for sid, start in sessions:
            s = await r.open_session(_header(sid, start))
            s.output(f"output of {sid}\r\n".encode())
            await s.close(exit_status=0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = {x.id: x.status for x in r.index.all_sessions()}
            spooled = getattr(r.sink, "pending", lambda: [])()
            if all(rows.get(sid) == "ended" for sid, _ in sessions) and \
                    (not wait_uploaded or not spooled):
                break
            await asyncio.sleep(0.1)
        await r.close(timeout=2)

    asyncio.run(main())


def _config(root: Path, recording: str, tail: str = "") -> Path:
    from recorder.signing import generate

    subprocess.run([sys.executable, "-m", "gateway", "demo", "--write-config", str(root)],
                   check=True, capture_output=True, timeout=60)
    if not (root / "recording.key").exists():
        generate(root / "recording.key")
    path = root / "bastille.toml"
    text = path.read_text().replace('[recording]\nstorage = "file"\n',
                                    f'[recording]\n{recording}\n')
    path.write_text(text + tail)
    return path


def bastille(config: Path, *args: str, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "gateway", *args, "-c", str(config)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def _audit(root: Path, kind: str) -> list[dict[str, Any]]:
    lines = (root / "data" / "audit.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_prune_file_storage_keeps_what_it_must(tmp_path: Path) -> None:
    config = _config(tmp_path, 'storage = "file"\nretention = "7d"')
    settings = RecorderSettings(data_dir=tmp_path / "data",
                                signing_key=tmp_path / "recording.key")
    old = time.time() - 10 * DAY
    _record(settings, [("old-ok-0001", old), ("old-held-0002", old),
                       ("old-tampered-0003", old), ("old-live-0004", old),
                       ("new-0005", time.time())])
    files = {p.name: p for p in (tmp_path / "data" / "recordings").rglob("*.bstl")}
    tampered = files["old-tampered-0003.bstl"]
    raw = bytearray(tampered.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    tampered.write_bytes(bytes(raw))
    from recorder.index import Index

    index = Index(tmp_path / "data" / "index.sqlite3")
    index.set_status("old-live-0004", "live")  # a session that is still running
    index.close()
    r = bastille(config, "hold", "set", "old-held", "--reason", "case 42", "--as", "carol")
    assert r.returncode == 0 and "legal hold" in r.stdout, r.stderr

    dry = bastille(config, "prune", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    decided = {d["session_id"]: (d["action"], d["reason"])
               for d in json.loads(dry.stdout)["decisions"]}
    assert set(decided) == {"old-ok-0001", "old-held-0002", "old-tampered-0003", "old-live-0004"}
    assert decided["old-ok-0001"][0] == "prune"
    assert decided["old-held-0002"] == ("keep", "under a legal hold")
    assert decided["old-tampered-0003"][0] == "keep" and "does not verify" in \
        decided["old-tampered-0003"][1]
    assert decided["old-live-0004"] == ("keep", "the session is still running")
    assert files["old-ok-0001.bstl"].exists()  # a dry run deletes nothing
    assert _audit(tmp_path, "retention") == []

    real = bastille(config, "prune")
    assert real.returncode == 0, real.stderr
    assert "deleted 1 recording(s)" in real.stdout and "KEPT: under a legal hold" in real.stdout
    assert not files["old-ok-0001.bstl"].exists()
    for kept in ("old-held-0002", "old-tampered-0003", "old-live-0004", "new-0005"):
        assert files[f"{kept}.bstl"].exists(), kept
    pruned = _audit(tmp_path, "retention")
    assert [(e["outcome"], e["session"]) for e in pruned[:1]] == [("pruned", "old-ok-0001")]
    assert pruned[-1]["detail"]["pruned"] == 1 and pruned[-1]["detail"]["kept"] == 3
    assert _audit(tmp_path, "legal_hold")[0]["user"] == "carol"
    listed = json.loads(bastille(config, "sessions", "list", "--json").stdout)
    assert {x["id"]: x["status"] for x in listed}["old-ok-0001"] == "pruned"
    v = bastille(config, "verify", "old-ok-0001")
    assert v.returncode == 0 and "deleted by retention" in v.stdout, v.stdout + v.stderr
    holds = json.loads(bastille(config, "hold", "list", "--json").stdout)
    assert [h["session"] for h in holds] == ["old-held-0002"]
    assert bastille(config, "hold", "release", "old-held-0002", "--reason",
                    "case closed").returncode == 0
    again = bastille(config, "prune", "--json")
    gone = [d["session_id"] for d in json.loads(again.stdout)["decisions"]
            if d["action"] == "prune"]
    assert gone == ["old-held-0002"]


def test_prune_without_retention_says_so(tmp_path: Path) -> None:
    config = _config(tmp_path, 'storage = "file"')
    r = bastille(config, "prune")
    assert r.returncode == 2 and "retention" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.s3
def test_prune_s3_deletes_only_confirmed_objects(tmp_path: Path, moto_server: str,
                                                 s3_client: Any, bucket: str,
                                                 s3_settings: Any) -> None:
    env = {"BASTILLE_S3_SECRET": MOTO_SK}
    s3 = (f'\n[recording.s3]\nendpoint_url = "{moto_server}"\nregion = "us-east-1"\n'
          f'access_key_id = "{MOTO_AK}"\nsecret_access_key_env = "BASTILLE_S3_SECRET"\n'
          'retry_interval = "0.1s"\nmax_retry_interval = "0.5s"\n')
    config = _config(tmp_path, f'storage = "s3://{bucket}/rec"\nretention = "7d"', s3)
    old = time.time() - 30 * DAY
    good = RecorderSettings(data_dir=tmp_path / "data", signing_key=tmp_path / "recording.key",
                            storage=s3_settings(moto_server, bucket))
    _record(good, [("s3-old-0001", old), ("s3-new-0002", time.time())])
    down = RecorderSettings(data_dir=tmp_path / "data", signing_key=tmp_path / "recording.key",
                            storage=s3_settings("http://127.0.0.1:9", bucket))
    _record(down, [("s3-spooled-0003", old)], wait_uploaded=False)  # S3 unreachable

    def keys() -> set[str]:
        listed = s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])
        return {Path(o["Key"]).name for o in listed}

    assert keys() == {"s3-old-0001.bstl", "s3-new-0002.bstl"}
    r = bastille(config, "prune", "--json", env=env)
    assert r.returncode == 0, r.stderr
    decided = {d["session_id"]: d for d in json.loads(r.stdout)["decisions"]}
    assert decided["s3-old-0001"]["action"] == "prune"
    assert decided["s3-spooled-0003"]["action"] == "keep"
    assert "not in its final storage" in decided["s3-spooled-0003"]["reason"]
    assert keys() == {"s3-new-0002.bstl"}
    ledger = (tmp_path / "data" / "storage-ledger.jsonl").read_text()
    assert '"deleted_at"' in ledger and "s3-old-0001" in ledger
    v = bastille(config, "verify", "--all", env=env)
    assert "OK   s3-old-0001: pruned" in v.stdout and "missing" not in v.stdout, v.stdout


def test_signing_key_rotation_old_recordings_still_verify(tmp_path: Path) -> None:
    """docs/operations.md, key rotation: a new signing key, the old public key trusted."""
    from recorder.signing import generate

    config = _config(tmp_path, 'storage = "file"')
    old = tmp_path / "recording.key"
    _record(RecorderSettings(data_dir=tmp_path / "data", signing_key=old),
            [("signed-by-old-0001", time.time() - 60)])
    new_key, _ = generate(tmp_path / "recording-2027.key")
    text = config.read_text().replace('signing_key = "recording.key"',
                                      f'signing_key = "{new_key}"')
    config.write_text(text)
    _record(RecorderSettings(data_dir=tmp_path / "data", signing_key=new_key),
            [("signed-by-new-0002", time.time())])
    refused = bastille(config, "verify", "--all")
    assert refused.returncode == 1 and "signed-by-old-0001" in refused.stdout
    config.write_text(text.replace("[recording]\n", '[recording]\ntrusted_keys = '
                                   '["recording.key.pub"]\n'))
    accepted = bastille(config, "verify", "--all")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert accepted.stdout.count("OK ") == 2


@pytest.fixture(scope="module")
def pg() -> Any:
    from tests.pg_rig import PgServer, available

    if not available():
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    server = PgServer()
    server.init()
    try:
        yield server
    finally:
        server.close()


def test_prune_on_shared_state_respects_a_hold_set_on_another_node(tmp_path: Path,
                                                                   pg: Any) -> None:
    """Two gateways on one PostgreSQL database ([state] url): a legal hold set through
    node b's config keeps the session when node a prunes; the shared index is used."""
    from state.backend import StateBackend
    from state.settings import StateSettings

    url = pg.url(pg.new_database())

    def state(node: str) -> str:
        return (f'\n[state]\nurl = "{url}"\npassword_file = "{pg.password_file}"\n'
                f'node = "{node}"\n')

    node_a = _config(tmp_path / "a", 'storage = "file"\nretention = "7d"', state("a"))
    node_b = _config(tmp_path / "b", 'storage = "file"\nretention = "7d"', state("b"))
    shared = StateBackend(StateSettings(url=url, password=pg.password_file.read_text().strip(),
                                        node="a"), tmp_path / "a" / "data")
    settings = RecorderSettings(data_dir=tmp_path / "a" / "data",
                                signing_key=tmp_path / "a" / "recording.key",
                                index_opener=shared.index_opener())
    old = time.time() - 10 * DAY
    _record(settings, [("pg-old-0001", old), ("pg-held-0002", old)])
    assert not (tmp_path / "a" / "data" / "index.sqlite3").exists()  # the index is shared

    r = bastille(node_b, "hold", "set", "pg-held", "--reason", "case 7", "--as", "carol")
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "b" / "data" / "legal_holds.sqlite3").exists()
    listed = json.loads(bastille(node_a, "hold", "list", "--json").stdout)
    assert [(h["session"], h["by"]) for h in listed] == [("pg-held-0002", "carol")]

    pruned = bastille(node_a, "prune", "--json")
    assert pruned.returncode == 0, pruned.stderr
    decided = {d["session_id"]: (d["action"], d["reason"])
               for d in json.loads(pruned.stdout)["decisions"]}
    assert decided == {"pg-old-0001": ("prune", decided["pg-old-0001"][1]),
                       "pg-held-0002": ("keep", "under a legal hold")}
    files = {p.name for p in (tmp_path / "a" / "data" / "recordings").rglob("*.bstl")}
    assert files == {"pg-held-0002.bstl"}
    events = _audit(tmp_path / "a", "retention")
    assert events[0]["session"] == "pg-old-0001" and events[0]["detail"]["os_user"]
    rows = json.loads(bastille(node_b, "sessions", "list", "--json").stdout)
    assert {x["id"]: x["status"] for x in rows}["pg-old-0001"] == "pruned"  # seen by b
