"""AES-GCM packet encryption for asyncssh with fewer copies and one key schedule.

asyncssh 2.24's AES-GCM shim (``asyncssh.encryption.GCMEncryption``) builds a new
``AESGCM`` object (a new AES key schedule) for every packet, slices the tag off the
ciphertext and joins it back, and copies each received packet twice before decrypting
it. :class:`FastGcmEncryption` keeps one ``AESGCM`` per direction and key, returns the
header, ciphertext and tag as one ``bytes`` (the connection's ``packet + mac`` then
adds nothing), and joins a received packet once. The bytes on the wire are the same:
RFC 5647 AES-GCM with the nonce counter of RFC 5647 section 7.1 (a 4-byte fixed field
and an 8-byte invocation counter that wraps, incremented after every packet, tag check
failed or not).

:func:`faster_gcm` makes asyncssh use it for ``aes128-gcm@openssh.com`` and
``aes256-gcm@openssh.com`` (the ciphers the gateway prefers, ``gateway.ssh.algorithms``).

Known limits: an override of asyncssh internals (``encryption._enc_params``, the
``GCMCipher`` key and IV fields), pinned by ``tests/unit/gateway/test_gcm.py``, which
also checks every packet against asyncssh's own shim.
"""

from __future__ import annotations

import asyncssh.encryption
from asyncssh.crypto.cipher import GCMCipher
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_COUNTER_MASK = 0xFFFF_FFFF_FFFF_FFFF
GCM_ALGS = (b"aes128-gcm@openssh.com", b"aes256-gcm@openssh.com")


class FastGcmEncryption(asyncssh.encryption.GCMEncryption):
    """One direction of an AES-GCM SSH connection (see the module doc)."""

    def __init__(self, cipher: GCMCipher) -> None:
        super().__init__(cipher)
        key: bytes = cipher._key  # asyncssh's shim keeps them there
        iv: bytes = cipher._iv
        self._aead = AESGCM(key)
        self._fixed = iv[:4]
        self._counter = int.from_bytes(iv[4:], "big")

    def _nonce(self) -> bytes:
        nonce = self._fixed + self._counter.to_bytes(8, "big")
        self._counter = (self._counter + 1) & _COUNTER_MASK
        return nonce

    def encrypt_packet(self, seq: int, header: bytes, packet: bytes) -> tuple[bytes, bytes]:
        return header + self.seal(header, packet), b""

    def seal(self, header: bytes, packet: bytes) -> bytes:
        """The ciphertext and tag of the next packet (what follows ``header`` on the
        wire): a caller that writes the header apart saves copying the packet."""
        return self._aead.encrypt(self._nonce(), packet, header)

    def decrypt_packet(self, seq: int, first: bytes, rest: bytes, header_len: int,
                       mac: bytes) -> bytes | None:
        nonce = self._nonce()
        try:
            return self._aead.decrypt(nonce, b"".join((first[header_len:], rest, mac)),
                                      first[:header_len])
        except InvalidTag:
            return None


def faster_gcm() -> None:
    """Make asyncssh use :class:`FastGcmEncryption` for AES-GCM (this process)."""
    params = asyncssh.encryption._enc_params
    for alg in GCM_ALGS:
        if alg in params:
            _, cipher_name = params[alg]
            params[alg] = (FastGcmEncryption, cipher_name)
