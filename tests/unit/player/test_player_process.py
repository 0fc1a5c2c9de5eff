"""The player as a process: a wrong id without a terminal is a one-line error, and the
player ends when its terminal goes away (SIGHUP, Ctrl-D from a relay, a closed pty, its
parent gone) instead of living on."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from recorder.settings import RecorderSettings

ROOT = Path(__file__).resolve().parents[3]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEXTUAL")}
    env.update(TZ="UTC", PYTHONPATH=str(ROOT), BASTILLE_PLAYER_COPY_DIR=str(tmp_path / "c"),
               TERM="xterm-256color")
    return env


@pytest.mark.parametrize("entry", [["-m", "player", "--data"], ["-m", "gateway", "player",
                                                                "--data"]])
def test_wrong_id_without_a_tty_is_one_line_and_status_1(
        settings: RecorderSettings, tmp_path: Path, entry: list[str]) -> None:
    started = time.monotonic()
    r = subprocess.run([sys.executable, *entry, str(settings.data_dir), "nosuchid"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                       env=_env(tmp_path), cwd=ROOT)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"bastille player: error: no session 'nosuchid' in {settings.data_dir}"]
    assert r.stdout == "" and time.monotonic() - started < 30
    r = subprocess.run([sys.executable, *entry, str(settings.data_dir), "\x1b]52;c;eA==\x07"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                       env=_env(tmp_path), cwd=ROOT)
    assert r.returncode == 1 and "\x1b" not in r.stderr and "\\x1b]52" in r.stderr
    r = subprocess.run([sys.executable, *entry, str(settings.data_dir)],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                       env=_env(tmp_path), cwd=ROOT)
    assert r.returncode == 1 and "the player needs a terminal" in r.stderr


class Pty:
    """The player on a pseudo-terminal, as the session leader (like an SSH session)."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, b"\x18\x00\x50\x00\x00\x00\x00\x00")

        def ctty() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     cwd=ROOT, start_new_session=True, preexec_fn=ctty)
        os.close(slave)
        self.out = b""

    def read_until(self, text: bytes, timeout: float = 30) -> None:
        import select

        deadline = time.monotonic() + timeout
        while text not in self.out and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.out += os.read(self.master, 65536)
                except OSError:
                    break
        assert text in self.out, self.out[-2000:]

    def drain(self) -> None:
        import select

        while self.master >= 0:
            ready, _, _ = select.select([self.master], [], [], 0)
            if not ready:
                return
            try:
                if not os.read(self.master, 65536):
                    return
            except OSError:
                return

    def wait(self, timeout: float = 10) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.drain()
            code = self.proc.poll()
            if code is not None:
                return code
            time.sleep(0.05)
        return None

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


@pytest.fixture
def player(settings: RecorderSettings, tmp_path: Path) -> Iterator[Pty]:
    p = Pty([sys.executable, "-m", "player", "--data", str(settings.data_dir)], _env(tmp_path))
    try:
        p.read_until(b"Approvals")  # the footer: the list is drawn
        yield p
    finally:
        p.close()


def test_sighup_ends_the_player(player: Pty) -> None:
    os.kill(player.proc.pid, signal.SIGHUP)
    assert player.wait() is not None


def test_ctrl_d_from_a_relay_ends_the_player(player: Pty) -> None:
    os.write(player.master, b"\x04")  # what the gateway writes when the client goes
    assert player.wait() == 0


def test_a_closed_terminal_ends_the_player(player: Pty) -> None:
    os.close(player.master)  # the relay went away: the kernel hangs the terminal up
    player.master = -1
    assert player.wait() is not None


def test_the_player_does_not_outlive_its_parent(settings: RecorderSettings,
                                                tmp_path: Path) -> None:
    """Started by a process that is then killed (the gateway crashed): it ends too,
    although its terminal stays open (no hangup) and it is in a session of its own (no
    SIGHUP from its parent's death)."""
    pidfile = tmp_path / "pid"
    script = (f"exec 3<&0; setsid {sys.executable} -m player --data {settings.data_dir} "
              f"<&3 3<&- & echo $! > {pidfile}; wait")
    p = Pty(["/bin/sh", "-c", script], _env(tmp_path))
    try:
        p.read_until(b"Approvals")
        child = int(pidfile.read_text())
        os.kill(p.proc.pid, signal.SIGKILL)  # the parent dies without telling anyone
        p.proc.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            p.drain()
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            if _zombie(child):
                break
            time.sleep(0.1)
        else:
            os.kill(child, signal.SIGKILL)
            raise AssertionError("the player outlived its parent")
    finally:
        p.close()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def _wait_undrained(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def test_sighup_ends_the_player_even_when_nobody_reads_its_terminal(player: Pty) -> None:
    """The relay stopped reading (its client is gone) while the player had a screen to
    draw: the terminal's buffer fills, Textual's writes block, and a clean exit would
    wait forever; the lifeline thread ends the process."""
    for cols, rows in ((250, 90), (240, 80), (251, 91), (239, 79)) * 4:
        fcntl.ioctl(player.master, termios.TIOCSWINSZ,
                    rows.to_bytes(2, "little") + cols.to_bytes(2, "little") + bytes(4))
        os.killpg(player.proc.pid, signal.SIGWINCH)
        time.sleep(0.15)
    time.sleep(1.0)
    os.kill(player.proc.pid, signal.SIGHUP)
    assert _wait_undrained(player.proc, 15) is not None, "the player hung on exit"
