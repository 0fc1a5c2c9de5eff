"""Ed25519 keys for signing recordings.

The private key is a PEM PKCS8 file, the same that
``openssl genpkey -algorithm ed25519 -out recording.key`` writes; the public key is PEM
SubjectPublicKeyInfo (``openssl pkey -in recording.key -pubout -out recording.key.pub``).
A key id is the first 16 hex digits of sha256 of the raw 32-byte public key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from recorder.errors import RecorderError


def key_id(public_raw: bytes) -> str:
    """Short, stable identifier of a public key."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _raw(pub: Ed25519PublicKey) -> bytes:
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class Signer:
    """A loaded private key (its repr never shows key material)."""

    _key: Ed25519PrivateKey
    public_raw: bytes
    key_id: str

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id})"

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


def load_signer(path: Path) -> Signer:
    """Load an Ed25519 private key (PEM PKCS8); RecorderError with a clear message."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise RecorderError(f"cannot read signing key {path}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise RecorderError(f"signing key {path} is not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise RecorderError(f"signing key {path} is not an Ed25519 key")
    raw = _raw(key.public_key())
    return Signer(key, raw, key_id(raw))


def load_public_key(path: Path) -> bytes:
    """Raw 32-byte public key from a PEM public key, or from a private key file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise RecorderError(f"cannot read key {path}: {exc.strerror}") from exc
    try:
        pub = serialization.load_pem_public_key(data)
    except ValueError:
        return load_signer(path).public_raw
    if not isinstance(pub, Ed25519PublicKey):
        raise RecorderError(f"key {path} is not an Ed25519 key")
    return _raw(pub)


def verify_signature(public_raw: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def same_key(a: bytes, b: bytes) -> bool:
    """Constant-time comparison of two raw public keys."""
    return hmac.compare_digest(a, b)


def generate(path: Path) -> tuple[Path, Path]:
    """Write a new private key (0600) at ``path`` and its public key at ``path.pub``.

    Raises:
        RecorderError: the file exists or cannot be written.
    """
    path = Path(path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pub_path = path.with_name(path.name + ".pub")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise RecorderError(f"{path} already exists; refusing to overwrite a key") from exc
    except OSError as exc:
        raise RecorderError(f"cannot create {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    try:
        pub_path.write_bytes(pub)
    except OSError as exc:
        raise RecorderError(f"cannot write {pub_path}: {exc.strerror}") from exc
    return path, pub_path
