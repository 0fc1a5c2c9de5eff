"""From one simple command's words to the normalized commands the rules see.

Steps, in order (each documented in docs/policy.md):

1. the command word must be literal: a substitution, variable, glob or brace
   expansion there is *uncertain*;
2. ``argv[0]`` is path-normalized to its basename (``/usr/bin/../bin/rm`` -> ``rm``);
3. wrappers are stripped (``sudo``, ``env``, ``nice``, ``timeout``, ``xargs``...), the
   wrapped command is analysed as a command of its own;
4. command strings are parsed recursively (``sh -c``, ``su -c``, ``eval``, ``ssh host
   CMD``, ``watch CMD``, ``alias x=CMD``, ``find -exec``);
5. options are normalized (see ``options.py``), absolute paths in arguments are
   normalized (``/tmp/../`` -> ``/``), redirections are appended (``> /dev/sda``);
6. arguments that are dynamic (``$X``, ``$(...)``) or globs produce *probes*: the same
   command with the argument replaced by a few dangerous values (``/``, ``/*``,
   ``-rf /``, ``/dev/sda``, ``-R 777 /``) and the glob replaced by its literal
   skeleton (``/[e]tc`` -> ``/etc``); a rule matching a probe but not the command makes
   the command uncertain.

Known limits: the wrapper table is hand-written (an unknown wrapper hides the wrapped
command's name from the rules); scripts and programs run on the target are opaque;
inline interpreter code is only checked for obvious process-spawning calls.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.policy.options import normalize_options
from gateway.policy.words import Word, literal_word

SHELLS = frozenset(
    {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "rbash", "fish", "csh", "tcsh", "yash"}
)
INTERPRETERS = frozenset(
    {
        "perl",
        "ruby",
        "node",
        "nodejs",
        "php",
        "lua",
        "tclsh",
        "pwsh",
        "python",
        "python2",
        "python3",
        "pypy",
        "pypy3",
        "irb",
        "Rscript",
        "osascript",
        "expect",
    }
)
DECODERS = frozenset({"base64", "base32", "basenc", "xxd", "uudecode", "openssl"})
PROBE_VALUES = ("/", "/*", "-rf /", "/dev/sda", "-R 777 /")
_PY_RE = re.compile(r"^python[0-9.]*$")
_INLINE_EXEC_RE = re.compile(
    r"system|exec|popen|spawn|subprocess|__import__|\bos\.|`|eval|shell_exec|passthru|"
    r"proc_open|child_process|IO\.|Kernel|open\s*\(\s*[\"']\|"
)
_AWK_EXEC_RE = re.compile(r"system\s*\(|\|\s*getline|print[^;]*\|\s*\"|printf[^;]*\|\s*\"")


@dataclass(frozen=True)
class SimpleCommand:
    """One normalized simple command.

    Attributes:
        text: what the rules match: ``argv0 args... redirects`` with single spaces.
        argv: the normalized argv.
        probes: alternative texts for dynamic/glob arguments (see module docstring).
    """

    text: str
    argv: tuple[str, ...]
    probes: tuple[str, ...] = ()


@dataclass
class Sink:
    """Collects what analysing one line finds."""

    parse_nested: Callable[[str, Sink], None]
    commands: list[SimpleCommand] = field(default_factory=list)
    uncertain: list[str] = field(default_factory=list)

    def unsure(self, reason: str) -> None:
        """Record a reason the line cannot be decided with certainty."""
        if reason not in self.uncertain:
            self.uncertain.append(reason)


def basename(word: str) -> str:
    """``/usr/bin/../bin/rm`` -> ``rm``."""
    if "/" not in word:
        return word
    return posixpath.basename(posixpath.normpath(word)) or word


def norm_path(arg: str) -> str:
    """Normalize an absolute path argument, or the value of ``key=/path``."""
    if arg.startswith("/"):
        p = posixpath.normpath(arg)
        return "/" + p.lstrip("/") if p.startswith("//") else p
    key, eq, value = arg.partition("=")
    if eq and value.startswith("/") and key and "/" not in key:
        return f"{key}={norm_path(value)}"
    return arg


def expand_braces(text: str, limit: int = 64) -> list[str]:
    """Bash brace expansion of an unquoted literal word (``/{etc,usr}`` -> 2 words)."""
    m = re.search(r"\{([^{}]*)\}", text)
    if m is None:
        return [text]
    body = m.group(1)
    seq = re.fullmatch(r"(-?\d+)\.\.(-?\d+)", body) or re.fullmatch(
        r"([a-zA-Z])\.\.([a-zA-Z])", body
    )
    if "," in body:
        alts = body.split(",")
    elif seq:
        a, b = seq.group(1), seq.group(2)
        if a.lstrip("-").isdigit():
            x, y = int(a), int(b)
            step = 1 if y >= x else -1
            alts = [str(v) for v in range(x, y + step, step)][:limit]
        else:
            step = 1 if ord(b) >= ord(a) else -1
            alts = [chr(v) for v in range(ord(a), ord(b) + step, step)]
    else:
        # Not an expansion: keep the braces literally, expand the rest.
        head, rest = text[: m.end()], text[m.end() :]
        return [head + r for r in expand_braces(rest, limit)][:limit]
    out: list[str] = []
    for alt in alts:
        out.extend(expand_braces(text[: m.start()] + alt + text[m.end() :], limit))
        if len(out) >= limit:
            break
    return out[:limit]


# --------------------------------------------------------------------------- wrappers


def _skip_opts(
    words: Sequence[Word],
    i: int,
    with_arg: str = "",
    long_with_arg: frozenset[str] = frozenset(),
) -> tuple[int, set[str], dict[str, str]]:
    """Skip a wrapper's options; return (first positional index, flags, option values)."""
    flags: set[str] = set()
    values: dict[str, str] = {}
    n = len(words)
    while i < n:
        a = words[i].value
        if a == "--":
            return i + 1, flags, values
        if a.startswith("--") and len(a) > 2:
            name, eq, val = a[2:].partition("=")
            i += 1
            if name in long_with_arg and not eq and i < n:
                val = words[i].value
                i += 1
            flags.add("--" + name)
            values["--" + name] = val
            continue
        if a.startswith("-") and len(a) > 1 and not words[i].is_dynamic:
            i += 1
            body = a[1:]
            for k, c in enumerate(body):
                if c in with_arg:
                    val = body[k + 1 :]
                    if not val and i < n:
                        val = words[i].value
                        i += 1
                    values["-" + c] = val
                    flags.add("-" + c)
                    break
                flags.add("-" + c)
            continue
        break
    return i, flags, values


