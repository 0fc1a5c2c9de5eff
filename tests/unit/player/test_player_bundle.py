"""Evidence bundles: written by ``bastille export --format bundle``, checked with nothing
but ``sha256sum`` and Python's ``cryptography`` on the extracted files, and by
``bastille verify --bundle``; tampering, foreign keys and unsafe archives fail."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from player.evidence import exporter
from recorder.cli import EXPORTERS, add_commands
from recorder.settings import RecorderSettings
from recorder.signing import generate, load_signer
from state.reviews import ReviewStore
from state.timeparse import parse_when

ERIN = "audit-erin-0005"
ROOT = f"bastille-evidence-{ERIN}"


def _main(argv: list[str], key: Path | None) -> int:
    def resolve(args: argparse.Namespace) -> RecorderSettings:
        return RecorderSettings(data_dir=Path(args.data), signing_key=key)

    parser = argparse.ArgumentParser(prog="bastille")
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub, resolve, parse_when)
    EXPORTERS["bundle"] = exporter  # what gateway.cli registers
    args = parser.parse_args(argv)
    return int(args.func(args))


def _extract(bundle: Path, into: Path) -> Path:
    with tarfile.open(bundle) as tar:
        tar.extractall(into, filter="data")
    return into / ROOT


def _export(settings: RecorderSettings, out: Path, *extra: str) -> int:
    return _main(["export", "--data", str(settings.data_dir), ERIN, "--format", "bundle",
                  "-o", str(out), *extra], settings.signing_key)


def test_bundle_checks_with_sha256sum_and_cryptography(
        audit_settings: RecorderSettings, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    store = ReviewStore(audit_settings.data_dir / "reviews.sqlite3",
                        signer=load_signer(audit_settings.data_dir / "recording.key"))
    store.add(ERIN, "note", "bob", text="the kill was justified", at=22.3)
    store.add(ERIN, "reviewed", "bob")
    store.close()
    out = tmp_path / "erin.tar.gz"
    assert _export(audit_settings, out) == 0
    assert "signed by key" in capsys.readouterr().err
    root = _extract(out, tmp_path / "x")
    names = sorted(p.name for p in root.iterdir())
    assert names == sorted(["README.txt", "recording.bstl", "recording.signature.json",
                            "session.json", "timeline.json", "reviews.json", "session.cast",
                            "public-key.pem", "public-key.fingerprint", "SHA256SUMS",
                            "SHA256SUMS.sig"])
    # 1. the standard tools: sha256sum ...
    sums = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=root, capture_output=True,
                          text=True, timeout=30)
    assert sums.returncode == 0, sums.stdout + sums.stderr
    assert sums.stdout.count(": OK") == 9
    # ... and an Ed25519 check with cryptography, against the appliance's key
    pem = (root / "public-key.pem").read_bytes()
    key = load_pem_public_key(pem)
    assert isinstance(key, Ed25519PublicKey)
    key.verify((root / "SHA256SUMS.sig").read_bytes(), (root / "SHA256SUMS").read_bytes())
    appliance = (audit_settings.data_dir / "recording.key.pub").read_bytes()
    assert pem == appliance
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert hashlib.sha256(raw).hexdigest() in (root / "public-key.fingerprint").read_text()
    # the recording is the stored file, byte for byte
    stored = next((audit_settings.data_dir / "recordings").rglob(f"{ERIN}.bstl")).read_bytes()
    assert (root / "recording.bstl").read_bytes() == stored
    # the timeline names who decided, the rules, the kill
    timeline = json.loads((root / "timeline.json").read_text())
    summaries = [e["summary"] for e in timeline["entries"]]
    assert "approved by bob: maintenance window  (#1 $ systemctl stop pg)" in summaries
    assert "denied by carol: not without a ticket  (#2 $ userdel mallory)" in summaries
    assert "session terminated by bob: data exfiltration" in summaries
    # reviews: each record checks on its own
    reviews = json.loads((root / "reviews.json").read_text())
    assert [r["kind"] for r in reviews] == ["note", "reviewed"]
    for r in reviews:
        import base64
        key.verify(base64.b64decode(r["signature"]), r["payload"].encode())
    # asciicast v3: one marker per timeline event and note
    lines = (root / "session.cast").read_text().splitlines()
    header = json.loads(lines[0])
    assert header["version"] == 3 and header["term"]["cols"] == 80
    events = [json.loads(x) for x in lines[1:]]
    markers = [e[2] for e in events if e[1] == "m"]
    assert len(markers) == len(timeline["entries"]) + 1
    assert "denied by approver: denied by carol: not without a ticket  (#2 $ userdel mallory)" \
        in markers
    assert "note by bob: the kill was justified" in markers
    assert events[-1][1:] == ["x", "255"]
    assert all(e[0] >= 0 for e in events)  # v3: intervals, never negative
    output = "".join(e[2] for e in events if e[1] == "o")
    assert "line-60" in output and "\x1b]52" not in output  # no clipboard write replayed
    readme = (root / "README.txt").read_text()
    assert "bastille verify --bundle erin.tar.gz" in readme and "sha256sum -c SHA256SUMS" in readme
    # 2. bastille verify --bundle, with no configuration, trusting the appliance's key
    pub = str(audit_settings.data_dir / "recording.key.pub")
    assert _main(["verify", "--bundle", str(out), "--public-key", pub], None) == 0
    printed = capsys.readouterr()
    assert "a trusted key" in printed.out and "2 review record(s)" in printed.out
    assert "recording audit-erin-0005: ok" in printed.out and "verified" in printed.err


def _rewrite(bundle: Path, out: Path, change: dict[str, bytes]) -> None:
    with tarfile.open(bundle) as src, tarfile.open(out, "w:gz") as dst:
        for info in src:
            data = src.extractfile(info).read() if info.isfile() else None  # type: ignore[union-attr]
            name = info.name.split("/")[-1]
            if data is not None and name in change:
                data = change[name]
                info.size = len(data)
            dst.addfile(info, io.BytesIO(data) if data is not None else None)


def test_tampering_and_foreign_keys_fail(audit_settings: RecorderSettings, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "erin.tar.gz"
    assert _export(audit_settings, out, "--asciicast-version", "2") == 0
    root = _extract(out, tmp_path / "x")
    cast = [json.loads(x) for x in (root / "session.cast").read_text().splitlines()]
    assert cast[0]["version"] == 2 and cast[0]["width"] == 80 and cast[0]["duration"] > 22
    times = [e[0] for e in cast[1:]]
    assert times == sorted(times)  # v2: absolute times
    pub = str(audit_settings.data_dir / "recording.key.pub")
    capsys.readouterr()
    # an edited timeline: the sums say so
    timeline = (root / "timeline.json").read_bytes().replace(b"carol", b"bob")
    edited = tmp_path / "edited.tar.gz"
    _rewrite(out, edited, {"timeline.json": timeline})
    assert _main(["verify", "--bundle", str(edited), "--public-key", pub], None) == 1
    assert "FAIL timeline.json: sha256 does not match SHA256SUMS" in capsys.readouterr().out
    bad = _extract(edited, tmp_path / "y")
    assert subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=bad,
                          capture_output=True, timeout=30).returncode == 1
    # a forger recomputes the sums and signs them with their own key
    generate(tmp_path / "forger.key")
    forger = load_signer(tmp_path / "forger.key")
    files = {p.name: p.read_bytes() for p in bad.iterdir()}
    from recorder.bundle import public_pem, sums_text

    listed = [(n, d) for n, d in files.items() if n not in ("SHA256SUMS", "SHA256SUMS.sig")]
    listed = [(n, public_pem(forger.public_raw) if n == "public-key.pem" else d)
              for n, d in listed]
    sums = sums_text(listed)
    forged = tmp_path / "forged.tar.gz"
    _rewrite(edited, forged, {"SHA256SUMS": sums, "SHA256SUMS.sig": forger.sign(sums),
                              "public-key.pem": public_pem(forger.public_raw)})
    appliance = load_pem_public_key(Path(pub).read_bytes())
    assert isinstance(appliance, Ed25519PublicKey)
    with pytest.raises(InvalidSignature):  # the standard check against the real key
        appliance.verify(forger.sign(sums), sums)
    assert _main(["verify", "--bundle", str(forged), "--public-key", pub], None) == 1
    text = capsys.readouterr().out
    assert "which is NOT a trusted key" in text
    # without a trusted key, the recording's own signature still betrays the forger
    assert _main(["verify", "--bundle", str(forged)], None) == 1
    text = capsys.readouterr().out
    assert "FAIL recording audit-erin-0005: wrong-key" in text


def test_unsafe_archives_live_sessions_and_unreadable_keys_are_refused(
        audit_settings: RecorderSettings, settings: RecorderSettings, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../../etc/evil")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    assert _main(["verify", "--bundle", str(evil)], None) == 1
    assert "unexpected entry '../../etc/evil'" in capsys.readouterr().out
    assert not (tmp_path.parent.parent / "etc" / "evil").exists()
    (tmp_path / "junk.tar.gz").write_bytes(b"not a bundle")
    assert _main(["verify", "--bundle", str(tmp_path / "junk.tar.gz")], None) == 1
    assert "not a readable bundle" in capsys.readouterr().out
    # a live session has no finished recording
    out = tmp_path / "dave.tar.gz"
    assert _main(["export", "--data", str(settings.data_dir), "play-dave-0004", "--format",
                  "bundle", "-o", str(out)], settings.signing_key) == 1
    assert "has not ended" in capsys.readouterr().err and not out.exists()
    # a configured key this process cannot read: no unsigned bundle pretending otherwise
    missing = audit_settings.data_dir / "gone.key"
    assert _main(["export", "--data", str(audit_settings.data_dir), ERIN, "--format", "bundle",
                  "-o", str(out)], missing) == 1
    assert "cannot be read here" in capsys.readouterr().err and not out.exists()
