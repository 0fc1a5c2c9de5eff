"""What the gateway writes on its SSH connections: fewer, fuller writes.

asyncssh (2.24) writes each SSH packet to its socket as soon as it is made, and before
every packet after the key exchange it sends an empty ``SSH_MSG_IGNORE``: the
countermeasure for the predictable IVs of CBC ciphers (RFC 4251 9.3.1). So a relayed
32 KiB of data costs two packets, two encryptions, two ``send`` calls, and the peer
decrypts two packets. The gateway's connections (both legs) do two things instead:

* **No padding packet without CBC.** The gateway negotiates AES-GCM, chacha20-poly1305
  or AES-CTR with an encrypt-then-MAC or plain HMAC (``gateway.ssh.algorithms``), never
  CBC; OpenSSH sends no such packets either. Should a CBC cipher ever be negotiated,
  the packets are sent as before.
* **One write per event-loop turn.** The packets one callback makes (a read from the
  target becomes up to eight 32 KiB packets to the user) are written to the socket
  together, once, when the callback is done, instead of one ``send`` per packet. Nothing
  waits for a timer: the write happens in the same loop iteration.

Known limits: these are overrides of asyncssh internals (``_send``, ``send_packet``),
pinned by ``tests/unit/gateway/test_wire.py`` and the e2e suite; a new asyncssh release
that renames them fails those tests rather than silently losing the change.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncssh.connection
from asyncssh.constants import MSG_IGNORE
from asyncssh.packet import String

_EMPTY = (String(b""),)


class FewerWrites:
    """Mixin for an asyncssh connection class (see the module doc)."""

    _transport: asyncio.Transport | None
    _loop: asyncio.AbstractEventLoop
    _pending: list[bytes] | None = None
    _pending_to: asyncio.Transport | None = None

    def _send(self, data: bytes) -> None:
        transport = self._transport
        if not transport:
            return
        pending = self._pending
        if pending is not None and self._pending_to is transport:
            pending.append(data)
            return
        if pending:
            self._write_pending()
        self._pending = [data]
        self._pending_to = transport
        self._loop.call_soon(self._write_pending)

    def _write_pending(self) -> None:
        pending, transport = self._pending, self._pending_to
        self._pending = self._pending_to = None
        if not pending or transport is None:
            return
        try:
            transport.write(b"".join(pending) if len(pending) > 1 else pending[0])
        except ConnectionError:  # pragma: no cover (asyncssh ignores these too)
            pass

    def send_packet(self, pkttype: int, *args: bytes, handler: Any = None) -> None:
        if pkttype == MSG_IGNORE and args == _EMPTY and not self._sends_cbc():
            return  # asyncssh's padding packet (see the module doc)
        super().send_packet(pkttype, *args, handler=handler)  # type: ignore[misc]

    def _sends_cbc(self) -> bool:
        name = self.get_extra_info("send_cipher")  # type: ignore[attr-defined]
        return not name or "cbc" in str(name).lower()  # not known yet: as asyncssh does


class FewerWritesClientConnection(FewerWrites, asyncssh.connection.SSHClientConnection):
    """The gateway's connections to targets."""


def fewer_writes_to_targets() -> None:
    """Make asyncssh clients of this process use :class:`FewerWritesClientConnection`."""
    asyncssh.connection.SSHClientConnection = FewerWritesClientConnection  # type: ignore[misc]