# name -> (short options with a value, long options with a value, positionals before cmd)
_SIMPLE_WRAPPERS: dict[str, tuple[str, frozenset[str], int]] = {
    "nohup": ("", frozenset(), 0),
    "builtin": ("", frozenset(), 0),
    "exec": ("a", frozenset(), 0),
    "time": ("fo", frozenset({"format", "output"}), 0),
    "nice": ("n", frozenset({"adjustment"}), 0),
    "ionice": ("cnpPu", frozenset({"class", "classdata", "pid", "pgid", "uid"}), 0),
    "stdbuf": ("ioe", frozenset({"input", "output", "error"}), 0),
    "setsid": ("", frozenset(), 0),
    "unbuffer": ("p", frozenset(), 0),
    "timeout": ("sk", frozenset({"signal", "kill-after"}), 1),
    "taskset": ("", frozenset(), 1),
    "chrt": ("T", frozenset({"sched-runtime", "sched-period", "sched-deadline"}), 1),
    "chroot": ("", frozenset({"userspec", "groups"}), 1),
    "strace": ("abeEIoOpPsSuUX", frozenset(), 0),
    "ltrace": ("aAeEnopsSuxXD", frozenset(), 0),
    "busybox": ("", frozenset(), 0),
    "catchsegv": ("", frozenset(), 0),
    "proxychains": ("f", frozenset(), 0),
    "proxychains4": ("f", frozenset(), 0),
    "torsocks": ("uapP", frozenset(), 0),
    "firejail": ("", frozenset(), 0),
    "nsenter": (
        "tmuinpUCSGrw",
        frozenset(
            {
                "target",
                "mount",
                "uts",
                "ipc",
                "net",
                "pid",
                "user",
                "cgroup",
                "setuid",
                "setgid",
                "root",
                "wd",
            }
        ),
        0,
    ),
    "unshare": (
        "",
        frozenset(
            {"map-user", "map-group", "setuid", "setgid", "root", "wd", "propagation", "setgroups"}
        ),
        0,
    ),
    "systemd-run": (
        "pEMHu",
        frozenset(
            {
                "unit",
                "property",
                "description",
                "slice",
                "uid",
                "gid",
                "setenv",
                "machine",
                "host",
                "working-directory",
                "nice",
                "on-calendar",
            }
        ),
        0,
    ),
    "doas": ("uC", frozenset(), 0),
    "sudo": (
        "ugCDhpRrtTU",
        frozenset(
            {
                "user",
                "group",
                "close-from",
                "chdir",
                "host",
                "prompt",
                "chroot",
                "role",
                "type",
                "command-timeout",
                "other-user",
            }
        ),
        0,
    ),
    "command": ("", frozenset(), 0),
    "env": ("uCS", frozenset({"unset", "chdir", "split-string"}), 0),
    "xargs": (
        "aEdILnPsi",
        frozenset(
            {
                "arg-file",
                "eof",
                "delimiter",
                "replace",
                "max-lines",
                "max-args",
                "max-procs",
                "max-chars",
            }
        ),
        0,
    ),
    "flock": ("wEn", frozenset({"timeout", "conflict-exit-code"}), 1),
    "watch": ("nd", frozenset({"interval", "differences"}), 0),
    "script": (
        "cOIBTEm",
        frozenset(
            {"command", "log-out", "log-in", "log-io", "log-timing", "echo", "logging-format"}
        ),
        0,
    ),
    "runuser": ("ugGcsw", frozenset({"user", "group", "supp-group", "command", "shell"}), 0),
    "su": (
        "cgGsw",
        frozenset(
            {"command", "group", "supp-group", "shell", "whitelist-environment", "session-command"}
        ),
        0,
    ),
    "ssh": ("BbcDEeFIiJLlmOoPpQRSWw", frozenset(), 1),
}
# Wrappers whose remaining arguments form a shell string (joined with spaces).
_STRING_WRAPPERS = frozenset({"watch", "ssh"})


