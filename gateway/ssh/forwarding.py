"""Port forwarding through a target: ``ssh -L``/``-W`` (direct-tcpip) is relayed *through
the target*, and ``ssh -R`` makes the target listen, when the target allows it for the
user (``allow_local_forwarding``/``allow_remote_forwarding``) and the policy allows the
address (``forward-local HOST:PORT``/``forward-remote HOST:PORT``; a request cannot wait
for an approval, so anything but allow is refused). Forwarded bytes are not recorded;
the forwarding itself is audited, and so is every refusal.

Bounds (:mod:`gateway.limits`): host names longer than ``MAX_FORWARD_HOST`` are refused,
and one connection has at most ``MAX_FORWARDS_PER_CONNECTION`` forwarding channels and
remote listeners open at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import asyncssh

from gateway.audit import Kind
from gateway.config import TargetConfig
from gateway.core.enforce import Enforcer
from gateway.errors import BastilleError
from gateway.limits import MAX_FORWARD_HOST, MAX_FORWARDS_PER_CONNECTION, cut
from gateway.ssh.context import ConnContext

log = logging.getLogger("bastille.forwarding")


def refuse(ctx: ConnContext, channel: str, message: str) -> asyncssh.ChannelOpenError:
    """Audit a refused channel; the error to raise (shown to the user)."""
    ctx.audit(Kind.REFUSED, "denied", target=ctx.login.target or "",
              detail={"channel": channel, "reason": message})
    return asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                                     f"bastille: {message}")


def _target(ctx: ConnContext, channel: str, what: str) -> TargetConfig:
    """The login's target, if the user may use it; else raise the refusal."""
    if ctx.login.target is None:
        raise refuse(ctx, channel, f"{what} needs the USER+TARGET@BASTION login form")
    try:
        return ctx.services.access.authorize(ctx.principal, ctx.login.target)
    except BastilleError as exc:
        raise refuse(ctx, channel, str(exc)) from None


def _policy_refusal(ctx: ConnContext, target: TargetConfig, direction: str, host: str,
                    port: int) -> str | None:
    engine = ctx.services.policy
    if engine is None:
        return None
    principal = ctx.principal
    decision = engine.decide_forward(direction, host, port, user=principal.name,
                                     groups=sorted(principal.groups), target=target.name)
    refusal = Enforcer.refuse_unless_allowed(decision)
    return refusal.message if refusal is not None else None


def _bounded(ctx: ConnContext, channel: str, host: str) -> None:
    """Refuse a host name out of bounds, or one forwarding too many on this connection."""
    if len(host) > MAX_FORWARD_HOST:
        raise refuse(ctx, channel, f"host name {cut(host, 32)!r} is longer than "
                     f"{MAX_FORWARD_HOST} characters")
    if ctx.forwards >= MAX_FORWARDS_PER_CONNECTION:
        raise refuse(ctx, channel, "too many forwardings open on this connection "
                     f"(at most {MAX_FORWARDS_PER_CONNECTION})")


class _CountedForwarder(asyncssh.forward.SSHForwarder):
    """The user's side of a tunnel; gives its place back when it closes."""

    def __init__(self, peer: asyncssh.forward.SSHForwarder, ctx: ConnContext) -> None:
        super().__init__(peer)
        self._ctx: ConnContext | None = ctx

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._ctx is not None:
            self._ctx.forwards -= 1
            self._ctx = None


def local(ctx: ConnContext, dest_host: str, dest_port: int) -> Any:
    """``ssh -L``/``-W``: a tunnel through the target, or a ChannelOpenError."""
    _bounded(ctx, "direct-tcpip", dest_host)
    where = f"{dest_host}:{dest_port}"
    target = _target(ctx, "direct-tcpip", "port forwarding")
    principal = ctx.principal
    if not target.allow_local_forwarding.allows(principal.name, principal.groups):
        raise refuse(ctx, "direct-tcpip",
                     f"port forwarding to {where} is not allowed on {target.name}")
    why = _policy_refusal(ctx, target, "local", dest_host, dest_port)
    if why is not None:
        raise refuse(ctx, "direct-tcpip", f"port forwarding to {where}: {why}")
    ctx.audit(Kind.FORWARD, "ok", target=target.name, detail={"to": where})

    async def tunnel() -> Any:
        try:
            upstream = await ctx.upstream(target)
        except BastilleError as exc:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, str(exc)) from None
        # asyncssh's forward_tunneled_connection, with a forwarder that is counted
        factory: Any = asyncssh.forward.SSHForwarder
        _, peer = await upstream.create_connection(factory, dest_host, dest_port)
        ctx.forwards += 1
        return _CountedForwarder(cast(asyncssh.forward.SSHForwarder, peer), ctx)

    return tunnel()


def remote(ctx: ConnContext, listen_host: str, listen_port: int) -> Any:
    """``ssh -R``: the *target* listens; its connections come back to the user."""
    where = f"{listen_host}:{listen_port}"
    try:
        _bounded(ctx, "tcpip-forward", listen_host)
        target = _target(ctx, "tcpip-forward", "remote forwarding")
    except asyncssh.ChannelOpenError:
        return False
    principal = ctx.principal
    if not target.allow_remote_forwarding.allows(principal.name, principal.groups):
        refuse(ctx, "tcpip-forward", f"remote forwarding of {where} is not allowed on "
               f"{target.name}")
        return False
    why = _policy_refusal(ctx, target, "remote", listen_host, listen_port)
    if why is not None:
        refuse(ctx, "tcpip-forward", f"remote forwarding of {where}: {why}")
        return False
    ctx.audit(Kind.FORWARD, "ok", target=target.name, detail={"remote": where})
    return _remote_listener(ctx, target, listen_host, listen_port)


async def _remote_listener(ctx: ConnContext, target: TargetConfig, listen_host: str,
                           listen_port: int) -> Any:
    try:
        upstream = await ctx.upstream(target)
    except BastilleError:
        return None
    bound: list[int] = [listen_port]

    def handler_factory(orig_host: str, orig_port: int) -> Any:
        async def handle(t_reader: Any, t_writer: Any) -> None:
            try:
                u_reader, u_writer = await ctx.conn.open_connection(
                    listen_host, bound[0], orig_host, orig_port, encoding=None)
            except (asyncssh.Error, OSError):
                t_writer.close()
                return
            await _pipe_both(t_reader, t_writer, u_reader, u_writer)
        return handle

    try:
        listener = await upstream.start_server(handler_factory, listen_host, listen_port,
                                               encoding=None)
    except (asyncssh.Error, OSError) as exc:
        log.info("remote forwarding on %s failed: %s", target.name, exc)
        return None
    bound[0] = listener.get_port()
    ctx.forwards += 1  # a listener holds its place until the connection ends
    return listener


async def _pipe_both(ar: Any, aw: Any, br: Any, bw: Any) -> None:
    """Copy bytes both ways between two stream pairs until both directions end."""

    async def copy(reader: Any, writer: Any) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.write_eof()
        except (asyncssh.Error, OSError):
            writer.close()

    await asyncio.gather(copy(ar, bw), copy(br, aw), return_exceptions=True)
    aw.close()
    bw.close()
