"""scrypt password hashes: ``scrypt$N$r$p$salt_b64$hash_b64`` (constant-time check)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

_N, _R, _P = 2**14, 8, 1


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """Hash a password for ``users.NAME.password_hash``."""
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """True if ``password`` matches ``encoded``; malformed hashes never match."""
    try:
        scheme, n, r, p, salt_b64, digest_b64 = encoded.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(digest_b64)
        n_i, r_i, p_i = int(n), int(r), int(p)
        if n_i > 2**20 or r_i > 32 or p_i > 16:
            return False
        digest = hashlib.scrypt(password.encode(), salt=salt, n=n_i, r=r_i, p=p_i,
                                dklen=len(expected), maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


_DUMMY: list[str] = []


def dummy_hash() -> str:
    """A hash no password matches, checked for unknown users so that their logins take
    as long as real ones (computed once per process)."""
    if not _DUMMY:
        _DUMMY.append(hash_password(os.urandom(16).hex()))
    return _DUMMY[0]
