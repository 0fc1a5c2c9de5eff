"""Handlers of developer and deployment tools: git, make, go, npm, pip, containers,
kubectl, ansible (see ``tools.py``)."""

from __future__ import annotations

import re

from gateway.policy.catalogue import Program
from gateway.policy.ctx import Ctx
from gateway.policy.effects import SYSTEM_DIRS, _glob_path, own_content
from gateway.policy.programs import (
    may_be_named,
    project_written,
    record,
    script_file,
    stdin_code,
)
from gateway.policy.records import Stdin
from gateway.policy.tools_common import Handlers, _argv, _effect, _string, _t
from gateway.policy.values import AStr, Field, Hole, astr, show

HANDLERS = Handlers()
handler = HANDLERS.register

# --------------------------------------------------------------------------- developer tools

_GIT_BAD_KEY = re.compile(
    r"(?i)^(alias\..*|core\.(pager|editor|sshcommand|fsmonitor|hookspath|askpass|gitproxy|"
    r"worktree|attributesfile)|diff\..*|filter\..*|merge\..*\.driver|credential\..*|"
    r"gpg\..*|sequence\.editor|pager\..*|interactive\.difffilter|uploadpack\..*|"
    r"protocol\..*|remote\..*\.(uploadpack|receivepack|vcs|proxy)|include\..*|includeif\..*|"
    r"init\.templatedir|submodule\..*|web\.browser|browser\..*|man\..*|difftool\..*|"
    r"mergetool\..*|sendemail\..*|instaweb\..*|ssh\.variant|trace2\..*|receive\..*hook.*|"
    r"core\.sshcommand|http\..*cookiefile|safe\.directory)$"
)
_GIT_KNOWN = frozenset(
    "add am annotate apply archive bisect blame branch bundle cat-file check-attr "
    "check-ignore check-mailmap check-ref-format checkout cherry cherry-pick citool clean "
    "clone column commit commit-graph commit-tree config count-objects credential describe "
    "diff diff-files diff-index diff-tree difftool fetch fetch-pack filter-branch fmt-merge-msg "
    "for-each-ref for-each-repo format-patch fsck gc get-tar-commit-id grep hash-object help "
    "index-pack init log ls-files ls-remote ls-tree maintenance merge merge-base merge-file "
    "merge-tree mergetool mktag mktree mv name-rev notes pack-objects prune pull push "
    "range-diff read-tree rebase reflog remote repack replace request-pull rerere reset "
    "restore rev-list rev-parse revert rm send-pack shortlog show show-branch show-ref "
    "sparse-checkout stash status stripspace submodule switch symbolic-ref tag update-index "
    "update-ref var verify-commit verify-pack verify-tag version whatchanged worktree "
    "write-tree".split()
)
_GIT_READONLY = frozenset(
    "annotate blame cat-file check-attr check-ignore cherry count-objects describe diff "
    "diff-files diff-index diff-tree fsck grep help log ls-files ls-remote ls-tree merge-base "
    "name-rev range-diff reflog rev-list rev-parse shortlog show show-branch show-ref status "
    "var verify-commit verify-pack verify-tag version whatchanged for-each-ref".split()
)


