"""The built-in ``local-shell`` target: an SSH server inside the bastille process.

It listens on a random 127.0.0.1 port with a host key and a client key generated in
memory at start-up, so the gateway reaches it exactly like a remote target (pinned host
key, bastion-held credential) and every byte takes the same relay and recording path.
It runs a shell (or the exec command) as the user running bastille, in a real pty when
one was requested, and serves SFTP with asyncssh's SFTP server. The ``player`` target
is one of these that runs the player's command line directly (no shell).

Processes get a minimal environment (:func:`minimal_env`: ``PATH``, ``HOME``, ``USER``,
``LOGNAME``, ``SHELL``, ``LANG``/``LC_*``, ``TZ``, ``TERM``, plus the names a target is
given explicitly), never the gateway's own (which may hold vaulted target secrets).
Each runs in its own process group, which is hung up (SIGHUP, then SIGKILL after
:data:`GRACE` seconds) when its channel closes or the target stops, and asks the kernel
to kill it if the gateway process dies (``PR_SET_PDEATHSIG``, Linux).

Limits: meant for the demo and the player; it runs commands as the bastille process's
user. Grandchildren that leave the process group are not followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import logging
import os
import pwd
import shlex
import signal
import struct
import sys
import termios
from collections.abc import Iterable, Mapping

import asyncssh

from gateway.ssh.upstream import Endpoint

log = logging.getLogger("bastille.demo_target")

_SIGNALS = {"INT": signal.SIGINT, "TERM": signal.SIGTERM, "HUP": signal.SIGHUP,
            "KILL": signal.SIGKILL, "QUIT": signal.SIGQUIT, "USR1": signal.SIGUSR1,
            "USR2": signal.SIGUSR2, "WINCH": signal.SIGWINCH}
BASE_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TZ")
CLIENT_ENV = ("LANG", "TZ")  # and LC_*: what a client may set (AcceptEnv LANG LC_* TZ)
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
GRACE = 2.0  # seconds between SIGHUP and SIGKILL of a process group that must end
PR_SET_PDEATHSIG = 1

_HOME = os.path.expanduser("~")


def _account() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwuid(os.getuid())
    except KeyError:
        return None


def _shell() -> str:
    account = _account()
    return (account.pw_shell if account else "") or os.environ.get("SHELL", "/bin/sh")


def minimal_env(client_env: Mapping[str, str] | None, term: str | None,
                extra: Iterable[str] = ()) -> dict[str, str]:
    """The environment of a process of this target: the basics from the gateway's
    environment (or the account), the client's locale and time zone, ``TERM``, and the
    ``extra`` variables named explicitly. Nothing else of the gateway's environment."""
    wanted = set(BASE_ENV) | set(extra)
    env = {k: v for k, v in os.environ.items() if k in wanted or k.startswith("LC_")}
    account = _account()
    if account is not None:
        env.setdefault("HOME", account.pw_dir)
        env.setdefault("USER", account.pw_name)
        env.setdefault("LOGNAME", account.pw_name)
        env.setdefault("SHELL", account.pw_shell or "/bin/sh")
    env.setdefault("PATH", DEFAULT_PATH)
    for k, v in (client_env or {}).items():
        key, value = str(k), str(v)
        if key in CLIENT_ENV or key.startswith("LC_"):
            env[key] = value
    env["TERM"] = term or "dumb"
    return env


def _die_with_gateway() -> None:
    """In the child: be killed when the gateway process dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# The terminal becomes the controlling terminal of the new session in the child itself,
# just before the target's program: uvloop runs ``preexec_fn`` before the child's
# ``setsid`` and stdio set-up, where the standard loop runs it after them.
_CTTY_EXEC = ("import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
              "os.execvp(sys.argv[1], sys.argv[1:])")


async def _pipe_writer(fd: int) -> asyncio.StreamWriter:
    """A stream writer on the write end ``fd`` of a pipe (taken over)."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(fd, "wb", buffering=0))
    return asyncio.StreamWriter(transport, protocol, None, loop)


