"""What the handlers of builtins and programs see of the analyser.

``Ctx`` is one command's context (the analyser, the shell state, stdin, the command's
environment, redirections and effects so far); ``Interpreter`` is the part of the
analyser (``analyze.Analyzer``) that handlers call back into: to record a command, to
analyse code as bash, to look a program up and run its handler. Handlers depend on
this module only, so the analyser can import them without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.policy.catalogue import Catalogue, Program
from gateway.policy.records import CommandInfo, Effect, Start, Stdin
from gateway.policy.state import ShellState
from gateway.policy.values import AStr, Field


class Interpreter(Protocol):
    """The analyser as the handlers use it (implemented by ``analyze.Analyzer``)."""

    cat: Catalogue
    exec_mode: bool  # an exec request (no interactive shell around the line)
    tty: bool  # the session has a terminal whose keys the relay decides
    depth: int  # nesting of command strings and function calls
    quiet: int  # >0: commands are collected, uncertainty is not (definitions)
    commands: list[CommandInfo]
    starts: list[Start]
    uncertain: list[str]

    def unsure(self, reason: str) -> None:
        """The line is uncertain, for this reason."""

    def reads_input(self, reason: str) -> None:
        """A program reads commands or keys from the user's input (exec, no terminal)."""

    def text(self, text: str, st: ShellState, stdin: Stdin, *, top: bool = False,
             what: str = "") -> None:
        """Analyse ``text`` as bash in ``st``."""

    def dispatch(self, name: str, args: list[Field], ctx: Ctx, *, functions: bool = True,
                 only_builtin: bool = False) -> None:
        """Run ``name args`` the way bash looks commands up."""

    def run_program(self, prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
        """Run a catalogue program's handler."""

    def lookup(self, name: str, ctx: Ctx) -> tuple[Program | None, str]:
        """The catalogue entry of a command word (None: not known), and its base name."""

    def record(self, name: str, args: Sequence[Field], redirs: Sequence[AStr],
               st: ShellState, effects: Sequence[Effect] = (), *,
               display: str = "") -> CommandInfo:
        """Add one command for the rules."""

    def path(self, f: Field, st: ShellState) -> AStr:
        """A field used as a path: absolute and normalized."""

    def written_match(self, path: AStr, st: ShellState,
                      only: Callable[[AStr], bool] | None = None) -> bool:
        """Whether ``path`` may be a file written earlier in this session (``only``: of
        the written files, those for which it is true)."""

    def check_autorun(self, path: AStr, where: str) -> None:
        """A write to a file that makes code run later is uncertain."""

    def check_assignment(self, name: str, value: str | None, st: ShellState, *,
                         prefix: bool) -> None:
        """A variable that makes later commands run code is uncertain."""

    def arith_text(self, text: str, st: ShellState, depth: int = 0) -> None:
        """Analyse ``text`` as an arithmetic expression."""

    def name_ref(self, fields: list[Field], st: ShellState) -> None:
        """Fields used as variable names (``printf -v``, ``read``...)."""


@dataclass
class Ctx:
    """What a handler needs: the analyser, the state, stdin, the command's environment."""

    an: Interpreter
    st: ShellState
    stdin: Stdin
    env: dict[str, str | None]
    texts: list[AStr]
    effects: list[Effect]
    redirected: bool = False

    def record(self, name: str, args: Sequence[Field]) -> None:
        """Record the command for the rules, with its redirections and effects."""
        self.an.record(name, args, self.texts, self.st, self.effects)
