"""Config loading: typed values, defaults, and errors that name file, key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.ssh.keys import generate_host_key
from state.timeparse import parse_duration

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGd1c3Rvbm9tZXRoaW5nZWxzZWhlcmUxMjM0NTY3ODk0 a@b"


def _write(tmp_path: Path, text: str) -> Path:
    if not (tmp_path / "hk").exists():
        generate_host_key(tmp_path / "hk", "test")
    (tmp_path / "tk").write_text("x")
    p = tmp_path / "b.toml"
    p.write_text(text)
    return p


GOOD = f"""
[gateway]
listen = "0.0.0.0:2200"
host_keys = ["hk"]
idle_timeout = "30m"

[users.alice]
keys = ["{KEY}"]
groups = ["ops"]

[targets.web1]
host = "10.0.0.5"
user = "deploy"
key_file = "tk"
host_keys = ["{KEY}"]
groups = ["ops"]
allow_local_forwarding = ["group:ops", "bob"]
"""


def test_good_config(tmp_path: Path) -> None:
    c = load_config(_write(tmp_path, GOOD))
    assert (c.gateway.listen_host, c.gateway.listen_port) == ("0.0.0.0", 2200)
    assert c.gateway.idle_timeout == 1800
    assert c.gateway.host_keys == (tmp_path / "hk",)
    assert c.data_dir == tmp_path / "data"
    assert c.audit.file == tmp_path / "data" / "audit.jsonl"
    t = c.targets["web1"]
    assert t.port == 22 and t.key_file == tmp_path / "tk"
    assert t.groups == frozenset({"ops"})
    assert t.allow_local_forwarding.allows("alice", frozenset({"ops"}))
    assert t.allow_local_forwarding.allows("bob", frozenset())
    assert not t.allow_agent_forwarding.allows("alice", frozenset({"ops"}))
    assert c.recording.on_failure == "terminate" and c.recording.zstd_level == 3


def _problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, text))
    return [str(p) for p in exc.value.problems]


def test_errors_name_key_and_line(tmp_path: Path) -> None:
    bad = GOOD.replace('user = "deploy"', 'user = "deploy"\nport = 70000')
    problems = _problems(tmp_path, bad)
    line = bad.splitlines().index("port = 70000") + 1
    assert problems == [f"{tmp_path / 'b.toml'}:{line}: targets.web1.port: "
                        "expected an integer 1-65535, got 70000"]


def test_unknown_key_suggests(tmp_path: Path) -> None:
    problems = _problems(tmp_path, GOOD.replace("host_keys = [\"hk\"]", "host_key = [\"hk\"]"))
    assert any("gateway.host_key: unknown key (did you mean 'host_keys'?)" in p
               for p in problems)
    assert any("gateway.host_keys: at least one host key file is required" in p
               for p in problems)


def test_every_problem_is_reported(tmp_path: Path) -> None:
    bad = GOOD.replace('idle_timeout = "30m"', 'idle_timeout = "soon"').replace(
        'key_file = "tk"', 'key_file = "missing"')
    problems = _problems(tmp_path, bad)
    assert any("gateway.idle_timeout: expected seconds or a duration" in p for p in problems)
    assert any("targets.web1.key_file:" in p and "does not exist" in p for p in problems)


def test_target_needs_exactly_one_credential_and_pinned_key(tmp_path: Path) -> None:
    bad = GOOD.replace('key_file = "tk"', 'password_env = "NOPE_NOT_SET"\nkey_file = "tk"')
    bad = bad.replace(f'host_keys = ["{KEY}"]\ngroups', "groups")
    problems = _problems(tmp_path, bad)
    assert any("set exactly one of key_file, key_env, password_file, password_env" in p
               for p in problems)
    assert any("environment variable NOPE_NOT_SET is not set" in p for p in problems)
    assert any("pin the target's host key" in p for p in problems)


def test_invalid_toml_names_line(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "[gateway]\nlisten = \n")
    assert problems[0].startswith(f"{tmp_path / 'b.toml'}:2: not valid TOML")


def test_user_without_credentials_and_bad_names(tmp_path: Path) -> None:
    bad = GOOD + '\n[users."bad+name"]\nkeys = ["nope"]\n[targets.help]\nbuiltin = "local-shell"\n'
    problems = _problems(tmp_path, bad)
    assert any("users.bad+name" in p and "letters, digits" in p for p in problems)
    assert any("key [0] is not an OpenSSH public key line" in p for p in problems)
    assert any("targets.help" in p and "may not be one of" in p for p in problems)


def test_s3_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3_SECRET_FOR_TEST", "s3cr3t")
    c = load_config(_write(tmp_path, GOOD + """
[recording]
storage = "s3://bucket/some/prefix"
[recording.s3]
endpoint_url = "http://127.0.0.1:9000"
access_key_id = "AK"
secret_access_key_env = "S3_SECRET_FOR_TEST"
part_size_mib = 5
"""))
    s3 = c.recording.s3
    assert s3 is not None and (s3.bucket, s3.prefix, s3.part_size) == ("bucket", "some/prefix",
                                                                      5 * 1024 * 1024)
    assert "s3cr3t" not in repr(c)


@pytest.mark.parametrize(("value", "seconds"), [(90, 90.0), ("30s", 30.0), ("5m", 300.0),
                                                ("8h", 28800.0), ("1d", 86400.0),
                                                ("250ms", 0.25), ("x", None), (-1, None),
                                                (True, None)])
def test_durations(value: object, seconds: float | None) -> None:
    assert parse_duration(value) == seconds


def test_rdp_screen_pass_settings(tmp_path: Path) -> None:
    """``[rdp] ocr``, ``ocr_budget``, ``ocr_per_minute``: defaults, values, errors."""
    c = load_config(_write(tmp_path, GOOD + '\n[rdp]\nlisten = "127.0.0.1:3389"\n'))
    assert c.rdp is not None
    assert (c.rdp.ocr, c.rdp.ocr_budget, c.rdp.ocr_per_minute) == (True, 120.0, 6)
    c = load_config(_write(tmp_path, GOOD + '\n[rdp]\nlisten = "127.0.0.1:3389"\nocr = false\n'
                           'ocr_budget = "5m"\nocr_per_minute = 30\n'))
    assert c.rdp is not None
    assert (c.rdp.ocr, c.rdp.ocr_budget, c.rdp.ocr_per_minute) == (False, 300.0, 30)
    problems = _problems(tmp_path, GOOD + '\n[rdp]\nlisten = "127.0.0.1:3389"\nocr = "yes"\n'
                         'ocr_budget = 0\nocr_per_minute = 0\nocr_budjet = "1m"\n')
    text = "\n".join(problems)
    assert "rdp.ocr: expected true or false, got a string" in text
    assert "rdp.ocr_budget: expected a positive CPU time per session" in text
    assert "rdp.ocr_per_minute: expected an integer 1-600, got 0" in text
    assert "rdp.ocr_budjet: unknown key (did you mean 'ocr_budget'?)" in text