def _set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def hang_up(proc: asyncio.subprocess.Process, grace: float = GRACE) -> None:
    """End ``proc``'s process group: SIGHUP, then SIGKILL if it is still there."""
    if proc.returncode is not None:
        _signal_group(proc.pid, signal.SIGHUP)  # what it left running in its group
        return
    _signal_group(proc.pid, signal.SIGHUP)
    try:
        await asyncio.wait_for(asyncio.shield(proc.wait()), grace)
    except TimeoutError:
        _signal_group(proc.pid, signal.SIGKILL)
        await proc.wait()


class _Run:
    """One process of the target and the pumps between it and its SSH channel."""

    def __init__(self, process: asyncssh.SSHServerProcess[bytes], argv: list[str],
                 env: dict[str, str]) -> None:
        self.process = process
        self.argv = argv
        self.env = env
        self.master: int | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.stdin: asyncio.StreamWriter | None = None  # the process's stdin (no pty)
        self.pty_done = asyncio.Event()

    async def start(self) -> bool:
        process = self.process
        try:
            if process.term_type:
                master, slave = os.openpty()
                self.master = master
                cols, rows = process.term_size[:2]
                _set_size(master, cols or 80, rows or 24)
                self.proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", _CTTY_EXEC, *self.argv, stdin=slave, stdout=slave,
                    stderr=slave, env=self.env, cwd=_HOME, start_new_session=True,
                    preexec_fn=_die_with_gateway)
                os.close(slave)
            else:
                pipe = asyncio.subprocess.PIPE
                # stdin is a real pipe, also under uvloop (whose pipes are socketpairs):
                # bash reads ~/.bashrc when its stdin is a socket (its rshd check)
                stdin_r, stdin_w = os.pipe()
                try:
                    self.proc = await asyncio.create_subprocess_exec(
                        *self.argv, stdin=stdin_r, stdout=pipe, stderr=pipe, env=self.env,
                        cwd=_HOME, start_new_session=True, preexec_fn=_die_with_gateway)
                finally:
                    os.close(stdin_r)
                self.stdin = await _pipe_writer(stdin_w)
        except OSError as exc:
            with contextlib.suppress(OSError):
                process.stderr.write(f"cannot start {self.argv[0]}: {exc.strerror}\n".encode())
                process.exit(127)
            return False
        return True

    def signal(self, sig: int) -> None:
        if self.proc is not None:
            _signal_group(self.proc.pid, sig)

    def _write_in(self, data: bytes) -> bool:
        """Keys/stdin for the process; False once it cannot take more."""
        try:
            if self.master is not None:
                os.write(self.master, data)
            elif self.stdin is not None:
                self.stdin.write(data)
        except OSError:
            return False
        return True

    async def _read_in(self) -> bytes | None:
        """The next input from the channel (b"" at its end, None when it broke); window
        changes and signals are applied on the way."""
        while True:
            try:
                return await self.process.stdin.read(65536)
            except asyncssh.TerminalSizeChanged as exc:
                if self.master is not None:
                    _set_size(self.master, exc.width, exc.height)
            except asyncssh.SignalReceived as exc:
                self.signal(_SIGNALS.get(exc.signal, signal.SIGTERM))
            except asyncssh.BreakReceived:
                pass
            except (asyncssh.Error, OSError):
                return None

    async def pump_in(self) -> None:
        while True:
            data = await self._read_in()
            if data is None:
                return
            if not data:
                self._end_input()
                return
            if not self._write_in(data):
                return
            if self.master is None and self.stdin is not None:
                try:
                    await self.stdin.drain()
                except OSError:
                    return

    def _end_input(self) -> None:
        if self.master is not None:
            self._write_in(b"\x04")
        elif self.stdin is not None:
            with contextlib.suppress(OSError):
                self.stdin.close()

    async def pump_out(self, stream: asyncio.StreamReader | None, stderr: bool) -> None:
        if stream is None:
            return
        writer = self.process.stderr if stderr else self.process.stdout
        try:
            while data := await stream.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncssh.Error):
            return  # the channel closed: the process is hung up by run()

    def pty_readable(self) -> None:
        assert self.master is not None
        try:
            data = os.read(self.master, 65536)
        except OSError:
            data = b""
        if data:
            try:
                self.process.stdout.write(data)
                return
            except (OSError, asyncssh.Error):
                pass  # the channel closed under us: stop reading, run() hangs up
        asyncio.get_running_loop().remove_reader(self.master)
        self.pty_done.set()

    async def run(self) -> int:
        """Relay until the process ends or the channel closes; its exit status."""
        assert self.proc is not None
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self.pump_in())]
        if self.master is not None:
            loop.add_reader(self.master, self.pty_readable)
        else:
            tasks += [loop.create_task(self.pump_out(self.proc.stdout, False)),
                      loop.create_task(self.pump_out(self.proc.stderr, True))]
        closed = loop.create_task(self.process.wait_closed())
        exited = loop.create_task(self.proc.wait())
        try:
            await asyncio.wait({closed, exited}, return_when=asyncio.FIRST_COMPLETED)
            if closed.done():
                await hang_up(self.proc)  # the client went away: so does the process
            status = await exited
            if self.master is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.pty_done.wait(), 1.0)
            else:
                await asyncio.wait(tasks[1:], timeout=1.0)
        finally:
            if self.master is not None:
                loop.remove_reader(self.master)
                os.close(self.master)
            if self.stdin is not None:
                self.stdin.close()
            for task in (*tasks, closed):
                task.cancel()
            await asyncio.gather(*tasks, closed, return_exceptions=True)
            if self.proc.returncode is None:
                await hang_up(self.proc)
        return status


