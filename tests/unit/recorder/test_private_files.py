"""Files the tools write hold sessions: created 0600 in 0700 directories whatever the
umask, never through a planted symbolic link, with ids checked before they become paths
(the keyframe cache, the index)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from recorder_helpers import build_recording, make_header

from common.safefiles import UnsafePath, private_dir, private_file, safe_id
from recorder import events as ev
from recorder import keyframes
from recorder.format import v1
from recorder.index import Index
from recorder.reader import Recording


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _recording(session_id: str = "kf-0001") -> Recording:
    raw, _ = build_recording([[(0.1, ev.OUTPUT, b"$ ls\r\nfile\r\n")]],
                             header=make_header("kf-0001"))
    if session_id != "kf-0001":  # a forged header, chained anew (the cache must not care)
        enc = v1.Encoder({**Recording.from_bytes(raw).header, "session_id": session_id})
        raw = enc.begin() + enc.data(v1.encode_event(ev.OUTPUT, 100_000, b"$ ls\r\n"), 0,
                                     100_000, final=True) + enc.trailer({"exit_status": 0})
    return Recording.from_bytes(raw)


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def test_keyframe_cache_ignores_planted_links(tmp_path: Path, loose_umask: None) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"root-owned secret")
    victim.chmod(0o600)
    cache = tmp_path / "data" / "keyframes"
    cache.mkdir(parents=True, mode=0o755)
    (cache / "kf-0001.kf").symlink_to(victim)
    (cache / "kf-0001.kf.tmp").symlink_to(victim)
    kfi = keyframes.load_or_build(_recording(), tmp_path / "data")
    assert kfi.session_id == "kf-0001"
    assert victim.read_bytes() == b"root-owned secret"
    cached = cache / "kf-0001.kf"
    assert not cached.is_symlink() and _mode(cached) == 0o600
    assert _mode(cache) == 0o700
    assert keyframes.load_or_build(_recording(), tmp_path / "data").source_size == \
        kfi.source_size


def test_keyframe_cache_refuses_path_ids(tmp_path: Path) -> None:
    data = tmp_path / "a" / "b" / "data"
    rec = _recording("../../../../x")  # a forged header: the id is data, not a name
    kfi = keyframes.load_or_build(rec, data)
    assert kfi.keyframes  # still seekable, just not cached
    assert not any(p.name.startswith("x") for p in tmp_path.rglob("*"))
    with pytest.raises(UnsafePath):
        keyframes.cache_path(data, "../x")


def test_index_is_private_whatever_the_umask(tmp_path: Path, loose_umask: None) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o777)
    idx = Index(data / "index.sqlite3")
    idx.session_opened({"session_id": "s-1", "user": "u", "start_time": 1.0}, "n")
    idx.close()
    for p in data.iterdir():
        assert _mode(p) == 0o600, p
    assert _mode(data) == 0o700


def test_helpers_refuse_links_and_bad_ids(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(UnsafePath):
        private_dir(tmp_path / "link")
    (tmp_path / "f").symlink_to(tmp_path / "nowhere")
    with pytest.raises(UnsafePath):
        private_file(tmp_path / "f")
    assert not (tmp_path / "nowhere").exists()
    for bad in ("", "a/b", "..", "x" * 65, "a b", "é"):
        with pytest.raises(UnsafePath):
            safe_id(bad)
    assert safe_id("0192abc-DEF_1") == "0192abc-DEF_1"


@pytest.mark.parametrize("damage", ["garbage", "half"])
def test_damaged_index_is_moved_aside_and_rebuilt(tmp_path: Path, damage: str) -> None:
    import asyncio
    import time

    from recorder.service import Recorder
    from recorder.settings import RecorderSettings

    data = tmp_path / "data"
    settings = RecorderSettings(data_dir=data)

    async def record(ids: list[str]) -> list[str]:
        r = Recorder(settings)
        await r.start()
        for sid in ids:
            s = await r.open_session(make_header(sid))
            s.output(b"hi\r\n")
            await s.close(exit_status=0)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(r.index.all_sessions()) < 7:  # noqa: ASYNC110 - polls a thread
            await asyncio.sleep(0.05)
        seen = [x.id for x in r.index.all_sessions()]
        await r.close()
        return seen

    ids = [f"idx-{i:04d}" for i in range(7)]
    assert len(asyncio.run(record(ids))) == 7
    path = data / "index.sqlite3"
    raw = path.read_bytes()
    path.write_bytes(os.urandom(8192) if damage == "garbage" else raw[: len(raw) // 2])
    for extra in ("-wal", "-shm"):
        (data / f"index.sqlite3{extra}").unlink(missing_ok=True)
    seen = asyncio.run(record([]))  # the gateway starts anyway and rebuilds while serving
    assert sorted(seen) == ids
    assert list(data.glob("index.sqlite3.corrupt-*"))
