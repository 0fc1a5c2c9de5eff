"""The two SSH channels of one session and the bytes between them: :class:`Relay`.

The relay is the channel edge: it writes to the user's channel and the target's channel,
shows the bastion's messages (it is the session's :class:`gateway.core.session.UserPort`),
keeps flow control end to end, and ends the user's channel with the target's exit status
(or signal) or with a reason. What happens to the bytes in between is the session's
:class:`gateway.ssh.pipes.Pipe`, chosen once per session.

Ending from the bastion's side (a kill, a limit, shutdown, a recording failure): a
non-PTY command keeps running on an OpenSSH target when only its channel closes, so the
target's command is sent ``TERM``, then ``KILL`` after ``TERM_GRACE`` seconds, before
the channel is closed (OpenSSH signals the command's process group). A PTY session is
sent ``HUP`` and closed at once: the target's terminal hangs up its processes.

Flow control: when one side's write buffer fills, reading from the other side pauses
(asyncssh ``pause_writing``/``resume_writing``); when the recording's backlog passes its
bound, reading from the target pauses until the writer catches up; while a pipe holds
the user's input (an SFTP request waiting for approval) the user is not read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

import asyncssh

from gateway.ssh.wire import write_data

if TYPE_CHECKING:
    from recorder.service import SessionRecording

STDERR = asyncssh.EXTENDED_DATA_STDERR


class Pipe(Protocol):
    """Where the relay hands the bytes (:mod:`gateway.ssh.pipes`)."""

    def from_user(self, data: bytes) -> None: ...

    def from_target(self, data: bytes, stream: int) -> None: ...

    def resize(self, cols: int, rows: int) -> None: ...

    def user_eof(self) -> bool:
        """May the user's end of input go to the target now?"""
        ...

    def flush(self) -> None:
        """Hand over what is gathered (before an EOF, an exit status, a message)."""
        ...

    async def aclose(self) -> None: ...


