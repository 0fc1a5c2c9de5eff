"""gateway/ssh/gcm.py: the gateway's AES-GCM shim puts the same bytes on the wire as
asyncssh's own, packet after packet, reads them back, refuses a changed one, and carries
a real asyncssh connection."""

from __future__ import annotations

import asyncio
import os

import asyncssh
import asyncssh.encryption
import pytest
from asyncssh.crypto.cipher import GCMCipher
from asyncssh.encryption import GCMEncryption

from gateway.ssh import gcm, wire


def _pair(name: str, key: bytes, iv: bytes) -> tuple[GCMEncryption, gcm.FastGcmEncryption]:
    return (GCMEncryption(GCMCipher(name, key, iv)),
            gcm.FastGcmEncryption(GCMCipher(name, key, iv)))


@pytest.mark.parametrize(("name", "keylen"), [("aes128-gcm", 16), ("aes256-gcm", 32)])
@pytest.mark.parametrize("counter", [0, 7, 0xFFFF_FFFF_FFFF_FFFE])  # and a wrap
def test_packets_are_those_of_asyncssh_and_read_back(name: str, keylen: int,
                                                     counter: int) -> None:
    key, iv = os.urandom(keylen), os.urandom(4) + counter.to_bytes(8, "big")
    theirs, ours = _pair(name, key, iv)
    their_rx, our_rx = _pair(name, key, iv)
    for seq in range(6):
        packet = os.urandom(16 * (1 + seq * 7) + 12)
        hdr = len(packet).to_bytes(4, "big")
        expect = b"".join(theirs.encrypt_packet(seq, hdr, packet))
        got, mac = ours.encrypt_packet(seq, hdr, packet)
        assert mac == b"" and got == expect
        first, rest, tag = got[:16], got[16:-16], got[-16:]
        assert our_rx.decrypt_packet(seq, first, rest, 4, tag) == packet
        assert their_rx.decrypt_packet(seq, first, rest, 4, tag) == packet


def test_a_changed_packet_is_refused_and_the_next_one_still_reads() -> None:
    key, iv = os.urandom(16), os.urandom(12)
    tx, _ = _pair("aes128-gcm", key, iv)
    _, rx = _pair("aes128-gcm", key, iv)
    one = b"".join(tx.encrypt_packet(0, b"\x00\x00\x00\x1c", bytes(28)))
    two = b"".join(tx.encrypt_packet(1, b"\x00\x00\x00\x1c", b"y" * 28))
    bad = one[:20] + bytes([one[20] ^ 1]) + one[21:]
    assert rx.decrypt_packet(0, bad[:16], bad[16:-16], 4, bad[-16:]) is None
    assert rx.decrypt_packet(1, two[:16], two[16:-16], 4, two[-16:]) == b"y" * 28


def test_asyncssh_uses_it_once_installed() -> None:
    gcm.faster_gcm()
    for alg in gcm.GCM_ALGS:
        enc = asyncssh.encryption.get_encryption(alg, os.urandom(32 if b"256" in alg else 16),
                                                 os.urandom(12))
        assert type(enc) is gcm.FastGcmEncryption


def test_a_real_connection_with_aes_gcm_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's target-leg connection class sends 3 MiB through its one-join AES-GCM
    packets (wire.py ``_send_gcm``) to a plain asyncssh server, which returns it."""
    gcm.faster_gcm()
    wire.fewer_writes_to_targets()
    built: list[int] = []
    send_gcm = wire.FewerWrites._send_gcm

    def counting(self: wire.FewerWrites, enc: gcm.FastGcmEncryption, pkttype: int,
                 args: tuple[bytes, ...], handler: object) -> None:
        built.append(pkttype)
        send_gcm(self, enc, pkttype, args, handler)

    monkeypatch.setattr(wire.FewerWrites, "_send_gcm", counting)
    paddings: list[bytes] = []
    encrypt = gcm.FastGcmEncryption.encrypt_packet

    def keeping_padding(self: gcm.FastGcmEncryption, seq: int, header: bytes,
                        packet: bytes) -> tuple[bytes, bytes]:
        paddings.append(packet[len(packet) - packet[0]:])  # body: padlen, type, payload, pad
        return encrypt(self, seq, header, packet)

    monkeypatch.setattr(gcm.FastGcmEncryption, "encrypt_packet", keeping_padding)
    payload = os.urandom(3 << 20)

    async def main() -> tuple[bytes, str]:
        class Server(asyncssh.SSHServer):
            def begin_auth(self, username: str) -> bool:
                return False

        async def serve(process: asyncssh.SSHServerProcess[bytes]) -> None:
            data = await process.stdin.readexactly(len(payload))
            process.stdout.write(data[::-1])
            await process.stdout.drain()
            process.exit(0)

        key = asyncssh.generate_private_key("ssh-ed25519")
        acceptor = await asyncssh.listen("127.0.0.1", 0, server_host_keys=[key],
                                         server_factory=Server, process_factory=serve,
                                         encoding=None,
                                         encryption_algs=["aes256-gcm@openssh.com"])
        port = acceptor.sockets[0].getsockname()[1]
        async with asyncssh.connect("127.0.0.1", port, known_hosts=None, username="u",
                                    encryption_algs=["aes256-gcm@openssh.com"]) as conn:
            cipher = str(conn.get_extra_info("send_cipher"))
            result = await conn.run("rev", input=payload, encoding=None, check=True)
        acceptor.close()
        assert isinstance(result.stdout, bytes)
        return result.stdout, cipher

    out, cipher = asyncio.run(main())
    assert cipher == "aes256-gcm@openssh.com" and out == payload[::-1]
    assert built.count(94) >= len(payload) // 32768  # MSG_CHANNEL_DATA, the fast way
    # the random padding (RFC 4253 6): 4 bytes at least, and no two packets share theirs
    # (a block of os.urandom per connection, each byte used once)
    assert len(paddings) >= len(built) and all(len(p) >= 4 for p in paddings)
    assert len(set(paddings)) == len(paddings)
