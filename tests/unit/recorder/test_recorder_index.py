"""The session index: queries by user, target, time and text; rebuilt from recordings."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from recorder_helpers import FakeClock, make_header, wait_until

from recorder import keyframes
from recorder.index import Index, SessionRow
from recorder.postprocess import reindex
from recorder.service import Recorder
from recorder.settings import RecorderSettings
from recorder.sinks.file import FileSink

DAY = 86400.0


def _record(tmp_path: Path) -> RecorderSettings:
    settings = RecorderSettings(data_dir=tmp_path / "data", keyframe_interval=1.0)
    clock = FakeClock()

    async def main() -> None:
        r = Recorder(settings, clock=clock)
        await r.start()
        sessions = [
            ("s-alice-1", "alice", "web1", 0.0, "ls -la", b"total 0\r\nsecret-report.txt\r\n"),
            ("s-bob-1", "bob", "db1", DAY, "psql", b"psql (15.4)\r\npostgres=# "),
            (
                "s-alice-2",
                "alice",
                "db1",
                2 * DAY,
                "rm -rf /tmp/x",
                b"\x1b[2J\x1b[Hdeleting files\r\n",
            ),
        ]
        for sid, user, target, offset, cmd, out in sessions:
            h = make_header(sid, user=user, target=target, start_time=clock.now + offset)
            s = await r.open_session(h)
            s.output(b"$ ")
            clock.advance(0.5)
            s.input(cmd.encode() + b"\r")
            s.command(cmd, source="interactive")
            s.output(cmd.encode() + b"\r\n" + out)
            clock.advance(2.0)
            s.output(b"$ exit\r\n")
            await s.close(exit_status=0)
        assert wait_until(lambda: all(row.screen_indexed for row in r.index.list_sessions()))
        await r.close()

    asyncio.run(main())
    return settings


def _ids(rows: list[SessionRow]) -> list[str]:
    return sorted(r.id for r in rows)


def _check_queries(index: Index) -> None:
    from recorder_helpers import START

    assert _ids(index.list_sessions()) == ["s-alice-1", "s-alice-2", "s-bob-1"]
    assert _ids(index.list_sessions(user="alice")) == ["s-alice-1", "s-alice-2"]
    assert _ids(index.list_sessions(target="db1")) == ["s-alice-2", "s-bob-1"]
    assert _ids(index.list_sessions(since=START + DAY - 1)) == ["s-alice-2", "s-bob-1"]
    assert _ids(index.list_sessions(text="rm -rf")) == ["s-alice-2"]  # command
    assert _ids(index.list_sessions(text="SECRET-report")) == ["s-alice-1"]  # screen text
    assert _ids(index.list_sessions(text="deleting files")) == ["s-alice-2"]
    assert _ids(index.list_sessions(text="postgres=#")) == ["s-bob-1"]
    assert _ids(index.list_sessions(text='quote"d')) == []
    assert _ids(index.list_sessions(text="ps", user="bob")) == ["s-bob-1"]  # short: LIKE
    assert _ids(index.list_sessions(user="alice", text="psql")) == []
    row = index.get("s-alice-1")
    assert row is not None
    assert (row.user, row.target, row.status, row.commands, row.exit_status) == (
        "alice",
        "web1",
        "ended",
        1,
        0,
    )
    assert row.end is not None and abs(row.end - row.start - 2.5) < 1e-6
    assert index.commands("s-alice-1") == [(0.5, "ls -la", "interactive")]
    assert [x[1] for x in index.matches("s-alice-1", "secret")] == ["screen"]
    assert [r.id for r in index.find("s-alice")] and len(index.find("s-")) == 3


def test_index_queries_and_reindex_from_recordings_alone(tmp_path: Path) -> None:
    settings = _record(tmp_path)
    index = Index(settings.data_dir / "index.sqlite3")
    _check_queries(index)
    index.close()
    # throw the index (and keyframe cache) away; rebuild from the recordings only
    (settings.data_dir / "index.sqlite3").unlink()
    for p in settings.data_dir.glob("index.sqlite3-*"):
        p.unlink()
    index = Index(settings.data_dir / "index.sqlite3")
    assert index.list_sessions() == []
    count, problems = reindex(settings, FileSink(settings.file_dir), index)
    assert (count, problems) == (3, [])
    _check_queries(index)
    index.close()


def test_stale_live_rows_are_fixed_at_start(tmp_path: Path) -> None:
    """A row left "live" by a crashed process becomes "truncated" at the next start."""
    settings = RecorderSettings(data_dir=tmp_path / "data")
    sink = FileSink(settings.file_dir)
    from recorder_helpers import build_recording

    from recorder.service import sink_name

    h = make_header("stale1")
    data, _ = build_recording([[(0.0, 1, b"hi")]], header=h, close=False)
    stream = sink.create(sink_name(h))
    stream.write(data)
    stream.flush()  # never closed: a crashed writer
    index = Index(settings.data_dir / "index.sqlite3")
    index.session_opened({"session_id": "stale1", "user": "alice"}, sink_name(h))
    index.close()

    async def main() -> None:
        r = Recorder(settings)
        await r.start()
        assert wait_until(lambda: r.index.get("stale1").status == "truncated")  # type: ignore[union-attr]
        await r.close()

    asyncio.run(main())


def test_a_failing_screen_pass_still_indexes_the_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The index's summary rides on the screen pass (one read of the recording): a bug
    in the screen pass must not lose the session's row, commands or exit status."""
    settings = _record(tmp_path)
    (settings.data_dir / "index.sqlite3").unlink()
    for p in settings.data_dir.glob("index.sqlite3-*"):
        p.unlink()

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("screen pass bug")

    monkeypatch.setattr(keyframes, "build", broken)
    index = Index(settings.data_dir / "index.sqlite3")
    count, problems = reindex(settings, FileSink(settings.file_dir), index)
    assert (count, problems) == (3, [])
    row = index.get("s-alice-1")
    assert row is not None and (row.commands, row.exit_status, row.status) == (1, 0, "ended")
    assert index.commands("s-alice-1") == [(0.5, "ls -la", "interactive")]
    assert "screen pass of" in caplog.text
    index.close()
