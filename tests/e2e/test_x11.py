"""X11 forwarding through the bastion: refused by default, allowed per target/user.

A real Xvfb plays the user's X server; xdpyinfo on the target is the X client."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import audit_events
from tests.e2e.rig import Rig

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def xdisplay() -> Iterator[str]:
    if not (shutil.which("Xvfb") and shutil.which("xauth") and shutil.which("xdpyinfo")):
        pytest.skip("needs Xvfb, xauth and xdpyinfo (apt-get install xvfb xauth x11-utils)")
    number = 90 + os.getpid() % 9
    proc = subprocess.Popen(["Xvfb", f":{number}", "-nolisten", "tcp", "-screen", "0",
                             "640x480x24"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    display = f":{number}"
    deadline = time.monotonic() + 10
    while subprocess.run(["xdpyinfo", "-display", display], capture_output=True).returncode:
        if time.monotonic() > deadline:
            proc.kill()
            pytest.skip("Xvfb did not start")
        time.sleep(0.1)
    yield display
    proc.terminate()
    proc.wait(5)


def _ssh_x(rig: Rig, display: str, target: str) -> subprocess.CompletedProcess[bytes]:
    args = rig.ssh_args("alice", extra=["-Y", "-o", "LogLevel=INFO"])
    return subprocess.run([*args, target, "--", "xdpyinfo | grep -E 'name of display|dimensions'"],
                          capture_output=True, timeout=30,
                          env={**os.environ, "DISPLAY": display})


def test_x11_allowed_by_config(rig: Rig, xdisplay: str) -> None:
    r = _ssh_x(rig, xdisplay, "web1x11")
    assert r.returncode == 0, r.stderr
    assert b"640x480 pixels" in r.stdout  # the user's own X server, seen from the target
    assert audit_events(rig, kind="forward", target="web1x11", channel="x11")


def test_x11_refused_by_default(rig: Rig, xdisplay: str) -> None:
    r = _ssh_x(rig, xdisplay, "web1")
    assert b"X11 forwarding is not allowed on web1" in r.stderr
    assert b"640x480" not in r.stdout
