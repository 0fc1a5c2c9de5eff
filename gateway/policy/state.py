"""What the analyser knows about one shell: the state later lines are checked against.

One ``ShellState`` per interactive session (and a fresh one per exec request). The
analyser reads it and changes it as it walks a line; the session keeps the state of the
lines that were allowed (or approved), so the next line is checked with their aliases,
functions, variables, working directory, options, key bindings and written files
applied.

Unknown is explicit: a variable whose value is not known is ``None`` (an unset variable
the session never touched is unknown too: it may come from the environment or an rc
file); an alias or function that *may* exist (defined in a branch, or in a shell we can
no longer follow) is in ``maybe_aliases``/``maybe_functions`` and makes its use
uncertain.

Known limits: what rc files (``.bashrc``, ``/etc/profile``...) define is unknown; the
state starts empty (aliases and functions defined there are not expanded by the
analyser: a name that is not a known program is uncertain anyway).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from gateway.policy.values import AStr, Hole

if TYPE_CHECKING:
    from gateway.policy.syntax import Command

MAX_CWD_ALTS = 4
MAX_WRITTEN = 512

# Defaults of the options the analyser models (bash 5.2, interactive).
DEFAULT_OPTIONS = {
    "expand_aliases": True,
    "emacs": True,
    "vi": False,
    "extglob": True,
    "histexpand": True,
    "interactive_comments": True,
    "noglob": False,
    "lastpipe": False,
    "promptvars": True,
    "xpg_echo": False,
}


@dataclass
class ShellState:
    """The analyser's model of one shell (see the module docstring)."""

    interactive: bool = True
    vars: dict[str, str | None] = field(default_factory=dict)
    integer_vars: set[str] = field(default_factory=set)
    numeric: set[str] = field(default_factory=set)  # values known to be numbers
    patterns: dict[str, AStr] = field(default_factory=dict)  # values matching a glob
    exported: set[str] = field(default_factory=set)
    positional: list[str] | None = None  # None: unknown
    aliases: dict[str, str] = field(default_factory=dict)
    maybe_aliases: set[str] = field(default_factory=set)
    functions: dict[str, Command] = field(default_factory=dict)
    maybe_functions: set[str] = field(default_factory=set)
    cwd: AStr = ("~",)
    cwd_alts: tuple[AStr, ...] = ()
    oldpwd: AStr | None = None
    dirstack: list[AStr] = field(default_factory=list)
    options: dict[str, bool] = field(default_factory=lambda: dict(DEFAULT_OPTIONS))
    unknown_options: bool = False
    bindings: dict[str, tuple[str, str]] = field(default_factory=dict)  # keyseq -> (kind, arg)
    bindings_unknown: bool = False
    tab_runs_code: bool = False
    traps: set[str] = field(default_factory=set)
    written: list[AStr] = field(default_factory=list)  # paths written in this session
    fs: dict[str, bool] = field(default_factory=dict)  # {"unknown_writes": ...} shared
    symlinks: dict[str, AStr] = field(default_factory=dict)
    history_known: bool = True
    last_line: str | None = None  # previous line of the session (for !!)
    hashed: bool = False  # hash -p / enable used: command lookup is unknown
    textdomain: bool = False  # TEXTDOMAIN(DIR) set: $"..." strings are unknown
    cdpath: bool = False  # CDPATH set: relative cd is unknown
    ifs_unknown: bool = False
    echo_hidden: bool = False  # exec redirected the terminal: echo may be invisible
    path_changed: bool = False
    prompts: dict[str, str | None] = field(default_factory=dict)  # PS1/PS2 set in session

    def __post_init__(self) -> None:
        if not self.interactive:
            self.options["expand_aliases"] = False
            self.options["histexpand"] = False

    def fingerprint(self) -> str:
        """What later lines are checked against, as one comparable string."""
        return repr((sorted(self.vars.items(), key=str), sorted(self.aliases.items()),
                     sorted(self.functions), sorted(self.maybe_aliases),
                     sorted(self.maybe_functions), self.cwd, self.cwd_alts, self.oldpwd,
                     self.dirstack, sorted(self.options.items()), self.unknown_options,
                     sorted(self.bindings.items()), self.bindings_unknown, self.tab_runs_code,
                     sorted(self.traps), self.written, sorted(self.symlinks.items()),
                     sorted(self.fs.items()), self.hashed, self.textdomain, self.cdpath,
                     self.ifs_unknown, self.echo_hidden, self.path_changed,
                     sorted(self.prompts.items(), key=str), self.positional,
                     sorted(self.exported), sorted(self.patterns.items(), key=str)))

    def copy(self, *, share_fs: bool = True) -> ShellState:
        """A copy for a subshell or a branch. Files written and symlinks made are the
        file system's, not the shell's: shared with the copy (``share_fs``), except for
        a whole line analysed before it is known to run."""
        c = copy.copy(self)
        c.vars = dict(self.vars)
        c.integer_vars = set(self.integer_vars)
        c.numeric = set(self.numeric)
        c.patterns = dict(self.patterns)
        c.exported = set(self.exported)
        c.positional = list(self.positional) if self.positional is not None else None
        c.aliases = dict(self.aliases)
        c.maybe_aliases = set(self.maybe_aliases)
        c.functions = dict(self.functions)
        c.maybe_functions = set(self.maybe_functions)
        c.dirstack = list(self.dirstack)
        c.options = dict(self.options)
        c.bindings = dict(self.bindings)
        c.traps = set(self.traps)
        if not share_fs:
            c.written = list(self.written)
            c.symlinks = dict(self.symlinks)
            c.fs = dict(self.fs)
        c.prompts = dict(self.prompts)
        return c

    def child(self, *, interactive: bool = False) -> ShellState:
        """A new bash process started from this one (``bash -c``, a script, a subshell
        of another program): exported variables, exported functions (kept), cwd, files
        written; aliases and options reset to that process's defaults."""
        c = ShellState(interactive=interactive)
        c.vars = {k: v for k, v in self.vars.items() if k in self.exported}
        c.exported = set(self.exported)
        c.functions = dict(self.functions)  # exported functions are inherited
        c.maybe_functions = set(self.maybe_functions)
        c.cwd, c.cwd_alts = self.cwd, self.cwd_alts
        c.written = self.written
        c.fs = self.fs
        c.symlinks = self.symlinks
        c.textdomain = self.textdomain
        c.cdpath = self.cdpath
        c.hashed = self.hashed
        c.path_changed = self.path_changed
        return c

    # ------------------------------------------------------------------ variables

    def get(self, name: str) -> str | None:
        """A variable's value if known (``None``: unknown)."""
        if name == "PWD":
            return _static(self.cwd)
        if name == "OLDPWD":
            return _static(self.oldpwd) if self.oldpwd is not None else None
        if name == "HOME" and name not in self.vars:
            return "~"
        if name == "IFS" and name not in self.vars:
            return None if self.ifs_unknown else " \t\n"
        return self.vars.get(name)

    def set_numeric(self, name: str) -> None:
        """The variable holds a number whose value is not known (arithmetic, read -t)."""
        self.vars[name] = None
        self.patterns.pop(name, None)
        self.numeric.add(name)

    def set_pattern(self, name: str, pattern: AStr) -> None:
        """The variable's value is partly known (``for f in *.log``, ``y=$((x+1))``)."""
        self.vars[name] = None
        self.numeric.discard(name)
        self.patterns[name] = pattern
        if all(c in (Hole.DIGITS, Hole.NUMBER) or (isinstance(c, str) and c.strip("-").isdigit())
               for c in pattern):
            self.numeric.add(name)

    def set_var(self, name: str, value: str | None) -> None:
        self.numeric.discard(name)
        self.patterns.pop(name, None)
        self.vars[name] = value
        if name == "IFS":
            self.ifs_unknown = value is None
        elif name in ("TEXTDOMAIN", "TEXTDOMAINDIR"):
            self.textdomain = True
        elif name == "CDPATH":
            self.cdpath = bool(value) or value is None
        elif name == "PATH":
            self.path_changed = True
        elif name in ("PS1", "PS2", "PS3", "PS4"):
            self.prompts[name] = value

    @property
    def ifs(self) -> str | None:
        return self.get("IFS")

    # ------------------------------------------------------------------ files

    @property
    def unknown_writes(self) -> bool:
        return self.fs.get("unknown_writes", False)

    @unknown_writes.setter
    def unknown_writes(self, value: bool) -> None:
        self.fs["unknown_writes"] = value

    def wrote(self, path: AStr) -> None:
        if len(path) == 1 and path[0] is Hole.ANY:
            self.unknown_writes = True
            return
        if path not in self.written:
            self.written.append(path)
            if len(self.written) > MAX_WRITTEN:
                del self.written[0]
                self.unknown_writes = True

    # ------------------------------------------------------------------ merging

    def merge(self, other: ShellState) -> None:
        """This state becomes "either this or ``other``" (a branch that may have run)."""
        self._merge_values(other)
        self._merge_definitions(other)
        if self.cwd != other.cwd or self.cwd_alts != other.cwd_alts:
            alts = [a for a in (*self.cwd_alts, other.cwd, *other.cwd_alts) if a != self.cwd]
            self.cwd_alts = tuple(dict.fromkeys(alts))
            if len(self.cwd_alts) > MAX_CWD_ALTS:
                self.cwd_alts = ((Hole.WORD,),)
        if self.oldpwd != other.oldpwd:
            self.oldpwd = None
        for k, v in other.options.items():
            if self.options.get(k) != v:
                self.options[k] = True  # the riskier reading: the option may be on
        self.unknown_options |= other.unknown_options
        _merge_map(self.bindings, other.bindings, ("unknown", ""))
        self._merge_files(other)
        self.bindings_unknown |= other.bindings_unknown
        self.tab_runs_code |= other.tab_runs_code
        self.traps |= other.traps
        self.history_known &= other.history_known
        self.hashed |= other.hashed
        self.textdomain |= other.textdomain
        self.cdpath |= other.cdpath
        self.ifs_unknown |= other.ifs_unknown
        self.echo_hidden |= other.echo_hidden
        self.path_changed |= other.path_changed
        _merge_map(self.prompts, other.prompts, None)

    def _merge_values(self, other: ShellState) -> None:
        """Variables, their attributes and the positional parameters."""
        for k in set(self.vars) | set(other.vars):
            a, b = self.vars.get(k, _MISSING), other.vars.get(k, _MISSING)
            if a != b:
                self.vars[k] = None
        self.integer_vars |= other.integer_vars
        self.numeric &= other.numeric
        for k in set(self.patterns) | set(other.patterns):
            if self.patterns.get(k) != other.patterns.get(k):
                self.patterns.pop(k, None)
        self.exported |= other.exported
        if self.positional != other.positional:
            self.positional = None

    def _merge_definitions(self, other: ShellState) -> None:
        """Aliases and functions: one defined differently on two branches may be either."""
        for k in set(self.aliases) | set(other.aliases):
            if self.aliases.get(k) != other.aliases.get(k):
                self.aliases.pop(k, None)
                self.maybe_aliases.add(k)
        self.maybe_aliases |= other.maybe_aliases
        for k in set(self.functions) | set(other.functions):
            if self.functions.get(k) is not other.functions.get(k):
                self.functions.pop(k, None)
                self.maybe_functions.add(k)
        self.maybe_functions |= other.maybe_functions

    def _merge_files(self, other: ShellState) -> None:
        """Files written and symlinks made (shared with a child state: nothing to do)."""
        if other.written is not self.written:
            for p in other.written:
                self.wrote(p)
        if other.fs is not self.fs:
            self.unknown_writes |= other.unknown_writes
        if other.symlinks is not self.symlinks:
            _merge_map(self.symlinks, other.symlinks, (Hole.ANY,))

    def forget_shell(self) -> None:
        """A new interactive shell took over (``bash``, ``su -``, ``exec bash``...): what
        the old one defined may or may not be there; its rc files are unknown."""
        self.maybe_aliases |= set(self.aliases)
        self.aliases = {}
        self.maybe_functions |= set(self.functions)
        self.functions = {}
        self.vars = {k: (v if k in self.exported else None) for k, v in self.vars.items()}


K = TypeVar("K")
V = TypeVar("V")


def _merge_map(mine: dict[K, V], theirs: dict[K, V], unknown: V) -> None:
    """Entries of ``theirs`` into ``mine``; a key with two different values: ``unknown``."""
    for k, v in theirs.items():
        mine[k] = unknown if mine.get(k, v) != v else v


_MISSING = object()


def _static(a: AStr | None) -> str | None:
    if a is None:
        return None
    if all(isinstance(c, str) for c in a):
        return "".join(c for c in a if isinstance(c, str))
    return None
