"""``[recording]`` and its storage URL: each store type validates its own settings and
every problem is reported with its key (issue 17: ``config check`` said OK to
``s3://My_Bucket..x/rec``, ``sse = "bogus"``, ``object_lock_mode = "FOREVER"``)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from recorder.config import parse_recording
from recorder.settings import MIB, S3Settings
from recorder.sinks.registry import Problem, parse_duration, store_types

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGd1c3Rvbm9tZXRoaW5nZWxzZWhlcmUxMjM0NTY3ODk0 a@b"


def _parse(tmp_path: Path, text: str, *, reading: bool = False,
           env: dict[str, str] | None = None) -> tuple[object, list[Problem]]:
    table = tomllib.loads(text).get("recording", {})
    return parse_recording(table, data_dir=tmp_path / "data", base=tmp_path, reading=reading,
                           env=env or {})


def _keys(problems: list[Problem]) -> dict[str, str]:
    return {p.key: p.message for p in problems}


def test_the_three_values_config_check_used_to_accept(tmp_path: Path) -> None:
    _, problems = _parse(tmp_path, """
[recording]
storage = "s3://My_Bucket..x/rec"
[recording.s3]
sse = "bogus"
object_lock_mode = "FOREVER"
""")
    keys = _keys(problems)
    assert set(keys) == {"recording.storage", "recording.s3.sse", "recording.s3.object_lock_mode"}
    assert "My_Bucket..x" in keys["recording.storage"] and "3-63" in keys["recording.storage"]
    assert "AES256" in keys["recording.s3.sse"] and "'bogus'" in keys["recording.s3.sse"]
    assert "GOVERNANCE" in keys["recording.s3.object_lock_mode"]


@pytest.mark.parametrize(
    ("snippet", "key", "words"),
    [
        ('storage = "s3://ab/x"', "recording.storage", "3-63"),
        ('storage = "s3://192.168.1.10/x"', "recording.storage", "IP address"),
        ('storage = "s3://bucket/a/../b"', "recording.storage", "'..'"),
        ('storage = "s3://bucket/a b"', "recording.storage", "each part"),
        ('storage = "gs://bucket/x"', "recording.storage", "s3://bucket/prefix"),
        ('storage = "s3://bucket"\n[recording.s3]\npart_size_mib = 4',
         "recording.s3.part_size_mib", "5-5120"),
        ('storage = "s3://bucket"\n[recording.s3]\npart_size_mib = 64\nspool_cap_mib = 32',
         "recording.s3.spool_cap_mib", "at least part_size"),
        ('storage = "s3://bucket"\n[recording.s3]\nretry_interval = "5s"\n'
         'max_retry_interval = "1s"', "recording.s3.max_retry_interval", ">= retry_interval"),
        ('storage = "s3://bucket"\n[recording.s3]\nsse_kms_key_id = "k"',
         "recording.s3.sse_kms_key_id", "aws:kms"),
        ('storage = "s3://bucket"\n[recording.s3]\nobject_lock_mode = "GOVERNANCE"',
         "recording.s3.object_lock_retain_days", "> 0"),
        ('storage = "s3://bucket"\n[recording.s3]\nendpoint_url = "http://u:p@h:9000"',
         "recording.s3.endpoint_url", "no credentials"),
        ('storage = "s3://bucket"\n[recording.s3]\nendpoint_url = "ftp://h"',
         "recording.s3.endpoint_url", "http(s)://"),
        ('storage = "s3://bucket"\n[recording.s3]\nregion = "EU West"',
         "recording.s3.region", "region name"),
        ('storage = "s3://bucket"\n[recording.s3]\naccess_key_id = "AK"',
         "recording.s3.access_key_id", "secret_access_key_env"),
        ('storage = "s3://bucket"\n[recording.s3]\ncall_timeout = "0s"',
         "recording.s3.call_timeout", "between 1"),
        ('storage = "s3://bucket"\n[recording.s3]\nretry_intervall = "1s"',
         "recording.s3.retry_intervall", "did you mean 'retry_interval'"),
        ('[recording.s3]\nregion = "eu-west-1"', "recording.s3", 'storage = "s3://bucket'),
        ('min_free_mib = -1', "recording.min_free_mib", "0-"),
        ('stall_timeout = "0s"', "recording.stall_timeout", "between 1"),
        ('on_failure = "explode"', "recording.on_failure", "terminate, continue"),
    ],
)
def test_every_problem_names_its_key(tmp_path: Path, snippet: str, key: str, words: str) -> None:
    _, problems = _parse(tmp_path, "[recording]\n" + snippet)
    keys = _keys(problems)
    assert key in keys, problems
    assert words in keys[key], keys[key]


def test_all_problems_at_once(tmp_path: Path) -> None:
    _, problems = _parse(tmp_path, """
