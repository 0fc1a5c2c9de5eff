"""`bastille verify` does not trust what storage says: with a configured key an unsigned
or foreign-key recording fails, a recording copied over another session's fails, a
recording the index lists but storage lost fails, and live sessions are listed apart."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
from pathlib import Path

import pytest
from recorder_helpers import make_header

from recorder.cli import add_commands
from recorder.service import Recorder
from recorder.settings import RecorderSettings
from recorder.signing import generate
from state.timeparse import parse_when


def _main(argv: list[str], key: Path | None) -> int:
    def resolve(args: argparse.Namespace) -> RecorderSettings:
        return RecorderSettings(data_dir=Path(args.data), signing_key=key)

    parser = argparse.ArgumentParser(prog="bastille")
    add_commands(parser.add_subparsers(dest="command", required=True), resolve, parse_when)
    args = parser.parse_args(argv)
    return int(args.func(args))


def _record(data: Path, key: Path | None, sessions: list[tuple[str, str]],
            live: str | None = None) -> None:
    async def main() -> None:
        r = Recorder(RecorderSettings(data_dir=data, signing_key=key))
        await r.start()
        for i, (sid, user) in enumerate(sessions):
            s = await r.open_session(make_header(sid, user=user, start_time=1_763_900_000.0 + i))
            s.output(f"hello from {user}\r\n".encode())
            await s.close(exit_status=0)
        if live is not None:
            s = await r.open_session(make_header(live, user="dave"))
            s.output(b"still typing")
            await asyncio.sleep(1.2)  # flushed, not closed
            _verify_live(data, key, live)
            await s.close(exit_status=0)
        await r.close()

    asyncio.run(main())


def _verify_live(data: Path, key: Path | None, live: str) -> None:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = _main(["verify", "--data", str(data), "--all", "--json"], key)
    reports = {r["session_id"]: r for r in json.loads(out.getvalue())}
    assert rc == 0, reports
    assert reports[live]["status"] == "live"


@pytest.fixture
def key(tmp_path: Path) -> Path:
    k = tmp_path / "rec.key"
    generate(k)
    return k


def _path(data: Path, sid: str) -> Path:
    return next((data / "recordings").rglob(f"{sid}.bstl"))


def _reports(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, object]]:
    return {r["session_id"]: r for r in json.loads(capsys.readouterr().out)}


def test_all_good_and_live_listed_apart(tmp_path: Path, key: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    _record(data, key, [("sess-a-0001", "alice"), ("sess-b-0002", "bob")], live="sess-l-0003")
    assert _main(["verify", "--data", str(data), "--all"], key) == 0
    out = capsys.readouterr()
    assert out.out.count("OK   ") == 3 and "signed by key" in out.out


def test_unsigned_replacement_fails_with_a_configured_key(
        tmp_path: Path, key: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    _record(data, key, [("sess-a-0001", "alice")])
    forged = tmp_path / "forged"
    _record(forged, None, [("sess-a-0001", "alice")])  # same id and header, no key
    shutil.copy(_path(forged, "sess-a-0001"), _path(data, "sess-a-0001"))
    assert _main(["verify", "--data", str(data), "sess-a-0001", "--json"], key) == 1
    assert _reports(capsys)["sess-a-0001"]["status"] == "unsigned"
    assert _main(["verify", "--data", str(data), "--all"], key) == 1
    assert "FAIL sess-a-0001: unsigned" in capsys.readouterr().out
    # explicitly accepted (recorded before a key was configured)
    assert _main(["verify", "--data", str(data), "sess-a-0001", "--allow-unsigned"], key) == 0


def test_recording_signed_by_another_key_fails(
        tmp_path: Path, key: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    _record(data, key, [("sess-a-0001", "alice")])
    other = tmp_path / "other.key"
    generate(other)
    forged = tmp_path / "forged"
    _record(forged, other, [("sess-a-0001", "alice")])
    shutil.copy(_path(forged, "sess-a-0001"), _path(data, "sess-a-0001"))
    assert _main(["verify", "--data", str(data), "sess-a-0001", "--json"], key) == 1
    assert _reports(capsys)["sess-a-0001"]["status"] == "wrong-key"


def test_swapped_recording_fails(tmp_path: Path, key: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    _record(data, key, [("sess-a-0001", "alice"), ("sess-b-0002", "bob")])
    shutil.copy(_path(data, "sess-a-0001"), _path(data, "sess-b-0002"))
    assert _main(["verify", "--data", str(data), "sess-b-0002", "--json"], key) == 1
    rep = _reports(capsys)["sess-b-0002"]
    assert rep["status"] == "wrong-session" and "sess-a-0001" in str(rep["message"])
    assert _main(["verify", "--data", str(data), "--all"], key) == 1
    out = capsys.readouterr().out
    assert "OK   sess-a-0001" in out and "FAIL sess-b-0002: wrong-session" in out


def test_deleted_recording_fails_verify_all(tmp_path: Path, key: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    _record(data, key, [("sess-a-0001", "alice"), ("sess-b-0002", "bob")])
    _path(data, "sess-b-0002").unlink()
    assert _main(["verify", "--data", str(data), "--all"], key) == 1
    out = capsys.readouterr()
    assert "FAIL sess-b-0002: missing" in out.out
    assert "2 recordings, 1 failed" in out.err
    assert _main(["verify", "--data", str(data), "sess-b-0002"], key) == 1
