"""A bare asyncssh relay: the yardstick for bastille's CPU per MiB.

It accepts one key, opens the same kind of channel on the target (exec, shell with a
PTY, or the SFTP subsystem) with the target's key, and copies bytes both ways with
flow control, nothing else: no recording, no masking, no policy, no audit; AES-GCM on
both legs, as bastille gets with OpenSSH clients. What it costs per MiB is what
asyncssh and the crypto cost; bastille's CPU per MiB above it is bastille's own work.
Started by ``bench/throughput.py --bare``; not part of bastille.

Run: python bench/bare_relay.py --port P --host-key K --client-key PUB --target-port T
       --target-user U --target-key K --target-host-key PUB [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import asyncssh


class TargetSide(asyncssh.SSHClientSession[bytes]):
    def __init__(self, user: asyncssh.SSHServerChannel[bytes]) -> None:
        self.user = user

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.user.write(data, datatype)

    def eof_received(self) -> bool:
        self.user.write_eof()
        return True

    def exit_status_received(self, status: int) -> None:
        self.user.exit(status)

    def pause_writing(self) -> None:
        self.user.pause_reading()

    def resume_writing(self) -> None:
        self.user.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.user.close()


class UserSide(asyncssh.SSHServerSession[bytes]):
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.chan: asyncssh.SSHServerChannel[bytes] | None = None
        self.target: asyncssh.SSHClientChannel[bytes] | None = None
        self.pty: tuple[str, tuple[int, int, int, int]] | None = None
        self.command: str | None = None
        self.subsystem: str | None = None
        self.early: list[bytes] = []
        self.eof = False

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self.chan = chan

    def pty_requested(self, term_type: str, term_size: tuple[int, int, int, int],
                      term_modes: Any) -> bool:
        self.pty = (term_type, term_size)
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self.command = command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        self.subsystem = subsystem
        return True

    def session_started(self) -> None:
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        a = self.args
        assert self.chan is not None
        conn = await asyncssh.connect(
            "127.0.0.1", a.target_port, username=a.target_user, client_keys=[a.target_key],
            known_hosts=asyncssh.import_known_hosts(f"[127.0.0.1]:{a.target_port} "
                                                    f"{a.target_host_key}\n"),
            encoding=None, encryption_algs=ENC)
        kw: dict[str, Any] = {"encoding": None}
        if self.pty is not None:
            kw["term_type"], kw["term_size"] = self.pty[0], self.pty[1]
        if self.subsystem is not None:
            kw["subsystem"] = self.subsystem
        elif self.command is not None:
            kw["command"] = self.command
        chan = self.chan
        self.target, _ = await conn.create_session(lambda: TargetSide(chan), **kw)
        for data in self.early:
            self.target.write(data)
        if self.eof:
            self.target.write_eof()
        chan.resume_reading()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self.target is None:
            self.early.append(data)
        else:
            self.target.write(data)

    def eof_received(self) -> bool:
        if self.target is None:
            self.eof = True
        else:
            self.target.write_eof()
        return True

    def pause_writing(self) -> None:
        if self.target is not None:
            self.target.pause_reading()

    def resume_writing(self) -> None:
        if self.target is not None:
            self.target.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.target is not None:
            self.target.close()


ENC = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"]
# the user leg too: an OpenSSH client lists chacha20 first, and bastille answers clients
# that allow AES-GCM with AES-GCM only (gateway/ssh/algorithms.py); the yardstick does
# the same, so that the cipher is not what tells them apart
USER_ENC = ENC[:2]


class Server(asyncssh.SSHServer):
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def begin_auth(self, username: str) -> bool:
        return True

    def session_requested(self) -> UserSide:
        return UserSide(self.args)


async def serve(a: argparse.Namespace) -> None:
    await asyncssh.create_server(
        lambda: Server(a), "127.0.0.1", a.port, server_host_keys=[a.host_key],
        authorized_client_keys=asyncssh.import_authorized_keys(a.client_key),
        encoding=None, line_editor=False, allow_scp=False, encryption_algs=USER_ENC)
    print("ready", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("port", "target-port"):
        ap.add_argument(f"--{name}", type=int, required=True)
    for name in ("host-key", "client-key", "target-user", "target-key", "target-host-key"):
        ap.add_argument(f"--{name}", required=True)
    ap.add_argument("--uvloop", action="store_true")
    a = ap.parse_args(argv)
    with open(a.client_key) as fh:
        a.client_key = fh.read()
    if a.uvloop:
        import uvloop

        uvloop.install()
    try:
        asyncio.run(serve(a))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