class UpstreamSession(asyncssh.SSHClientSession[bytes]):
    """Target side of a relay: hands everything to the :class:`Relay`."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._relay.from_target(data, datatype)

    def eof_received(self) -> bool:
        self._relay.target_eof()
        return True

    def exit_status_received(self, status: int) -> None:
        self._relay.exit_status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self._relay.exit_signal = (signal, core_dumped, msg, lang)

    def pause_writing(self) -> None:
        self._relay.set_user_reading(False)

    def resume_writing(self) -> None:
        self._relay.set_user_reading(True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._relay.target_done.set()


#: runs a coroutine as a task the gateway tracks (``Services.spawn``)
Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]


def _spawn(coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
    return asyncio.get_running_loop().create_task(coro, name=name)


class Relay:
    """The user's channel, the target's channel once open, and flow control.

    Args:
        chan: the user's session channel.
        has_pty: the user asked for a terminal (messages end with CR LF, no stderr).
        clock: monotonic seconds (idle time).
        spawn: starts the task that waits for the recorder to catch up.
    """

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], has_pty: bool, *,
                 clock: Callable[[], float] = time.monotonic, spawn: Spawn = _spawn) -> None:
        self.chan = chan
        self.has_pty = has_pty
        self.clock = clock
        self._spawn = spawn
        self.upstream: asyncssh.SSHClientChannel[bytes] | None = None
        self.pipe: Pipe | None = None
        self.rec: SessionRecording | None = None  # for backpressure
        # every byte written to the user, when the recording is masked (its trailer then
        # holds the SHA-256 of what the user received: SessionRecording.delivered)
        self.delivered: Callable[[bytes], None] | None = None
        self._sent: list[bytes] = []  # sent to the user, not yet reported to ``delivered``
        self._sent_len = 0
        self.user_closed = asyncio.Event()
        self.target_done = asyncio.Event()
        self.exit_status: int | None = None
        self.exit_signal: tuple[str, bool, str, str] | None = None
        self.last_activity = clock()
        self.bytes_in = 0
        self.bytes_out = 0
        self.discarding = False  # the session is over: user input is drained, dropped
        self.exited = False  # the user's channel was given its exit status or signal
        self._user_read_ok = True  # the target's window has room
        self._target_read_ok = True  # the user's window has room
        self._rec_ok = True  # the recording backlog is under its bound
        self._held = False  # the pipe holds the user's input (a request awaits approval)
        self._stopper: asyncio.Task[Any] | None = None  # signalling the target's command
        #: after recording: seconds to stop reading (a throttled recording budget), or 0
        self.meter: Callable[[], float] | None = None
        self._budget_ok = True  # not paused by the recording budget's throttle

    # ------------------------------------------------------------ writing
    def to_user(self, data: bytes, datatype: asyncssh.DataType = None) -> None:
        if not data or self.user_closed.is_set():
            return
        try:
            if datatype is None:
                write_data(self.chan, data)  # fewer copies (gateway.ssh.wire)
            else:
                self.chan.write(data, datatype)
        except (BrokenPipeError, ConnectionError):
            self.user_closed.set()
            return
        if self.delivered is not None:  # hashed by the recorder per loop turn, not packet
            self._sent.append(data)
            self._sent_len += len(data)
            if self._sent_len >= DELIVERED_BATCH:
                self.flush_delivered()
            elif len(self._sent) == 1:
                asyncio.get_running_loop().call_soon(self.flush_delivered)

    def flush_delivered(self) -> None:
        """Report what was sent to the user since the last call (see ``delivered``)."""
        if self._sent and self.delivered is not None:
            sent = b"".join(self._sent) if len(self._sent) > 1 else self._sent[0]
            self._sent.clear()
            self._sent_len = 0
            self.delivered(sent)

    def _flush_pipe(self) -> None:
        if self.pipe is not None:
            self.pipe.flush()

    def to_target(self, data: bytes) -> None:
        if self.upstream is None or not data:
            return
        try:
            write_data(self.upstream, data)
        except (BrokenPipeError, ConnectionError):
            return  # the target's channel closed (a key released after it): nothing to do

    def show(self, text: str, *, fresh_line: bool = False) -> tuple[bytes, int] | None:
        """A bastion message: a line of its own on the terminal, or on stderr."""
        if self.user_closed.is_set():
            return None
        self._flush_pipe()  # recorded after what the user saw before it
        if self.has_pty:
            data = (("\r\n" if fresh_line else "") + text + "\r\n").encode()
            self.to_user(data)
            return data, 1
        data = (text + "\n").encode()
        self.to_user(data, STDERR)
        return data, 2

    def write_text(self, text: str) -> None:
        """Plain text (a built-in command's output), with the terminal's line ends."""
        eol = "\r\n" if self.has_pty else "\n"
        self.to_user((text.replace("\n", eol) + eol).encode())

    # ------------------------------------------------------------ reading
    def from_user(self, data: bytes) -> None:
        self.last_activity = self.clock()
        if self.pipe is not None and not self.discarding:
            self.pipe.from_user(data)

    def from_target(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.last_activity = self.clock()
        self.bytes_out += len(data)
        if self.pipe is not None:
            self.pipe.from_target(data, 2 if datatype == STDERR else 1)

    def target_eof(self) -> None:
        self._flush_pipe()  # output the pipe gathered goes before the EOF
        if not self.user_closed.is_set():
            try:
                self.chan.write_eof()
            except (BrokenPipeError, ConnectionError):
                pass

    # ------------------------------------------------------------ flow control
    def recorded(self) -> None:
        """After recording: pause the target while the recorder catches up, or while a
        throttled recording budget says so."""
        rec = self.rec
        if rec is not None and rec.congested and self._rec_ok:
            self._rec_ok = False
            self._update()
            self._spawn(self._await_recorder(rec), "recorder backpressure")
        if self.meter is not None and self._budget_ok:
            pause = self.meter()
            if pause > 0:
                self._budget_ok = False
                self._update()
                self._spawn(self._throttled(pause), "recording budget throttle")

    async def _throttled(self, pause: float) -> None:
        await asyncio.sleep(pause)
        self._budget_ok = True
        self._update()

    async def _await_recorder(self, rec: SessionRecording) -> None:
        await rec.wait_writable()
        self._rec_ok = True
        self._update()

    def hold_user(self, held: bool) -> None:
        """Stop (or resume) reading the user's input: a request waits for a decision."""
        if held != self._held:
            self._held = held
            self._update()

    def set_user_reading(self, ok: bool) -> None:
        """The target's window is full (False) or has room again (True)."""
        if self.user_closed.is_set():
            return
        self._user_read_ok = ok
        self._update()

    def set_target_reading(self, ok: bool) -> None:
        """The user's window is full (False) or has room again (True)."""
        self._target_read_ok = ok
        self._update()

    def _update(self) -> None:
        up = self.upstream
        recording_ok = self._rec_ok and self._budget_ok
        if up is not None:
            if self._target_read_ok and recording_ok:
                up.resume_reading()
            else:
                up.pause_reading()
        if self.user_closed.is_set() or self.discarding:
            return
        if self._user_read_ok and recording_ok and not self._held:
            self.chan.resume_reading()
        else:
            self.chan.pause_reading()

    def start_reading(self) -> None:
        """The target is ready (or the menu is shown): read the user."""
        self._update()

    def stop_reading(self) -> None:
        if not self.user_closed.is_set():
            self.chan.pause_reading()

    # ------------------------------------------------------------ ending
    def exit_user(self, status: int) -> None:
        """End the user's channel with ``status``."""
        if self.user_closed.is_set() or self.exited:
            return
        self.exited = True
        self._drain()
        try:
            self.chan.exit(status)
        except (BrokenPipeError, ConnectionError, OSError):
            pass

    def _drain(self) -> None:
        # a paused channel holds its close until buffered input is delivered: drain it
        # (input after the end is dropped, since no target is attached any more)
        self.discarding = True
        self.chan.resume_reading()

    def end(self, reason: str | None) -> None:
        """End the user's side: with the target's exit status or signal (``reason`` None),
        or, after the bastion said why, with status 255 (the target's command is stopped,
        see :meth:`stop_target`). A target that closed without an exit status also gives
        255 (the session said so)."""
        self._flush_pipe()  # output the pipe gathered goes before the exit status
        if reason is not None:
            self.stop_target()
        if self.user_closed.is_set() or self.exited:
            return
        if reason is not None:
            self.exit_user(255)
        elif self.exit_signal is not None:
            sig, core, msg, lang = self.exit_signal
            self.exited = True
            self._drain()
            try:
                self.chan.exit_with_signal(sig, core, msg, lang)
            except (BrokenPipeError, ConnectionError, OSError):
                pass
        else:
            self.exit_user(self.exit_status if self.exit_status is not None else 255)

    async def wait_end(self) -> bool:
        """Until either side ends: True if the target did, False if the user did."""
        user = asyncio.ensure_future(self.user_closed.wait())
        target = asyncio.ensure_future(self.target_done.wait())
        try:
            await asyncio.wait({user, target}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            user.cancel()
            target.cancel()
        return self.target_done.is_set()

    def close_target(self) -> None:
        """Close the target's channel (unless :meth:`stop_target` is doing it)."""
        if self.upstream is not None and self._stopper is None:
            self.upstream.close()

    def stop_target(self) -> None:
        """End the target's side from the bastion: signal its command (see the module
        docstring), then close its channel."""
        up = self.upstream
        if up is None or self._stopper is not None:
            return
        if self.target_done.is_set() or self.has_pty:
            _signal(up, "HUP")
            up.close()
            return
        _signal(up, "TERM")
        self._stopper = self._spawn(self._reap_target(up), "stop target command")

    async def _reap_target(self, up: asyncssh.SSHClientChannel[bytes]) -> None:
        try:
            for then, wait in (("KILL", TERM_GRACE), ("", KILL_GRACE)):
                try:
                    await asyncio.wait_for(self.target_done.wait(), wait)
                    return
                except TimeoutError:
                    if then:
                        _signal(up, then)
        finally:
            up.close()

    @property
    def stopping(self) -> bool:
        """:meth:`stop_target` is still signalling the target's command."""
        return self._stopper is not None and not self._stopper.done()

    async def target_stopped(self) -> None:
        """Until :meth:`stop_target` is done (at most TERM_GRACE + KILL_GRACE seconds)."""
        if self._stopper is not None:
            await asyncio.wait({self._stopper})

    def extra(self) -> dict[str, Any]:
        """What ``session.end`` reports of the bytes relayed."""
        return {"bytes_in": self.bytes_in, "bytes_out": self.bytes_out}


DELIVERED_BATCH = 256 * 1024  # bytes sent to the user reported at once at most
TERM_GRACE = 2.0  # seconds a target command has to exit after TERM, before KILL
KILL_GRACE = 1.0  # seconds to wait for the target to report it after KILL
WATCHDOG_INTERVAL = 1.0  # seconds between idle / session-length checks


def _signal(up: asyncssh.SSHClientChannel[bytes], name: str) -> None:
    try:
        up.send_signal(name)
    except (asyncssh.Error, OSError):
        pass  # the channel is already closing


async def watch_limits(relay: Relay, end: Callable[[str], None], *, max_session: float,
                       idle_timeout: float) -> None:
    """End the session (``end(reason)``) at ``gateway.max_session`` or after
    ``gateway.idle_timeout`` without traffic in either direction (0: no limit)."""
    started = relay.clock()
    while True:
        await asyncio.sleep(WATCHDOG_INTERVAL)
        now = relay.clock()
        if max_session and now - started > max_session:
            end("maximum session length reached")
            return
        if idle_timeout and now - relay.last_activity > idle_timeout:
            end("idle timeout")
            return
