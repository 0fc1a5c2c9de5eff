"""The RDP listener's TLS certificate, and reading a target's certificate fingerprint.

No pyrdp here: the gateway process calls :func:`ensure_certificate` before it starts the
RDP workers, and ``bastille rdp-fingerprint`` calls :func:`fetch_fingerprint`.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import socket
import ssl
import struct
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.config import Config
from state.files import private_dir


def certificate_paths(config: Config) -> tuple[Path, Path]:
    """(certificate, key) the RDP listener uses."""
    rdp = config.rdp
    if rdp is not None and rdp.tls_cert is not None and rdp.tls_key is not None:
        return rdp.tls_cert, rdp.tls_key
    base = config.data_dir / "rdp"
    return base / "tls.crt", base / "tls.key"


def ensure_certificate(config: Config) -> tuple[Path, Path]:
    """The listener's certificate and key; a self-signed pair is created if missing."""
    cert_path, key_path = certificate_paths(config)
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    private_dir(cert_path.parent)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bastille")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def file_fingerprint(path: Path) -> str:
    """SHA-256 (lowercase hex) of the DER form of a PEM certificate file."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.fingerprint(hashes.SHA256()).hex()


# X.224 Connection Request with an RDP Negotiation Request for TLS (PROTOCOL_SSL)
_NEG_REQ = struct.pack("<BBHI", 0x01, 0x00, 8, 0x00000001)
_X224_CR = bytes([len(_NEG_REQ) + 6, 0xE0, 0, 0, 0, 0, 0]) + _NEG_REQ
_TPKT = struct.pack(">BBH", 3, 0, len(_X224_CR) + 4) + _X224_CR


def fetch_fingerprint(host: str, port: int, timeout: float = 10.0) -> str:
    """The SHA-256 of an RDP server's TLS certificate (for ``rdp_cert_sha256``).

    Trust on first use: compare it with what the server's console shows when you can.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(_TPKT)
        head = sock.recv(4)
        if len(head) < 4 or head[0] != 3:
            raise OSError("not an RDP server (no TPKT reply)")
        length = struct.unpack(">H", head[2:4])[0]
        body = b""
        while len(body) < length - 4:
            chunk = sock.recv(length - 4 - len(body))
            if not chunk:
                break
            body += chunk
        if len(body) < 15 or body[7] != 0x02:
            raise OSError("the server does not offer TLS (or demands NLA only)")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(sock, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    if not der:
        raise OSError("the server sent no certificate")
    return hashlib.sha256(der).hexdigest()
