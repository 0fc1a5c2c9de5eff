"""Bash builtins: what each does to the line's certainty and to the shell state.

``run(handler, name, args, ctx)`` is called by the analyser with the handler named in
``catalogue.toml [builtins]``. Builtins that run code (``eval``, ``source``, ``trap``,
``bind -x``, ``mapfile -C``, ``fc``...) either analyse that code or make the line
uncertain; builtins that change how later input is read or run (``alias``, ``set``,
``shopt``, ``bind``, ``cd``, ``hash``, ``complete``...) update the state, and the ones
whose effect cannot be followed are uncertain.

The builtins that change how later input is read and run are in ``builtins_input.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.policy.builtins_input import (
    _alias,
    _bind,
    _compgen,
    _complete,
    _fc,
    _hash,
    _history,
    _set,
    _shopt,
    _unalias,
)
from gateway.policy.ctx import Ctx
from gateway.policy.values import AStr, Field, Hole, astr, resolve, static

if TYPE_CHECKING:
    pass

def run(handler: str, name: str, args: list[Field], ctx: Ctx) -> None:
    fn = _HANDLERS.get(handler)
    if fn is None:
        ctx.an.unsure(f"the {name} builtin is not checked")
        ctx.an.record(name, args, ctx.texts, ctx.st, ctx.effects)
        return
    fn(name, args, ctx)


def _record(name: str, args: list[Field], ctx: Ctx) -> None:
    ctx.an.record(name, args, ctx.texts, ctx.st, ctx.effects)


def _texts(args: list[Field]) -> list[str | None]:
    return [a.text for a in args]


# --------------------------------------------------------------------------- simple


def _plain(name: str, args: list[Field], ctx: Ctx) -> None:
    _record(name, args, ctx)


def _opaque(name: str, args: list[Field], ctx: Ctx) -> None:
    ctx.an.unsure(f"{name} changes what the shell runs (not checked)")
    _record(name, args, ctx)


def _exit(name: str, args: list[Field], ctx: Ctx) -> None:
    from gateway.policy.records import Start

    _record(name, args, ctx)
    if ctx.st.interactive and ctx.an.depth <= 1:
        ctx.an.starts.append(Start(name, "exit", ""))


def _printf(name: str, args: list[Field], ctx: Ctx) -> None:
    if args and args[0].text == "-v" and len(args) > 1:
        ctx.an.name_ref([args[1]], ctx.st)
        if args[1].text is not None:
            ctx.st.set_var(args[1].text.split("[")[0], None)
    elif args and not args[0].known and args[0].maybe_option:
        ctx.an.unsure("printf with a dynamic first argument (it may be -v)")
    _record(name, args, ctx)


def _test(name: str, args: list[Field], ctx: Ctx) -> None:
    for k, a in enumerate(args):
        if a.text == "-v" and k + 1 < len(args):
            ctx.an.name_ref([args[k + 1]], ctx.st)
    _record(name, args, ctx)


def _wait(name: str, args: list[Field], ctx: Ctx) -> None:
    for k, a in enumerate(args):
        if a.text == "-p" and k + 1 < len(args):
            _set_names([args[k + 1]], ctx)
    _record(name, args, ctx)


def _getopts(name: str, args: list[Field], ctx: Ctx) -> None:
    if len(args) >= 2:
        _set_names([args[1]], ctx)
    ctx.st.set_numeric("OPTIND")
    ctx.st.set_var("OPTARG", None)
    _record(name, args, ctx)


def _set_names(fields: list[Field], ctx: Ctx, *, numeric: bool = False) -> None:
    ctx.an.name_ref(fields, ctx.st)
    for f in fields:
        t = f.text
        if t is not None and re.match(r"[A-Za-z_]\w*", t):
            base = re.match(r"[A-Za-z_]\w*", t).group(0)  # type: ignore[union-attr]
            if numeric:
                ctx.st.set_numeric(base)
            else:
                ctx.st.set_var(base, None)


# --------------------------------------------------------------------------- directories


def _cd(name: str, args: list[Field], ctx: Ctx) -> None:
    st = ctx.st
    _record(name, args, ctx)
    ops = [a for a in args if not (a.text or "").startswith("-") or a.text == "-"]
    old = st.cwd
    new: AStr
    target: Field | None = ops[0] if ops else None
    if "CDPATH" in ctx.env or "HOME" in ctx.env:
        new = (Hole.WORD,)  # a prefix assignment changes where cd goes
    elif target is None:
        home = st.vars.get("HOME", "~") if "HOME" in st.vars else "~"
        new = resolve(astr(home), st.cwd) if home else (Hole.WORD,)
    elif target.text == "-":
        new = st.oldpwd if st.oldpwd is not None else (Hole.WORD,)
    elif target.text is None or (st.cdpath and not (target.text or "").startswith(("/", ".",
                                                                                    "~"))):
        new = (Hole.WORD,)
    else:
        new = resolve(astr(target.text), st.cwd, symlinks=st.symlinks)
    if new == (Hole.ANY,) or (target is None and "CDPATH" in ctx.env):
        new = (Hole.WORD,)
    _chdir(st, new, old)


def _chdir(st: object, new: AStr, old: AStr) -> None:
    from gateway.policy.state import MAX_CWD_ALTS, ShellState

    assert isinstance(st, ShellState)
    st.oldpwd = old
    if new != old:
        alts = tuple(dict.fromkeys(a for a in (old, *st.cwd_alts) if a != new))
        st.cwd_alts = alts[:MAX_CWD_ALTS] if len(alts) <= MAX_CWD_ALTS else ((Hole.WORD,),)
    st.cwd = new
    st.set_var("PWD", static(new))


def _pushd(name: str, args: list[Field], ctx: Ctx) -> None:
    st = ctx.st
    ops = [a for a in args if not (a.text or "").startswith(("-", "+"))]
    if ops:
        st.dirstack.append(st.cwd)
        _cd("cd", ops[:1], ctx)
        ctx.an.commands[-1].display = ctx.an.commands[-1].display.replace("cd", name, 1)
        return
    _record(name, args, ctx)
    _chdir(st, (Hole.WORD,), st.cwd)


def _popd(name: str, args: list[Field], ctx: Ctx) -> None:
    st = ctx.st
    _record(name, args, ctx)
    if not args and st.dirstack:
        _chdir(st, st.dirstack.pop(), st.cwd)
    else:
        _chdir(st, (Hole.WORD,), st.cwd)


# --------------------------------------------------------------------------- running code


def _joined(args: list[Field]) -> str | None:
    texts = _texts(args)
    if any(t is None for t in texts):
        return None
    return " ".join(t for t in texts if t is not None)


def _eval(name: str, args: list[Field], ctx: Ctx) -> None:
    _record(name, args, ctx)
    text = _joined(args)
    if text is None:
        ctx.an.unsure("dynamic string passed to eval")
        return
    ctx.an.text(text, ctx.st, ctx.stdin, what="in eval")


def _source(name: str, args: list[Field], ctx: Ctx) -> None:
    from gateway.policy.programs import script_file

    _record(name, args, ctx)
    ops = [a for a in args if a.text != "--"]
    if not ops:
        ctx.an.unsure(f"{name} without a file")
        return
    before = len(ctx.an.uncertain)
    script_file(name, ops[0], ctx)
    st = ctx.st
    # a sourced file can change anything: what we knew may have changed
    for k in list(st.vars):
        st.vars[k] = None
    st.maybe_aliases |= set(st.aliases)
    st.maybe_functions |= set(st.functions)
    # ... and the directory, unless the file is the target's own (a static path this
    # session did not write: ~/.bashrc, a venv's activate): what the target's own code does
    # once it runs is not visible to the policy anyway (docs/policy.md "What it cannot
    # see"), as for `./deploy.sh`; only a file this session could have written is
    # uncertain (script_file said so), and then the directory is unknown too
    if len(ctx.an.uncertain) != before and (Hole.WORD,) not in st.cwd_alts:
        st.cwd_alts = (*st.cwd_alts, (Hole.WORD,))
    st.prompts["PS1"] = None


def _exec(name: str, args: list[Field], ctx: Ctx) -> None:
    _record(name, args, ctx)
    i = 0
    while i < len(args) and (args[i].text or "").startswith("-") and args[i].text != "--":
        if args[i].text == "-a":
            i += 1
        i += 1
    if i < len(args) and args[i].text == "--":
        i += 1
    rest = args[i:]
    if not rest:
        if ctx.redirected:
            ctx.an.unsure("exec redirections change where later commands read and write")
            ctx.st.echo_hidden = True
        return
    head = rest[0]
    if head.text is None:
        ctx.an.unsure("dynamic command word after exec")
        return
    prog, base = ctx.an.lookup(head.text, ctx)
    if prog is None:
        if head.text in ctx.an.cat.builtins:
            ctx.an.record(head.text, rest[1:], ctx.texts, ctx.st, ctx.effects)
        else:
            ctx.an.record(base, rest[1:], ctx.texts, ctx.st, ctx.effects)
        return
    ctx.an.run_program(prog, base, rest[1:], ctx)
    if ctx.st.interactive and prog.kind == "shell":
        ctx.st.forget_shell()


def _command(name: str, args: list[Field], ctx: Ctx) -> None:
    i = 0
    lookup_only = False
    while i < len(args) and (args[i].text or "").startswith("-") and args[i].text != "--":
        if not args[i].known:
            ctx.an.unsure("dynamic option to command")
        if set((args[i].text or "")[1:]) & {"v", "V"}:
            lookup_only = True
        i += 1
    if i < len(args) and args[i].text == "--":
        i += 1
    rest = args[i:]
    if lookup_only or not rest:
        _record(name, args, ctx)
        return
    head = rest[0]
    if head.text is None:
        ctx.an.unsure("dynamic command word after command")
        return
    _record(name, args, ctx)
    ctx.an.dispatch(head.text, rest[1:], ctx, functions=False)


def _builtin(name: str, args: list[Field], ctx: Ctx) -> None:
    _record(name, args, ctx)
    if not args:
        return
    if args[0].text is None:
        ctx.an.unsure("dynamic command word after builtin")
        return
    ctx.an.dispatch(args[0].text, args[1:], ctx, functions=False, only_builtin=True)


def _trap(name: str, args: list[Field], ctx: Ctx) -> None:
    _record(name, args, ctx)
    texts = _texts(args)
    if not args or texts[0] in ("-l", "-p", "-P") or (texts and texts[0] == "--" and
                                                      len(args) == 1):
        return
    rest = args[1:] if texts[0] == "--" else args
    if not rest:
        return
    action = rest[0].text
    if action in ("-", "") or (len(rest) == 1 and action is not None and (
            action.isdigit() or action.upper().lstrip("SIG") in _SIGNALS)):
        return
    if action is None:
        ctx.an.unsure("trap with a dynamic command")
        return
    sub = ctx.st.copy()
    ctx.an.text(action, sub, ctx.stdin, what="in trap")
    ctx.an.unsure("trap runs a command later, without a visible line")
    for s in rest[1:]:
        ctx.st.traps.add(s.text or "?")


_SIGNALS = set(
    "EXIT ERR DEBUG RETURN HUP INT QUIT ILL TRAP ABRT BUS FPE KILL USR1 SEGV USR2 PIPE ALRM "
    "TERM STKFLT CHLD CONT STOP TSTP TTIN TTOU URG XCPU XFSZ VTALRM PROF WINCH IO PWR SYS".split()
)


def _read(name: str, args: list[Field], ctx: Ctx) -> None:
    _record(name, args, ctx)
    names: list[Field] = []
    i = 0
    while i < len(args):
        t = args[i].text
        if t is None:
            ctx.an.unsure("read with a dynamic argument")
            return
        if t.startswith("-") and len(t) > 1:
            letters = t[1:]
            for j, c in enumerate(letters):
                if c in "adinNptu":
                    value_in_bundle = letters[j + 1 :]
                    if c == "a":
                        target = Field(astr(value_in_bundle)) if value_in_bundle else (
                            args[i + 1] if i + 1 < len(args) else None)
                        if target is not None:
                            names.append(target)
                    if not value_in_bundle:
                        i += 1
                    break
            i += 1
            continue
        names.append(args[i])
        i += 1
    _set_names(names or [Field(astr("REPLY"))], ctx)


def _mapfile(name: str, args: list[Field], ctx: Ctx) -> None:
    _record(name, args, ctx)
    texts = _texts(args)
    if any(t is None for t in texts):
        ctx.an.unsure(f"{name} with a dynamic argument")
        return
    if any((t or "").startswith("-C") for t in texts):
        ctx.an.unsure(f"{name} -C runs a callback command")
    ops = [t for k, t in enumerate(texts) if not (t or "").startswith("-") and not (
        k and (texts[k - 1] or "") in ("-d", "-n", "-O", "-s", "-u", "-C", "-c"))]
    _set_names([Field(astr(ops[-1] or "MAPFILE" if ops else "MAPFILE"))], ctx)


def _declare(name: str, args: list[Field], ctx: Ctx) -> None:
    _record(name, args, ctx)
    flags: set[str] = set()
    for a in args:
        t = a.text
        if t is not None and t.startswith(("-", "+")) and len(t) > 1 and "=" not in t:
            flags |= set(t[1:]) if t[0] == "-" else set()
            continue
        _declare_one(name, a, flags, ctx)


def _declare_one(name: str, a: Field, flags: set[str], ctx: Ctx) -> None:
    """One ``NAME[=value]`` operand of a declaration builtin."""
    st = ctx.st
    t = a.text
    if t is None and not (a.chunks and isinstance(a.chunks[0], str) and
                          re.match(r"[A-Za-z_]\w*(\[[^\]]*\])?\+?=", a.chunks[0])):
        ctx.an.unsure(f"{name} with a dynamic argument")
        return
    head = t if t is not None else a.chunks[0]
    assert isinstance(head, str)
    m = re.match(r"([A-Za-z_]\w*)(\[[^\]]*\])?(\+?=)?", head)
    functions = "f" in flags or "F" in flags
    if m is None:
        if not functions:
            ctx.an.unsure(f"{name} {head!r} is not a variable name")
        return
    var = m.group(1)
    if m.group(2):
        ctx.an.arith_text(m.group(2)[1:-1], st)
    if functions:
        if name == "export" or "x" in flags:
            st.exported.add(var)
        return
    if m.group(3):
        _declare_value(name, var, t[m.end():] if t is not None else None, flags, ctx)
    elif "n" in flags:
        st.set_var(var, None)
    _declare_attributes(name, var, flags, bool(m.group(3)), ctx)


def _declare_value(name: str, var: str, value: str | None, flags: set[str], ctx: Ctx
                   ) -> None:
    """``declare [-n|-i] NAME=value``."""
    st = ctx.st
    if value is not None and value.startswith("(") and value.endswith(")"):
        value = None
    ctx.an.check_assignment(var, value, st, prefix=False)
    if "n" in flags:
        if value is None:
            ctx.an.unsure(f"{name} -n with a dynamic reference")
        else:
            ctx.an.name_ref([Field(astr(value))], st)
        value = None
    if "i" in flags or var in st.integer_vars:
        if value is None:
            ctx.an.unsure("integer variable given a value that is not known")
        else:
            ctx.an.arith_text(value, st)
        st.set_numeric(var)
    else:
        st.set_var(var, value)


def _declare_attributes(name: str, var: str, flags: set[str], assigned: bool, ctx: Ctx
                        ) -> None:
    """``-i`` and export (an exported variable that runs code is checked again)."""
    st = ctx.st
    if "i" in flags:
        st.integer_vars.add(var)
    if name == "export" or "x" in flags:
        st.exported.add(var)
        if not assigned and var in ctx.an.cat.runs_code_vars:
            ctx.an.check_assignment(var, st.get(var), st, prefix=False)


def _unset(name: str, args: list[Field], ctx: Ctx) -> None:
    st = ctx.st
    _record(name, args, ctx)
    functions = False
    for a in args:
        t = a.text
        if t is None:
            ctx.an.unsure("unset of a dynamic name")
            continue
        if t.startswith("-"):
            functions = "f" in t
            continue
        if functions:
            st.functions.pop(t, None)
            st.maybe_functions.discard(t)
        else:
            ctx.an.name_ref([a], st)
            if "[" not in t:
                st.set_var(t, "")


def _let(name: str, args: list[Field], ctx: Ctx) -> None:
    _record(name, args, ctx)
    for a in args:
        if a.text is None:
            ctx.an.unsure("let with a dynamic expression (it can run commands)")
        else:
            ctx.an.arith_text(a.text, ctx.st)
            m = re.match(r"\s*([A-Za-z_]\w*)\s*[-+*/%&|^<>]*=", a.text)
            if m:
                ctx.st.set_numeric(m.group(1))


_HANDLERS: dict[str, Callable[[str, list[Field], Ctx], None]] = {
    "plain": _plain,
    "opaque": _opaque,
    "exit": _exit,
    "printf": _printf,
    "test": _test,
    "wait": _wait,
    "getopts": _getopts,
    "cd": _cd,
    "pushd": _pushd,
    "popd": _popd,
    "eval": _eval,
    "source": _source,
    "exec": _exec,
    "command": _command,
    "builtin": _builtin,
    "trap": _trap,
    "bind": _bind,
    "alias": _alias,
    "unalias": _unalias,
    "set": _set,
    "shopt": _shopt,
    "hash": _hash,
    "complete": _complete,
    "compgen": _compgen,
    "read": _read,
    "mapfile": _mapfile,
    "declare": _declare,
    "unset": _unset,
    "let": _let,
    "fc": _fc,
    "history": _history,
}
