"""A catalogue program's command line: its options (with the catalogue's lists of options
that take a value), its operands, and the options and subcommands that run other code.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.policy.catalogue import Program
from gateway.policy.ctx import Ctx
from gateway.policy.values import Field, astr


def opt_matches(arg: str, opt: str) -> bool:
    """Does ``arg`` use option ``opt`` (abbreviated long options and bundles included)?"""
    if not opt.startswith("-"):
        return arg == opt
    if opt.startswith("--"):
        name = arg.split("=", 1)[0]
        if arg == opt or arg.startswith(opt + "="):
            return True
        return name.startswith("--") and len(name) >= 5 and opt.startswith(name)
    if len(opt) == 2:
        return arg.startswith("-") and not arg.startswith("--") and opt[1] in arg[1:] and \
            len(arg) > 1
    return arg == opt or arg.startswith(opt + "=") or arg.startswith(opt)


def exec_checks(prog: Program, name: str, args: Sequence[Field], ctx: Ctx) -> bool:
    """The catalogue's exec options and subcommands; True if one was used."""
    flagged = False
    for a in args:
        t = a.text
        if t is None:
            if (prog.exec or prog.exec_subcommands) and a.maybe_option:
                ctx.an.unsure(f"dynamic argument to {name}, which has options that run code")
                flagged = True
            continue
        for o in prog.exec:
            if opt_matches(t, o):
                ctx.an.unsure(f"{name} {o} runs other code")
                flagged = True
    if prog.exec_subcommands:
        ops = operands(prog, args)[0]
        if ops and ops[0].text in prog.exec_subcommands:
            ctx.an.unsure(f"{name} {ops[0].text} runs other code")
            flagged = True
        elif ops and ops[0].text is None:
            ctx.an.unsure(f"dynamic subcommand of {name}")
            flagged = True
    return flagged


def operands(prog: Program, args: Sequence[Field]) -> tuple[list[Field], dict[str, Field | None]]:
    """Split ``args`` into operands and options (option -> its value or None)."""
    ops: list[Field] = []
    opts: dict[str, Field | None] = {}
    i, n = 0, len(args)
    after = False
    while i < n:
        a = args[i]
        t = a.text
        i += 1
        if after or t is None or not t.startswith("-") or t == "-":
            ops.append(a)
            continue
        if t == "--":
            after = True
            continue
        if t.startswith("--"):
            key, eq, val = t.partition("=")
            if key[2:] in prog.long_with_arg and not eq:
                opts[key] = args[i] if i < n else None
                i += 1
            else:
                opts[key] = Field(astr(val)) if eq else None
            continue
        body = t[1:]
        for k, c in enumerate(body):
            if c in prog.with_arg:
                rest = body[k + 1 :]
                if rest:
                    opts["-" + c] = Field(astr(rest))
                else:
                    opts["-" + c] = args[i] if i < n else None
                    i += 1
                break
            opts["-" + c] = None
    return ops, opts


def skip_options(prog: Program, args: Sequence[Field]) -> list[Field]:
    """A wrapper's options and positionals removed: the wrapped command's argv."""
    i, n = 0, len(args)
    while i < n:
        t = args[i].text
        if t is None or not t.startswith("-") or t == "-":
            break
        i += 1
        if t == "--":
            break
        if t.startswith("--"):
            key, eq, _ = t.partition("=")
            if key[2:] in prog.long_with_arg and not eq:
                i += 1
            continue
        for k, c in enumerate(t[1:]):
            if c in prog.with_arg:
                if not t[k + 2 :]:
                    i += 1
                break
    return list(args[i + prog.positionals :])
