"""S3 sink behaviour against a real moto_server: parts, outages, caps, 403, kill -9.

Faults come from the ``fault_proxy`` fixture (see conftest): it refuses or stalls TCP
connections to moto, or answers a canned 403 AccessDenied, because moto neither loses
connectivity on demand nor checks credentials. Everything else is moto itself.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from recorder.errors import SinkError, SpoolFullError
from recorder.settings import RecorderSettings
from recorder.sinks import FileSink, S3Sink, SpooledSink, open_sink, parse_s3_url
from recorder.sinks.s3 import S3Store, validate_settings

MIB = 1024 * 1024
PART = 5 * MIB
# The made-up secret conftest's settings use; it must never appear in errors or logs.
MOTO_SK = "fake-secret-Zm9vYmFyYmF6cXV4LXNlY3JldA"

s3 = pytest.mark.s3


def data_of(n: int, seed: int = 3) -> bytes:
    import random

    return random.Random(seed).randbytes(n)


def write_all(stream: Any, data: bytes, chunk: int = 256 * 1024) -> None:
    for i in range(0, len(data), chunk):
        stream.write(data[i : i + chunk])


def get(client: Any, bucket: str, name: str) -> bytes:
    return bytes(client.get_object(Bucket=bucket, Key=f"rec/{name}")["Body"].read())


def keys(client: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def close_in_thread(stream: Any, timeout: float = 10) -> None:
    """close() must return while S3 is down: run it with a generous bound."""
    t = threading.Thread(target=stream.close, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "close() blocked while S3 was unreachable"


# -- settings and helpers (no S3 needed) -----------------------------------------------


def test_parse_s3_url() -> None:
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    assert parse_s3_url("s3://my.bucket-1/rec") == ("my.bucket-1", "rec/")
    assert parse_s3_url("s3://b01/a/b/") == ("b01", "a/b/")
    for bad, why in [
        ("http://b/x", "expected s3://"),
        ("s3://", "bucket name is missing"),
        ("s3:///x", "bucket name is missing"),
        ("s3://Bad_Bucket/x", "must be 3-63"),
        ("s3://ab", "must be 3-63"),
        ("s3://b01/a/../b", "'..'"),
        ("s3://b01/a//b", "empty"),
        ("s3://b01/a?x=1", "query"),
    ]:
        with pytest.raises(SinkError, match=why):
            parse_s3_url(bad)


def test_settings_are_validated(tmp_path: Path, s3_settings: Any) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"part_size": 4 * MIB}, "part_size"),
        ({"spool_cap_bytes": PART - 1}, "spool_cap_bytes"),
        ({"sse": "rot13"}, "sse"),
        ({"sse_kms_key_id": "k"}, "sse_kms_key_id"),
        ({"object_lock_mode": "FOREVER"}, "object_lock_mode"),
        ({"object_lock_mode": "GOVERNANCE"}, "object_lock_retain_days"),
        ({"retry_interval": 0}, "retry_interval"),
    ]
    for overrides, why in cases:
        with pytest.raises(SinkError, match=why):
            S3Sink(s3_settings("http://127.0.0.1:9", "bucket", **overrides), tmp_path / "sp")
    validate_settings(s3_settings("http://127.0.0.1:9", "bucket"))


def test_open_sink_picks_the_backend(tmp_path: Path, s3_settings: Any) -> None:
    sink = open_sink(RecorderSettings(data_dir=tmp_path))
    assert isinstance(sink, FileSink) and sink.directory == tmp_path / "recordings"
    s3sink = open_sink(
        RecorderSettings(data_dir=tmp_path, s3=s3_settings("http://127.0.0.1:9", "bucket"))
    )
    try:
        assert isinstance(s3sink, SpooledSink) and isinstance(s3sink.store, S3Store)
        assert (tmp_path / "spool").is_dir()
        assert (tmp_path / "spool").stat().st_mode & 0o777 == 0o700
    finally:
        s3sink.close()


def test_missing_boto3_is_a_clear_error(
    tmp_path: Path, s3_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # makes `import boto3` fail
    with pytest.raises(SinkError, match=r"S3 storage needs boto3: pip install 'bastille\[s3\]'"):
        S3Sink(s3_settings("http://127.0.0.1:9", "bucket"), tmp_path / "sp")


def test_package_imports_without_boto3() -> None:
    code = (
        "import sys; sys.modules['boto3'] = None; sys.modules['botocore'] = None\n"
        "import recorder.sinks.spool, recorder.sinks, recorder.service\n"
        "from recorder.sinks import S3Sink, open_sink\n"
        "print(sorted(m for m in sys.modules if m.startswith('boto')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['boto3', 'botocore']"  # only our None placeholders


def test_two_writers_share_a_spool_each_owning_its_entries(
    tmp_path: Path, s3_settings: Any
) -> None:
    """The gateway and an RDP worker write into one spool; a reader sees both, read-only."""
    settings = s3_settings("http://127.0.0.1:9", "bucket")
    first = S3Sink(settings, tmp_path / "sp")
    second = S3Sink(settings, tmp_path / "sp")
    reader = S3Sink(settings, tmp_path / "sp", readonly=True)
    try:
        a = first.create("a.bstl")
        b = second.create("b.bstl")
        a.write(b"from the gateway")
        b.write(b"from a worker")
        with pytest.raises(SinkError, match="already exists"):
            second.create("a.bstl")
        assert second.recover() == []  # a live process owns a.bstl: not adopted
        assert reader.pending() == ["a.bstl", "b.bstl"]
        assert reader.read("a.bstl") == b"from the gateway"
        assert reader.read("b.bstl", 5, 6) == b"a work"
        with pytest.raises(SinkError, match="read-only"):
            reader.create("c.bstl")
    finally:
        first.close()
        second.close()
        reader.close()
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "sp").iterdir())


# -- against moto ------------------------------------------------------------------------


@s3
def test_parts_are_part_size_except_the_last(
    moto_server: str, s3_client: Any, bucket: str, s3_settings: Any, tmp_path: Path
) -> None:
    """Parts go up while the session runs; each is exactly part_size but the last."""
    sink = S3Sink(s3_settings(moto_server, bucket), tmp_path / "spool")
    try:
        data = data_of(12 * MIB + 12345)
        st = sink.create("big.bstl")
        write_all(st, data)
        st.flush()
        assert sink.wait_idle(30)
        uploads = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        assert [u["Key"] for u in uploads] == ["rec/big.bstl"]
        live = s3_client.list_parts(
            Bucket=bucket, Key="rec/big.bstl", UploadId=uploads[0]["UploadId"]
        )
        assert [(p["PartNumber"], p["Size"]) for p in live["Parts"]] == [(1, PART), (2, PART)]
        assert sink.backlog_bytes == len(data) - 2 * PART
        st.close()
        assert sink.wait_idle(30)
        assert get(s3_client, bucket, "big.bstl") == data
        sizes = [
            s3_client.head_object(Bucket=bucket, Key="rec/big.bstl", PartNumber=n)
            for n in (1, 2, 3)
        ]
        assert [h["PartsCount"] for h in sizes] == [3, 3, 3]
        assert [h["ContentLength"] for h in sizes] == [PART, PART, 2 * MIB + 12345]
        assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
        assert sink.pending() == []
        assert [p.name for p in (tmp_path / "spool").iterdir() if p.is_dir()] == []
    finally:
        sink.close()


@s3
@pytest.mark.parametrize("fault", ["refuse", "stall"])
def test_s3_down_for_a_while_loses_nothing(
    fault: str,
    moto_server: str,
    s3_client: Any,
    bucket: str,
    s3_settings: Any,
    fault_proxy: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """S3 goes away mid-session: writes go on into the spool; when it is back, it catches up."""
    caplog.set_level(logging.INFO, logger="recorder")
    sink = S3Sink(s3_settings(fault_proxy.url, bucket), tmp_path / "spool")
    try:
        data = data_of(11 * MIB + 777)
        st = sink.create("outage.bstl")
        write_all(st, data[: 3 * MIB])
        st.flush()
        fault_proxy.set_mode(fault)
        write_all(st, data[3 * MIB :])
        st.flush()
        assert not sink.wait_idle(2.5)  # nothing can be uploaded
        assert sink.backlog_bytes == len(data)
        assert sink.read("outage.bstl") == data  # readable from the spool meanwhile
        second = sink.create("during.bstl")  # new sessions start during the outage
        second.write(b"started while S3 was down")
        close_in_thread(st)
        close_in_thread(second)
        assert sorted(sink.pending()) == ["during.bstl", "outage.bstl"]
        assert keys(s3_client, bucket) == []

        fault_proxy.set_mode("pass")
        assert sink.wait_idle(30)
        assert get(s3_client, bucket, "outage.bstl") == data
        assert get(s3_client, bucket, "during.bstl") == b"started while S3 was down"
        assert sink.pending() == [] and sink.backlog_bytes == 0
    finally:
        sink.close()
    outage_logs = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(outage_logs) == 1, "one warning per outage"
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    assert MOTO_SK not in caplog.text


@s3
def test_spool_cap_reached_raises_spool_full(
    moto_server: str,
    s3_client: Any,
    bucket: str,
    s3_settings: Any,
    fault_proxy: Any,
    tmp_path: Path,
) -> None:
    """With S3 down, writes stop at the cap with SpoolFullError; accepted bytes survive."""
    cap = 6 * MIB
    sink = S3Sink(s3_settings(fault_proxy.url, bucket, spool_cap_bytes=cap), tmp_path / "sp")
    try:
        fault_proxy.set_mode("refuse")
        st = sink.create("capped.bstl")
        accepted = bytearray()
        chunk = 1000 * 1000
        with pytest.raises(SpoolFullError, match=r"spool .* is full") as err:
            for i in range(20):
                piece = data_of(chunk, seed=i)
                st.write(piece)
                accepted += piece
        assert "capped.bstl" in str(err.value)
        assert len(accepted) == 6 * chunk  # the 7th MB would exceed 6 MiB
        assert sink.backlog_bytes == len(accepted)
        with pytest.raises(SpoolFullError):
            st.write(b"x" * (cap - len(accepted) + 1))
        fault_proxy.set_mode("pass")
        assert sink.wait_idle(30)  # the full part went up: room again
        assert sink.backlog_bytes == len(accepted) - PART
        st.write(b"after")
        st.close()
        assert sink.wait_idle(30)
        assert get(s3_client, bucket, "capped.bstl") == bytes(accepted) + b"after"
    finally:
        sink.close()


@s3
def test_403_access_denied_is_loud_and_loses_nothing(
    moto_server: str,
    s3_client: Any,
    bucket: str,
    s3_settings: Any,
    fault_proxy: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """S3 answers 403: a configuration error. It is logged as an error once, the status
    is "failing" naming the bucket and the code (never the secret) and the listener is
    told; sessions go on into the spool, and once access is restored the recording is
    uploaded whole, without a restart."""
    caplog.set_level(logging.INFO, logger="recorder")
    sink = S3Sink(s3_settings(fault_proxy.url, bucket), tmp_path / "sp")
    told: list[Any] = []
    sink.add_listener(told.append)
    try:
        fault_proxy.set_mode("deny403")
        st = sink.create("denied.bstl")
        data = data_of(PART + 1000)
        write_all(st, data)  # a full part: the uploader tries, and gets 403
        deadline = time.monotonic() + 20
        while sink.status().state != "failing" and time.monotonic() < deadline:
            time.sleep(0.05)
        status = sink.status()
        assert status.state == "failing", status
        assert "AccessDenied" in status.detail and repr(bucket) in status.detail
        assert MOTO_SK not in status.detail + str(status.last_error)
        assert told and told[-1].state == "failing"
        st.write(b"more")  # writes go on: the spool keeps them
        st.flush()
        second = sink.create("next.bstl")  # and sessions still start
        second.write(b"next")
        second.close()
        assert fault_proxy.denied >= 1
        assert sink.pending() == ["denied.bstl", "next.bstl"]

        fault_proxy.set_mode("pass")  # the policy is fixed
        st.close()
        assert sink.wait_idle(60)
        assert get(s3_client, bucket, "denied.bstl") == data + b"more"
        assert get(s3_client, bucket, "next.bstl") == b"next"
        assert sink.status().state == "ok"
        assert told[-1].state == "ok"
    finally:
        sink.close()
    assert MOTO_SK not in caplog.text
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert sum("AccessDenied" in r.getMessage() for r in errors) == 1


CRASHER = r"""
import json, os, random, sys, time
from pathlib import Path
from recorder.settings import S3Settings
from recorder.sinks.s3 import S3Sink
cfg = json.loads(sys.stdin.read())
sink = S3Sink(S3Settings(**cfg["settings"]), Path(cfg["spool"]))
data = random.Random(cfg["seed"]).randbytes(cfg["size"])
st = sink.create(cfg["name"])
for i in range(0, len(data), 65536):
    st.write(data[i:i + 65536])
