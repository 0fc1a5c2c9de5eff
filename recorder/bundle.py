"""Evidence bundles: one self-verifying archive of a session for someone without an account.

A bundle is a gzip'd tar with one directory, ``bastille-evidence-<SESSION>/``::

    README.txt                 how to verify (this module's README_TEMPLATE)
    recording.bstl             the recording, byte for byte as stored
    recording.signature.json   the recording's own signature chunk (absent if unsigned)
    session.json               header, trailer, index row, verification at export time
    timeline.json              every timeline event (recorder.timeline)
    reviews.json               the review records, each with its signed payload
    session.cast               asciicast v3 (or v2), one marker per timeline event
    public-key.pem             the appliance's recording signing key (public part)
    public-key.fingerprint     its key id and sha256
    SHA256SUMS                 sha256 of every file above, in ``sha256sum`` format
    SHA256SUMS.sig             Ed25519 signature of SHA256SUMS (raw 64 bytes)

Anyone can check it with standard tools: ``sha256sum -c SHA256SUMS`` and an Ed25519
verification of ``SHA256SUMS.sig`` over ``SHA256SUMS`` with ``public-key.pem``
(``openssl pkeyutl -verify -pubin -inkey public-key.pem -rawin -in SHA256SUMS -sigfile
SHA256SUMS.sig``), after comparing the key's fingerprint with the one the appliance's
operator publishes. ``bastille verify --bundle FILE`` does all of that and also checks
the recording's hash chain and signature and each review's signature.

:func:`write_bundle` writes one (deterministic: fixed order, times and owners);
:func:`verify_bundle` checks one without extracting anything to disk: only regular
files with plain relative names are read, each at most ``MAX_MEMBER`` bytes and
``MAX_TOTAL`` together (they are checked in memory). A bundle is written 0600 through a
temporary file created exclusively (no symlink followed).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import hmac
import io
import json
import os
import re
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from recorder.signing import Signer, key_id, same_key, verify_signature
from recorder.verify import verify_source

MAX_MEMBER = 1 << 30  # largest file read from a bundle (1 GiB)
MAX_TOTAL = 2 << 30  # all files of a bundle together (read into memory to check them)
MAX_MEMBERS = 64
SUMS = "SHA256SUMS"
SUMS_SIG = "SHA256SUMS.sig"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SUM_LINE = re.compile(r"^([0-9a-f]{64})  ([A-Za-z0-9][A-Za-z0-9._-]{0,127})$")

README_TEMPLATE = """\
bastille evidence bundle
========================

Session      {session}
User         {user}
Target       {target}
Started      {start}
Exported     {exported} by {exported_by}
Signing key  {key}

Files
-----
recording.bstl            the recording, byte for byte as the appliance stored it
recording.signature.json  its signature (Ed25519 over its hash chain head)
session.json              header, trailer, index entry, verification at export time
timeline.json             commands, decisions, approvals, transfers, kills... in order
reviews.json              auditors' reviews and notes, each signed separately
session.cast              asciicast v{cast_version}: play with `asciinema play session.cast`
                          (terminal output filtered: no clipboard or title changes)
public-key.pem            the appliance's public signing key
public-key.fingerprint    its fingerprint
SHA256SUMS                sha256 of every file
SHA256SUMS.sig            Ed25519 signature of SHA256SUMS

How to verify
-------------
1. Compare the key fingerprint in public-key.fingerprint with the one the
   appliance's operator publishes (do not trust a key only because it is here).

