"""Fixtures for the sink integration tests: a real moto_server and a fault-injecting proxy.

``moto_server`` is the real moto S3 server (session-scoped, free loopback port). The
sinks talk to it over HTTP exactly as they would talk to S3.

``fault_proxy`` is a tiny TCP proxy in front of it. It is a *fault injector*, not a fake
S3: every request it lets through is answered by moto. It exists because moto keeps its
state in memory (stopping it would lose the multipart uploads we want to see resumed)
and because moto does not verify credentials, so it cannot produce a real 403. Modes:

* ``pass``: forward bytes both ways.
* ``refuse``: close the listening socket (connection refused) and drop open connections.
* ``stall``: accept connections and never answer (the client's read timeout fires).
* ``slow``: forward, but at most ``rate`` bytes per second each way (a trickle that
  never trips a read timeout).
* ``deny403``: answer every request with a canned S3 ``403 AccessDenied`` XML error.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import venv_tool

MOTO_AK = "AKIAFAKEFAKEFAKE0000"
# A made-up secret; the tests check it never shows up in errors or logs.
MOTO_SK = "fake-secret-Zm9vYmFyYmF6cXV4LXNlY3JldA"

ACCESS_DENIED_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message>"
    b"<RequestId>FAULTPROXY0001</RequestId><HostId>faultproxy</HostId></Error>"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


MOTO_PROCESSES: dict[str, subprocess.Popen[bytes]] = {}  # endpoint -> its moto_server


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """Start ``moto_server`` on a free loopback port; yield its endpoint URL."""
    exe = venv_tool("moto_server")
    if exe is None:
        pytest.fail("moto_server is not installed next to this Python (pip install 'moto[server]')")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto_server did not start on port {port}")
            time.sleep(0.05)
    MOTO_PROCESSES[url] = proc
    try:
        yield url
    finally:
        MOTO_PROCESSES.pop(url, None)
        proc.send_signal(signal.SIGCONT)  # in case a test left it stopped
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def s3_client(moto_server: str) -> Any:
    """A boto3 client straight to moto (not through the proxy), to check what S3 holds."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=moto_server,
        region_name="us-east-1",
        aws_access_key_id=MOTO_AK,
        aws_secret_access_key=MOTO_SK,
    )


@pytest.fixture
def bucket(s3_client: Any) -> str:
    """A fresh, empty bucket for one test."""
    name = f"rec-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    return name


class FaultProxy:
    """A TCP proxy on a fixed loopback port that can refuse, stall or deny with 403."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.mode = "pass"
        self.rate = 20_000  # bytes per second each way in "slow" mode
        self.denied = 0  # requests answered with the canned 403
        # Header blocks of requests forwarded in "pass" mode (request line + headers), so
        # tests can see what was sent where moto does not keep it (bounded: last 1000).
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._stopped = False
        self._acceptor: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._listen()

    def _listen(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        sock.settimeout(0.05)
        self._listener = sock
        self._acceptor = threading.Thread(target=self._accept_loop, args=(sock,), daemon=True)
        self._acceptor.start()

    def _unlisten(self) -> None:
        sock, self._listener = self._listener, None
        if sock is not None:
            sock.close()
        if self._acceptor is not None:
            self._acceptor.join(5)
            self._acceptor = None

    def _drop_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, set()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def set_mode(self, mode: str, rate: int | None = None) -> None:
        """Switch mode; open connections are dropped so the change is immediate."""
        assert mode in ("pass", "refuse", "stall", "deny403", "slow"), mode
        if rate is not None:
            self.rate = rate
        if mode == self.mode:
            return
        if mode == "refuse":
            self._unlisten()
        elif self.mode == "refuse":
            self._listen()
        self.mode = mode
        self._drop_all()

    def stop(self) -> None:
        self._stopped = True
        self._unlisten()
        self._drop_all()

    def _track(self, *socks: socket.socket) -> None:
        with self._lock:
            self._conns.update(socks)

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopped and self._listener is listener:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            self._track(conn)
            mode = self.mode
            if mode in ("pass", "slow"):
                threading.Thread(target=self._forward, args=(conn,), daemon=True).start()
            elif mode == "deny403":
                threading.Thread(target=self._deny, args=(conn,), daemon=True).start()
            # "stall": keep the connection open and never read or answer.

    def _forward(self, conn: socket.socket) -> None:
        try:
            up = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            conn.close()
            return
        self._track(up)

        def throttle(n: int) -> None:
            if self.mode == "slow" and n:
                time.sleep(n / max(1, self.rate))

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(4096 if self.mode == "slow" else 65536):
                    throttle(len(data))
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

        def pump_requests(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(4096 if self.mode == "slow" else 65536):
                    throttle(len(data))
                    if data[:8].split(b" ", 1)[0] in (b"GET", b"PUT", b"POST", b"HEAD", b"DELETE"):
                        head = data.partition(b"\r\n\r\n")[0].decode("latin-1")
                        with self._lock:
                            self.requests = [*self.requests[-999:], head]
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

        t = threading.Thread(target=pump, args=(up, conn), daemon=True)
        t.start()
        pump_requests(conn, up)
        t.join(30)
        conn.close()
        up.close()

    def _deny(self, conn: socket.socket) -> None:
        try:
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, _, body = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])
            }
            if headers.get("expect", "").lower() != "100-continue":
                left = int(headers.get("content-length", "0")) - len(body)
                while left > 0:
                    chunk = conn.recv(min(left, 65536))
                    if not chunk:
                        break
                    left -= len(chunk)
            is_head = lines[0].startswith("HEAD ")
            payload = b"" if is_head else ACCESS_DENIED_XML
            conn.sendall(
                b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\n"
                + f"Content-Length: {len(ACCESS_DENIED_XML)}\r\n".encode()
                + b"x-amz-request-id: FAULTPROXY0001\r\nConnection: close\r\n\r\n"
                + payload
            )
            self.denied += 1
        except OSError:
            pass
        finally:
            conn.close()


@pytest.fixture
def fault_proxy(moto_server: str) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of moto (see the module docstring); starts in pass."""
    proxy = FaultProxy(int(moto_server.rsplit(":", 1)[1]))
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def tmpfs_dir(tmp_path: Any) -> Iterator[Any]:
    """A 1 MiB tmpfs to fill up (disk full); skipped where mounting is not permitted."""
    target = tmp_path / "tiny"
    target.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a 1 MiB tmpfs needs root and mount(8)")
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(target)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


MIB = 1024 * 1024


def make_s3_settings(endpoint: str, bucket: str, **overrides: Any) -> Any:
    """S3Settings for tests: moto credentials, 5 MiB parts, fast retries and timeouts."""
    from recorder.settings import S3Settings

    values: dict[str, Any] = {
        "bucket": bucket,
        "prefix": "rec",
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "access_key_id": MOTO_AK,
        "secret_access_key": MOTO_SK,
        "part_size": 5 * MIB,
        "spool_cap_bytes": 64 * MIB,
        "retry_interval": 0.1,
        "max_retry_interval": 0.5,
        "connect_timeout": 1.0,
        "read_timeout": 1.0,
    }
    values.update(overrides)
    return S3Settings(**values)


@pytest.fixture
def s3_settings() -> Any:
    """The factory :func:`make_s3_settings` (endpoint, bucket, **overrides)."""
    return make_s3_settings
