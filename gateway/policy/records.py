"""What the analyser records about a line: the commands that may run (with the texts the
rules see and their effects), where their input comes from, the programs left in the
foreground."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.policy.values import AStr
from gateway.policy.views import View


@dataclass
class Effect:
    """A path a command may write or remove."""

    kind: str  # "write" | "delete"
    path: AStr
    maybe: bool = False
    source: str = ""


@dataclass
class CommandInfo:
    """One simple command that may run."""

    name: str
    display: str
    views: list[View]
    effects: list[Effect] = field(default_factory=list)
    definition: bool = False  # seen in a definition (function, alias), not run now


@dataclass(frozen=True)
class Stdin:
    """Where a command's standard input comes from.

    ``tty``: the user's terminal (interactive); ``user``: the SSH channel of an exec
    request (data the bastion does not decide); ``pipe``, ``heredoc``, ``herestring``,
    ``procsub``, ``coproc``: data from the line; ``file``: a file; ``null``.
    ``text`` is the data when it is statically known.
    """

    kind: str
    path: AStr | None = None
    text: str | None = None
    paths: tuple[AStr, str] | None = None  # a pipe of paths under a root: (root, separator)


@dataclass(frozen=True)
class Start:
    """A program the line leaves in the foreground of the terminal."""

    name: str
    kind: str  # "repl" | "screen" | "shell" | "opaque" | "password"
    lang: str
