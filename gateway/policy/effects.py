"""Effect specs: the paths a catalogue program writes or removes (``writes``/``deletes``
in ``catalogue.toml``), for the effect rules.

A spec is ``KIND[:ARG][|CONDITION]``: ``operands`` (every operand), ``last`` (the
destination of ``cp``-like programs, and the names created in it), ``opt:-o`` (an
option's value), ``cwd`` (anything under the working directory), ``system`` (the
system's directories), ``unknown``... (``_SPECS`` below); a condition is
``unless:FLAGS``, ``if:FLAGS`` (comma-separated options) or ``sub:NAMES`` (the first
operand). Each path comes with whether the program writes the user's content there
(a write of user content to a file that makes code run later is uncertain).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from gateway.policy.argv import operands
from gateway.policy.catalogue import Program
from gateway.policy.ctx import Ctx
from gateway.policy.records import Effect
from gateway.policy.values import AStr, Field, Hole, astr, resolve, static

# where package managers and system tools write (never /dev, /proc, /sys, homes)
SYSTEM_DIRS = ("/etc/**", "/usr/**", "/var/**", "/opt/**", "/lib/**", "/lib64/**", "/boot/**",
               "/bin/**", "/sbin/**", "/srv/**")

Paths = list[tuple[AStr, bool]]  # (path, the user's content is written there)
Opts = dict[str, Field | None]


def own_content(sources: Sequence[Field | None], ctx: Ctx) -> bool:
    """Is what is copied, extracted or decompressed from ``sources`` the target's own
    content: every one a known local path this session did not write (nor under it)?
    Then the files made from it are not tracked as written in this session (running or
    building them is like running any of the target's files). A remote source (``host:``,
    a URL), the user's input, a dynamic name or a file written here holds content the
    user chose, and so does a device or a descriptor (``/dev/stdin``, ``/proc/self/fd/0``,
    a terminal, a FIFO under ``/run/user``) or a path not fully known."""
    st = ctx.st
    if st.unknown_writes or not sources:
        return False
    for f in sources:
        t = f.text if f is not None else None
        if t is None or t == "-" or "://" in t or re.match(r"^[^/]*:", t):
            return False
        path = ctx.an.path(f, st)  # type: ignore[arg-type]
        where = static(path)
        if where is None or where.startswith(("/dev/", "/proc/", "/sys/", "/run/user/")) or \
                ctx.an.written_match(path, st) or ctx.an.written_match(astr(*path, "/", Hole.ANY),
                                                                   st):
            return False
    return True


# the specs whose files are made from the command's operands (extracted, decompressed):
# tracked as written only when those hold the user's content. Not copies, moves, links
# or installs: a program copied under another name (`cp /usr/bin/touch ./ls`) would
# defeat the rules on its name, so those stay "written in this session" whatever their
# source
_FROM_SOURCES = {"ext": slice(None), "strip-ext": slice(None), "dir-opt": slice(None)}


def add_effects(prog: Program, args: Sequence[Field], ctx: Ctx) -> None:
    """Record what ``prog args`` writes and removes (its catalogue specs)."""
    if not prog.writes and not prog.deletes:
        return
    ops, opts = operands(prog, args)
    for kind, specs in (("write", prog.writes), ("delete", prog.deletes)):
        for spec in specs:
            name = spec.split(":", 1)[0].split("|", 1)[0]
            track = name not in (
                "path", "system", "unknown", "unknown-if", "operands-but-first")
            if track and name in _FROM_SOURCES:
                track = not own_content(ops[_FROM_SOURCES[name]], ctx)
            for path, content in spec_paths(spec, ops, opts, ctx):
                ctx.effects.append(Effect(kind, path, source=prog.name))
                if kind == "write":
                    if content:
                        ctx.an.check_autorun(path, prog.name)
                    if track:
                        ctx.st.wrote(path)


def spec_paths(spec: str, ops: list[Field], opts: Opts, ctx: Ctx) -> Paths:
    """Paths named by one writes/deletes spec; ``(path, user_content)``."""
    spec, _, cond = spec.partition("|")
    if cond and not _condition(cond, ops, opts):
        return []
    kind, _, arg = spec.partition(":")
    fn = _SPECS.get(kind) or (_nth if kind.startswith("nth") else None)
    if fn is None:
        raise ValueError(f"catalogue: unknown effect spec {spec!r}")
    return fn(arg, ops, opts, ctx)


def _condition(cond: str, ops: list[Field], opts: Opts) -> bool:
    """Whether a spec's condition (``unless:``, ``if:``, ``sub:``) holds."""
    ckind, _, flags = cond.partition(":")
    if ckind == "sub":
        if not ops or ops[0].text not in flags.split(","):
            return False
    elif (ckind == "unless") == _flag_set(opts, flags):
        return False
    return not (ckind == "if" and "-q" in opts)


