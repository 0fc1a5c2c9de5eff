"""The built-in ``local-shell`` target: an SSH server inside the bastille process.

It listens on a random 127.0.0.1 port with a host key and a client key generated in
memory at start-up, so the gateway reaches it exactly like a remote target (pinned host
key, bastion-held credential) and every byte takes the same relay and recording path.
It runs a shell (or the exec command) as the user running bastille, in a real pty when
one was requested, and serves SFTP with asyncssh's SFTP server.

Limits: meant for the demo and tests; it runs commands as the bastille process's user.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import pwd
import signal
import struct
import termios

import asyncssh

from gateway.ssh.upstream import Endpoint

log = logging.getLogger("bastille.demo_target")

_SIGNALS = {"INT": signal.SIGINT, "TERM": signal.SIGTERM, "HUP": signal.SIGHUP,
            "KILL": signal.SIGKILL, "QUIT": signal.SIGQUIT, "USR1": signal.SIGUSR1,
            "USR2": signal.SIGUSR2, "WINCH": signal.SIGWINCH}


_HOME = os.path.expanduser("~")


def _shell() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_shell or "/bin/sh"
    except KeyError:
        return os.environ.get("SHELL", "/bin/sh")


async def _handle(process: asyncssh.SSHServerProcess[bytes]) -> None:
    """Run the shell or the exec command; relay a pty or pipes; pass signals and sizes."""
    command = process.command
    term = process.term_type
    env_in = process.env or {}
    env = {**os.environ, **{k: v for k, v in env_in.items()
                            if str(k).startswith("LC_") or k in ("LANG", "TZ")}}
    env["TERM"] = term or "dumb"
    env.pop("SSH_AUTH_SOCK", None)
    shell = _shell()
    argv = [shell, "-c", command] if command is not None else [shell, "-l"]
    loop = asyncio.get_running_loop()
    home = _HOME
    master: int | None = None
    try:
        if term:
            master, slave = os.openpty()
            cols, rows = process.term_size[:2]
            _set_size(master, cols or 80, rows or 24)
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                cwd=home, start_new_session=True,
                preexec_fn=_make_controlling_tty)
            os.close(slave)
        else:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=env, cwd=home,
                start_new_session=True)
    except OSError as exc:
        process.stderr.write(f"cannot start {shell}: {exc.strerror}\n".encode())
        process.exit(127)
        return

    def kill(sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    async def pump_in() -> None:
        while True:
            try:
                data = await process.stdin.read(65536)
            except asyncssh.TerminalSizeChanged as exc:
                if master is not None:
                    _set_size(master, exc.width, exc.height)
                continue
            except asyncssh.SignalReceived as exc:
                kill(_SIGNALS.get(exc.signal, signal.SIGTERM))
                continue
            except asyncssh.BreakReceived:
                continue
            except (asyncssh.Error, OSError):
                return
            try:
                if not data:
                    if master is not None:
                        os.write(master, b"\x04")
                    elif proc.stdin is not None:
                        proc.stdin.close()
                    return
                if master is not None:
                    os.write(master, data)
                elif proc.stdin is not None:
                    proc.stdin.write(data)
                    await proc.stdin.drain()
            except OSError:  # the process is gone (BrokenPipeError, EIO): stop quietly
                return

    async def pump_out(stream: asyncio.StreamReader | None, stderr: bool) -> None:
        if stream is None:
            return
        writer = process.stderr if stderr else process.stdout
        try:
            while data := await stream.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncssh.Error):  # the channel closed under us
            return

    pty_done = asyncio.Event()

    def pty_readable() -> None:
        assert master is not None
        try:
            data = os.read(master, 65536)
        except OSError:
            data = b""
        if data:
            try:
                process.stdout.write(data)
                return
            except (OSError, asyncssh.Error):  # the channel closed under us
                pass
        loop.remove_reader(master)
        pty_done.set()

    in_task = loop.create_task(pump_in())
    outs = []
    if master is not None:
        loop.add_reader(master, pty_readable)
    else:
        outs = [loop.create_task(pump_out(proc.stdout, False)),
                loop.create_task(pump_out(proc.stderr, True))]
    try:
        status = await proc.wait()
        if master is not None:
            try:
                await asyncio.wait_for(pty_done.wait(), 1.0)
            except TimeoutError:
                loop.remove_reader(master)
            os.close(master)
        else:
            await asyncio.gather(*outs, return_exceptions=True)
    finally:
        in_task.cancel()
        if proc.returncode is None:
            kill(signal.SIGHUP)
    try:
        if status < 0:
            process.exit_with_signal(signal.Signals(-status).name.removeprefix("SIG"))
        else:
            process.exit(status)
    except (OSError, asyncssh.Error):  # the client went away first
        pass


def _set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _make_controlling_tty() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class _DemoServer(asyncssh.SSHServer):
    def __init__(self, client_key: asyncssh.SSHKey) -> None:
        self._client_key = client_key

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return key.public_data == self._client_key.public_data


class LocalShellTarget:
    """Starts the in-process target; ``endpoint`` is how the gateway logs into it."""

    def __init__(self) -> None:
        self._host_key = asyncssh.generate_private_key("ssh-ed25519")
        self._client_key = asyncssh.generate_private_key("ssh-ed25519")
        self._server: asyncssh.SSHAcceptor | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncssh.create_server(
            lambda: _DemoServer(self._client_key), "127.0.0.1", 0,
            server_host_keys=[self._host_key], process_factory=_handle,
            sftp_factory=True, allow_scp=False, encoding=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def endpoint(self) -> Endpoint:
        return Endpoint(
            host="127.0.0.1", port=self.port, username=pwd.getpwuid(os.getuid()).pw_name,
            client_keys=(self._client_key,), host_keys=(self._host_key.convert_to_public(),),
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