2. With bastille installed:

       bastille verify --bundle {bundle_name} --public-key KEY.pem

   (it checks everything below, the recording's hash chain and every review).

3. With standard tools, after `tar xzf {bundle_name}` and `cd {root}`:

       sha256sum -c SHA256SUMS
       openssl pkeyutl -verify -pubin -inkey public-key.pem -rawin \\
           -in SHA256SUMS -sigfile SHA256SUMS.sig

   or in Python with the `cryptography` package:

       from cryptography.hazmat.primitives.serialization import load_pem_public_key
       key = load_pem_public_key(open("public-key.pem", "rb").read())
       key.verify(open("SHA256SUMS.sig", "rb").read(), open("SHA256SUMS", "rb").read())

   Both must succeed: the sums prove no file changed, the signature proves the sums
   come from the holder of the key.

4. A review record in reviews.json is checked the same way: its "signature"
   (base64) is an Ed25519 signature of its "payload" (UTF-8) by "public_key"
   (base64, raw 32 bytes).
"""


class BundleError(Exception):
    """A bundle cannot be written or read (the message says why)."""


def public_pem(public_raw: bytes) -> bytes:
    return Ed25519PublicKey.from_public_bytes(public_raw).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint_text(public_raw: bytes) -> str:
    return (f"key id: {key_id(public_raw)}\n"
            f"sha256: {hashlib.sha256(public_raw).hexdigest()}\n")


def sums_text(files: Sequence[tuple[str, bytes]]) -> bytes:
    """``sha256sum`` output for ``files`` (name order)."""
    lines = [f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in
             sorted(files, key=lambda f: f[0])]
    return "".join(lines).encode()


def write_bundle(path: Path, root: str, files: Sequence[tuple[str, bytes]], *,
                 signer: Signer | None, mtime: float = 0.0) -> list[str]:
    """Write a bundle of ``files`` (name, bytes) under directory ``root``; returns the
    names written. The public key, the sums and their signature are added here.

    Raises:
        BundleError: a bad name, or the file cannot be written.
    """
    if not _NAME.match(root):
        raise BundleError(f"bad bundle directory name {root!r}")
    members = list(files)
    if signer is not None:
        members.append(("public-key.pem", public_pem(signer.public_raw)))
        members.append(("public-key.fingerprint", fingerprint_text(signer.public_raw).encode()))
    names = [n for n, _ in members]
    for name in names:
        if not _NAME.match(name) or name in (SUMS, SUMS_SIG):
            raise BundleError(f"bad file name in a bundle: {name!r}")
    if len(set(names)) != len(names):
        raise BundleError("duplicate file names in a bundle")
    sums = sums_text(members)
    members.append((SUMS, sums))
    if signer is not None:
        members.append((SUMS_SIG, signer.sign(sums)))
    tmp = Path(str(path) + ".tmp")
    try:
        try:  # a stale temporary file of ours (an earlier failed export)
            st = tmp.lstat()
            if st.st_uid == os.getuid() and not tmp.is_symlink():
                tmp.unlink()
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as raw, \
                gzip.GzipFile(fileobj=raw, mode="wb", mtime=int(mtime)) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(root)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(mtime)
            tar.addfile(info)
            for name, data in members:
                info = tarfile.TarInfo(f"{root}/{name}")
                info.size, info.mode, info.mtime = len(data), 0o644, int(mtime)
                tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise BundleError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return [n for n, _ in members]


# ---------------------------------------------------------------------- verification


@dataclass
class BundleReport:
    """Outcome of :func:`verify_bundle`: ``ok`` only when every check passed."""

    path: str
    ok: bool = False
    session_id: str = ""
    key_id: str | None = None
    trusted_key: bool = False
    signed: bool = False
    checks: list[tuple[bool, str]] = field(default_factory=list)

    def add(self, ok: bool, message: str) -> None:
        self.checks.append((ok, message))

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "ok": self.ok, "session_id": self.session_id,
                "key_id": self.key_id, "trusted_key": self.trusted_key, "signed": self.signed,
                "checks": [{"ok": ok, "message": m} for ok, m in self.checks]}


def _read_members(path: Path) -> tuple[str, dict[str, bytes]]:
    try:
        tar = tarfile.open(path, mode="r:*")
    except (OSError, tarfile.TarError) as exc:
        raise BundleError(f"{path}: not a readable bundle (tar.gz): {exc}") from exc
    files: dict[str, bytes] = {}
    root = ""
    total = 0
    with tar:
        try:
            for n, info in enumerate(tar):
                if n > MAX_MEMBERS:
                    raise BundleError(f"{path}: too many files for a bundle")
                parts = info.name.split("/")
                if info.isdir() and len(parts) == 1:
                    root = root or parts[0]
                    continue
                if not info.isfile() or len(parts) != 2 or not _NAME.match(parts[0]) or \
                        not _NAME.match(parts[1]):
                    raise BundleError(f"{path}: unexpected entry {info.name!r} (not a plain "
                                      "file in the bundle directory)")
                if root and parts[0] != root:
                    raise BundleError(f"{path}: files in more than one directory")
                root = parts[0]
                total += info.size
                if info.size > MAX_MEMBER or total > MAX_TOTAL:
                    raise BundleError(f"{path}: {info.name} is too large ({info.size} bytes; "
                                      f"a bundle holds at most {MAX_TOTAL} bytes)")
                if parts[1] in files:
                    raise BundleError(f"{path}: {parts[1]} appears twice")
                f = tar.extractfile(info)
                if f is None:  # pragma: no cover - regular files always have data
                    raise BundleError(f"{path}: cannot read {info.name}")
                files[parts[1]] = f.read()
        except (OSError, tarfile.TarError, EOFError, zlib.error) as exc:
            raise BundleError(f"{path}: damaged archive: {exc}") from exc
    return root, files


def verify_bundle(path: Path, *, trusted: list[bytes] | None = None,
                  require_signature: bool = True) -> BundleReport:
    """Check a bundle: sums, their signature, the key, the recording, the reviews.

    Args:
        path: the bundle file.
        trusted: raw public keys the bundle must be signed with (None: the key in the
            bundle, reported as untrusted; the fingerprint must then be compared).
        require_signature: an unsigned bundle fails (default).
    """
    report = BundleReport(str(path))
    try:
        _root, files = _read_members(path)
    except BundleError as exc:
        report.add(False, str(exc))
        return report
    sums = files.get(SUMS)
    if sums is None:
        report.add(False, f"{SUMS} is missing")
        return report
    listed = _check_sums(report, sums, files)
    pub = _check_key(report, files, sums, trusted, require_signature)
    if "recording.bstl" in listed:
        _check_recording(report, files["recording.bstl"], pub, trusted)
    else:
        report.add(False, "recording.bstl is missing from the sums")
    _check_session(report, files)
    if "reviews.json" in listed:
        _check_reviews(report, files["reviews.json"], pub, trusted)
    report.ok = all(ok for ok, _ in report.checks)
    return report


def _check_sums(report: BundleReport, sums: bytes, files: dict[str, bytes]) -> set[str]:
    listed: set[str] = set()
    bad = 0
    try:
        lines = sums.decode("ascii").splitlines()
    except UnicodeDecodeError:
        report.add(False, f"{SUMS} is not text")
        return listed
    for line in lines:
        m = _SUM_LINE.match(line)
        if m is None:
            report.add(False, f"{SUMS}: malformed line {line[:80]!r}")
            bad += 1
            continue
        digest, name = m.groups()
        listed.add(name)
        data = files.get(name)
        if data is None:
            report.add(False, f"{name}: listed in {SUMS} but missing")
            bad += 1
        elif not hmac.compare_digest(hashlib.sha256(data).hexdigest(), digest):
            report.add(False, f"{name}: sha256 does not match {SUMS} (changed)")
            bad += 1
    extra = set(files) - listed - {SUMS, SUMS_SIG}
    for name in sorted(extra):
        report.add(False, f"{name}: not listed in {SUMS} (added)")
        bad += 1
    if not bad:
        report.add(True, f"{len(listed)} files match {SUMS}")
    return listed


def _check_key(report: BundleReport, files: dict[str, bytes], sums: bytes,
               trusted: list[bytes] | None, require_signature: bool) -> bytes | None:
    sig = files.get(SUMS_SIG)
    pem = files.get("public-key.pem")
    if sig is None or pem is None:
        report.add(not require_signature, "the bundle is not signed (no "
                   f"{SUMS_SIG} or public-key.pem)")
        return None
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        report.add(False, "public-key.pem is not a PEM public key")
        return None
    if not isinstance(key, Ed25519PublicKey):
        report.add(False, "public-key.pem is not an Ed25519 key")
        return None
    pub = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    report.key_id = key_id(pub)
    if not verify_signature(pub, sums, sig):
        report.add(False, f"{SUMS_SIG} is not a valid signature of {SUMS} by key "
                   f"{report.key_id}")
        return pub
    report.signed = True
    if trusted is not None:
        report.trusted_key = any(same_key(pub, t) for t in trusted)
        report.add(report.trusted_key, f"{SUMS} signed by key {report.key_id}" + (
            ", a trusted key" if report.trusted_key else ", which is NOT a trusted key"))
    else:
        report.add(True, f"{SUMS} signed by key {report.key_id} (the key in the bundle: "
                   "compare its fingerprint, or pass --public-key)")
    return pub


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def size(self) -> int:
        return len(self._data)

    def read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]


def _check_recording(report: BundleReport, data: bytes, pub: bytes | None,
                     trusted: list[bytes] | None) -> None:
    keys = trusted if trusted is not None else ([pub] if pub is not None else None)
    rep = verify_source(_Bytes(data), "recording.bstl", trusted=keys)
    report.session_id = rep.session_id
    where = f" (first bad chunk: {rep.first_bad_chunk})" if rep.first_bad_chunk is not None \
        else ""
    report.add(rep.ok, f"recording {rep.session_id}: {rep.status}: {rep.message}{where}")


def _check_session(report: BundleReport, files: dict[str, bytes]) -> None:
    raw = files.get("session.json")
    if raw is None:
        report.add(False, "session.json is missing")
        return
    try:
        info = json.loads(raw)
        sid = str(info.get("session_id", ""))
    except (ValueError, AttributeError):
        report.add(False, "session.json is not a JSON object")
        return
    if report.session_id and sid != report.session_id:
        report.add(False, f"session.json names session {sid!r}, the recording is "
                   f"{report.session_id!r}")


def _check_reviews(report: BundleReport, raw: bytes, pub: bytes | None,
                   trusted: list[bytes] | None) -> None:
    try:
        records = json.loads(raw)
        if not isinstance(records, list):
            raise ValueError("not a list")
    except ValueError:
        report.add(False, "reviews.json is not a JSON list")
        return
    bad = 0
    keys = trusted if trusted is not None else ([pub] if pub is not None else [])
    prev = ""
    for r in records:
        if not isinstance(r, dict):
            bad += 1
            continue
        payload = str(r.get("payload", "")).encode()
        try:
            body = json.loads(payload)
            rec_session = body.get("session")
            rec_prev = str(body.get("prev", ""))
        except (ValueError, AttributeError):
            bad += 1
            continue
        if report.session_id and rec_session != report.session_id:
            report.add(False, f"review {r.get('id')}: for another session ({rec_session!r})")
            bad += 1
            continue
        if rec_prev != prev:
            report.add(False, f"review {r.get('id')}: the chain of reviews is broken (a "
                       "record before it is missing or was reordered)")
            bad += 1
        prev = hashlib.sha256(payload).hexdigest()
        if not r.get("signature"):
            report.add(not keys, f"review {r.get('id')}: unsigned")
            bad += 1 if keys else 0
            continue
        try:
            sig = base64.b64decode(str(r["signature"]), validate=True)
            key = base64.b64decode(str(r.get("public_key", "")), validate=True)
        except (binascii.Error, ValueError):
            report.add(False, f"review {r.get('id')}: malformed signature")
            bad += 1
            continue
        if not verify_signature(key, payload, sig):
            report.add(False, f"review {r.get('id')}: invalid signature")
            bad += 1
        elif keys and not any(same_key(key, k) for k in keys):
            report.add(False, f"review {r.get('id')}: signed by another key ({key_id(key)})")
            bad += 1
    if not bad:
        report.add(True, f"{len(records)} review record(s): signatures and chain intact")