@dataclass
class Context:
    """Where a command's standard input comes from, for the interpreter checks."""

    stdin: str | None = None  # None, "pipe", "heredoc", "herestring"
    appended_args: bool = False  # xargs appends arguments read from stdin


def analyze_argv(
    words: list[Word], redirects: list[str], ctx: Context, sink: Sink, depth: int = 0
) -> None:
    """Analyse one simple command (its words after quote removal).

    Args:
        words: argv as words (assignments already removed).
        redirects: normalized redirections (``"> /dev/sda"``).
        ctx: stdin context.
        sink: receives commands, uncertainty reasons, nested strings.
        depth: wrapper nesting depth (bounded).
    """
    if not words:
        return
    if depth > 16:
        sink.unsure("too many nested wrappers")
        return
    head = words[0]
    if head.is_dynamic:
        kinds = head.dynamic_kinds
        if "command_substitution" in kinds:
            sink.unsure("command substitution in command position")
        elif "process_substitution" in kinds:
            sink.unsure("process substitution in command position")
        else:
            sink.unsure("variable in command position")
        return
    if head.has_glob:
        sink.unsure("glob in command position")
        return
    if head.has_brace:
        sink.unsure("brace expansion in command position")
        return
    name = basename(head.value)
    rest = words[1:]

    if name in _SIMPLE_WRAPPERS:
        if _wrapper(name, words, redirects, ctx, sink, depth):
            return
    if name in SHELLS:
        _shell(name, rest, ctx, sink)
    elif name in INTERPRETERS or _PY_RE.match(name):
        _interpreter(name, rest, ctx, sink)
    elif name in ("awk", "gawk", "mawk", "nawk"):
        prog = next((w for w in rest if not w.value.startswith("-")), None)
        if prog is not None and _AWK_EXEC_RE.search(prog.value):
            sink.unsure(f"{name} program runs commands")
    elif name == "eval":
        _nested_words(rest, "eval", sink)
    elif name in ("source", "."):
        if rest and (rest[0].is_dynamic or rest[0].value in ("/dev/stdin", "-")):
            sink.unsure(f"{name} of dynamic input")
    elif name == "alias":
        for w in rest:
            _, eq, value = w.value.partition("=")
            if eq and value:
                if w.is_dynamic:
                    sink.unsure("dynamic alias")
                else:
                    sink.parse_nested(value, sink)
    elif name == "find":
        _find_exec(rest, ctx, sink, depth)
    elif name in ("fc", "r") and name == head.value:
        sink.unsure("history re-execution")
    _emit(name, rest, redirects, ctx, sink)


