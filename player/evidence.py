"""Evidence bundles of sessions: what goes in them (no Textual here).

``bastille export ID --format bundle -o FILE`` ends here (:func:`exporter`, registered
by the application in ``recorder.cli.EXPORTERS``): the recording byte for byte, its
signature, the timeline and the reviews as JSON, an asciicast file with one marker per
timeline event, and a README; :func:`recorder.bundle.write_bundle` adds the public key,
the sums and their signature (the appliance's recording signing key).

Refused: a live session (its recording is not finished), and a configured signing key
that this process cannot read (an unsigned bundle would look like a forgery). Without a
configured key the bundle is written unsigned, and says so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any

from player.archive import Archive, SessionData
from player.fmt import fmt_start
from recorder.bundle import README_TEMPLATE, BundleError, fingerprint_text, write_bundle
from recorder.errors import RecorderError
from recorder.export import asciicast_lines
from recorder.reader import Recording
from recorder.settings import RecorderSettings
from recorder.signing import Signer, load_signer
from recorder.verify import verify_source


def exported_by() -> str:
    """The operating-system user running the export (and the sudo user behind it)."""
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    sudo = os.environ.get("SUDO_USER")
    return f"{user} (sudo by {sudo})" if sudo and sudo != user else user


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()


def _markers(data: SessionData) -> list[tuple[float, str]]:
    out = [(e.time, f"{e.label}: {e.text}") for e in data.entries]
    for r in data.reviews:
        if r.at is not None and r.kind in ("note", "flag"):
            out.append((r.at, f"{r.kind} by {r.author}: {r.text}"))
    return out


def bundle_files(data: SessionData, raw: bytes, *, cast_version: int, signer: Signer | None,
                 bundle_name: str, root: str, now: float, by: str) -> list[tuple[str, bytes]]:
    """The files of a bundle (name, bytes), before the key and the sums are added."""
    rec = data.rec
    report = verify_source(_Bytes(raw), rec.name,
                           trusted=[signer.public_raw] if signer is not None else None)
    header = rec.header
    session = {
        "bundle_format": 1,
        "session_id": rec.session_id,
        "header": header,
        "trailer": {k: v for k, v in (rec.trailer or {}).items() if k != "parts"},
        "index": data.row.to_json() if data.row is not None else None,
        "duration": data.duration,
        "verification_at_export": dict(report.__dict__),
        "exported_at": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(),
        "exported_by": by,
        "review_summary": {"reviewed_by": list(data.review_summary.reviewed_by),
                           "flags": data.review_summary.flags,
                           "notes": data.review_summary.notes},
    }
    timeline = {"session_id": rec.session_id, "start_time": rec.start_time,
                "entries": [e.to_json() for e in data.entries]}
    reviews = [r.to_json() for r in data.reviews]
    cast = "\n".join(asciicast_lines(rec, version=cast_version, markers=_markers(data),
                                     safe=True)) + "\n"
    key = "unsigned (no signing key configured)"
    if signer is not None:
        key = fingerprint_text(signer.public_raw).replace("\n", "  ").strip()
    readme = README_TEMPLATE.format(
        session=rec.session_id, user=header.get("user", ""), target=header.get("target", ""),
        start=fmt_start(rec.start_time, "%Y-%m-%d %H:%M:%S %Z").strip(),
        exported=dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        exported_by=by, key=key, cast_version=cast_version, bundle_name=bundle_name,
        root=root)
    files = [("README.txt", readme.encode()), ("recording.bstl", raw)]
    if rec.signature is not None:
        files.append(("recording.signature.json", _json(rec.signature)))
    files += [("session.json", _json(session)), ("timeline.json", _json(timeline)),
              ("reviews.json", _json(reviews)), ("session.cast", cast.encode())]
    return files


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def size(self) -> int:
        return len(self._data)

    def read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]


def export_bundle(settings: RecorderSettings, rec: Recording, output: Path, *,
                  cast_version: int = 3, audit_file: Path | None = None,
                  clock: Any = time.time) -> str:
    """Write the bundle of ``rec``'s session to ``output``; a one-line summary.

    Raises:
        BundleError: the session is live, the signing key cannot be read, or the
            bundle cannot be written.
    """
    signer = None
    if settings.signing_key is not None:
        try:
            signer = load_signer(settings.signing_key)
        except RecorderError as exc:
            raise BundleError(f"the bundle is signed with the recording signing key, which "
                              f"cannot be read here: {exc}") from exc
    raw = rec.src.read(0, rec.src.size())
    archive = Archive(settings, audit_file=audit_file)
    try:
        try:
            data = archive.open(rec.session_id)
            same = data.rec.src.size() == len(raw)
        except RecorderError:
            data, same = None, False
        if data is None or not same:  # a .bstl file, or not in this index: no context
            from recorder import keyframes
            from recorder import timeline as tl

            data = SessionData(None, Recording.from_bytes(raw, rec.name),
                               keyframes.KeyframeIndex(rec.session_id, 10.0, len(raw)))
            data.entries = tl.build(data.rec.events(), header=data.rec.header,
                                    start_time=data.rec.start_time,
                                    duration=data.rec.duration)
            data.duration = data.rec.duration
        if data.live or data.rec.trailer is None:
            raise BundleError(f"session {rec.session_id} has not ended (its recording has no "
                              "trailer yet): export it once it has")
        root = f"bastille-evidence-{rec.session_id}"
        files = bundle_files(data, raw, cast_version=cast_version, signer=signer,
                             bundle_name=output.name, root=root, now=clock(), by=exported_by())
        names = write_bundle(output, root, files, signer=signer, mtime=rec.start_time)
    finally:
        archive.close()
    signed = f"signed by key {fingerprint_text(signer.public_raw).split()[2]}" if signer else \
        "UNSIGNED (no signing key configured)"
    return (f"wrote {output}: {len(names)} files, {len(data.entries)} timeline events, "
            f"{len(data.reviews)} review records; {signed}")


def exporter(rec: Recording, output: str, args: argparse.Namespace) -> str:
    """``recorder.cli.EXPORTERS["bundle"]``: settings come as ``args.recorder_settings``."""
    settings = getattr(args, "recorder_settings", None)
    if not isinstance(settings, RecorderSettings):
        raise ValueError("the bundle exporter needs the recorder settings")
    version = getattr(args, "asciicast_version", None) or 3
    try:
        return export_bundle(settings, rec, Path(output), cast_version=int(version),
                             audit_file=getattr(args, "audit_file", None))
    except BundleError as exc:
        raise ValueError(str(exc)) from exc