@handler("git")
def _git(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    record(name, args, ctx)
    i = _git_globals(texts, ctx)
    if i is None or i >= len(args):
        return
    sub = texts[i] or ""
    rest = args[i + 1 :]
    rtexts = texts[i + 1 :]
    _git_remote_programs(texts, sub, ctx)
    if sub not in _GIT_KNOWN:
        ctx.an.unsure(f"git {sub} is not a git command bastille knows (an alias or plugin "
                      "may run anything)")
        return
    if sub == "config":
        _git_config(rtexts, ctx)
        return
    if _git_runs(sub, rest, rtexts, ctx) or sub in _GIT_READONLY:
        return
    st = ctx.st
    if sub == "clone":
        fops = [a for a in rest if not (a.text or "-").startswith("-")]
        dest = ctx.an.path(fops[1], st) if len(fops) > 1 else astr(*st.cwd, "/", Hole.SEG)
        _effect(ctx, "write", astr(*dest, "/", Hole.ANY), "git clone", content=False,
                track=False)
    elif sub == "rm":
        for a in rest:
            if not (a.text or "-").startswith("-"):
                _effect(ctx, "delete", ctx.an.path(a, st), "git rm")
    elif sub in ("apply", "am"):
        # a patch from the user's input, or one written here: the user's content, into
        # any file under the working tree (`git apply` works outside a repository too)
        patches = [a for a in rest if not (a.text or "-").startswith("-")]
        user = not patches or not own_content(patches, ctx)
        _effect(ctx, "write", astr(*st.cwd, "/", Hole.ANY), f"git {sub}", content=user,
                track=user)
    else:
        _effect(ctx, "write", astr(*st.cwd, "/", Hole.ANY), f"git {sub}", content=False,
                track=False)


def _git_remote_programs(texts: list[str | None], sub: str, ctx: Ctx) -> None:
    """Options that make git run a program for the remote side."""
    for t in texts:
        if t and (t.startswith("ext::") or t.startswith(("--upload-pack", "--receive-pack",
                                                         "--exec=")) or (t == "-u" and
                  sub in ("clone", "fetch", "pull", "ls-remote", "archive"))):
            ctx.an.unsure("git runs a program for the remote (--upload-pack, ext::)")


def _git_globals(texts: list[str | None], ctx: Ctx) -> int | None:
    """git's own options (``-c``, ``-C``, ``--git-dir``...): where the subcommand is;
    None after a dynamic one (uncertain)."""
    i, n = 0, len(texts)
    while i < n:
        t = texts[i]
        if t is None:
            ctx.an.unsure("dynamic argument to git")
            return None
        if not t.startswith("-"):
            break
        if t == "-c" and i + 1 < n:
            kv = texts[i + 1]
            if kv is None or _GIT_BAD_KEY.match(kv.split("=", 1)[0]):
                ctx.an.unsure(f"git -c {(kv or '?').split('=')[0]} runs other programs")
            i += 2
            continue
        if t.startswith("--config-env"):
            ctx.an.unsure("git --config-env sets configuration from the environment")
        if t.startswith("--exec-path") and "=" in t:
            ctx.an.unsure("git --exec-path runs programs from another directory")
        if t in ("--git-dir", "--work-tree"):
            ctx.an.unsure(f"git {t} points at another repository (its hooks and config)")
        i += 2 if t in ("-C", "--git-dir", "--work-tree", "--namespace", "--super-prefix") \
            else 1
    return i


def _git_config(rtexts: list[str | None], ctx: Ctx) -> None:
    """``git config``: setting a key that makes git run programs is uncertain."""
    ops = [t for t in rtexts if t is None or not t.startswith("-")]
    if any(t in ("-e", "--edit") for t in rtexts):
        ctx.an.unsure("git config --edit")
    if ops and ops[0] in ("set", "unset", "get", "list", "edit", "rename-section",
                          "remove-section"):
        if ops[0] == "edit":
            ctx.an.unsure("git config edit")
        ops = ops[1:]
    if len(ops) >= 2 or any(t in ("--add", "--replace-all") for t in rtexts):
        key = ops[0] if ops else None
        if key is None or _GIT_BAD_KEY.match(key):
            ctx.an.unsure(f"git config {key or '?'} makes git run other programs")


def _git_runs(sub: str, rest: list[Field], rtexts: list[str | None], ctx: Ctx) -> bool:
    """Subcommands that run commands (checked); True when nothing else is to be done."""
    if sub == "bisect" and rtexts[:1] == ["run"]:
        _argv(rest[1:], ctx, "git bisect run")
        return True
    if sub == "submodule" and "foreach" in rtexts:
        k = rtexts.index("foreach")
        tail = [t for t in rtexts[k + 1 :] if t not in ("--recursive", "-q", "--quiet")]
        _string(None if any(x is None for x in tail) else " ".join(x or "" for x in tail), ctx,
                "git submodule foreach")
        return True
    if sub == "rebase":
        _git_rebase(rtexts, ctx)
    elif sub == "filter-branch":
        ctx.an.unsure("git filter-branch runs shell snippets")
    elif sub in ("difftool", "mergetool"):
        for k, t in enumerate(rtexts):
            if t in ("-x", "--extcmd") or (t or "").startswith("--extcmd="):
                v = t.split("=", 1)[1] if t and "=" in t else (
                    rtexts[k + 1] if k + 1 < len(rtexts) else "")
                _string(v, ctx, f"git {sub}")
    elif sub == "grep" and any((t or "").startswith(("-O", "--open-files-in-pager")) for t in
                               rtexts):
        ctx.an.unsure("git grep -O runs a pager command")
    return False


def _git_rebase(rtexts: list[str | None], ctx: Ctx) -> None:
    """``git rebase --exec CMD`` (checked), ``-i`` (its todo list may hold exec lines)."""
    for k, t in enumerate(rtexts):
        if t in ("-x", "--exec") and k + 1 < len(rtexts):
            _string(rtexts[k + 1], ctx, "git rebase --exec")
        elif t and t.startswith("--exec="):
            _string(t.split("=", 1)[1], ctx, "git rebase --exec")
        elif t in ("-i", "--interactive"):
            ctx.an.unsure("git rebase -i runs the edited todo list (exec lines)")


@handler("make")
def _make(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    record(name, args, ctx)
    st = ctx.st
    makefiles: list[Field] = []
    directory: Field | None = None
    for k, t in enumerate(texts):
        if t is None:
            _make_dynamic(args[k], ctx)
        elif t in ("-f", "--file", "--makefile") and k + 1 < len(args):
            makefiles.append(args[k + 1])
        elif t.startswith(("--file=", "--makefile=")):
            makefiles.append(Field(astr(t.split("=", 1)[1])))
        elif t.startswith("-f") and len(t) > 2:
            makefiles.append(Field(astr(t[2:])))
        elif t in ("-E", "--eval") or t.startswith("--eval="):
            ctx.an.unsure("make --eval runs make code")
        elif t in ("-C", "--directory") and k + 1 < len(args):
            directory = args[k + 1]
        elif re.match(r"[A-Za-z_][A-Za-z0-9_]*:?=", t):
            _make_variable(t, ctx)
    base = ctx.an.path(directory, st) if directory is not None else st.cwd
    _makefiles(makefiles, base, ctx)
    _effect(ctx, "write", astr(*base, "/", Hole.ANY), "make", content=False, track=False)


def _make_dynamic(a: Field, ctx: Ctx) -> None:
    """A dynamic argument of make: fine as a target or a known flag, else uncertain."""
    head = a.chunks[0] if a.chunks else ""
    if a.split or not isinstance(head, str) or not re.match(
            r"-[jlkswinBdeiqrRStv]|[^-=]*$", head) or "=" in head:
        ctx.an.unsure("dynamic argument to make")


def _make_variable(t: str, ctx: Ctx) -> None:
    """``make VAR=value``: variables that change what recipes run are uncertain."""
    var, _, value = t.partition("=")
    if var.rstrip(":") in ("SHELL", ".SHELLFLAGS", "MAKEFLAGS", "MAKEFILES") or \
            re.search(r"[;&|`$()<>\s]", value):
        ctx.an.unsure(f"make {var.rstrip(':')}=... can change what recipes run")


def _makefiles(makefiles: list[Field], base: AStr, ctx: Ctx) -> None:
    """The makefiles given are checked as scripts; the default one: was it written in
    this session?"""
    for f in makefiles:
        if f.text == "-":
            ctx.an.unsure("make reads a makefile from its input")
        else:
            script_file("make -f", f, ctx)
    if makefiles:
        return
    st = ctx.st
    for mf in ("GNUmakefile", "makefile", "Makefile"):
        if ctx.an.written_match(astr(*base, "/", mf), st):
            ctx.an.unsure(f"make runs {mf}, written in this session")
            return
    if st.unknown_writes:
        ctx.an.unsure("make runs a makefile after this session wrote to unknown paths")


@handler("go")
def _go(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    record(name, args, ctx)
    sub = texts[0] if texts else None
    if sub == "generate":
        ctx.an.unsure("go generate runs commands from source comments")
    if sub == "env" and "-w" in texts:
        ctx.an.unsure("go env -w changes how later builds run")
    if any(t and (t.startswith(("-exec", "-toolexec", "-overlay"))) for t in texts):
        ctx.an.unsure("go -exec/-toolexec runs another program")
    if sub in ("run", "test", "build", "install", "vet") and _go_code_written(args[1:], ctx):
        ctx.an.unsure(f"go {sub} builds code written in this session")
    if texts and texts[0] is None:
        ctx.an.unsure("dynamic go command")


# where go finds code besides the packages it is given: the module cache, the toolchain
GO_TREES = ("~/go/**", "/usr/local/go/**", "/usr/lib/go/**", "/usr/lib/go-*/**",
            "~/sdk/**", "~/.cache/go-build/**")


def _go_code_written(args: list[Field], ctx: Ctx) -> bool:
    """Could the code this go command builds (and, for run/test, runs) have been written in
    this session? The packages are under the current directory (every directory it may
    be) or the paths named; a go.mod/go.work written anywhere may point anywhere; the
    module cache and the toolchain count too. A dynamic argument could be any path."""
    st = ctx.st
    if st.unknown_writes:
        return True
    roots: list[AStr] = [st.cwd, *st.cwd_alts]
    for a in args:
        if a.text is None:
            return True
        if not a.text.startswith("-") and (a.text.startswith((".", "/", "~")) or
                                           a.text.endswith(".go")):
            roots.append(ctx.an.path(a, st))
    if any(show(w).endswith(("go.mod", "go.work", "go.sum")) for w in st.written):
        return True
    return any(ctx.an.written_match(root, st, _go_file) or
               ctx.an.written_match(astr(*root, "/", Hole.ANY), st, _go_file)
               for root in roots) or \
        any(ctx.an.written_match(_glob_path(t), st) for t in GO_TREES)


GO_SOURCES = (".go", ".s", ".S", ".c", ".h", ".cc", ".cpp", ".hh", ".hpp", ".m", ".f",
              ".F", ".for", ".f90", ".swig", ".swigcxx", ".syso", "go.mod", "go.sum",
              "go.work")


def _go_file(path: AStr) -> bool:
    """A file the go tool compiles or reads for a build (or may be one)."""
    return may_be_named(path, tuple("*" + s for s in GO_SOURCES))


# redis-cli options followed by a value
_REDIS_TAKES = frozenset({
    "-h", "-p", "-s", "-a", "-u", "-r", "-i", "-n", "-d", "-D", "-e", "--user", "--pass",
    "--cacert", "--cacertdir", "--cert", "--key", "--sni", "--tls-ciphers",
    "--tls-ciphersuites", "--pattern", "--quoted-pattern", "--count", "--rdb",
    "--functions-rdb", "--pipe-timeout", "--memkeys-samples", "--intrinsic-latency",
    "--lru-test", "--eval"})
# commands that make the server write files where it is told, load code, or follow
# another server
_REDIS_UNSAFE = frozenset({
    "CONFIG", "MODULE", "SAVE", "BGSAVE", "BGREWRITEAOF", "DEBUG", "SLAVEOF", "REPLICAOF",
    "MIGRATE", "RESTORE", "ACL", "SHUTDOWN", "FAILOVER", "SYNC", "PSYNC", "CLUSTER"})


@handler("redis")
def _redis(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    """``redis-cli [options] [COMMAND ...]``: without a command it reads commands from
    its input (a REPL); ``--pipe`` sends its input as raw commands."""
    record(name, args, ctx)
    texts = _t(args)
    i = 0
    while i < len(texts) and (texts[i] or "").startswith("-"):
        if texts[i] == "--pipe":
            stdin_code(name, "opaque", ctx, kind="repl")
            return
        i += 2 if texts[i] in _REDIS_TAKES else 1
    if i >= len(texts):
        stdin_code(name, "opaque", ctx, kind="repl")
        return
    cmd = texts[i]
    if cmd is None:
        ctx.an.unsure("dynamic redis command")
    elif cmd.upper() in _REDIS_UNSAFE:
        ctx.an.unsure(f"redis-cli {cmd} can make the server write files or load code")
    elif "-x" in texts and ctx.stdin.kind == "user":
        ctx.an.reads_input("redis-cli -x sends the user's input as the command's last "
                           "argument")


@handler("npm")
def _npm(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    record(name, args, ctx)
    ops = [t for t in texts if t is None or not t.startswith("-")]
    sub = ops[0] if ops else None
    if any(t and t.startswith("--script-shell") for t in texts):
        ctx.an.unsure("npm --script-shell runs another shell")
    if sub in ("exec", "x", "explore", "init", "create", "edit", "rebuild"):
        ctx.an.unsure(f"npm {sub} runs a program")
    elif sub in ("run", "run-script", "rum", "urn", "start", "test", "t", "tst", "restart",
                 "stop", "install", "i", "ci", "add", "update", "up", "pack", "publish"):
        pj = astr(*ctx.st.cwd, "/package.json")
        if ctx.an.written_match(pj, ctx.st) or ctx.st.unknown_writes:
            ctx.an.unsure(f"npm {sub} runs package.json scripts written in this session")
        elif sub in ("install", "i", "ci", "add"):  # a local package: its install scripts
            project_written(f"npm {sub}", args[1:], ctx, here=False)
        if sub in ("install", "i", "ci", "add", "update", "up"):
            _effect(ctx, "write", astr(*ctx.st.cwd, "/", Hole.ANY), "npm", content=False,
                    track=False)
    elif sub == "config" and len(ops) > 1 and ops[1] == "set":
        if any(t and "script-shell" in t for t in texts) or any(
                t is None for t in texts):
            ctx.an.unsure("npm config sets the shell that runs scripts")
    elif sub is None and ops:
        ctx.an.unsure("dynamic npm command")


@handler("pip")
def _pip(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    record(name, args, ctx)
    ops = [a for a in args if not (a.text or "-").startswith("-")]
    sub = ops[0].text if ops else None
    if sub in ("install", "download", "wheel"):
        for k, a in enumerate(args):
            t = a.text
            local = t is None or t.startswith(("./", "../", "/", "~")) or t == "." or \
                t.endswith((".whl", ".tar.gz", ".zip")) or (k and texts[k - 1] in (
                    "-e", "--editable", "-r", "--requirement", "-c", "--constraint"))
            if a is ops[0] or not local or (t or "").startswith("-"):
                continue
            path = ctx.an.path(a, ctx.st)
            under = astr(*path, "/", Hole.ANY)
            if ctx.an.written_match(path, ctx.st) or ctx.an.written_match(under, ctx.st) or \
                    ctx.st.unknown_writes:
                ctx.an.unsure(f"pip {sub} builds code written in this session")
                break
        if sub == "install":

            for g in ("~/.local/**", *SYSTEM_DIRS):
                _effect(ctx, "write", _glob_path(g), "pip", content=False, track=False)


@handler("container")
def _container(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    record(name, args, ctx)
    i = _skip_options(texts, 0, _CONTAINER_GLOBAL_TAKES)
    if i >= len(texts):
        return
    sub = texts[i]
    if sub == "compose" or name == "docker-compose":
        project_written(f"{name} compose", args, ctx, files=COMPOSE_FILES)
        _compose(name, args, texts, i + 1 if sub == "compose" else i, ctx)
        return
    if sub == "stack":
        project_written(f"{name} stack", args, ctx, files=COMPOSE_FILES)
    if sub == "container":
        if not (i + 1 < len(texts) and texts[i + 1] in ("run", "exec", "create")):
            return
        i += 1
        sub = texts[i]
    if sub in ("run", "exec", "create"):
        k = _container_run_options(name, texts, i + 1, ctx)
        _container_cmd(args[k + 1 :], ctx, f"{name} {sub}")
    elif sub is None or sub not in _CONTAINER_PLAIN:
        ctx.an.unsure(f"{name} {sub} is not a command bastille knows (a plugin may run "
                      "anything)")
    elif sub == "plugin" or sub == "attach":
        ctx.an.unsure(f"{name} {sub} is not checked")


# a compose file's services mount and run what it says; .env sets its variables
COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml",
                 "compose.*.yaml", "compose.*.yml", "docker-compose.*.yml",
                 "docker-compose.*.yaml", ".env")
_CONTAINER_GLOBAL_TAKES = frozenset({
    "-H", "--host", "--context", "-c", "--config", "-l", "--log-level", "-f", "--file", "-p",
    "--project-name", "--profile", "--env-file", "--project-directory"})
_COMPOSE_TAKES = frozenset({"-f", "--file", "-p", "--project-name", "--profile",
                            "--env-file"})
_COMPOSE_RUN_TAKES = frozenset({
    "-e", "--env", "-u", "--user", "-w", "--workdir", "-v", "--volume", "-p", "--publish",
    "--name", "--entrypoint", "-l", "--label", "--index"})
_CONTAINER_RUN_TAKES = frozenset({
    "-e", "--env", "-u", "--user", "-w", "--workdir", "-v", "--volume", "-p", "--publish",
    "--name", "--entrypoint", "-l", "--label", "--network", "--net", "-h", "--hostname",
    "--mount", "--env-file", "--cap-add", "--cap-drop", "--device", "--restart", "-m",
    "--memory", "--cpus", "--platform", "--pull", "--add-host", "--dns", "--ulimit",
    "--security-opt", "--tmpfs", "--log-driver", "--log-opt", "--gpus", "--pid", "--ipc",
    "--userns", "--shm-size", "--stop-signal", "--health-cmd", "--detach-keys", "-a",
    "--attach", "--cidfile", "--group-add", "--label-file", "--runtime"})
_CONTAINER_PLAIN = frozenset({
    "ps", "images", "image", "pull", "push", "logs", "inspect", "stats", "top", "stop",
    "start", "restart", "kill", "rm", "rmi", "network", "volume", "system", "info", "version",
    "tag", "login", "logout", "save", "load", "build", "buildx", "cp", "port", "pause",
    "unpause", "wait", "events", "history", "diff", "commit", "export", "import", "search",
    "rename", "update", "context", "manifest", "pod", "ls", "builder", "node", "service",
    "stack", "swarm", "secret", "config", "plugin", "trust", "scout", "init", "attach",
    "machine", "generate", "play"})


def _skip_options(texts: list[str | None], i: int, takes: frozenset[str]) -> int:
    """After the options from ``i`` (``takes``: those followed by a value)."""
    while i < len(texts) and (texts[i] or "").startswith("-"):
        i += 2 if (texts[i] or "") in takes else 1
    return i


def _container_run_options(name: str, texts: list[str | None], k: int, ctx: Ctx) -> int:
    """The options of ``docker run|exec|create`` from ``k``: after them."""
    while k < len(texts) and (texts[k] or "").startswith("-"):
        t = texts[k] or ""
        if t in ("--entrypoint",) or t.startswith("--entrypoint="):
            ctx.an.unsure(f"{name} --entrypoint runs another program in the container")
        if t.startswith("--health-cmd"):
            ctx.an.unsure(f"{name} --health-cmd runs a command")
        k += 2 if t in _CONTAINER_RUN_TAKES else 1
    return k


def _compose(name: str, args: list[Field], texts: list[str | None], j: int, ctx: Ctx
             ) -> None:
    """``docker compose [options] run|exec [options] SERVICE [COMMAND...]``."""
    j = _skip_options(texts, j, _COMPOSE_TAKES)
    csub = texts[j] if j < len(texts) else None
    if csub in ("run", "exec"):
        k = _skip_options(texts, j + 1, _COMPOSE_RUN_TAKES)
        _container_cmd(args[k + 1 :], ctx, f"{name} compose {csub}")
    elif csub is None:
        ctx.an.unsure("dynamic docker compose command")


def _container_cmd(words: list[Field], ctx: Ctx, where: str) -> None:
    if not words:
        if not ctx.an.exec_mode and ctx.stdin.kind == "tty":
            stdin_code(where, "bash", ctx, kind="shell")
        return
    _argv(words, ctx, where, remote=True)


@handler("kubectl")
def _kubectl(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    record(name, args, ctx)
    ops = [t for t in texts if t is None or not t.startswith("-")]
    sub = ops[0] if ops else None
    if sub in ("exec", "run"):
        if "--" in texts:
            k = texts.index("--")
            _container_cmd(args[k + 1 :], ctx, f"kubectl {sub}")
        elif sub == "exec":
            ctx.an.unsure("kubectl exec without -- (its command cannot be told apart)")
        return
    known = {"get", "describe", "logs", "apply", "create", "delete", "edit", "scale",
             "rollout", "top", "config", "cluster-info", "version", "api-resources",
             "api-versions", "explain", "label", "annotate", "patch", "replace", "expose",
             "set", "cp", "port-forward", "proxy", "cordon", "uncordon", "drain", "taint",
             "auth", "diff", "kustomize", "wait", "events", "certificate", "completion",
             "autoscale"}
    if sub not in known:
        ctx.an.unsure(f"kubectl {sub} is not checked (attach, debug and plugins run "
                      "anything)")


@handler("ansible")
def _ansible(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    texts = _t(args)
    record(name, args, ctx)
    module = "command"
    margs: str | None = None
    for k, t in enumerate(texts):
        if t in ("-m", "--module-name") and k + 1 < len(texts):
            module = texts[k + 1] or "?"
        elif t in ("-a", "--args") and k + 1 < len(texts):
            margs = texts[k + 1]
            if margs is None:
                ctx.an.unsure("dynamic ansible module arguments")
                return
    if module.rsplit(".", 1)[-1] in ("command", "shell", "raw"):
        if margs is not None:
            _string(margs, ctx, f"ansible -m {module}", remote=True, stdin=Stdin("null"))
    elif module.rsplit(".", 1)[-1] in ("script", "expect", "win_shell", "win_command"):
        ctx.an.unsure(f"ansible -m {module} runs a script")