st.flush()
while sink.backlog_bytes > len(data) - cfg["wait_uploaded"]:
    time.sleep(0.01)
print("READY", flush=True)
time.sleep(120)
"""


def run_and_kill(settings: Any, spool: Path, name: str, size: int, wait_uploaded: int) -> bytes:
    """Write through S3Sink in a child process, flush, then kill -9 it; return the bytes."""
    cfg = {
        "settings": {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)},
        "spool": str(spool),
        "seed": 11,
        "size": size,
        "name": name,
        "wait_uploaded": wait_uploaded,
    }
    # The secret goes through stdin, never argv (process lists).
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(cfg))
    proc.stdin.close()
    try:
        line = proc.stdout.readline()
        assert line.strip() == "READY", f"child did not get ready: {line!r}"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return data_of(size, seed=11)


@s3
def test_kill_9_mid_upload_then_recover(
    moto_server: str,
    s3_client: Any,
    bucket: str,
    s3_settings: Any,
    fault_proxy: Any,
    tmp_path: Path,
) -> None:
    """kill -9 after a flush, with a part uploaded: recover() resumes the same upload.

    The recovering sink talks through the pass-through proxy so the test can see that it
    asked ListParts and did not upload part 1 again.
    """
    settings = s3_settings(moto_server, bucket)
    spool = tmp_path / "spool"
    data = run_and_kill(settings, spool, "crash/k9.bstl", 12 * MIB, wait_uploaded=PART)
    uploads = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert len(uploads) == 1 and keys(s3_client, bucket) == []
    upload_id = uploads[0]["UploadId"]
    before = s3_client.list_parts(Bucket=bucket, Key="rec/crash/k9.bstl", UploadId=upload_id)
    assert len(before["Parts"]) >= 1
    (entry,) = [p for p in spool.iterdir() if p.is_dir()]
    assert entry.stat().st_mode & 0o777 == 0o700
    assert {f.name: f.stat().st_mode & 0o777 for f in entry.iterdir()} == {
        "data": 0o600,
        "lock": 0o600,
        "state.json": 0o600,
    }
    assert (entry / "data").read_bytes() == data  # the flushed bytes survived kill -9

    sink = S3Sink(dataclasses.replace(settings, endpoint_url=fault_proxy.url), spool)
    try:
        assert sink.pending() == ["crash/k9.bstl"]
        assert sink.read("crash/k9.bstl") == data  # readable before the upload finishes
        assert sink.recover() == ["crash/k9.bstl"]
        assert sink.wait_idle(30)
        assert get(s3_client, bucket, "crash/k9.bstl") == data
        assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
        head = s3_client.head_object(Bucket=bucket, Key="rec/crash/k9.bstl", PartNumber=1)
        assert head["PartsCount"] == 3
        assert sink.pending() == []
        # The same upload was resumed (part 1 kept), not restarted.
        sent = [r.split("\r\n", 1)[0] for r in fault_proxy.requests]
        assert any(f"uploadId={upload_id}" in r and r.startswith("GET ") for r in sent), sent
        assert not any("partNumber=1&" in r or r.endswith("partNumber=1 HTTP/1.1") for r in sent)
        assert not any("?uploads" in r for r in sent), "a new upload was started"
    finally:
        sink.close()


@s3
def test_recover_restarts_an_upload_s3_lost(
    moto_server: str, s3_client: Any, bucket: str, s3_settings: Any, tmp_path: Path
) -> None:
    """The multipart upload was aborted meanwhile (lifecycle rule): restart from the spool."""
    settings = s3_settings(moto_server, bucket)
    spool = tmp_path / "spool"
    data = run_and_kill(settings, spool, "lost.bstl", 7 * MIB, wait_uploaded=PART)
    (upload,) = s3_client.list_multipart_uploads(Bucket=bucket)["Uploads"]
    s3_client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])

    sink = S3Sink(settings, spool)
    try:
        assert sink.recover() == ["lost.bstl"]
        assert sink.wait_idle(30)
        assert get(s3_client, bucket, "lost.bstl") == data
    finally:
        sink.close()


@s3
def test_sse_and_object_lock_are_passed_through(
    moto_server: str, s3_client: Any, s3_settings: Any, fault_proxy: Any, tmp_path: Path
) -> None:
    """SSE and Object Lock reach S3 on PutObject and CreateMultipartUpload.

    moto keeps both on a PutObject and SSE on a multipart object, but drops the Object
    Lock of a multipart upload when completing it; for that one the headers of the
    CreateMultipartUpload request are checked as the (pass-through) proxy saw them.
    """
    locked = f"lock-{os.urandom(6).hex()}"
    s3_client.create_bucket(Bucket=locked, ObjectLockEnabledForBucket=True)
    settings = s3_settings(
        fault_proxy.url,
        locked,
        sse="AES256",
        object_lock_mode="GOVERNANCE",
        object_lock_retain_days=2,
    )
    sink = S3Sink(settings, tmp_path / "sp")
    try:
        for name, size in (("small.bstl", 1000), ("multi.bstl", PART + 10)):
            st = sink.create(name)
            write_all(st, data_of(size))
            st.close()
        assert sink.wait_idle(30)
    finally:
        sink.close()
    for name in ("small.bstl", "multi.bstl"):
        head = s3_client.head_object(Bucket=locked, Key=f"rec/{name}")
        assert head["ServerSideEncryption"] == "AES256", name
    head = s3_client.head_object(Bucket=locked, Key="rec/small.bstl")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    days = (head["ObjectLockRetainUntilDate"].timestamp() - time.time()) / 86400
    assert 1.9 < days <= 2.0
    (create,) = [r for r in fault_proxy.requests if r.startswith("POST ") and "?uploads" in r]
    headers = create.lower()
    assert "/rec/multi.bstl?uploads" in headers
    assert "x-amz-server-side-encryption: aes256" in headers
    assert "x-amz-object-lock-mode: governance" in headers
    assert "x-amz-object-lock-retain-until-date: " in headers


@s3
def test_file_size_limit_in_the_spool_is_a_sink_error(
    moto_server: str, bucket: str, s3_settings: Any, tmp_path: Path
) -> None:
    """RLIMIT_FSIZE (EFBIG) in a child process: the disk-full path without mounting.

    The tmpfs variant lives in the conformance suite and is skipped where mounting is not
    permitted; this one runs everywhere.
    """
    settings = s3_settings(moto_server, bucket)
    code = r"""
