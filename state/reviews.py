"""Auditors' reviews of recorded sessions: reviewed marks, notes at a time, flags.

Reviews are stored apart from the recordings (which never change), in
``data_dir/reviews.sqlite3`` (created 0600 in a 0700 directory). The store is
append-only: a record is never updated or deleted; a flag is withdrawn by an ``unflag``
record that names it.

Each record is a canonical JSON object (sorted keys, no spaces, UTF-8)::

    {"v": 1, "type": "bastille-review", "session": ID, "kind": "reviewed"|"note"|"flag"|
     "unflag", "author": NAME, "created": UNIX_TIME, "at": SESSION_SECONDS|null,
     "entry": TIMELINE_KEY|null, "ref": DIGEST|null, "text": TEXT,
     "recording": CHAIN_HEAD_HEX, "prev": DIGEST_OF_PREVIOUS_RECORD}

signed with Ed25519 by the appliance's recording signing key. ``recording`` is the chain
head of the recording as reviewed (empty while it is live), so a review cannot be moved
to another recording; ``prev`` is the sha256 of the session's previous record, so a
record deleted from the middle or reordered shows as a broken chain. Anyone with the
public key checks a record with ``sha256`` and an Ed25519 verification of ``payload``.

Known limits: deleting the *last* records of a session is not detectable from the store
alone (the audit log has every review); without a configured signing key, records are
stored unsigned and shown as such.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from state.errors import StateError
from state.files import open_sqlite

KINDS = ("reviewed", "note", "flag", "unflag")
MAX_TEXT = 4000  # characters in one note or flag reason
MAX_AUTHOR = 200
RECORD_TYPE = "bastille-review"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT NOT NULL,
    payload TEXT NOT NULL,
    digest TEXT NOT NULL,
    signature TEXT,
    public_key TEXT
);
CREATE INDEX IF NOT EXISTS reviews_session ON reviews(session, id);
"""


class ReviewError(Exception):
    """A review cannot be stored or read (a message for the auditor)."""


