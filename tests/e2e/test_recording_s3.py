"""The gateway recording to S3 (a real moto_server), including an S3 outage mid-session.

moto does not check credentials or stay up across restarts; the fault-injecting proxy
from tests/integration makes S3 unreachable and brings it back (see its docstring).
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

import pytest

from tests.e2e.rig import Rig
from tests.integration.conftest import (  # noqa: F401 - fixtures used by name
    MOTO_AK,
    MOTO_SK,
    bucket,
    fault_proxy,
    moto_server,
    s3_client,
)

pytestmark = [pytest.mark.e2e, pytest.mark.s3]


def _s3_config(endpoint: str, bucket_name: str) -> dict[str, str]:
    os.environ["BASTILLE_TEST_S3_SECRET"] = MOTO_SK
    return {"recording_extra": f"""storage = "s3://{bucket_name}/ssh"
[recording.s3]
endpoint_url = "{endpoint}"
region = "us-east-1"
access_key_id = "{MOTO_AK}"
secret_access_key_env = "BASTILLE_TEST_S3_SECRET"
part_size_mib = 5
retry_interval = "0.5s"
"""}


def _objects(s3: Any, bucket_name: str) -> dict[str, bytes]:
    out = {}
    for item in s3.list_objects_v2(Bucket=bucket_name).get("Contents", []):
        out[item["Key"]] = s3.get_object(Bucket=bucket_name, Key=item["Key"])["Body"].read()
    return out


def _wait_objects(s3: Any, bucket_name: str, n: int, timeout: float = 30) -> dict[str, bytes]:
    deadline = time.monotonic() + timeout
    objs: dict[str, bytes] = {}
    while time.monotonic() < deadline:
        objs = _objects(s3, bucket_name)
        if len(objs) >= n:
            return objs
        time.sleep(0.3)
    raise AssertionError(f"expected {n} object(s) in the bucket, found {list(objs)}")


def test_sessions_recorded_to_s3(make_gateway, moto_server: str, bucket: str,  # noqa: F811
                                 s3_client: Any) -> None:  # noqa: F811
    g: Rig = make_gateway(**_s3_config(moto_server, bucket))
    r = g.ssh("alice", "web1", "--", "head -c 7000000 /dev/urandom")
    assert r.returncode == 0 and len(r.stdout) == 7_000_000
    objs = _wait_objects(s3_client, bucket, 1)
    key, blob = next(iter(objs.items()))
    assert key.startswith("ssh/") and key.endswith(".bstl")
    from recorder import events as ev
    from recorder.reader import Recording
    from recorder.sinks.memory import MemorySink

    sink = MemorySink()
    stream = sink.create("x.bstl")
    stream.write(blob)
    stream.close()
    out = b"".join(e.data for e in Recording.from_sink(sink, "x.bstl").events()
                   if e.type == ev.OUTPUT)
    assert hashlib.sha256(out).hexdigest() == hashlib.sha256(r.stdout).hexdigest()
    assert MOTO_SK.encode() not in g.gateway.logs().encode()


def test_s3_outage_sessions_go_on_and_catch_up(make_gateway, fault_proxy,  # noqa: F811
                                               bucket: str, s3_client: Any) -> None:  # noqa: F811
    g: Rig = make_gateway(**_s3_config(f"http://127.0.0.1:{fault_proxy.port}", bucket))
    fault_proxy.set_mode("refuse")
    r = g.ssh("alice", "web1", "--", "seq 1 200000")
    assert r.returncode == 0 and r.stdout.endswith(b"200000\n")  # the session ran
    time.sleep(1.0)
    assert _objects(s3_client, bucket) == {}
    fault_proxy.set_mode("pass")
    objs = _wait_objects(s3_client, bucket, 1)
    assert len(next(iter(objs.values()))) > 0