def _flag_set(opts: Opts, flags: str) -> bool:
    return any(f in opts for f in flags.split(","))


def _p(f: Field | None, ctx: Ctx) -> AStr:
    """A field as a normalized path (None: an option without its value: any path)."""
    if f is None:
        return (Hole.ANY,)
    return ctx.an.path(f, ctx.st)


def _under(d: AStr) -> AStr:
    return join(d, Hole.ANY)


def _target_dir_given(opts: Opts) -> bool:
    return "-t" in opts or "--target-directory" in opts


def _all_but_last(arg: str, ops: list[Field], opts: Opts, ctx: Ctx) -> Paths:
    return [(_p(o, ctx), False) for o in (ops if _target_dir_given(opts) else ops[:-1])]


def _last(arg: str, ops: list[Field], opts: Opts, ctx: Ctx) -> Paths:
    if _target_dir_given(opts) or len(ops) < 2:
        return []
    dest = _p(ops[-1], ctx)
    return [(dest, True), *((join(dest, _base(o)), True) for o in ops[:-1])]


def _target_dir(arg: str, ops: list[Field], opts: Opts, ctx: Ctx) -> Paths:
    d = opts.get(arg) or opts.get("--target-directory")
    if arg not in opts and "--target-directory" not in opts:
        return []
    return [(join(_p(d, ctx), _base(o)), True) for o in ops]


def _url_name(arg: str, ops: list[Field], opts: Opts, ctx: Ctx) -> Paths:
    """``wget URL``: the last path segment of the URL in the working directory."""
    out: Paths = []
    for o in ops:
        t = o.text
        if t is None or "://" not in t:
            continue
        name = t.split("?", 1)[0].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        if t.split("://", 1)[1].count("/") == 0:
            name = "index.html"
        out.append((join(ctx.st.cwd, name or Hole.SEG), True))
    return out


def _nth(arg: str, ops: list[Field], opts: Opts, ctx: Ctx) -> Paths:
    n = int(arg.rstrip("*"))
    if len(ops) < n:
        return []
    path = _p(ops[n - 1], ctx)
    return [(astr(*path, Hole.SEG) if arg.endswith("*") else path, True)]


def _prefix_opt(arg: str, ops: list[Field], opts: Opts, ctx: Ctx) -> Paths:
    pre = opts.get(arg)
    base = _p(pre, ctx) if pre is not None else resolve(astr("xx"), ctx.st.cwd)
    return [(astr(*base, Hole.SEG), True)]


def _kv(arg: str, ops: list[Field], opts: Opts, ctx: Ctx) -> Paths:
    """``dd of=PATH``: operands ``ARG=path``."""
    out: Paths = []
    for o in ops:
        t = o.text
        if t is None:
            if not o.chunks or not isinstance(o.chunks[0], str) or o.chunks[0].startswith(
                    arg + "="):
                out.append(((Hole.ANY,), True))
        elif t.startswith(arg + "="):
            out.append((_p(Field(astr(t[len(arg) + 1:])), ctx), True))
    return out


def _ext(arg: str, ops: list[Field], opts: Opts, ctx: Ctx) -> Paths:
    """``gzip FILE``: FILE.gz (nothing with -c, -d, -l, -t)."""
    if _flag_set(opts, "-c,--stdout,-d,--decompress,-l,-t,--list,--test"):
        return []
    return [(astr(*_p(o, ctx), arg), True) for o in ops]


