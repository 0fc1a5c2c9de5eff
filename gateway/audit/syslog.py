"""Audit events to syslog: RFC 5424 over UDP (RFC 5426), TCP (RFC 6587, octet counting) or
TLS (RFC 5425), or the local datagram socket (``/dev/log``).

Each event is one message, ``MSGID`` its kind, the message the audit record as JSON
(``syslog_format = "json"``) or an OCSF-shaped record (``"ocsf"``), ASCII-escaped::

    <38>1 2026-11-24T10:00:00.123Z bastion1 bastille - session.start - {"time":...}

Delivery over TCP and TLS survives a collector restart: an event counts as delivered
once the collector's TCP stack acknowledged its bytes (the socket's send queue is
empty, ``SIOCOUTQ``); a connection that breaks is reopened (backoff 0.5 s to 30 s) and
every event not yet acknowledged is sent again, and so are those acknowledged in the
last ``RESEND_WINDOW`` seconds before the break (a collector that stops may not have
read what its kernel acknowledged). So the collector may see an event twice; its ``id``
tells. At most ``syslog_buffer`` events are in flight;
beyond that the exporter waits for acknowledgements (the audit file holds the rest).
A collector that goes away without closing its connections (a power cut) is noticed by
TCP keepalive (about 30 s) or when the send queue does not drain within ``ACK_TIMEOUT``.

Known limit: events acknowledged by the collector's kernel more than ``RESEND_WINDOW``
seconds before a break and never read by the collector (killed with a full receive
buffer) are not sent again (RELP would be needed).
UDP and the local socket have no acknowledgement at all.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import logging
import logging.handlers
import select
import socket
import ssl
import struct
import termios
import time
from pathlib import Path
from typing import Any

from gateway.audit.export import POLL, Exporter
from gateway.audit.follow import Cursor, Line
from gateway.audit.ocsf import to_ocsf
from gateway.config.model import SyslogSettings

log = logging.getLogger("bastille.audit")

ACK_TIMEOUT = 15.0  # seconds for the collector to acknowledge a full buffer
RESEND_WINDOW = 3.0  # seconds of acknowledged events sent again after a break
MIN_BACKOFF, MAX_BACKOFF = 0.5, 30.0
BATCH = 256  # events read and sent per write
TCP_CLOSE_WAIT = 8  # TCP_INFO tcpi_state: the peer closed its side

_SEVERITY = {"error": 3, "failed": 4, "denied": 5, "deny": 5, "refused": 5, "expired": 5,
             "cancelled": 5, "approve": 5}
_LOUD_KINDS = {"evasion": 4, "target.host_key_mismatch": 4, "login.rate_limited": 4}


def severity(record: dict[str, Any]) -> int:
    """Syslog severity of an audit record: warnings for failures, info for the rest."""
    kind = str(record.get("kind", ""))
    if kind in _LOUD_KINDS:
        return _LOUD_KINDS[kind]
    return _SEVERITY.get(str(record.get("outcome", "")), 6)


def _printable(text: str, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without spaces, or ``-``."""
    out = "".join(c for c in text if 33 <= ord(c) <= 126)[:limit]
    return out or "-"


def rfc5424(record: dict[str, Any], *, facility: int, hostname: str, fmt: str) -> bytes:
    """One RFC 5424 message (without transport framing)."""
    body = to_ocsf(record) if fmt == "ocsf" else record
    msg = json.dumps(body, ensure_ascii=True, separators=(",", ":"), default=str)
    pri = facility * 8 + severity(record)
    stamp = _printable(str(record.get("time", "")), 64)
    header = (f"<{pri}>1 {stamp} {_printable(hostname, 255)} bastille - "
              f"{_printable(str(record.get('kind', '')), 32)} -")
    return f"{header} {msg}".encode("ascii")


def legacy(record: dict[str, Any], *, facility: int, fmt: str) -> bytes:
    """The local socket's format (what journald and rsyslog's imuxsock read)."""
    body = to_ocsf(record) if fmt == "ocsf" else record
    msg = json.dumps(body, ensure_ascii=True, separators=(",", ":"), default=str)
    return f"<{facility * 8 + severity(record)}>bastille: {msg}".encode("ascii")