[recording]
storage = "s3://Bad"
zstd_level = 99
[recording.s3]
sse = "x"
part_size_mib = 1
secret_access_key_env = "NOPE"
""")
    assert len(problems) >= 5, problems


def test_good_s3_settings(tmp_path: Path) -> None:
    settings, problems = _parse(tmp_path, """
[recording]
storage = "s3://audit-recordings/ssh/prod"
min_free_mib = 128
stall_timeout = "45s"
max_pause = "2s"
[recording.s3]
endpoint_url = "https://minio.example:9000"
region = "eu-west-1"
access_key_id = "AKIA"
secret_access_key_env = "W"
read_access_key_id = "AKIAREAD"
read_secret_access_key_env = "R"
sse = "aws:kms"
sse_kms_key_id = "alias/rec"
object_lock_mode = "COMPLIANCE"
object_lock_retain_days = 400
part_size_mib = 16
spool_cap_mib = 2048
retry_interval = "1s"
max_retry_interval = "10s"
call_timeout = "2m"
""", env={"W": "write-secret", "R": "read-secret"})
    assert problems == []
    s3 = settings.storage  # type: ignore[attr-defined]
    assert isinstance(s3, S3Settings) and settings.s3 is s3  # type: ignore[attr-defined]
    assert (s3.bucket, s3.prefix, s3.part_size, s3.spool_cap_bytes) == (
        "audit-recordings", "ssh/prod", 16 * MIB, 2048 * MIB)
    assert (s3.retry_interval, s3.max_retry_interval, s3.call_timeout) == (1.0, 10.0, 120.0)
    assert s3.secret_access_key == "write-secret" and s3.read_secret_access_key == "read-secret"
    assert "write-secret" not in repr(settings) and "read-secret" not in repr(settings)
    assert s3.location() == "s3://audit-recordings/ssh/prod"
    assert settings.min_free_bytes == 128 * MIB  # type: ignore[attr-defined]
    assert settings.stall_timeout == 45.0  # type: ignore[attr-defined]


def test_reading_does_not_need_the_write_secret(tmp_path: Path) -> None:
    text = """
[recording]
storage = "s3://bucket/p"
[recording.s3]
access_key_id = "AKIA"
secret_access_key_env = "NOT_SET_HERE"
"""
    _, problems = _parse(tmp_path, text)
    assert _keys(problems) == {
        "recording.s3.secret_access_key_env": "environment variable NOT_SET_HERE is not set"
    }
    settings, problems = _parse(tmp_path, text, reading=True)
    assert problems == []
    assert settings.storage.secret_access_key is None  # type: ignore[attr-defined]


def test_registry_and_durations() -> None:
    assert "s3" in store_types()
    assert parse_duration("500ms") == 0.5 and parse_duration("2m") == 120.0
    assert parse_duration("soon") is None and parse_duration(True) is None


def _gateway_config(tmp_path: Path, recording: str) -> Path:
    from gateway.ssh.keys import generate_host_key

    generate_host_key(tmp_path / "hk", "test")
    (tmp_path / "tk").write_text("x")
    path = tmp_path / "bastille.toml"
    path.write_text(f"""[gateway]
host_keys = ["hk"]

[users.alice]
keys = ["{KEY}"]

[targets.web1]
host = "10.0.0.5"
user = "deploy"
key_file = "tk"
host_keys = ["{KEY}"]
users = ["alice"]

{recording}
""")
    return path


def test_config_check_reports_storage_problems_with_file_and_line(tmp_path: Path) -> None:
    path = _gateway_config(tmp_path, """[recording]
storage = "s3://My_Bucket..x/rec"
[recording.s3]
sse = "bogus"
object_lock_mode = "FOREVER"
""")
    r = subprocess.run([sys.executable, "-m", "gateway", "config", "check", "-c", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0, r.stdout
    out = r.stdout + r.stderr
    lines = path.read_text().splitlines()
    for key, text in (("recording.storage", "storage ="), ("recording.s3.sse", "sse ="),
                      ("recording.s3.object_lock_mode", "object_lock_mode =")):
        line = next(i + 1 for i, x in enumerate(lines) if x.startswith(text))
        assert f"{path.resolve()}:{line}: {key}: " in out, out
