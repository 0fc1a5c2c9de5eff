"""Modern algorithms only, on both legs. Strict KEX (the Terrapin fix) is negotiated by
asyncssh automatically (``kex-strict-*-v00@openssh.com``) whenever the peer offers it.

AES-GCM is listed first: on these machines it is ~1.1 ms/MiB cheaper than chacha20
(see ../shared/GUIDE.md); chacha20 stays available for clients that prefer it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncssh.connection
import asyncssh.constants
import asyncssh.encryption
import asyncssh.kex
import asyncssh.mac
import asyncssh.packet

from gateway.ssh.gcm import faster_gcm
from gateway.ssh.wire import FewerWrites, fewer_writes_to_targets, quiet_packet_logs

_KEX = ["mlkem768x25519-sha256", "curve25519-sha256", "curve25519-sha256@libssh.org",
        "ecdh-sha2-nistp521", "ecdh-sha2-nistp384", "ecdh-sha2-nistp256",
        "diffie-hellman-group-exchange-sha256", "diffie-hellman-group16-sha512",
        "diffie-hellman-group18-sha512", "diffie-hellman-group14-sha256"]
_CIPHERS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
            "chacha20-poly1305@openssh.com", "aes256-ctr", "aes192-ctr", "aes128-ctr"]
_MACS = ["hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com",
         "umac-128-etm@openssh.com", "hmac-sha2-256", "hmac-sha2-512", "umac-128@openssh.com"]


def _supported(wanted: list[str], available: list[bytes]) -> list[str]:
    have = {a.decode() for a in available}
    return [a for a in wanted if a in have]


KEX_ALGS = _supported(_KEX, asyncssh.kex.get_kex_algs())
ENCRYPTION_ALGS = _supported(_CIPHERS, asyncssh.encryption.get_encryption_algs())
MAC_ALGS = _supported(_MACS, asyncssh.mac.get_mac_algs())

CLIENT_ALGORITHMS: dict[str, list[str]] = {
    "kex_algs": KEX_ALGS, "encryption_algs": ENCRYPTION_ALGS, "mac_algs": MAC_ALGS}
SERVER_ALGORITHMS: dict[str, list[str]] = dict(CLIENT_ALGORITHMS)


# ---------------------------------------------------------------- AES-GCM on the user leg
#
# SSH picks the first cipher of the *client's* list that the server offers (RFC 4253
# 7.1), and OpenSSH clients list chacha20-poly1305 first, which costs asyncssh ~1 ms of
# CPU per MiB more than AES-GCM (and the client more too). So the gateway sends its
# KEXINIT only once it has read the client's (the protocol lets either side go first),
# and when the client offers AES-GCM in both directions, the gateway offers only AES-GCM
# for that connection: what the client allows, on the cheaper cipher. A client that
# offers no AES-GCM gets the full list. A client that waits for the server's KEXINIT
# before sending its own (none known) gets it after KEXINIT_WAIT seconds, full list.

GCM_ALGS = (b"aes128-gcm@openssh.com", b"aes256-gcm@openssh.com")
KEXINIT_WAIT = 1.0  # seconds to wait for the client's KEXINIT before sending ours anyway


def gcm_choice(server_algs: Sequence[bytes], client_cs: Sequence[bytes],
               client_sc: Sequence[bytes]) -> list[bytes]:
    """The encryption list to offer a client: its AES-GCM ciphers (in the server's
    order) if it offers any in both directions, else ``server_algs`` unchanged."""
    gcm = [a for a in server_algs if a in GCM_ALGS and a in client_cs and a in client_sc]
    return gcm or list(server_algs)


class GcmFirstServerConnection(FewerWrites, asyncssh.connection.SSHServerConnection):
    """An asyncssh server connection that answers the client's first KEXINIT with an
    AES-GCM-only offer when the client allows it (see above), and writes less
    (``gateway.ssh.wire``)."""

    _deferred = False
    _kexinit_timer: asyncio.TimerHandle | None = None

    def _send_kexinit(self) -> None:
        if not self._session_id and not self._deferred and self._kexinit_timer is None:
            self._deferred = True  # first key exchange: wait for the client's offer
            self._kexinit_timer = self._loop.call_later(KEXINIT_WAIT, self._send_now)
            return
        super()._send_kexinit()

    def _send_now(self) -> None:
        if self._deferred:
            self._deferred = False
            super()._send_kexinit()

    def _process_kexinit_gcm(self, pkttype: int, pktid: int,
                             packet: asyncssh.packet.SSHPacket) -> Any:
        if self._deferred:
            self._deferred = False
            if self._kexinit_timer is not None:
                self._kexinit_timer.cancel()
            try:
                peek = asyncssh.packet.SSHPacket(packet.get_remaining_payload())
                peek.get_bytes(16)  # cookie
                peek.get_namelist()  # kex
                peek.get_namelist()  # host key
                client_cs, client_sc = peek.get_namelist(), peek.get_namelist()
            except asyncssh.packet.PacketDecodeError:
                client_cs = client_sc = []  # the real parser reports it below
            self._enc_algs = gcm_choice(self._enc_algs, client_cs, client_sc)
            super()._send_kexinit()  # _kexinit_sent is already True: not sent twice
        return asyncssh.connection.SSHConnection._process_kexinit(self, pkttype, pktid,
                                                                  packet)

    _packet_handlers = {
        **asyncssh.connection.SSHServerConnection._packet_handlers,
        asyncssh.constants.MSG_KEXINIT: _process_kexinit_gcm,
    }


def prefer_gcm_for_clients() -> None:
    """Make asyncssh servers of this process use :class:`GcmFirstServerConnection`, and
    its clients (the target legs) write less too (``gateway.ssh.wire``)."""
    asyncssh.connection.SSHServerConnection = GcmFirstServerConnection  # type: ignore[misc]
    fewer_writes_to_targets()
    quiet_packet_logs()
    faster_gcm()
