"""Fixtures for the player tests: one archive recorded by the real recorder per run."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from player_recordings import make_archive, make_audit_archive

from recorder.settings import RecorderSettings


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Times are shown in local time: make it UTC; copies go to a private tmp dir."""
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("BASTILLE_PLAYER_COPY_DIR", str(tmp_path / "copies"))
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture(scope="session")
def archive_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_archive(tmp_path_factory.mktemp("player-archive") / "data")


@pytest.fixture
def settings(archive_template: Path, tmp_path: Path) -> RecorderSettings:
    """A private copy of the recorded archive (the player writes keyframe caches)."""
    data = tmp_path / "data"
    shutil.copytree(archive_template, data)
    return RecorderSettings(data_dir=data, signing_key=data / "recording.key")


@pytest.fixture(scope="session")
def audit_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_audit_archive(tmp_path_factory.mktemp("player-audit") / "data")


@pytest.fixture
def audit_settings(audit_template: Path, tmp_path: Path) -> RecorderSettings:
    """A private copy of the audit archive (approval queue and audit log included)."""
    data = tmp_path / "audit"
    shutil.copytree(audit_template, data)
    return RecorderSettings(data_dir=data, signing_key=data / "recording.key")
