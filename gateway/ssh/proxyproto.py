"""PROXY protocol v2 on the SSH listener: the real client address behind a load balancer.

With ``gateway.proxy_protocol = ["10.0.0.5", "10.0.1.0/24"]`` the listener accepts
connections itself, looks at their first bytes, and then hands each socket to asyncssh:

* from a **trusted** address (a listed load balancer) a PROXY v2 header is read and
  removed; the address it carries is the client's for the audit trail, the rate limits
  and every message (``LOCAL`` headers, the balancer's own health checks, keep the
  balancer's address). A trusted peer that sends no header is served as a direct client.
* from **any other** address a connection that starts with a PROXY header (v2 or v1) is
  refused and audited (``refused``, ``PROXY header from an untrusted address``): nobody
  but the balancer may claim another address.

The header must arrive whole within ``HEADER_TIMEOUT``; a malformed one closes the
connection. Version 1 (text) headers are refused from everyone: configure the balancer
with ``send-proxy-v2`` (HAProxy). Without ``gateway.proxy_protocol`` none of this runs.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
HEADER_TIMEOUT = 5.0  # seconds for a trusted peer's whole header
PEEK_TIMEOUT = 2.0  # seconds to wait for a first byte before serving without a header
MAX_LENGTH = 2048  # longest v2 header body accepted (addresses and TLVs)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxyError(Exception):
    """A PROXY header that is malformed, unsupported or not allowed (the message is for
    the audit trail)."""


@dataclass(frozen=True)
class ProxyHeader:
    """A parsed v2 header: ``source`` is None for ``LOCAL`` (the balancer itself)."""

    source: tuple[str, int] | None
    length: int  # bytes of the whole header on the wire


def parse_v2(data: bytes) -> ProxyHeader:
    """Parse one v2 header at the start of ``data`` (which must hold all of it).

    Raises:
        ProxyError: not a v2 header, or a malformed or unsupported one.
    """
    if len(data) < 16 or not data.startswith(SIGNATURE):
        raise ProxyError("not a PROXY v2 header")
    ver_cmd, fam, length = struct.unpack("!BBH", data[12:16])
    if ver_cmd >> 4 != 2:
        raise ProxyError(f"unsupported PROXY version {ver_cmd >> 4}")
    if length > MAX_LENGTH:
        raise ProxyError(f"PROXY header too long ({length} bytes)")
    if len(data) < 16 + length:
        raise ProxyError("PROXY header cut short")
    body = data[16:16 + length]
    command = ver_cmd & 0x0F
    if command == 0:  # LOCAL: the balancer's own connection (health check)
        return ProxyHeader(None, 16 + length)
    if command != 1:
        raise ProxyError(f"unsupported PROXY command {command}")
    return ProxyHeader(_address(fam, body), 16 + length)


def _address(fam: int, body: bytes) -> tuple[str, int] | None:
    """The source address of a PROXY command's address block."""
    family, proto = fam >> 4, fam & 0x0F
    if proto != 1:
        raise ProxyError("PROXY header for a non-stream protocol")
    if family == 1 and len(body) >= 12:
        (port,) = struct.unpack("!H", body[8:10])
        return socket.inet_ntop(socket.AF_INET, body[0:4]), port
    if family == 2 and len(body) >= 36:
        (port,) = struct.unpack("!H", body[32:34])
        return socket.inet_ntop(socket.AF_INET6, body[0:16]), port
    if family == 0:  # UNSPEC: no address to use
        return None
    raise ProxyError(f"unsupported PROXY address family {family}")


def trusted(address: str, networks: Sequence[Network]) -> bool:
    """True if ``address`` is in one of ``networks``."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


async def _readable(sock: socket.socket, timeout: float) -> bool:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(fd, ready)
    try:
        await asyncio.wait_for(fut, timeout)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)


async def peek(sock: socket.socket, want: int, timeout: float) -> bytes:  # noqa: ASYNC109
    """Up to ``want`` first bytes of ``sock`` without consuming them: as many as arrived
    within ``timeout`` seconds (stops early when they cannot start a PROXY header)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen = b""
    while len(seen) < want:
        left = deadline - loop.time()
        if left <= 0 or not await _readable(sock, left):
            return seen
        try:
            seen = sock.recv(want, socket.MSG_PEEK)
        except BlockingIOError:
            continue
        if not seen:  # closed
            return seen
        if not (SIGNATURE.startswith(seen[:12]) or V1_PREFIX.startswith(seen[:6])):
            return seen  # an SSH client: nothing to wait for
        if seen.startswith(V1_PREFIX):
            return seen
        await asyncio.sleep(0.01)  # part of a header: the rest is on its way
    return seen


async def read_exactly(sock: socket.socket, n: int, timeout: float) -> bytes:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    out = b""
    async with asyncio.timeout(timeout):
        while len(out) < n:
            chunk = await loop.sock_recv(sock, n - len(out))
            if not chunk:
                raise ProxyError("connection closed inside the PROXY header")
            out += chunk
    return out


async def handshake(sock: socket.socket, peer: tuple[str, int],
                    networks: Sequence[Network]) -> tuple[str, int]:
    """The client's address for a new connection (reading the balancer's header).

    Raises:
        ProxyError: refuse the connection (the message says why).
    """
    first = await peek(sock, 16, PEEK_TIMEOUT)
    is_v2 = first.startswith(SIGNATURE[:len(first)]) and len(first) >= 12
    is_v1 = first.startswith(V1_PREFIX)
    if not (is_v2 or is_v1):
        return peer
    if not trusted(peer[0], networks):
        raise ProxyError("PROXY header from an untrusted address")
    if is_v1:
        raise ProxyError("PROXY protocol v1 is not supported (use send-proxy-v2)")
    try:
        head = await read_exactly(sock, 16, HEADER_TIMEOUT)
        (length,) = struct.unpack("!H", head[14:16])
        if length > MAX_LENGTH:
            raise ProxyError(f"PROXY header too long ({length} bytes)")
        body = await read_exactly(sock, length, HEADER_TIMEOUT)
    except TimeoutError:
        raise ProxyError("PROXY header incomplete") from None
    header = parse_v2(head + body)
    return header.source or peer
