"""Option normalization for the commands policies usually talk about.

For a command in ``SPECS`` the normalized form is::

    argv0 FLAGS OPTIONS-WITH-VALUES OPERANDS REDIRECTS

* bundles are split (``-rf`` -> ``-r -f``), long options mapped to their short form
  where one exists (``--recursive`` -> ``-r``), aliases folded (``rm -R`` -> ``-r``),
  duplicates dropped;
* flags are written in the command's canonical order (``rm``: ``-r -f -i -I -d -v``),
  then long-only flags alphabetically;
* options taking a value keep their value: ``-s 9``, ``--reference=/etc/x``;
* GNU argument permutation is applied: ``rm / -rf`` -> ``rm -r -f /``; ``--`` is
  dropped unless an operand starts with ``-``.

Commands outside ``SPECS`` keep their arguments in the order typed (after quote
removal and path normalization): write their rules with flexible regexes.

Known limits: the table is small and hand-written; an option a command accepts but
the table does not know is kept as typed among the operands.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class OptSpec:
    """How one command's options are normalized.

    Attributes:
        flags: short flags without value, in canonical output order.
        with_arg: short options that take a value.
        aliases: short letter -> canonical short letter (``R`` -> ``r`` for rm).
        long: long option name -> canonical short letter ('' keeps ``--name``).
        long_with_arg: long options that take a value.
        unknown_is_operand: a dash word with a letter not in the table is an operand
            (``chmod -x file``: ``-x`` is a mode, ``kill -9``: a signal).
    """

    flags: str
    with_arg: str = ""
    aliases: dict[str, str] = field(default_factory=dict)
    long: dict[str, str] = field(default_factory=dict)
    long_with_arg: frozenset[str] = frozenset()
    unknown_is_operand: bool = True


SPECS: dict[str, OptSpec] = {
    "rm": OptSpec(
        "rfiIdv",
        aliases={"R": "r"},
        long={
            "recursive": "r",
            "force": "f",
            "dir": "d",
            "verbose": "v",
            "no-preserve-root": "",
            "preserve-root": "",
            "one-file-system": "",
            "interactive": "",
        },
    ),
    "rmdir": OptSpec("pv", long={"parents": "p", "verbose": "v", "ignore-fail-on-non-empty": ""}),
    "shred": OptSpec(
        "fuvxz",
        with_arg="ns",
        long={"force": "f", "verbose": "v", "exact": "x", "zero": "z", "remove": "u"},
        long_with_arg=frozenset({"iterations", "size", "random-source"}),
    ),
    "chmod": OptSpec(
        "Rcfv",
        long={
            "recursive": "R",
            "changes": "c",
            "silent": "f",
            "quiet": "f",
            "verbose": "v",
            "preserve-root": "",
            "no-preserve-root": "",
        },
        long_with_arg=frozenset({"reference"}),
    ),
    "chown": OptSpec(
        "RcfvhHLP",
        long={
            "recursive": "R",
            "changes": "c",
            "silent": "f",
            "quiet": "f",
            "verbose": "v",
            "no-dereference": "h",
            "dereference": "",
            "preserve-root": "",
            "no-preserve-root": "",
        },
        long_with_arg=frozenset({"reference", "from"}),
    ),
    "kill": OptSpec("l", with_arg="sn", long={"list": "l"}, long_with_arg=frozenset({"signal"})),
    "shutdown": OptSpec(
        "rhHPkc",
        long={"reboot": "r", "halt": "H", "poweroff": "P", "no-wall": "", "show": ""},
    ),
    "reboot": OptSpec("fpwdn", long={"force": "f", "poweroff": "p", "no-wall": ""}),
    "halt": OptSpec("fpwdn", long={"force": "f", "poweroff": "p", "no-wall": ""}),
    "poweroff": OptSpec("fpwdn", long={"force": "f", "no-wall": ""}),
    "systemctl": OptSpec(
        "aqlfi",
        with_arg="tpHMsn",
        long={
            "all": "a",
            "quiet": "q",
            "full": "l",
            "force": "f",
            "now": "",
            "no-block": "",
            "user": "",
            "system": "",
            "no-pager": "",
            "no-ask-password": "",
            "runtime": "",
        },
        long_with_arg=frozenset(
            {
                "type",
                "property",
                "host",
                "machine",
                "signal",
                "lines",
                "state",
                "output",
                "kill-whom",
            }
        ),
    ),
    "userdel": OptSpec(
        "frZ",
        with_arg="RP",
        long={"force": "f", "remove": "r", "selinux-user": "Z"},
        long_with_arg=frozenset({"root", "prefix"}),
    ),
    "crontab": OptSpec("elri", with_arg="u", long_with_arg=frozenset({"user"})),
}
SPECS["chgrp"] = SPECS["chown"]


def normalize_options(argv0: str, args: list[str]) -> list[str]:
    """Normalize the options of ``argv0`` (see the module docstring).

    Args:
        argv0: command basename.
        args: arguments after quote removal.

    Returns:
        The normalized arguments (argv0 not included). Commands without a spec are
        returned unchanged.
    """
    spec = SPECS.get(argv0)
    if spec is None:
        return list(args)
    flags: set[str] = set()
    long_flags: set[str] = set()
    valued: list[str] = []
    operands: list[str] = []
    tail: list[str] = []  # operands after "--"
    i, n = 0, len(args)
    while i < n:
        a = args[i]
        i += 1
        if a == "--":
            tail = list(args[i:])
            break
        if a.startswith("--") and len(a) > 2:
            name, eq, value = a[2:].partition("=")
            if name in spec.long_with_arg:
                if not eq and i < n:
                    value = args[i]
                    i += 1
                valued.append(f"--{name}={value}")
            elif name in spec.long:
                short = spec.long[name]
                if short:
                    flags.add(short)
                else:
                    long_flags.add(f"--{name}" + (f"={value}" if eq else ""))
            else:
                operands.append(a)
            continue
        if a.startswith("-") and len(a) > 1:
            body = a[1:]
            letters = [spec.aliases.get(c, c) for c in body]
            known = all(c in spec.flags or c in spec.with_arg for c in letters[:1])
            if not known and spec.unknown_is_operand:
                operands.append(a)
                continue
            out_flags: set[str] = set()
            ok = True
            for k, c in enumerate(letters):
                if c in spec.with_arg:
                    value = body[k + 1 :]
                    if not value and i < n:
                        value = args[i]
                        i += 1
                    valued.append(f"-{c} {value}")
                    break
                if c in spec.flags:
                    out_flags.add(c)
                else:
                    ok = False
                    break
            if ok:
                flags |= out_flags
            else:
                operands.append(a)
            continue
        operands.append(a)
    order = {c: k for k, c in enumerate(spec.flags)}
    out = [f"-{c}" for c in sorted(flags, key=lambda c: (order.get(c, 99), c))]
    out.extend(sorted(long_flags))
    out.extend(valued)
    out.extend(operands)
    if any(o.startswith("-") for o in tail):
        out.append("--")
    out.extend(tail)
    return out