class _Conn:
    """One connection to the collector."""

    def __init__(self, sock: socket.socket, stream: bool, address: Any = None) -> None:
        self.sock = sock
        self.stream = stream
        self.address = address
        self.opened = time.monotonic()

    def send(self, frames: list[bytes]) -> None:
        if self.stream:
            self.sock.sendall(b"".join(frames))
            return
        for frame in frames:
            if self.address is not None:
                self.sock.sendto(frame, self.address)
            else:
                self.sock.send(frame)

    def unacknowledged(self) -> int:
        """Bytes sent and not yet acknowledged by the peer (0 for datagrams)."""
        if not self.stream:
            return 0
        raw = fcntl.ioctl(self.sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
        return int(struct.unpack("i", raw)[0])

    def peer_closed(self) -> bool:
        """The collector closed its side (or the connection broke)."""
        if not self.stream:
            return False
        try:
            info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        except OSError:
            return True
        if info[0] == TCP_CLOSE_WAIT:
            return True
        try:
            readable, _, errored = select.select([self.sock], [], [self.sock], 0)
        except (OSError, ValueError):
            return True
        return bool(errored) or (bool(readable) and _eof(self.sock))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _eof(sock: socket.socket) -> bool:
    """A readable socket from a collector that never sends anything: closed or reset."""
    try:
        if isinstance(sock, ssl.SSLSocket):  # may be a TLS 1.3 session ticket: never block
            sock.setblocking(False)
            try:
                data = sock.recv(1)
            finally:
                sock.settimeout(ACK_TIMEOUT)
        else:
            data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return False
    except (OSError, ssl.SSLError):
        return True
    return not data


def _keepalive(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for opt, value in (("TCP_KEEPIDLE", 15), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, opt):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)


class SyslogExporter(Exporter):
    """Sends the audit trail to one syslog collector (see the module docstring)."""

    def __init__(self, settings: SyslogSettings, audit_file: Path, state_dir: Path) -> None:
        super().__init__("syslog", settings.describe(), audit_file, state_dir)
        self.settings = settings
        self.facility = logging.handlers.SysLogHandler.facility_names.get(
            settings.facility, logging.handlers.SysLogHandler.LOG_AUTH)
        self.hostname = settings.hostname or socket.gethostname()
        self._conn: _Conn | None = None
        self._inflight: list[Cursor] = []
        self._recent: collections.deque[tuple[float, Cursor]] = collections.deque()
        self._backoff = MIN_BACKOFF
        self._down_since: float | None = None

    # ------------------------------------------------------------ connections
    def _connect(self) -> _Conn:
        s = self.settings
        if s.transport == "unix":
            local = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                local.connect(s.path)
            except OSError:
                local.close()
                raise
            return _Conn(local, stream=False)
        if s.transport == "udp":
            info = socket.getaddrinfo(s.host, s.port, type=socket.SOCK_DGRAM)[0]
            return _Conn(socket.socket(info[0], socket.SOCK_DGRAM), stream=False,
                         address=info[4])
        raw = socket.create_connection((s.host, s.port), timeout=10)
        try:
            _keepalive(raw)
            sock: socket.socket = raw
            if s.transport == "tls":
                sock = self._tls_context().wrap_socket(
                    raw, server_hostname=s.tls_server_name or s.host)
            sock.settimeout(ACK_TIMEOUT)
        except (OSError, ssl.SSLError):
            raw.close()
            raise
        return _Conn(sock, stream=True)

    def _tls_context(self) -> ssl.SSLContext:
        s = self.settings
        ctx = ssl.create_default_context(
            cafile=str(s.tls_ca) if s.tls_ca is not None else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if s.tls_cert is not None and s.tls_key is not None:
            ctx.load_cert_chain(str(s.tls_cert), str(s.tls_key))
        return ctx

    def _ensure_conn(self) -> _Conn | None:
        if self._conn is not None:
            return self._conn
        try:
            self._conn = self._connect()
        except (OSError, ssl.SSLError) as exc:
            self._down(f"cannot connect: {exc}")
            return None
        if self._down_since is not None:
            log.warning("audit export: syslog %s reachable again after %.0f s; sending from "
                        "where it stopped", self.stats.destination,
                        time.monotonic() - self._down_since)
            self._down_since = None
        self.stats.connected = True
        return self._conn

    def _down(self, why: str) -> None:
        """The collector is unreachable or the connection broke: resend what it did not
        acknowledge, after a backoff."""
        self.stats.failures += 1
        self.stats.connected = False
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("audit export: syslog %s: %s; events wait in the audit file and are "
                        "sent when it is back", self.stats.destination, why)
        self._inflight.clear()
        self.follower.seek(self._rewind_point())
        self._recent.clear()
        self.wait(self._backoff)
        self._backoff = min(MAX_BACKOFF, self._backoff * 2)

    def _rewind_point(self) -> Cursor:
        """Where to resend from after a break: before what was acknowledged lately."""
        now = time.monotonic()
        while self._recent and now - self._recent[0][0] > RESEND_WINDOW:
            self._recent.popleft()
        return self._recent[0][1] if self._recent else self.committed

    def _acknowledged(self) -> None:
        self._recent.append((time.monotonic(), self.committed))
        self.commit(self._inflight[-1])
        self._inflight.clear()

    def close_destination(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ------------------------------------------------------------ the loop
    def frame(self, line: Line) -> bytes | None:
        try:
            record = json.loads(line.text)
        except ValueError:
            return None
        if not isinstance(record, dict):
            return None
        if self.settings.transport == "unix":
            return legacy(record, facility=self.facility, fmt=self.settings.format)
        msg = rfc5424(record, facility=self.facility, hostname=self.hostname,
                      fmt=self.settings.format)
        if self.settings.transport in ("tcp", "tls"):
            return str(len(msg)).encode() + b" " + msg
        return msg

    def loop(self) -> None:
        while not self.stopping:
            self.step()
        # stopping: send what the file still holds (the gateway's last events), briefly
        deadline = time.monotonic() + 2.0
        while self._conn is not None and time.monotonic() < deadline:
            before = self.follower.cursor
            self.step()
            if not self._inflight and self.follower.cursor == before:
                break
        self._flush_on_stop()

    def step(self) -> None:
        """One round: connect, send a batch, take acknowledgements."""
        conn = self._ensure_conn()
        if conn is None:
            return
        if conn.peer_closed():
            self._down("the collector closed the connection")
            return
        room = max(0, self.settings.buffer - len(self._inflight))
        lines = self.follower.read(min(BATCH, room)) if room else []
        frames = [(f, ln.cursor) for ln in lines if (f := self.frame(ln)) is not None]
        if lines and not frames:  # nothing sendable (malformed lines): skip past them
            self._inflight.append(lines[-1].cursor)
        if frames:
            try:
                conn.send([f for f, _ in frames])
            except (OSError, ssl.SSLError) as exc:
                self._down(f"sending failed: {exc}")
                return
            self._inflight.extend(c for _, c in frames)
            self.stats.delivered += len(frames)
        self._take_acks(conn, full=not room)
        if not lines:
            self.wait(POLL)

    def _take_acks(self, conn: _Conn, *, full: bool) -> None:
        if not self._inflight:
            return
        deadline = time.monotonic() + (ACK_TIMEOUT if full else 0)
        while True:
            try:
                pending = conn.unacknowledged()
            except OSError:
                pending = -1
            if pending == 0:
                self._acknowledged()
                if time.monotonic() - conn.opened > 5:
                    self._backoff = MIN_BACKOFF
                return
            if pending < 0 or time.monotonic() >= deadline:
                if full or pending < 0:
                    self._down("the collector does not acknowledge what it was sent")
                return
            if self.wait(0.05):
                return

    def _flush_on_stop(self) -> None:
        """Stopping: give the collector a moment to acknowledge what was sent."""
        conn = self._conn
        deadline = time.monotonic() + 2.0
        while conn is not None and self._inflight and time.monotonic() < deadline:
            try:
                if conn.unacknowledged() == 0:
                    self._acknowledged()
                    break
            except OSError:
                break
            time.sleep(0.05)
