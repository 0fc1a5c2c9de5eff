"""Builtins that change how later input is read and run: ``bind`` (what keys do),
``alias``/``unalias``, ``set``/``shopt`` options, ``hash``, ``complete``/``compgen``
(code run by Tab), ``fc``/``history``. Called through ``builtins.run``.

Known limits: options are modelled where they matter to the analyser (see
``state.DEFAULT_OPTIONS``); the others are accepted or uncertain as listed below.
"""

from __future__ import annotations

import re

from gateway.policy.ctx import Ctx
from gateway.policy.records import Effect
from gateway.policy.state import ShellState
from gateway.policy.values import Field, astr, resolve, static

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


def _texts(args: list[Field]) -> list[str | None]:
    return [a.text for a in args]


def _bind(name: str, args: list[Field], ctx: Ctx) -> None:
    ctx.record(name, args)
    texts = _texts(args)
    if any(t is None for t in texts):
        ctx.an.unsure("bind with a dynamic argument")
        ctx.st.bindings_unknown = True
        return
    known = [t or "" for t in texts]
    i = 0
    changed = False
    while i < len(known):
        step = _bind_arg(known, i, ctx)
        if step is None:
            return
        i, did = step
        changed = changed or did
    if changed:
        ctx.an.unsure("bind changes what keys do")


def _bind_arg(texts: list[str], i: int, ctx: Ctx) -> tuple[int, bool] | None:
    """The argument of ``bind`` at ``i``: where the next one is and whether what keys do
    changed; None when nothing more can be known (``-f``)."""
    st = ctx.st
    t = texts[i]
    if t in ("-l", "-p", "-P", "-v", "-V", "-s", "-S", "-X"):
        return i + 1, False
    if t in ("-q", "-u", "-m"):
        return i + 2, False
    if t == "-r":
        if i + 1 < len(texts):
            st.bindings.pop(_keyseq(texts[i + 1]), None)
        return i + 2, False
    if t == "-f":
        st.bindings_unknown = True
        ctx.an.unsure("bind -f reads key bindings from a file")
        return None
    if t == "-x":
        spec = texts[i + 1] if i + 1 < len(texts) else ""
        key, cmd = _split_binding(spec)
        st.bindings[_keyseq(key)] = ("exec", _unquote(cmd))
        ctx.an.text(_unquote(cmd), st.copy(), ctx.stdin, what="in bind -x")
        return i + 2, True
    if t.startswith("-"):
        st.bindings_unknown = True
    elif t.startswith("set "):
        _bind_set(t, st)
    else:
        _bind_key(t, st)
    return i + 1, True


def _bind_set(t: str, st: ShellState) -> None:
    """``bind 'set VARIABLE VALUE'``: the editing mode is followed; variables that change
    how keys are read make every key unknown."""
    parts = t.split()
    if len(parts) >= 3 and parts[1] == "editing-mode":
        st.options["vi"] = parts[2] == "vi"
        st.options["emacs"] = parts[2] != "vi"
    elif len(parts) >= 2 and parts[1] in ("keymap", "convert-meta", "input-meta",
                                          "keyseq-timeout", "enable-keypad"):
        st.bindings_unknown = True


def _bind_key(t: str, st: ShellState) -> None:
    """``bind 'KEYSEQ: function-or-macro'``."""
    key, fn = _split_binding(t)
    fn = fn.strip()
    if fn.startswith(('"', "'")):
        st.bindings[_keyseq(key)] = ("macro", _unquote(fn))
    elif fn in _RUNS_LINE:
        st.bindings[_keyseq(key)] = ("run", fn)
    else:
        st.bindings[_keyseq(key)] = ("func", fn)


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
    ctx.record(name, args)
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
    ctx.record(name, args)
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
    ctx.record(name, args)
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
    ctx.record(name, args)
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
    ctx.record(name, args)
    if any((a.text or "-p").startswith("-p") or not a.known for a in args if
           (a.text or "-").startswith("-")):
        ctx.st.hashed = True
        ctx.an.unsure("hash -p changes which program a name runs")


def _complete(name: str, args: list[Field], ctx: Ctx) -> None:
    ctx.record(name, args)
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
    ctx.record(name, args)
    texts = _texts(args)
    for k, t in enumerate(texts):
        if t is None or t in ("-C", "-F") or (t == "-W" and k + 1 < len(texts) and (
                texts[k + 1] is None or re.search(r"[$`]", texts[k + 1] or ""))):
            ctx.an.unsure("compgen runs code")
            return


def _fc(name: str, args: list[Field], ctx: Ctx) -> None:
    ctx.record(name, args)
    texts = _texts(args)
    if texts and all(t is not None and (t.startswith("-l") or t in ("-n", "-r", "-ln", "-nl")
                                        or re.match(r"-?\d+$", t or "")) for t in texts) and \
            any((t or "").startswith("-l") or "l" in (t or "") for t in texts):
        return
    ctx.an.unsure("fc re-runs commands from history")


def _history(name: str, args: list[Field], ctx: Ctx) -> None:
    ctx.record(name, args)
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
    return Effect("write", resolve(astr(path), ctx.st.cwd, symlinks=ctx.st.symlinks),
                  source="history")
