"""What the handlers of ``tools*.py`` share: their registry, effects, command strings
and argvs run by other programs, login shells.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.policy.catalogue import Program
from gateway.policy.ctx import Ctx
from gateway.policy.programs import run_inner
from gateway.policy.records import Effect, Stdin
from gateway.policy.values import Field, Hole

Handler = Callable[[Program, str, list[Field], Ctx], None]


class Handlers(dict[str, Handler]):
    """A module's handlers by the name ``catalogue.toml`` gives them (``handler = ...``)."""

    def register(self, name: str) -> Callable[[Handler], Handler]:
        """A decorator: the function handles the programs whose handler is ``name``."""

        def deco(fn: Handler) -> Handler:
            self[name] = fn
            return fn

        return deco


def _t(args: list[Field]) -> list[str | None]:
    return [a.text for a in args]


def _effect(ctx: Ctx, kind: str, path: tuple[object, ...], source: str, *,
            content: bool = True, track: bool = True) -> None:
    """Record a write or removal; a write of user content to a file that runs code later
    is uncertain (``content=False``: names from an archive, metadata only...)."""
    ctx.effects.append(Effect(kind, path, source=source))  # type: ignore[arg-type]
    if kind == "write":
        if content:
            ctx.an.check_autorun(path, source)  # type: ignore[arg-type]
        if track:  # git, make, package managers: their files are not the user's typing
            ctx.st.wrote(path)  # type: ignore[arg-type]


def _joined(fields: list[Field]) -> str | None:
    """Arguments joined into one command string (``watch``, ``ssh``, ``sudo -s``): known
    text, numbers (``$$``) as a placeholder digit; None if anything else is unknown."""
    out: list[str] = []
    for f in fields:
        if f.text is not None:
            out.append(f.text)
            continue
        if f.split or f.glob or any(not isinstance(c, str) and c is not Hole.DIGITS
                                    for c in f.chunks):
            return None
        out.append("".join(c if isinstance(c, str) else "0" for c in f.chunks))
    return " ".join(out)


def _string(text: str | None, ctx: Ctx, where: str, *, remote: bool = False,
            stdin: Stdin | None = None) -> None:
    """A command string run through a shell (``-c``, ``watch``, ``ssh host CMD``). Its
    input is the command's own (``su -c bash``, ``script -c bash``, ``ssh host bash``
    read the user's), unless ``stdin`` says otherwise (a protocol stream, nothing)."""
    if text is None:
        ctx.an.unsure(f"dynamic command string for {where}")
        return
    child = ctx.st.child()
    if remote:
        child.cwd, child.cwd_alts = ("~",), ()
        child.written, child.symlinks, child.path_changed = [], {}, False
    before = len(ctx.an.commands)
    ctx.an.text(text, child, stdin if stdin is not None else ctx.stdin,
                what=f"run by {where}")
    if remote:
        _remote_effects(ctx, before)


def _remote_effects(ctx: Ctx, before: int) -> None:
    """Effects on another system (ssh, containers): their targets are unknown here."""
    for c in ctx.an.commands[before:]:
        if c.effects:
            kinds = {e.kind for e in c.effects}
            c.effects = [Effect(k, (Hole.ANY,), maybe=True, source="remote") for k in kinds]


def _argv(words: list[Field], ctx: Ctx, where: str, *, remote: bool = False) -> None:
    """An argv run as a program by another program (``exec``-style, no shell)."""
    if not words:
        return
    before = len(ctx.an.commands)
    if remote:  # another system: its own directory, files and PATH
        st = ctx.st
        saved = st.cwd, st.cwd_alts, st.written, st.symlinks, st.path_changed
        st.cwd, st.cwd_alts, st.written, st.symlinks, st.path_changed = ("~",), (), [], {}, \
            False
        try:
            run_inner(words, ctx, where)
        finally:
            st.cwd, st.cwd_alts, st.written, st.symlinks, st.path_changed = saved
        _remote_effects(ctx, before)
    else:
        run_inner(words, ctx, where)


def _login(ctx: Ctx) -> None:
    """A login shell (``ssh host``, ``su -``, ``sudo -i``) starts in its user's home:
    ``~``, as unknown (and as symbolic) as the first shell's."""
    ctx.st.cwd, ctx.st.cwd_alts, ctx.st.oldpwd, ctx.st.dirstack = ("~",), (), None, []
