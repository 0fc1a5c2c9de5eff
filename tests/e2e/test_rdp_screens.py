"""RDP screen text and the desktop in the player, end to end (xfreerdp -> bastille -> xrdp).

A user types in an xterm of the remote desktop: a command shows a paragraph of known
words, then (after ``sleep 2``) a unique word that the typed text never contains whole
(``echo zanzi""bar...``). After the session, the worker's screen pass draws the desktop
and reads it: ``bastille sessions list --text WORD`` finds the session by what was on
the screen, the player's search lands within 2 s of when the word appeared, and the
share of the paragraph's words read back is the OCR accuracy on this test screen
(printed; docs/rdp.md reports it). The player draws the desktop of a session that has
no frames yet through the frame builder ``bastille player`` registers.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.rdp_rig import RDP_USER, RdpClient, user_has_process
from tests.e2e.test_rdp import ALICE_PW, RdpRig, _recorded_keys, rdp_rig

__all__ = ["rdp_rig"]  # the rig fixture, shared with test_rdp.py

pytestmark = [pytest.mark.e2e, pytest.mark.rdp, pytest.mark.timeout(300)]

# the test screen: what `cat` shows in the remote xterm (the accuracy is measured on it)
PARAGRAPH = """\
The quarterly backup report lists seventeen servers and their retention windows.
Operators restarted nginx on web01 after the certificate renewal at 14:32 UTC.
Database replication lag reached 45 seconds before the failover completed cleanly.
Please rotate the credentials stored in /etc/app/secrets.yaml before Friday.
Invoice 2026-0815 was approved by finance; payment scheduled for next Tuesday.
The firewall rule allowing port 8443 from the partner network expires tomorrow.
Kernel upgrade pending: reboot required on hosts db02, db03 and cache04.
"""
# the unique word: "zanzibar" + one of these, chosen at random. Real words without the
# letters Tesseract confuses in the xterm's 6x13 font (c/e, v/y, u/w: "meadow" came back
# as "meadou"), and short: a long invented word is sometimes read with a space inside.
WORDS = ("harbor", "dragon", "tornado", "diamond", "orbit", "piano", "rabbit", "spirit",
         "bamboo", "kimono", "robot", "pagoda", "marathon", "hobbit", "domino", "safari")


def _words(text: str) -> list[str]:
    return sorted({w for w in re.findall(r"[A-Za-z0-9][A-Za-z0-9./:-]*[A-Za-z0-9]", text)
                   if len(w) >= 3})


def _session_start(rig: RdpRig, after: int) -> tuple[RdpClient, str]:
    client = rig.client(f"/v:127.0.0.1:{rig.rdp_port}", "/u:alice#rdp1", f"/p:{ALICE_PW}")
    start = rig.wait_audit(kind="session.start", protocol="rdp", after=after)
    deadline = time.monotonic() + 60
    while not user_has_process(RDP_USER, "bash"):
        assert time.monotonic() < deadline, f"no session on the target: {client.output()}"
        time.sleep(0.3)
    time.sleep(1.5)  # the xterm maps, bash prints its prompt
    return client, start["session"]


def _wait_file(path: Path, client: RdpClient, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"the typed command did not run: {client.output()}"
        time.sleep(0.2)


def _typed_line_time(rig: RdpRig, session: str, fragment: str) -> float:
    """Session time of the typed line containing ``fragment`` (the Enter key)."""
    from recorder.index import Index

    index = Index(rig.data / "index.sqlite3")
    try:
        times = [t for t, text, source in index.commands(session)
                 if source == "rdp-keys" and fragment in text]
    finally:
        index.close()
    assert times, f"no typed line with {fragment!r}"
    return times[0]


def _ocr_lines(rig: RdpRig, session: str) -> list[tuple[float, str]]:
    import sqlite3

    db = sqlite3.connect(rig.data / "index.sqlite3")
    try:
        rows = db.execute("SELECT offset, text FROM content WHERE session=? AND kind='ocr' "
                          "ORDER BY offset", (session,)).fetchall()
    finally:
        db.close()
    return [(float(t), str(x)) for t, x in rows]


async def _player_lands_on(rig: RdpRig, session: str, word: str) -> tuple[float, str]:
    """Open the session in the player, search ``word``; (position, status line)."""
    from textual.widgets import Static

    from player.app import PlayerApp
    from player.desktop_view import DesktopScreen, DesktopView
    from recorder.settings import RecorderSettings

    app = PlayerApp(RecorderSettings(data_dir=rig.data), session_id=session)
    async with app.run_test(size=(160, 50)) as pilot:
        for _ in range(300):
            await pilot.pause(0.05)
            scr = app.screen
            if isinstance(scr, DesktopScreen) and scr.shown is not None and not scr._busy:
                break
        scr = app.screen
        assert isinstance(scr, DesktopScreen), type(scr)
        await pilot.press("slash", *word, "enter")
        for _ in range(300):
            await pilot.pause(0.05)
            if scr.hits and not scr._busy and scr._want is None:
                break
        assert scr.hits, "the player's search found nothing"
        view = scr.query_one(DesktopView)
        assert view.frame is not None and view.frame.lines  # half-blocks drawn
        status = str(scr.query_one("#replay-status", Static).render())
        return scr.position, status


def test_screen_text_found_and_player_lands_on_it(rdp_rig: RdpRig) -> None:
    word = "zanzibar" + secrets.choice(WORDS)
    typed = word[:5] + '""' + word[5:]  # the keystrokes never hold the word whole
    words_file = Path(f"/tmp/bastille-ocr-{secrets.token_hex(4)}.txt")
    marker = Path(f"/tmp/bastille-ocr-done-{secrets.token_hex(4)}")
    words_file.write_text(PARAGRAPH)
    os.chmod(words_file, 0o644)
    before = len(rdp_rig.audit(kind="session.start", protocol="rdp"))
    client, session = _session_start(rdp_rig, before)
    try:
        client.type_line(f"clear; cat {words_file}")
        time.sleep(2.0)
        client.type_line(f"sleep 2; echo {typed}; touch {marker}")
        _wait_file(marker, client)
        time.sleep(2.0)  # the screen settles
    finally:
        client.stop()
        words_file.unlink(missing_ok=True)
        marker.unlink(missing_ok=True)
    rdp_rig.wait_audit(kind="session.end", protocol="rdp", session=session)
    done = rdp_rig.wait_audit(kind="recording", session=session, event="rdp screen pass",
                              timeout=180)
    assert done["outcome"] == "ok", done
    assert done["detail"]["frames"] > 5 and done["detail"]["ocr_lines"] > 3, done

    # found by what was on the screen (the keystrokes alone do not have the word)
    assert not any(word in line for line in _recorded_keys(rdp_rig, session))
    found = rdp_rig.bastille("sessions", "list", "--text", word, "--json")
    assert found.returncode == 0, found.stderr
    assert session in found.stdout, (word, [x for x in _ocr_lines(rdp_rig, session)
                                            if "zan" in x[1].lower() or "echo" in x[1]])

    # the player's search lands within 2 s of the moment the word appeared
    appeared = _typed_line_time(rdp_rig, session, "sleep 2") + 2.0
    position, status = asyncio.run(_player_lands_on(rdp_rig, session, word))
    assert abs(position - appeared) <= 2.0, (position, appeared, _ocr_lines(rdp_rig, session))
    assert "1024x768" in status and "1 hits" in status, status

    # accuracy on this test screen: the paragraph's words read back
    text = " ".join(line for _, line in _ocr_lines(rdp_rig, session)).lower()
    expected = _words(PARAGRAPH)
    read = [w for w in expected if w.lower() in text]
    accuracy = len(read) / len(expected)
    print(f"\nOCR accuracy on the test screen: {len(read)}/{len(expected)} words "
          f"({accuracy:.0%}); missed: {sorted(set(expected) - set(read))}; pass: "
          f"{done['detail']}")
    assert accuracy >= 0.8, (accuracy, sorted(set(expected) - set(read)))


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_player_draws_a_session_without_frames(rdp_rig: RdpRig, tmp_path: Path) -> None:
    """`bastille player` draws the desktop of a session that has no frames yet (its
    frame builder: a child process with pyrdp), shown as half-blocks in tmux."""
    from recorder.frames import cache_path

    before = len(rdp_rig.audit(kind="session.start", protocol="rdp"))
    client, session = _session_start(rdp_rig, before)
    try:
        client.type_line("echo drawn-later")
        time.sleep(1.5)
    finally:
        client.stop()
    rdp_rig.wait_audit(kind="recording", session=session, event="rdp screen pass",
                       timeout=180)
    cache = cache_path(rdp_rig.data, session)
    cache.unlink()
    sock = tmp_path / "tmux.sock"
    cmd = f"{sys.executable} -m gateway player -c {rdp_rig.config} {session}"
    subprocess.run(["tmux", "-S", str(sock), "new", "-d", "-x", "140", "-y", "40", cmd],
                   check=True, env={**os.environ, "TERM": "xterm-256color"})
    try:
        screen = ""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            screen = subprocess.run(["tmux", "-S", str(sock), "capture-pane", "-p"],
                                    capture_output=True, text=True).stdout
            if "1024x768 halfblock" in screen:
                break
            time.sleep(0.5)
        assert "1024x768 halfblock" in screen, screen
        assert "\u2580" in screen  # the desktop, in half-blocks
        assert cache.exists()
        assert "alice@rdp1 rdp/desktop" in screen
        assert "logon alice" in screen or "L " in screen  # the timeline panel
    finally:
        subprocess.run(["tmux", "-S", str(sock), "kill-server"], capture_output=True)