def _emit(name: str, args: list[Word], redirects: list[str], ctx: Context, sink: Sink) -> None:
    """Add the normalized command (and its probes) to the sink."""
    expanded: list[str] = []
    fuzzy = ctx.appended_args
    for w in args:
        if not w.is_dynamic and w.has_brace:
            expanded.extend(expand_braces(w.value))
        else:
            expanded.append(w.value)
            fuzzy = fuzzy or w.is_dynamic or w.has_glob
    argv = [name, *(norm_path(a) for a in normalize_options(name, expanded))]
    text = " ".join([*argv, *redirects])
    probes: set[str] = set()
    if fuzzy:
        for p in PROBE_VALUES:
            pargs: list[str] = []
            for w in args:
                if w.is_dynamic:
                    v = w.with_probe(p)
                    pargs.extend(v.split() if w.may_split else [v])
                elif w.has_glob:
                    pargs.append(w.glob_skeleton() or w.value)
                elif w.has_brace:
                    pargs.extend(expand_braces(w.value))
                else:
                    pargs.append(w.value)
            if ctx.appended_args:
                pargs.extend(p.split())
            pnorm = [name, *(norm_path(a) for a in normalize_options(name, pargs))]
            probes.add(" ".join([*pnorm, *redirects]))
        probes.discard(text)
    sink.commands.append(SimpleCommand(text, tuple(argv), tuple(sorted(probes))))


def _nested_words(words: list[Word], what: str, sink: Sink) -> None:
    """Parse the words joined with spaces as a shell line (``eval``, ``ssh host CMD``)."""
    if not words:
        return
    if any(w.is_dynamic for w in words):
        sink.unsure(f"dynamic string passed to {what}")
        return
    sink.parse_nested(" ".join(w.value for w in words), sink)


def _shell(name: str, rest: list[Word], ctx: Context, sink: Sink) -> None:
    i, flags, _ = _skip_opts(rest, 0, "oO", frozenset({"rcfile", "init-file"}))
    if "-c" in flags or "--command" in flags:
        if i >= len(rest):
            sink.unsure(f"{name} -c without a command")
            return
        cmd = rest[i]
        if cmd.is_dynamic:
            sink.unsure(f"dynamic string passed to {name} -c")
        else:
            sink.parse_nested(cmd.value, sink)
        return
    reads_stdin = i >= len(rest) or "-s" in flags or rest[i].value == "-"
    if reads_stdin and ctx.stdin:
        sink.unsure(f"{_stdin_what(ctx)} into interpreter {name}")
    elif i < len(rest) and rest[i].is_dynamic:
        sink.unsure(f"dynamic script for {name}")


def _stdin_what(ctx: Context) -> str:
    return {"pipe": "pipe", "heredoc": "here-document", "herestring": "here-string"}.get(
        ctx.stdin or "", "input"
    )


def _interpreter(name: str, rest: list[Word], ctx: Context, sink: Sink) -> None:
    i = 0
    n = len(rest)
    while i < n:
        a = rest[i].value
        if a in ("-c", "-e", "-E", "-r", "--eval", "-p", "--print") or (
            a.startswith("-")
            and not a.startswith("--")
            and a[-1:] in "ce"
            and len(a) <= 4
            and name not in ("node", "nodejs")
            and a[1:].isalpha()
        ):
            code = rest[i + 1] if i + 1 < n else None
            if code is None or code.is_dynamic:
                sink.unsure(f"dynamic inline code for {name}")
            elif _INLINE_EXEC_RE.search(code.value):
                sink.unsure(f"inline {name} code runs commands")
            return
        if a in ("-m", "-M", "-I", "-r", "-W", "-X") and i + 1 < n:
            if a == "-m":
                return
            i += 2
            continue
        if a == "-" or not a.startswith("-"):
            if a == "-" and ctx.stdin:
                sink.unsure(f"{_stdin_what(ctx)} into interpreter {name}")
            elif rest[i].is_dynamic:
                sink.unsure(f"dynamic script for {name}")
            return
        i += 1
    if ctx.stdin:
        sink.unsure(f"{_stdin_what(ctx)} into interpreter {name}")


def _find_exec(rest: list[Word], ctx: Context, sink: Sink, depth: int) -> None:
    i = 0
    while i < len(rest):
        if rest[i].value in ("-exec", "-execdir", "-ok", "-okdir"):
            j = i + 1
            while j < len(rest) and rest[j].value not in (";", "+"):
                j += 1
            inner = rest[i + 1 : j]
            if inner:
                analyze_argv(list(inner), [], Context(), sink, depth + 1)
            i = j
        i += 1


