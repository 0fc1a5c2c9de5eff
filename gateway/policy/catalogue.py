"""The carrier catalogue (``catalogue.toml``), loaded once.

``CATALOGUE.program(name)`` says what bastille knows about a program: nothing (None:
the program is unknown and a line running it is uncertain), or a ``Program`` entry:
its kind, the options and subcommands that run other code, what it writes or removes,
whether it pages its output, the language of its own prompt. ``builtin(name)`` gives
the handler of a bash builtin. See the header of ``catalogue.toml`` for the keys.

Known limits: the catalogue is hand-written from man pages and GTFOBins; a program's
behaviour after it starts (a script, a Makefile, a package's install scripts) is not
described here and cannot be seen.
"""

from __future__ import annotations

import fnmatch
import functools
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

KINDS = frozenset({"plain", "wrapper", "shell", "interp", "repl", "screen", "opaque", "special"})


@dataclass(frozen=True)
class Program:
    """One catalogued program (see ``catalogue.toml``)."""

    name: str
    kind: str = "plain"
    handler: str = ""
    exec: tuple[str, ...] = ()
    exec_subcommands: tuple[str, ...] = ()
    with_arg: str = ""
    long_with_arg: frozenset[str] = frozenset()
    writes: tuple[str, ...] = ()
    deletes: tuple[str, ...] = ()
    pager: bool = False
    lang: str = ""
    code: tuple[str, ...] = ()
    positionals: int = 0
    string: bool = False
    project: tuple[str, ...] = ()
    scripts: tuple[str, ...] = ()  # ("*",): always; else the options that make it so
    why: str = ""


@dataclass(frozen=True)
class Catalogue:
    """Builtins, programs, dangerous variables and autorun paths."""

    builtins: dict[str, str]
    programs: dict[str, Program]
    runs_code_vars: frozenset[str]
    program_vars: frozenset[str]
    prompt_vars: frozenset[str]
    autorun: tuple[str, ...]
    patterns: tuple[str, ...] = ()  # operator-declared programs given as paths or globs

    def program(self, name: str) -> Program | None:
        prog = self.programs.get(name)
        if prog is None and self.patterns and any(
                fnmatch.fnmatchcase(name, p) for p in self.patterns):
            return Program(name, why="declared by the operator ([policy] programs)")
        return prog

    def builtin(self, name: str) -> str | None:
        return self.builtins.get(name)

    def with_plain(self, names: Iterable[str]) -> Catalogue:
        """This catalogue plus operator-declared plain programs (``[policy] programs``):
        names (``deploy.sh``), paths (``./deploy.sh``, ``~/bin/x``) or globs of paths
        (``/opt/app/bin/*``)."""
        names = list(names)
        extra = {n: Program(n, why="declared by the operator") for n in names
                 if "/" not in n and not any(c in n for c in "*?[") and n not in self.programs}
        patterns = tuple(n for n in names if "/" in n or any(c in n for c in "*?["))
        if not extra and not patterns:
            return self
        return Catalogue(self.builtins, {**self.programs, **extra}, self.runs_code_vars,
                         self.program_vars, self.prompt_vars, self.autorun,
                         self.patterns + patterns)


def _program(name: str, raw: dict[str, object]) -> Program:
    kind = str(raw.get("kind", "special" if "handler" in raw else "plain"))
    if kind not in KINDS:
        raise ValueError(f"catalogue: {name}: unknown kind {kind!r}")

    def strs(key: str) -> tuple[str, ...]:
        v = raw.get(key, ())
        assert isinstance(v, list | tuple), (name, key)
        return tuple(str(x) for x in v)

    return Program(
        name=name,
        kind=kind,
        handler=str(raw.get("handler", "")),
        exec=strs("exec"),
        exec_subcommands=strs("exec_subcommands"),
        with_arg=str(raw.get("with_arg", "")),
        long_with_arg=frozenset(strs("long_with_arg")),
        writes=strs("writes"),
        deletes=strs("deletes"),
        pager=bool(raw.get("pager", False)),
        lang=str(raw.get("lang", "")),
        code=strs("code"),
        positionals=int(raw.get("positionals", 0)),  # type: ignore[call-overload]
        string=bool(raw.get("string", False)),
        project=strs("project"),
        scripts=("*",) if raw.get("scripts") is True else strs("scripts"),
        why=str(raw.get("why", "")),
    )


@functools.lru_cache(maxsize=1)
def load() -> Catalogue:
    """Parse ``catalogue.toml`` (cached)."""
    text = resources.files("gateway.policy").joinpath("catalogue.toml").read_text("utf-8")
    data = tomllib.loads(text)
    programs = {n: Program(n) for n in data["plain"]["names"].split()}
    for name, raw in data["program"].items():
        programs[name] = _program(name, raw)
    v = data["variables"]
    return Catalogue(
        builtins=dict(data["builtins"]),
        programs=programs,
        runs_code_vars=frozenset(v["runs_code"].split()),
        program_vars=frozenset(v["programs"].split()),
        prompt_vars=frozenset(v["prompts"].split()),
        autorun=tuple(data["autorun"]["paths"].split()),
    )
