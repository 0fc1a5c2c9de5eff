"""The recording commands, driven through argparse as the ``bastille`` entry point does."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from recorder_helpers import FakeClock, make_header, wait_until

from recorder.cli import add_commands
from recorder.format import v1
from recorder.reader import Recording
from recorder.service import Recorder
from recorder.settings import RecorderSettings
from recorder.sinks.file import FileSink
from state.timeparse import parse_when

OUTPUT = [
    b"\x1b[1;34mbob@db1\x1b[0m:~$ ",
    "échec 日本語 ok\r\n".encode()[:5],  # a UTF-8 character split across two writes
    "échec 日本語 ok\r\n".encode()[5:],
    b"\x07bell\r\n",
]


def _resolve(args: argparse.Namespace) -> RecorderSettings:
    if args.config:
        raise ValueError("this test resolves --data only")
    key = getattr(args, "test_key", None)
    return RecorderSettings(data_dir=Path(args.data), signing_key=key)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bastille")
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub, _resolve, parse_when)
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    settings = RecorderSettings(data_dir=d)
    clock = FakeClock()

    async def main() -> None:
        r = Recorder(settings, clock=clock)
        await r.start()
        for sid, user in (("cli-one-0001", "bob"), ("cli-two-0002", "carol")):
            s = await r.open_session(make_header(sid, user=user, target="db1"))
            for chunk in OUTPUT:
                s.output(chunk)
                clock.advance(0.3)
            s.resize(100, 30)
            s.command("whoami", source="interactive")
            s.marker("done")
            clock.advance(5.0)  # an idle gap
            s.output(b"bye\r\n")
            await s.close(exit_status=0)
        assert wait_until(lambda: all(x.screen_indexed for x in r.index.list_sessions()))
        await r.close()

    asyncio.run(main())
    return d


def test_sessions_list_and_filters(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["sessions", "list", "--data", str(data), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["id"] for r in rows) == ["cli-one-0001", "cli-two-0002"]
    assert _main(["sessions", "list", "--data", str(data), "--user", "carol", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == ["cli-two-0002"]
    assert _main(["sessions", "list", "--data", str(data), "--text", "日本語"]) == 0
    out = capsys.readouterr().out
    assert "cli-one-0001" in out and "cli-two-0002" in out and "USER" in out
    assert _main(["sessions", "list", "--data", str(data), "--since", "1h"]) == 0
    assert "no sessions" in capsys.readouterr().err  # recorded in 2025 by the fake clock


def test_sessions_show(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["sessions", "show", "--data", str(data), "cli-one"]) == 0
    out = capsys.readouterr().out
    assert "cli-one-0001" in out and "bob" in out and "whoami" in out and "ended" in out
    assert _main(["sessions", "show", "--data", str(data), "cli-"]) == 2
    assert "ambiguous" in capsys.readouterr().err
    assert _main(["sessions", "show", "--data", str(data), "nope"]) == 2
    assert "no session 'nope'" in capsys.readouterr().err


def test_play_writes_the_exact_bytes(
    data: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert _main(["play", "--data", str(data), "cli-one-0001", "--no-wait", "--raw"]) == 0
    assert capsysbinary.readouterr().out == b"".join(OUTPUT) + b"bye\r\n"
    # to a terminal (the default): colours and text as recorded, the bell dropped
    assert _main(["play", "--data", str(data), "cli-one-0001", "--no-wait"]) == 0
    assert capsysbinary.readouterr().out == b"".join(OUTPUT).replace(b"\x07", b"") + b"bye\r\n"


def test_play_and_show_keep_escapes_from_the_terminal(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    data = tmp_path / "data"
    hostile = b"\x1b]52;c;ZXZpbA==\x07\x1b]0;owned\x07\x1b[6n\x1b[?1000h\x1b[31mred\x1b[0m\r\n"

    async def main() -> None:
        r = Recorder(RecorderSettings(data_dir=data))
        await r.start()
        s = await r.open_session(make_header("evil-0001", user="mal\x1b]0;x\x07lory"))
        s.output(hostile)
        s.command("echo \x1b]52;c;ZXZpbA==\x07 \r\x1b[2Kfake", source="interactive")
        await s.close(exit_status=0)
        await r.close()

    asyncio.run(main())
    assert _main(["play", "--data", str(data), "evil-0001", "--no-wait"]) == 0
    out = capsysbinary.readouterr().out
    assert out == b"\x1b[31mred\x1b[0m\r\n"
    assert _main(["sessions", "show", "--data", str(data), "evil-0001"]) == 0
    shown = capsysbinary.readouterr().out
    assert b"\x1b" not in shown and b"\x07" not in shown, shown
    assert b"echo \\x1b]52;c;ZXZpbA==\\x07 \\r\\x1b[2Kfake" in shown
    assert b"mal\\x1b]0;x\\x07lory" in shown
    assert _main(["sessions", "list", "--data", str(data)]) == 0
    listed = capsysbinary.readouterr().out
    assert b"\x1b" not in listed and b"mal\\x1b]0;x" in listed, listed


def test_play_caps_idle_gaps(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recorder import replay

    sleeps: list[float] = []
    rec = Recording.from_sink(FileSink(data / "recordings"), _name(data, "cli-one-0001"))

    class Sink:
        def write(self, b: bytes) -> None: ...
        def flush(self) -> None: ...

    replay.play(rec, Sink(), speed=2.0, max_idle=1.0, sleep=sleeps.append)  # type: ignore[arg-type]
    assert sleeps == pytest.approx([0.15, 0.15, 0.15, 0.5], abs=1e-5)


def _name(data: Path, sid: str) -> str:
    return next(n for n in FileSink(data / "recordings").names() if sid in n)


@pytest.mark.skipif(shutil.which("asciinema") is None, reason="Debian asciinema not installed")
def test_export_asciicast_is_accepted_by_asciinema(data: Path, tmp_path: Path) -> None:
    cast = tmp_path / "one.cast"
    assert (
        _main(
            [
                "export",
                "--data",
                str(data),
                "cli-one-0001",
                "--format",
                "asciicast",
                "-o",
                str(cast),
            ]
        )
        == 0
    )
    lines = cast.read_text().splitlines()
    header = json.loads(lines[0])
    assert (header["version"], header["width"], header["height"]) == (2, 80, 24)
    kinds = [json.loads(x)[1] for x in lines[1:]]
    assert "r" in kinds and "m" in kinds
    res = _asciinema_cat(cast)
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"".join(OUTPUT) + b"bye\r\n"


def _asciinema_cat(cast: Path) -> subprocess.CompletedProcess[bytes]:
    """asciinema opens /dev/tty: give it a pty as controlling terminal, stdout a pipe."""
    import fcntl
    import os
    import termios

    master, slave = os.openpty()

    def ctty() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    try:
        return subprocess.run(
            ["asciinema", "cat", str(cast)],
            stdin=slave,
            capture_output=True,
            preexec_fn=ctty,
            timeout=30,
            check=False,
        )
    finally:
        os.close(master)
        os.close(slave)


def test_verify_and_tampering(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["verify", "--data", str(data), "--all"]) == 0
    out = capsys.readouterr().out
    assert out.count("OK   ") == 2 and "unsigned" in out
    assert _main(["verify", "--data", str(data), "--all", "--require-signature"]) == 1
    capsys.readouterr()
    path = data / "recordings" / _name(data, "cli-two-0002")
    raw = bytearray(path.read_bytes())
    chunk = v1.scan(v1.BytesSource(bytes(raw))).chunks[2]
    raw[chunk.payload_offset] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert _main(["verify", "--data", str(data), "cli-two-0002"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "first bad chunk: 2" in out
    assert _main(["verify", "--data", str(data), str(path)]) == 1  # a .bstl path works too


def test_keygen_sign_and_verify_with_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "rec.key"
    assert _main(["keygen", "-o", str(key)]) == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    pub = tmp_path / "rec.key.pub"
    assert b"BEGIN PUBLIC KEY" in pub.read_bytes()
    assert _main(["keygen", "-o", str(key)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    data = tmp_path / "data"

    async def main() -> None:
        r = Recorder(RecorderSettings(data_dir=data, signing_key=key))
        await r.start()
        s = await r.open_session(make_header("signed-0001"))
        s.output(b"hi")
        await s.close(exit_status=0)
        await r.close()

    asyncio.run(main())
    assert _main(["verify", "--data", str(data), "signed-0001", "--public-key", str(pub)]) == 0
    assert "signed by key" in capsys.readouterr().out
    other = tmp_path / "other.key"
    assert _main(["keygen", "-o", str(other)]) == 0
    capsys.readouterr()
    assert (
        _main(["verify", "--data", str(data), "signed-0001", "--public-key", str(other) + ".pub"])
        == 1
    )
    assert "wrong-key" in capsys.readouterr().out


def test_reindex_command(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (data / "index.sqlite3").unlink()
    assert _main(["reindex", "--data", str(data)]) == 0
    assert "indexed 2 recordings" in capsys.readouterr().out
    assert _main(["sessions", "list", "--data", str(data), "--text", "whoami", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_help_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _main(["sessions", "list", "--help"])
    assert exc.value.code == 0
    assert "--since" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        _main(["sessions", "list", "--since", "yesterdayish"])
    assert exc.value.code == 2
    assert "relative age" in capsys.readouterr().err


def test_parse_when() -> None:
    assert parse_when("2h", now=10_000.0) == 10_000.0 - 7200
    assert parse_when("3d", now=1e6) == 1e6 - 3 * 86400
    assert parse_when("2026-11-24T10:00:00Z") == 1795514400.0