def _wrapper(
    name: str, words: list[Word], redirects: list[str], ctx: Context, sink: Sink, depth: int
) -> bool:
    """Strip one wrapper; True if the wrapper itself needs no rule of its own."""
    with_arg, long_with_arg, positionals = _SIMPLE_WRAPPERS[name]
    rest = words[1:]
    if name == "busybox" and rest and rest[0].value.startswith("-"):
        return False
    i, flags, values = _skip_opts(rest, 0, with_arg, long_with_arg)
    if name == "env":
        while i < len(rest) and "=" in rest[i].value and not rest[i].value.startswith("="):
            i += 1
        split = values.get("-S") or values.get("--split-string")
        if split:
            tail = " ".join(w.value for w in rest[i:])
            sink.parse_nested(f"{split} {tail}".strip(), sink)
            _emit(name, rest, redirects, ctx, sink)
            return True
    if name == "command" and ("-v" in flags or "-V" in flags):
        return False
    if name in ("taskset", "chrt") and ("-p" in flags or "--pid" in flags):
        return False
    if name in ("su", "runuser", "script", "flock"):
        cmd = values.get("-c") or values.get("--command") or values.get("--session-command")
        if cmd is None and name in ("su", "runuser"):
            cmd = _permuted_command_opt(rest, with_arg)
        if cmd is not None:
            idx = next((k for k, w in enumerate(rest) if w.value == cmd), None)
            if idx is not None and rest[idx].is_dynamic:
                sink.unsure(f"dynamic string passed to {name} -c")
            else:
                sink.parse_nested(cmd, sink)
            _emit(name, rest, redirects, ctx, sink)
            return True
        if name in ("su", "script"):
            return False
        if name == "runuser":
            positionals = 0 if ("-u" in flags or "--user" in flags) else 1
    if name in ("sudo", "doas") and ({"-s", "-i", "--shell", "--login"} & flags):
        if i < len(rest):
            _nested_words(rest[i:], f"{name} -s", sink)
            _emit(name, rest, redirects, ctx, sink)
            return True
        return False
    if name == "sudo" and ({"-e", "--edit", "-l", "--list", "-v", "-k", "-K"} & flags):
        return False
    if name == "ssh":
        _skip = rest[i + 1 :] if i < len(rest) else []
        _nested_words(list(_skip), "ssh", sink)
        _emit(name, rest, redirects, ctx, sink)
        return True
    if name in _STRING_WRAPPERS:
        _nested_words(rest[i:], name, sink)
        _emit(name, rest, redirects, ctx, sink)
        return True
    i += positionals
    inner = rest[i:]
    if not inner:
        return False
    inner_ctx = Context(ctx.stdin, ctx.appended_args or name == "xargs")
    if name == "xargs":
        inner_ctx.stdin = None
    analyze_argv(list(inner), redirects, inner_ctx, sink, depth + 1)
    return True


def _permuted_command_opt(words: Sequence[Word], with_arg: str) -> str | None:
    """GNU getopt permutes: ``su - root -c CMD`` has ``-c`` after operands."""
    for k, w in enumerate(words):
        a = w.value
        if a == "--":
            return None
        if a.startswith("--command=") or a.startswith("--session-command="):
            return a.partition("=")[2]
        if a in ("--command", "--session-command"):
            return words[k + 1].value if k + 1 < len(words) else ""
        if a.startswith("-") and not a.startswith("--") and len(a) > 1:
            for j, c in enumerate(a[1:]):
                if c == "c":
                    rest = a[j + 2 :]
                    if rest:
                        return rest
                    return words[k + 1].value if k + 1 < len(words) else ""
                if c in with_arg:
                    break
    return None


def is_decoder(words: Sequence[Word]) -> bool:
    """True for ``base64 -d`` and friends (decoded data piped onward is opaque)."""
    if not words or words[0].is_dynamic:
        return False
    name = basename(words[0].value)
    vals = {w.value for w in words[1:]}
    if name in ("base64", "base32", "basenc"):
        return bool(vals & {"-d", "--decode", "-D", "-di", "-id"})
    if name == "xxd":
        return bool(vals & {"-r", "-revert", "-rp", "-pr", "-r -p"})
    if name == "uudecode":
        return True
    if name == "openssl":
        return "-d" in vals
    return False


def synthetic(text: str) -> list[Word]:
    """Words for a synthetic command (``sftp-get /etc/shadow``)."""
    return [literal_word(t) for t in text.split(" ")]
