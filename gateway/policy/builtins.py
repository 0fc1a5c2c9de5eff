"""Bash builtins: what each does to the line's certainty and to the shell state.

``run(handler, name, args, ctx)`` is called by the analyser with the handler named in
``catalogue.toml [builtins]``. Builtins that run code (``eval``, ``source``, ``trap``,
``bind -x``, ``mapfile -C``, ``fc``...) either analyse that code or make the line
uncertain; builtins that change how later input is read or run (``alias``, ``set``,
``shopt``, ``bind``, ``cd``, ``hash``, ``complete``...) update the state, and the ones
whose effect cannot be followed are uncertain.

Known limits: ``set``/``shopt`` options are modelled where they matter to the analyser
(see ``state.DEFAULT_OPTIONS``); the others are accepted or uncertain as listed below.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.policy.ctx import Ctx
from gateway.policy.values import AStr, Field, Hole, astr, resolve, static

if TYPE_CHECKING:
    from gateway.policy.records import Effect

# shopt/set -o options the analyser follows (state.options) or that are harmless
_TRACKED = {"expand_aliases", "extglob", "noglob", "lastpipe", "histexpand", "xpg_echo",
            "promptvars", "vi", "emacs", "interactive_comments"}
_HARMLESS = set(
    "errexit nounset pipefail xtrace verbose noclobber ignoreeof history monitor notify "
    "allexport hashall braceexpand physical noexec nolog checkwinsize cmdhist lithist "
    "histappend histreedit histverify nullglob failglob dotglob globstar nocaseglob "
    "nocasematch globasciiranges globskipdots checkhash checkjobs direxpand "
    "extquote force_fignore gnu_errfmt huponexit inherit_errexit localvar_inherit "
    "localvar_unset login_shell mailwarn no_empty_cmd_completion progcomp progcomp_alias "
    "shift_verbose sourcepath assoc_expand_once complete_fullquote hostcomplete "
    "patsub_replacement varredir_close noexpand_translation array_expand_once "
    "bash_source_fullpath errtrace functrace".split()
)
_CD_CHANGERS = {"cdspell", "dirspell", "autocd", "cdable_vars"}
_SET_LETTERS = {"f": "noglob", "H": "histexpand", "e": "errexit", "u": "nounset",
                "x": "xtrace", "v": "verbose", "C": "noclobber", "m": "monitor",
                "b": "notify", "a": "allexport", "h": "hashall", "B": "braceexpand",
                "P": "physical", "n": "noexec", "T": "functrace", "E": "errtrace"}
_RUNS_LINE = {"accept-line", "operate-and-get-next", "edit-and-execute-command",
              "shell-expand-line", "insert-comment", "vi-insert-comment",
              "re-read-init-file", "call-last-kbd-macro", "execute-named-command"}


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
    script_file(name, ops[0], ctx)
    st = ctx.st
    # a sourced file can change anything: what we knew may have changed
    for k in list(st.vars):
        st.vars[k] = None
    st.maybe_aliases |= set(st.aliases)
    st.maybe_functions |= set(st.functions)
    if (Hole.WORD,) not in st.cwd_alts:
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


def _bind(name: str, args: list[Field], ctx: Ctx) -> None:
    st = ctx.st
    _record(name, args, ctx)
    texts = _texts(args)
    if any(t is None for t in texts):
        ctx.an.unsure("bind with a dynamic argument")
        st.bindings_unknown = True
        return
    i = 0
    changed = False
    while i < len(texts):
        t = texts[i] or ""
        if t in ("-l", "-p", "-P", "-v", "-V", "-s", "-S", "-X"):
            i += 1
            continue
        if t in ("-q", "-u", "-m"):
            i += 2
            continue
        if t == "-r":
            if i + 1 < len(texts):
                st.bindings.pop(_keyseq(texts[i + 1] or ""), None)
            i += 2
            continue
        if t == "-f":
            st.bindings_unknown = True
            ctx.an.unsure("bind -f reads key bindings from a file")
            return
        if t == "-x":
            spec = texts[i + 1] if i + 1 < len(texts) else ""
            key, cmd = _split_binding(spec or "")
            st.bindings[_keyseq(key)] = ("exec", _unquote(cmd))
            ctx.an.text(_unquote(cmd), st.copy(), ctx.stdin, what="in bind -x")
            changed = True
            i += 2
            continue
        if t.startswith("-"):
            st.bindings_unknown = True
            changed = True
            i += 1
            continue
        if t.startswith("set "):
            parts = t.split()
            if len(parts) >= 3 and parts[1] == "editing-mode":
                st.options["vi"] = parts[2] == "vi"
                st.options["emacs"] = parts[2] != "vi"
            elif len(parts) >= 2 and parts[1] in ("keymap", "convert-meta", "input-meta",
                                                  "keyseq-timeout", "enable-keypad"):
                st.bindings_unknown = True
            changed = True
            i += 1
            continue
        key, fn = _split_binding(t)
        fn = fn.strip()
        if fn.startswith(('"', "'")):
            st.bindings[_keyseq(key)] = ("macro", _unquote(fn))
        elif fn in _RUNS_LINE:
            st.bindings[_keyseq(key)] = ("run", fn)
        else:
            st.bindings[_keyseq(key)] = ("func", fn)
        changed = True
        i += 1
    if changed:
        ctx.an.unsure("bind changes what keys do")


def _split_binding(spec: str) -> tuple[str, str]:
    m = re.match(r'\s*("(?:[^"\\]|\\.)*"|[^:\s]+)\s*:\s*(.*)', spec, re.S)
    if m is None:
        return spec, ""
    return m.group(1), m.group(2)


def _unquote(s: str) -> str:
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return s[1:-1]
    return s


def _keyseq(key: str) -> str:
    """A readline key sequence (``"\\C-t"``, ``"\\ex"``, ``Control-t``) as text bytes."""
    k = _unquote(key)
    names = {"control-": "\\C-", "c-": "\\C-", "meta-": "\\M-", "m-": "\\M-"}
    low = k.lower()
    for prefix, rep in names.items():
        if low.startswith(prefix):
            k = rep + k[len(prefix):]
            break
    out: list[str] = []
    i = 0
    while i < len(k):
        if k.startswith("\\C-", i) and i + 3 < len(k):
            out.append(chr(ord(k[i + 3].lower()) & 0x1F) if k[i + 3] != "?" else "\x7f")
            i += 4
        elif k.startswith("\\M-", i) and i + 3 < len(k):
            out.append("\x1b")
            i += 3
        elif k.startswith("\\e", i):
            out.append("\x1b")
            i += 2
        elif k.startswith("\\", i) and i + 1 < len(k):
            c = k[i + 1]
            out.append({"n": "\n", "r": "\r", "t": "\t", "a": "\a", "\\": "\\", '"': '"',
                        "'": "'"}.get(c, c))
            i += 2
        else:
            out.append(k[i])
            i += 1
    return "".join(out)


# --------------------------------------------------------------------------- aliases, options


def _alias(name: str, args: list[Field], ctx: Ctx) -> None:
    st = ctx.st
    _record(name, args, ctx)
    for a in args:
        t = a.text
        if t is None:
            ctx.an.unsure("alias with a dynamic definition")
            head = static(a.chunks[:1]) if a.chunks and isinstance(a.chunks[0], str) else None
            if head and "=" in head:
                st.maybe_aliases.add(head.split("=", 1)[0])
            else:
                st.bindings_unknown = st.bindings_unknown  # nothing known: any name
                ctx.an.unsure("an alias whose name is not known")
            continue
        if t == "-p" or "=" not in t:
            continue
        aname, _, value = t.partition("=")
        st.aliases[aname] = value
        st.maybe_aliases.discard(aname)
        # the body is checked now too, so a rule applies to the definition
        sub = st.copy()
        ctx.an.quiet += 1
        try:
            ctx.an.text(value, sub, ctx.stdin, what="in alias")
        finally:
            ctx.an.quiet -= 1


def _unalias(name: str, args: list[Field], ctx: Ctx) -> None:
    st = ctx.st
    _record(name, args, ctx)
    for a in args:
        if a.text == "-a":
            st.maybe_aliases |= set()  # all gone: nothing may exist any more
            st.aliases.clear()
            st.maybe_aliases.clear()
        elif a.text is not None:
            st.aliases.pop(a.text, None)
            st.maybe_aliases.discard(a.text)
        else:
            ctx.an.unsure("unalias of a dynamic name")


def _option(ctx: Ctx, opt: str, on: bool, via: str) -> None:
    st = ctx.st
    if opt in ("vi", "emacs"):
        st.options["vi"] = on if opt == "vi" else not on
        st.options["emacs"] = not st.options["vi"]
    elif opt in _TRACKED:
        st.options[opt] = on
        if opt == "interactive_comments" and not on:
            ctx.an.unsure("turns comments off: '#' is no longer a comment")
    elif opt in _CD_CHANGERS:
        st.cdpath = True
    elif opt in _HARMLESS:
        pass
    elif opt in ("posix", "extdebug", "keyword", "onecmd", "privileged", "restricted",
                 "execfail", "restricted_shell") or opt.startswith("compat"):
        ctx.an.unsure(f"{via} {opt} changes how the shell reads or runs commands")
    else:
        ctx.an.unsure(f"{via} {opt} is not checked")


def _set(name: str, args: list[Field], ctx: Ctx) -> None:
    st = ctx.st
    _record(name, args, ctx)
    texts = _texts(args)
    i = 0
    while i < len(texts):
        t = texts[i]
        if t is None:
            ctx.an.unsure("set with a dynamic argument")
            st.positional = None
            return
        if t in ("--", "-"):
            st.positional = [x or "" for x in texts[i + 1:]] if all(
                x is not None for x in texts[i + 1:]) else None
            return
        if t in ("-o", "+o"):
            if i + 1 < len(texts) and texts[i + 1] is not None:
                _option(ctx, texts[i + 1] or "", t == "-o", "set -o")
                i += 2
                continue
            i += 1
            continue
        if t.startswith(("-", "+")) and len(t) > 1:
            for c in t[1:]:
                opt = _SET_LETTERS.get(c)
                if opt is None:
                    if c in "kpt":
                        ctx.an.unsure(f"set {t[0]}{c} changes how commands run")
                    continue
                _option(ctx, opt, t[0] == "-", "set")
            i += 1
            continue
        st.positional = [x or "" for x in texts[i:]] if all(x is not None for x in texts[i:]) \
            else None
        return


def _shopt(name: str, args: list[Field], ctx: Ctx) -> None:
    _record(name, args, ctx)
    texts = _texts(args)
    mode: bool | None = None
    via_o = False
    for t in texts:
        if t is None:
            ctx.an.unsure("shopt with a dynamic argument")
            return
        if t.startswith("-"):
            if "s" in t:
                mode = True
            if "u" in t:
                mode = False
            if "o" in t:
                via_o = True
            continue
        if mode is not None:
            _option(ctx, t, mode, "set -o" if via_o else "shopt")


def _hash(name: str, args: list[Field], ctx: Ctx) -> None:
    _record(name, args, ctx)
    if any((a.text or "-p").startswith("-p") or not a.known for a in args if
           (a.text or "-").startswith("-")):
        ctx.st.hashed = True
        ctx.an.unsure("hash -p changes which program a name runs")


def _complete(name: str, args: list[Field], ctx: Ctx) -> None:
    _record(name, args, ctx)
    texts = _texts(args)
    if all(t in ("-p", "-r") or (t and not t.startswith("-")) for t in texts) and (
            not texts or "-p" in texts or "-r" in texts):
        return
    for k, t in enumerate(texts):
        if t is None or t in ("-C", "-F") or (t == "-W" and k + 1 < len(texts) and (
                texts[k + 1] is None or re.search(r"[$`]", texts[k + 1] or ""))):
            ctx.st.tab_runs_code = True
            ctx.an.unsure("completion that runs code when Tab is pressed")
            return


def _compgen(name: str, args: list[Field], ctx: Ctx) -> None:
    _record(name, args, ctx)
    texts = _texts(args)
    for k, t in enumerate(texts):
        if t is None or t in ("-C", "-F") or (t == "-W" and k + 1 < len(texts) and (
                texts[k + 1] is None or re.search(r"[$`]", texts[k + 1] or ""))):
            ctx.an.unsure("compgen runs code")
            return


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
    st = ctx.st
    _record(name, args, ctx)
    flags = set()
    for a in args:
        t = a.text
        if t is not None and t.startswith(("-", "+")) and len(t) > 1 and "=" not in t:
            flags |= set(t[1:]) if t[0] == "-" else set()
            continue
        if t is None and not (a.chunks and isinstance(a.chunks[0], str) and
                              re.match(r"[A-Za-z_]\w*(\[[^\]]*\])?\+?=", a.chunks[0])):
            ctx.an.unsure(f"{name} with a dynamic argument")
            continue
        head = t if t is not None else a.chunks[0]
        assert isinstance(head, str)
        m = re.match(r"([A-Za-z_]\w*)(\[[^\]]*\])?(\+?=)?", head)
        if m is None:
            if "f" not in flags and "F" not in flags:
                ctx.an.unsure(f"{name} {head!r} is not a variable name")
            continue
        var = m.group(1)
        if m.group(2):
            ctx.an.arith_text(m.group(2)[1:-1], st)
        if "f" in flags or "F" in flags:
            if name == "export" or "x" in flags:
                st.exported.add(var)
            continue
        value: str | None
        if m.group(3):
            value = t[m.end():] if t is not None else None
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
        elif "n" in flags:
            st.set_var(var, None)
        if "i" in flags:
            st.integer_vars.add(var)
        if name == "export" or "x" in flags:
            st.exported.add(var)
            if not m.group(3):
                ctx.an.check_assignment(var, st.get(var), st, prefix=False) if \
                    var in ctx.an.cat.runs_code_vars else None


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


def _fc(name: str, args: list[Field], ctx: Ctx) -> None:
    _record(name, args, ctx)
    texts = _texts(args)
    if texts and all(t is not None and (t.startswith("-l") or t in ("-n", "-r", "-ln", "-nl")
                                        or re.match(r"-?\d+$", t or "")) for t in texts) and \
            any((t or "").startswith("-l") or "l" in (t or "") for t in texts):
        return
    ctx.an.unsure("fc re-runs commands from history")


def _history(name: str, args: list[Field], ctx: Ctx) -> None:
    _record(name, args, ctx)
    texts = _texts(args)
    if any(t is None for t in texts):
        ctx.an.unsure("history with a dynamic argument")
        ctx.st.history_known = False
        return
    opts = "".join((t or "")[1:] for t in texts if (t or "").startswith("-"))
    if set(opts) & set("rnsc"):
        ctx.st.history_known = False
    if "w" in opts or "a" in opts:
        ops = [t for t in texts if t and not t.startswith("-")]
        for o in ops:
            ctx.effects.append(_write(ctx, o))
    if "p" in opts:
        ctx.an.unsure("history -p expands history")


def _write(ctx: Ctx, path: str) -> Effect:
    from gateway.policy.records import Effect

    return Effect("write", resolve(astr(path), ctx.st.cwd, symlinks=ctx.st.symlinks),
                  source="history")


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
