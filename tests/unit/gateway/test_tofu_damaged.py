"""A damaged trust-on-first-use file (DATA_DIR/known_targets) fails closed: the target
whose remembered key cannot be read is refused as a host key mismatch, never trusted
anew; other targets' lines still work."""

from __future__ import annotations

from pathlib import Path

import asyncssh
import pytest

from gateway.errors import HostKeyMismatch
from gateway.ssh.upstream import TofuStore


def _key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519").convert_to_public()


def test_undecodable_file_refuses(tmp_path: Path) -> None:
    path = tmp_path / "known_targets"
    path.write_bytes(b"\xff\xfe garbage \x80\x81\n")
    with pytest.raises(HostKeyMismatch, match="damaged"):
        TofuStore(path).get("web1")


def test_a_damaged_line_refuses_only_its_target(tmp_path: Path) -> None:
    path = tmp_path / "known_targets"
    store = TofuStore(path)
    good = _key()
    store.put("db1", good)
    with open(path, "a") as fh:
        fh.write("web1 ssh-ed25519 AAAAnot-a-key\n")
    with pytest.raises(HostKeyMismatch):
        store.get("web1")
    got = store.get("db1")
    assert got is not None and got.export_public_key() == good.export_public_key()
    assert store.get("new") is None  # never seen: first use