import json, resource, signal, sys
from pathlib import Path
from recorder.errors import SinkError
from recorder.settings import S3Settings
from recorder.sinks.s3 import S3Sink
cfg = json.loads(sys.stdin.read())
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
sink = S3Sink(S3Settings(**cfg["settings"]), Path(cfg["spool"]))
st = sink.create("big.bstl")
n = 0
try:
    for _ in range(10):
        st.write(b"y" * 100_000)
        n += 100_000
except SinkError as exc:
    print(json.dumps({"accepted": n, "size": sink.size("big.bstl"), "error": str(exc)}))
sink.close()
"""
    cfg = {
        "settings": {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)},
        "spool": str(tmp_path / "sp"),
    }
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(cfg),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["accepted"] == result["size"] == 300_000
    assert "file size limit" in result["error"] and "big.bstl" in result["error"]


@s3
def test_missing_bucket_is_an_outage_and_catches_up_when_created(
    moto_server: str, s3_client: Any, s3_settings: Any, tmp_path: Path
) -> None:
    """A real moto answer (no proxy): NoSuchBucket is an outage, not a reason to end
    sessions (issue 16 item 3); recordings wait in the spool and go up once the bucket
    exists."""
    name = f"later-{os.urandom(4).hex()}"
    sink = S3Sink(s3_settings(moto_server, name), tmp_path / "sp")
    try:
        with pytest.raises(SinkError, match=f"'{name}' does not exist"):
            sink.check()
        st = sink.create("x.bstl")
        data = data_of(PART + 10)
        write_all(st, data)
        st.flush()
        deadline = time.monotonic() + 20
        while sink.status().state != "degraded" and time.monotonic() < deadline:
            time.sleep(0.05)
        status = sink.status()
        assert status.state == "degraded" and "does not exist" in status.detail
        st.write(b"still recording")
        st.close()
        assert sink.pending() == ["x.bstl"]  # kept locally
        s3_client.create_bucket(Bucket=name)
        assert sink.wait_idle(30)
        assert get(s3_client, name, "x.bstl") == data + b"still recording"
        assert sink.status().state == "ok"
    finally:
        sink.close()


@s3
def test_malformed_spool_entry_is_reported_not_fatal(
    moto_server: str,
    s3_client: Any,
    bucket: str,
    s3_settings: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = s3_settings(moto_server, bucket)
    spool = tmp_path / "spool"
    first = S3Sink(settings, spool)
    st = first.create("good.bstl")
    st.write(b"good bytes")
    st.flush()
    first.close()
    junk = spool / ("0" * 32)
    junk.mkdir()
    (junk / "state.json").write_text("{not json")
    (junk / "data").write_bytes(b"whatever")

    sink = S3Sink(settings, spool)
    try:
        problems = sink.problems()
        assert len(problems) == 1 and str(junk) in problems[0]
        assert sink.recover() == ["good.bstl"]
        assert sink.wait_idle(30)
        assert get(s3_client, bucket, "good.bstl") == b"good bytes"
        assert (junk / "data").read_bytes() == b"whatever"  # left for a human
    finally:
        sink.close()
    assert "malformed" in caplog.text