class _SftpServer(asyncssh.SFTPServer):
    """asyncssh's SFTP server, ending its channel with exit status 0 as OpenSSH's
    ``sftp-server`` does (without one, ``scp`` and ``sftp`` report a failure)."""

    def exit(self) -> None:
        with contextlib.suppress(OSError, asyncssh.Error):
            self.channel.exit(0)


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
    """Starts the in-process target; ``endpoint`` is how the gateway logs into it.

    Args:
        env: names of further variables of the gateway's environment its processes get.
        use_shell: run exec commands with the account's shell (``-c``); False runs the
            command line split into words, without a shell (the player).
    """

    def __init__(self, *, env: Iterable[str] = (), use_shell: bool = True) -> None:
        self._host_key = asyncssh.generate_private_key("ssh-ed25519")
        self._client_key = asyncssh.generate_private_key("ssh-ed25519")
        self._server: asyncssh.SSHAcceptor | None = None
        self._env = tuple(env)
        self._use_shell = use_shell
        self._runs: set[_Run] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncssh.create_server(
            lambda: _DemoServer(self._client_key), "127.0.0.1", 0,
            server_host_keys=[self._host_key], process_factory=self._handle,
            sftp_factory=_SftpServer, allow_scp=False, encoding=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def _argv(self, command: str | None) -> list[str]:
        shell = _shell()
        if command is None:
            return [shell, "-l"]
        if self._use_shell:
            return [shell, "-c", command]
        return shlex.split(command)

    async def _handle(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        """Run the shell or the exec command; relay a pty or pipes; pass signals, sizes."""
        argv = self._argv(process.command)
        run = _Run(process, argv, minimal_env(process.env, process.term_type, self._env))
        if not argv or not await run.start():
            return
        self._runs.add(run)
        try:
            status = await run.run()
        finally:
            self._runs.discard(run)
        with contextlib.suppress(OSError, asyncssh.Error):
            if status < 0:
                process.exit_with_signal(signal.Signals(-status).name.removeprefix("SIG"))
            else:
                process.exit(status)

    def endpoint(self) -> Endpoint:
        account = _account()
        return Endpoint(
            host="127.0.0.1", port=self.port,
            username=account.pw_name if account else str(os.getuid()),
            client_keys=(self._client_key,), host_keys=(self._host_key.convert_to_public(),),
        )

    async def close(self) -> None:
        """Stop listening and hang up every process still running."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        procs = [r.proc for r in self._runs if r.proc is not None]
        await asyncio.gather(*(hang_up(p) for p in procs), return_exceptions=True)