class Signer(Protocol):
    """What signs records (``recorder.signing.Signer`` fits)."""

    @property
    def public_raw(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


def canonical(record: dict[str, Any]) -> bytes:
    """The exact bytes a signature covers."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def key_fingerprint(public_raw: bytes) -> str:
    """The key id used across bastille: the first 16 hex digits of sha256(raw key)."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def verify_record(payload: bytes, signature: bytes, public_raw: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``payload``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, payload)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Review:
    """One review record and the outcome of checking it.

    ``status``: ``signed`` (valid, by a trusted key when trusted keys are known),
    ``unsigned``, ``bad-signature``, ``untrusted-key``, ``broken-chain`` or
    ``malformed``.
    """

    id: int
    session: str
    kind: str
    author: str
    created: float
    at: float | None
    entry: str | None
    ref: str | None
    text: str
    recording: str
    prev: str
    digest: str
    payload: str
    signature: str | None
    public_key: str | None
    status: str

    @property
    def ok(self) -> bool:
        return self.status in ("signed", "unsigned")

    @property
    def key_id(self) -> str | None:
        if not self.public_key:
            return None
        try:
            return key_fingerprint(base64.b64decode(self.public_key, validate=True))
        except (binascii.Error, ValueError):
            return None

    def to_json(self) -> dict[str, Any]:
        """Everything needed to check the record elsewhere (payload, signature, key)."""
        return {
            "id": self.id, "session": self.session, "kind": self.kind, "author": self.author,
            "created": self.created, "at": self.at, "entry": self.entry, "ref": self.ref,
            "text": self.text, "recording": self.recording, "prev": self.prev,
            "digest": self.digest, "payload": self.payload, "signature": self.signature,
            "public_key": self.public_key, "key_id": self.key_id, "status": self.status,
        }


@dataclass(frozen=True)
class Summary:
    """The review state of one session, for lists."""

    reviewed_by: tuple[str, ...] = ()
    flags: int = 0  # flags not withdrawn
    notes: int = 0
    problems: int = 0  # records that fail their checks

    @property
    def reviewed(self) -> bool:
        return bool(self.reviewed_by)


def _private_file(path: Path) -> None:
    """Create ``path`` 0600 (no symlink followed) and its directory 0700."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise ReviewError(f"cannot open the review store {path}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


class ReviewStore:
    """The review records of every session (thread-safe: one connection, one lock).

    Args:
        path: the SQLite file (``data_dir/reviews.sqlite3``).
        signer: signs new records; None stores them unsigned (only when no signing
            key is configured: see ``signing_required``).
        trusted: raw public keys a signature must be made with (None: the key stored
            with the record, which proves integrity but not origin).
        signing_required: refuse to store unsigned records (a key is configured but
            this process cannot read it).
        clock: wall clock (injected in tests).
    """

    def __init__(self, path: Path, *, signer: Signer | None = None,
                 trusted: list[bytes] | None = None, signing_required: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.signer = signer
        self.trusted = trusted
        self.signing_required = signing_required
        self._clock = clock
        _private_file(self.path)
        try:
            self._db = open_sqlite(
                self.path, schema=_SCHEMA, what="the review store",
                lost="its review records are kept in the moved file (signed: they can be "
                     "checked there)")
        except StateError as exc:
            raise ReviewError(str(exc)) from exc
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ writing

    def add(self, session: str, kind: str, author: str, *, text: str = "",
            at: float | None = None, entry: str | None = None, ref: str | None = None,
            recording: str = "") -> Review:
        """Append one record; returns it as stored (checked).

        Raises:
            ReviewError: bad input, no key to sign with, or the store failed.
        """
        if kind not in KINDS:
            raise ReviewError(f"unknown review kind {kind!r} (one of {', '.join(KINDS)})")
        if not session or not author.strip():
            raise ReviewError("a review needs a session and an author")
        if len(text) > MAX_TEXT:
            raise ReviewError(f"a note holds at most {MAX_TEXT} characters ({len(text)} given)")
        if len(author) > MAX_AUTHOR:
            raise ReviewError("author name too long")
        if kind in ("note", "flag") and at is None:
            raise ReviewError(f"a {kind} needs a time in the session")
        if kind == "unflag" and not ref:
            raise ReviewError("unflag needs the flag it withdraws")
        if self.signer is None and self.signing_required:
            raise ReviewError("reviews are signed with the recording signing key, which this "
                              "process cannot read; nothing was stored")

        def build(prev: str) -> tuple[str, str, str | None, str | None]:
            record = {
                "v": 1, "type": RECORD_TYPE, "session": session, "kind": kind,
                "author": author, "created": round(self._clock(), 6),
                "at": None if at is None else round(float(at), 6), "entry": entry,
                "ref": ref, "text": text, "recording": recording, "prev": prev,
            }
            payload = canonical(record)
            sig = pub = None
            if self.signer is not None:
                sig = base64.b64encode(self.signer.sign(payload)).decode()
                pub = base64.b64encode(self.signer.public_raw).decode()
            return payload.decode(), hashlib.sha256(payload).hexdigest(), sig, pub

        rid = self._append(session, build)
        found = [r for r in self.records(session) if r.id == rid]
        if not found:  # pragma: no cover - just written
            raise ReviewError("the review was not stored")
        return found[0]

    def _append(self, session: str,
                build: Callable[[str], tuple[str, str, str | None, str | None]]) -> int:
        """Store the record ``build(digest of the session's last record)`` atomically
        (no other record of the session in between); its id."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                row = self._db.execute(
                    "SELECT digest FROM reviews WHERE session=? ORDER BY id DESC LIMIT 1",
                    (session,)).fetchone()
                payload, digest, sig, pub = build(str(row[0]) if row else "")
                cur = self._db.execute(
                    "INSERT INTO reviews (session, payload, digest, signature, public_key) "
                    "VALUES (?,?,?,?,?)", (session, payload, digest, sig, pub))
                rid = int(cur.lastrowid or 0)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise ReviewError(f"cannot store the review: {exc}") from exc
        return rid

    # ------------------------------------------------------------------ reading

    def _rows(self, sessions: list[str]) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        with self._lock:
            try:
                for i in range(0, len(sessions), 500):
                    part = sessions[i : i + 500]
                    marks = ",".join("?" * len(part))
                    out += self._db.execute(
                        "SELECT id, session, payload, digest, signature, public_key FROM reviews "
                        f"WHERE session IN ({marks}) ORDER BY session, id", part).fetchall()
            except sqlite3.Error as exc:
                raise ReviewError(f"cannot read the review store: {exc}") from exc
        return out

    def records(self, session: str) -> list[Review]:
        """Every record of ``session``, oldest first, each checked."""
        return self._check(self._rows([session])).get(session, [])

    def lists(self, sessions: Iterable[str]) -> dict[str, list[Review]]:
        return self._check(self._rows(list(dict.fromkeys(sessions))))

    def summaries(self, sessions: Iterable[str]) -> dict[str, Summary]:
        """The review state of each session that has records."""
        return {sid: summarize(records) for sid, records in self.lists(sessions).items()}

    def _check(self, rows: list[tuple[Any, ...]]) -> dict[str, list[Review]]:
        out: dict[str, list[Review]] = {}
        prev_digest: dict[str, str] = {}
        for rid, session, payload, digest, sig, pub in rows:
            review = self._check_one(int(rid), str(session), str(payload), str(digest), sig,
                                     pub, prev_digest.get(session, ""))
            prev_digest[session] = str(digest)
            out.setdefault(session, []).append(review)
        return out

    def _check_one(self, rid: int, session: str, payload: str, digest: str, sig: str | None,
                   pub: str | None, expected_prev: str) -> Review:
        raw = payload.encode()
        try:
            rec = json.loads(payload)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
        except ValueError:
            rec = {}
        status = "unsigned"
        if not rec or rec.get("type") != RECORD_TYPE or rec.get("session") != session or \
                rec.get("kind") not in KINDS:
            status = "malformed"
        elif not hmac.compare_digest(hashlib.sha256(raw).hexdigest(), digest):
            status = "malformed"
        elif sig or pub:
            status = self._signature_status(raw, sig, pub)
        elif self.trusted is not None or self.signing_required:
            status = "bad-signature"  # a key is configured: unsigned records are not trusted
        if status in ("signed", "unsigned") and str(rec.get("prev", "")) != expected_prev:
            status = "broken-chain"

        def num(v: object) -> float | None:
            return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

        return Review(
            id=rid, session=session, kind=str(rec.get("kind", "")),
            author=str(rec.get("author", "")), created=num(rec.get("created")) or 0.0,
            at=num(rec.get("at")), entry=_opt(rec.get("entry")), ref=_opt(rec.get("ref")),
            text=str(rec.get("text", "")), recording=str(rec.get("recording", "")),
            prev=str(rec.get("prev", "")), digest=digest, payload=payload, signature=sig,
            public_key=pub, status=status)

    def _signature_status(self, raw: bytes, sig: str | None, pub: str | None) -> str:
        try:
            signature = base64.b64decode(sig or "", validate=True)
            key = base64.b64decode(pub or "", validate=True)
        except (binascii.Error, ValueError):
            return "bad-signature"
        if not verify_record(raw, signature, key):
            return "bad-signature"
        if self.trusted is not None and not any(hmac.compare_digest(key, t)
                                                for t in self.trusted):
            return "untrusted-key"
        return "signed"


def _opt(v: object) -> str | None:
    return None if v is None else str(v)


def summarize(records: list[Review]) -> Summary:
    """Who reviewed, how many flags are still raised, notes, failed checks."""
    good = [r for r in records if r.ok]
    withdrawn = {r.ref for r in good if r.kind == "unflag"}
    flags = sum(1 for r in good if r.kind == "flag" and r.digest not in withdrawn)
    reviewers = tuple(dict.fromkeys(r.author for r in good if r.kind == "reviewed"))
    notes = sum(1 for r in good if r.kind == "note")
    return Summary(reviewers, flags, notes, len(records) - len(good))
