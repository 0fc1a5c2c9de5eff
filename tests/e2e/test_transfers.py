"""scp, sftp and rsync through the gateway with the USER+TARGET@BASTION form."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import audit_events
from tests.e2e.rig import TARGET_USER, Rig

pytestmark = pytest.mark.e2e

REMOTE_TMP = f"/home/{TARGET_USER}"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _run(args: list[str], **kw) -> subprocess.CompletedProcess[bytes]:  # type: ignore[no-untyped-def]
    r = subprocess.run(args, capture_output=True, timeout=60, **kw)
    assert r.returncode == 0, (args, r.stderr.decode(errors="replace"))
    return r


def _transfers(rig: Rig, path: str, direction: str) -> list[dict]:  # type: ignore[type-arg]
    return audit_events(rig, kind="file_transfer", path=path, direction=direction)


@pytest.mark.parametrize("legacy", [False, True], ids=["scp-sftp", "scp-legacy"])
def test_scp_upload_and_download(rig: Rig, tmp_path: Path, legacy: bool) -> None:
    data = os.urandom(700_000)
    src = tmp_path / "up.bin"
    src.write_bytes(data)
    name = f"scp-{'o' if legacy else 's'}-{os.getpid()}.bin"
    remote = f"{REMOTE_TMP}/{name}"
    flags = ["-O"] if legacy else []
    _run(["scp", *flags, *rig.scp_args(), str(src), f"alice+web1@127.0.0.1:{remote}"])
    check = rig.ssh("alice", "web1", "--", "sha256sum", remote)
    assert check.stdout.split()[0].decode() == _sha(data)
    back = tmp_path / "down.bin"
    _run(["scp", *flags, *rig.scp_args(), f"alice+web1@127.0.0.1:{remote}", str(back)])
    assert back.read_bytes() == data
    up = _transfers(rig, remote, "upload")
    assert up and up[-1]["detail"]["size"] == len(data) and up[-1]["detail"]["sha256"] == _sha(data)
    down = [e for e in audit_events(rig, kind="file_transfer", direction="download")
            if e["detail"]["path"].endswith(name)]
    assert down and down[-1]["detail"]["sha256"] == _sha(data)


def test_sftp_batch(rig: Rig, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    src = tmp_path / "s.bin"
    src.write_bytes(data)
    remote = f"{REMOTE_TMP}/sftp-{os.getpid()}.bin"
    batch = tmp_path / "batch"
    batch.write_text(f"put {src} {remote}\nget {remote} {tmp_path / 'back.bin'}\nrm {remote}\n")
    args = rig.scp_args()
    args[args.index("-P")] = "-P"
    _run(["sftp", *args, "-b", str(batch), "alice+web1@127.0.0.1"])
    assert (tmp_path / "back.bin").read_bytes() == data
    assert _transfers(rig, remote, "upload")[-1]["detail"]["sha256"] == _sha(data)
    assert _transfers(rig, remote, "download")[-1]["detail"]["size"] == len(data)
    assert audit_events(rig, kind="file_transfer", op="remove", path=remote)


def test_rsync_over_bastion(rig: Rig, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "b.bin").write_bytes(os.urandom(50_000))
    remote = f"{REMOTE_TMP}/rsync-{os.getpid()}/"
    _run(["rsync", "-a", "-e", rig.ssh_command_string(), f"{src}/",
          f"alice+web1@127.0.0.1:{remote}"])
    r = rig.ssh("alice", "web1", "--", "cat", f"{remote}a.txt")
    assert r.stdout == b"alpha\n"
    back = tmp_path / "back"
    _run(["rsync", "-a", "-e", rig.ssh_command_string(), f"alice+web1@127.0.0.1:{remote}",
          f"{back}/"])
    assert (back / "sub" / "b.bin").read_bytes() == (src / "sub" / "b.bin").read_bytes()
    assert any("rsync --server" in e["detail"]["command"]
               for e in audit_events(rig, kind="exec", user="alice", target="web1"))


def test_sftp_refused_for_forbidden_target(rig: Rig, tmp_path: Path) -> None:
    batch = tmp_path / "batch"
    batch.write_text("ls\n")
    r = subprocess.run(["sftp", *rig.scp_args(), "-b", str(batch), "alice+secret@127.0.0.1"],
                       capture_output=True, timeout=30)
    assert r.returncode != 0
    assert b"not allowed to use target 'secret'" in r.stderr


def test_large_upload_is_paced_by_the_recorder(rig: Rig, tmp_path: Path) -> None:
    """An upload faster than the recorder must be slowed down, not cut off."""
    src = tmp_path / "big.bin"
    with open(src, "wb") as fh:
        for _ in range(40):
            fh.write(os.urandom(1024 * 1024))
    remote = f"{REMOTE_TMP}/big-{os.getpid()}.bin"
    _run(["scp", *rig.scp_args(), str(src), f"alice+web1@127.0.0.1:{remote}"])
    check = rig.ssh("alice", "web1", "--", f"sha256sum {remote}; rm -f {remote}")
    assert check.stdout.split()[0].decode() == _sha(src.read_bytes())


@pytest.mark.parametrize("legacy", [False, True], ids=["scp-sftp", "scp-legacy"])
def test_file_contents_masked_in_recording_exact_for_user(rig: Rig, tmp_path: Path,
                                                          legacy: bool) -> None:
    from recorder import events as ev
    from recorder.reader import Recording
    from recorder.sinks.file import FileSink

    key = "AKIA" + "IOSFODNN7EXAMPLE"
    card = "4111 1111 1111 1111"
    data = os.urandom(100_000) + f"\naws {key} card {card}\n".encode() + os.urandom(50_000)
    name = f"masked-{'o' if legacy else 's'}-{os.getpid()}.bin"
    src = tmp_path / name  # legacy scp names the source's basename in its stream
    src.write_bytes(data)
    remote = f"{REMOTE_TMP}/{name}"
    flags = ["-O"] if legacy else []
    _run(["scp", *flags, *rig.scp_args(), str(src), f"alice+web1@127.0.0.1:{remote}"])
    back = tmp_path / "back.bin"
    _run(["scp", *flags, *rig.scp_args(), f"alice+web1@127.0.0.1:{remote}", str(back)])
    assert back.read_bytes() == data  # the user's bytes are exact both ways
    check = rig.ssh("alice", "web1", "--", "sha256sum", remote)
    assert check.stdout.split()[0].decode() == _sha(data)
    # the recordings of the two transfers hold the file with the secrets masked
    sink = FileSink(rig.data / "recordings")
    found = 0
    deadline = time.monotonic() + 15
    while found < 2 and time.monotonic() < deadline:
        found = 0
        for rec_name in sink.names():
            blob = b"".join(e.data for e in Recording.from_sink(sink, rec_name).events()
                            if e.is_output or e.type == ev.INPUT)
            if name.encode() not in blob:
                continue
            assert key.encode() not in blob and card.encode() not in blob
            if b"\naws " not in blob:
                continue  # the sha256sum exec
            found += 1
            # masked in place, same length: the recorded SFTP/scp stream stays well-formed
            assert re.search(rb"\naws (?:AKIA)?\*{16,20} card [ *]{19}\n", blob), \
                blob[blob.find(b"\naws "):][:60]
            assert len(re.findall(rb"\naws [A-Z*]{20} card [0-9 *]{19}\n", blob)) >= 1
        time.sleep(0.3)
    assert found == 2
