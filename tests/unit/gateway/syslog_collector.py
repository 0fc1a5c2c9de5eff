"""A real syslog collector for tests: TCP or TLS (RFC 5425 octet-counted frames) or UDP,
that can be stopped and restarted on the same port, and a CA + server certificate."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HEADER = re.compile(rb"^<(\d+)>1 (\S+) (\S+) bastille - (\S+) - (.*)$", re.S)


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A CA certificate and a server certificate for 127.0.0.1 and localhost."""
    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    now = datetime.datetime.now(datetime.UTC)
    ca_key = key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test syslog CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    srv_key = key()
    srv = (x509.CertificateBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
           .issuer_name(ca_name).public_key(srv_key.public_key())
           .serial_number(x509.random_serial_number())
           .not_valid_before(now - datetime.timedelta(minutes=5))
           .not_valid_after(now + datetime.timedelta(days=1))
           .add_extension(x509.SubjectAlternativeName([
               x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
               critical=False)
           .sign(ca_key, hashes.SHA256()))
    ca_pem, cert_pem, key_pem = (directory / n for n in ("ca.pem", "srv.pem", "srv.key"))
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(srv.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(srv_key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    return ca_pem, cert_pem, key_pem


class Collector:
    """Accepts connections and parses octet-counted RFC 5424 messages."""

    def __init__(self, tls: tuple[Path, Path] | None = None, port: int = 0) -> None:
        self.tls = tls
        self.port = port
        self.messages: list[bytes] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._running = False

    def start(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(8)
        sock.settimeout(0.2)
        self.port = sock.getsockname()[1]
        self._listener = sock
        self._running = True
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        ctx = None
        if self.tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
        assert self._listener is not None
        while self._running:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(0.2)
            if ctx is not None:
                try:
                    conn.settimeout(5)
                    conn = ctx.wrap_socket(conn, server_side=True)
                    conn.settimeout(0.2)
                except (OSError, ssl.SSLError):
                    conn.close()
                    continue
            with self._lock:
                self._conns.append(conn)
            t = threading.Thread(target=self._read, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _read(self, conn: socket.socket) -> None:
        buf = b""
        while self._running:
            try:
                data = conn.recv(65536)
            except (TimeoutError, ssl.SSLWantReadError):
                continue
            except OSError:
                return
            if not data:
                return
            buf += data
            while True:
                m = re.match(rb"^(\d+) ", buf)
                if not m or len(buf) < m.end() + int(m.group(1)):
                    break
                end = m.end() + int(m.group(1))
                with self._lock:
                    self.messages.append(buf[m.end():end])
                buf = buf[end:]

    def stop(self) -> None:
        """Like a collector restart: the listener and every connection close."""
        self._running = False
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()
        for t in self._threads:
            t.join(2)
        self._threads = []

    def records(self) -> list[dict[str, object]]:
        with self._lock:
            raw = list(self.messages)
        out = []
        for m in raw:
            parsed = HEADER.match(m)
            assert parsed is not None, m
            out.append(json.loads(parsed.group(5)))
        return out

    def wait_for(self, n: int, timeout: float = 20.0) -> list[dict[str, object]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ids = {r.get("id") for r in self.records()}
            if len(ids) >= n:
                return self.records()
            time.sleep(0.05)
        raise AssertionError(f"collector has {len({r.get('id') for r in self.records()})} "
                             f"distinct events, expected {n}")