def _strip_ext(arg: str, ops: list[Field], opts: Opts, ctx: Ctx) -> Paths:
    """``gunzip FILE.gz``: FILE."""
    if _flag_set(opts, "-c,--stdout,-l,-t"):
        return []
    out: Paths = []
    for o in ops:
        p = _p(o, ctx)
        s = static(p)
        if s is not None and "/" in s:  # the file without its compression suffix
            m = _COMPRESSED.search(s)
            base = s[:m.start()] + (".tar" if m.group(1).startswith("t") else "") if m else s
            out.append((astr(base), True))
            continue
        out.append((astr(*p[:-1], Hole.SEG) if p else (Hole.ANY,), True))
    return out


_COMPRESSED = re.compile(r"\.(gz|z|Z|bz2|xz|zst|lz|lzma|lz4|br|tgz|taz|tbz|tbz2|txz|tzst)$")


def _if_flag(arg: str, paths: Callable[[], Paths], opts: Opts) -> Paths:
    return paths() if _flag_set(opts, arg) else []


_SPECS: dict[str, Callable[[str, list[Field], Opts, Ctx], Paths]] = {
    "operands": lambda arg, ops, opts, ctx: [(_p(o, ctx), True) for o in ops if o.text != "-"],
    "operands-but-first": lambda arg, ops, opts, ctx: [(_p(o, ctx), False) for o in ops[1:]],
    "all-but-last": _all_but_last,
    "last": _last,
    "target-dir": _target_dir,
    "url-name": _url_name,
    "first": lambda arg, ops, opts, ctx: [(_p(ops[0], ctx), True)] if ops else [],
    "first-if": lambda arg, ops, opts, ctx: (
        [(_p(ops[0], ctx), True)] if ops and _flag_set(opts, arg) else []),
    "opt": lambda arg, ops, opts, ctx: [(_p(opts[arg], ctx), True)] if arg in opts else [],
    "prefix-opt": _prefix_opt,
    "kv": _kv,
    "cwd": lambda arg, ops, opts, ctx: [(_under(ctx.st.cwd), True)],
    "cwd-if": lambda arg, ops, opts, ctx: _if_flag(
        arg, lambda: [(_under(ctx.st.cwd), True)], opts),
    # an archive extracted: names from the archive
    "dir-opt": lambda arg, ops, opts, ctx: [
        (_under(_p(opts.get(arg), ctx) if arg in opts else ctx.st.cwd), False)],
    "ext": _ext,
    "strip-ext": _strip_ext,
    "path": lambda arg, ops, opts, ctx: [(_glob_path(arg), False)],
    "system": lambda arg, ops, opts, ctx: [(_glob_path(g), False) for g in SYSTEM_DIRS],
    "unknown": lambda arg, ops, opts, ctx: [((Hole.ANY,), False)],
    "unknown-if": lambda arg, ops, opts, ctx: _if_flag(
        arg, lambda: [((Hole.ANY,), False)], opts),
    "operands-unless": lambda arg, ops, opts, ctx: (
        [] if _flag_set(opts, arg) else [(_p(o, ctx), False) for o in ops]),
    "operands-if": lambda arg, ops, opts, ctx: _if_flag(
        arg, lambda: [(_p(o, ctx), False) for o in ops], opts),
}


def join(d: AStr, name: str | Hole | AStr) -> AStr:
    """``d/name`` (``/`` root and holes handled)."""
    tail = name if isinstance(name, tuple) else (name,)
    if d == ("/",):
        return astr("/", *tail)
    return astr(*d, "/", *tail)


def _base(f: Field) -> AStr:
    """The last path component of a field (what ``cp SRC DIR`` creates in DIR)."""
    t = f.text
    if t is not None:
        b = t.rstrip("/").rsplit("/", 1)[-1]
        return (b,) if b and b not in (".", "..") else (Hole.SEG,)
    last = f.chunks[-1] if f.chunks else Hole.ANY
    if isinstance(last, str) and "/" in last:
        b = last.rstrip("/").rsplit("/", 1)[-1]
        return (b,) if b else (Hole.SEG,)
    return (Hole.SEG,)


def _glob_path(glob: str) -> AStr:
    chunks: list[object] = []
    for piece in re.split(r"(\*\*|\*)", glob):
        if piece == "**":
            chunks.append(Hole.ANY)
        elif piece == "*":
            chunks.append(Hole.SEG)
        elif piece:
            chunks.append(piece)
    return astr(*chunks)  # type: ignore[arg-type]
