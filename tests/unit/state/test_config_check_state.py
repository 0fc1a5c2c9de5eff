"""``bastille config check`` with ``[state] url``: the database is reached (and has
pg_trgm) or the problem is named, without the password."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway.ssh.keys import generate_host_key
from tests.pg_rig import PASSWORD, PgServer


def _check(tmp_path: Path, url: str, password_file: Path) -> subprocess.CompletedProcess[str]:
    if not (tmp_path / "hk").exists():
        generate_host_key(tmp_path / "hk", "test")
    config = tmp_path / "b.toml"
    config.write_text(f"""
[gateway]
host_keys = ["hk"]

[users.alice]
keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGd1c3Rvbm9tZXRoaW5nZWxzZWhlcmUxMjM0NTY3ODk0 a"]

[state]
url = "{url}"
password_file = "{password_file}"
""")
    return subprocess.run([sys.executable, "-m", "gateway", "config", "check", "-c",
                           str(config)], capture_output=True, text=True, timeout=60)


def test_config_check_reaches_the_database(pg_server: PgServer, tmp_path: Path) -> None:
    url = pg_server.url(pg_server.new_database())
    ok = _check(tmp_path, url, pg_server.password_file)
    assert ok.returncode == 0, ok.stderr
    assert ": OK" in ok.stdout
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    bad = _check(tmp_path, url, wrong)
    assert bad.returncode == 1
    assert "state.url: cannot reach the database" in bad.stderr
    assert "password authentication failed" in bad.stderr
    assert "not-the-password" not in bad.stderr and PASSWORD not in bad.stderr
    down = _check(tmp_path, url.replace(f":{pg_server.port}/", ":1/"), pg_server.password_file)
    assert down.returncode == 1 and "cannot reach the database" in down.stderr
