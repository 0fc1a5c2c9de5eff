"""One test per catalogue entry: what bastille claims to know about each program and
builtin holds (catalogue.toml).

* plain programs: their argv is data: ``NAME --help`` is certain;
* every ``exec`` option and ``exec_subcommand``: uncertain (or analysed and denied);
* wrappers and shells: the wrapped command is analysed (the canary is denied);
* interpreters: dangerous inline code is never allowed; a bare interpreter is a REPL
  in a terminal and uncertain where its input is the user's data;
* REPLs and full-screen programs: the foreground in a terminal, uncertain without one;
* opaque programs: always uncertain;
* special handlers and builtins: a sample each.
"""

from __future__ import annotations

import re

import pytest

from gateway.policy import Action, Decision, PolicyEngine, Rule, starter_rules
from gateway.policy.catalogue import load
from gateway.policy.programs import CAT_WITHOUT_TERMINAL

CAT = load()
CANARY = "/tmp/bastille-canary-cat"
ENGINE = PolicyEngine([*starter_rules(),
                       Rule("canary", re.compile(r"^touch(?: \S+)* /tmp/bastille-canary"),
                            Action.DENY)])
U = {"user": "alice", "groups": ["ops"], "target": "web1"}


def decide(line: str, *, mode: str = "interactive") -> object:
    if mode == "exec":
        return ENGINE.decide(line, interactive=False, **U)
    return ENGINE.decide(line, **U)


def held(d: object) -> bool:
    """Not simply allowed: denied, for approval, or run with the user's input held for
    approval (an exec without a terminal whose program reads that input unchecked:
    ``Decision.input_gate``; the gateway's GatedExecPipe, tests/e2e/test_policy.py)."""
    assert isinstance(d, Decision)
    return d.action is not Action.ALLOW or d.input_gate is not None


def _by(kind: str) -> list[str]:
    return sorted(n for n, p in CAT.programs.items() if p.kind == kind)


PLAIN = sorted(n for n, p in CAT.programs.items()
               if p.kind == "plain" and not p.exec and not p.exec_subcommands)


NO_RULES = PolicyEngine([])
UNCONDITIONAL_WRITES = ("cwd", "unknown", "system")


@pytest.mark.parametrize("name", PLAIN)
def test_plain_program_is_certain(name: str) -> None:
    """Nothing about the program itself makes the line uncertain (no rule involved)."""
    d = NO_RULES.decide(f"{name} --help", **U)
    p = CAT.programs[name]
    if any(w.split("|")[0].split(":")[0] in UNCONDITIONAL_WRITES and "|" not in w
           for w in p.writes):
        an = NO_RULES.analyze(f"{name} x")
        assert any(c.effects for c in an.commands), name  # its writes are recorded
        return
    assert d.action is Action.ALLOW, d


def _exec_cases() -> list[tuple[str, str]]:
    out = []
    for name, p in sorted(CAT.programs.items()):
        for o in p.exec:
            if o.startswith("--"):
                out.append((name, f"{name} {o}=x y"))
            elif o.startswith("-"):
                out.append((name, f"{name} {o} x y"))
            else:
                out.append((name, f"{name} {o} x"))
        for sub in p.exec_subcommands:
            out.append((name, f"{name} {sub} x"))
    return out


@pytest.mark.parametrize(("name", "line"), _exec_cases(), ids=[c[1] for c in _exec_cases()])
def test_exec_option_is_never_allowed(name: str, line: str) -> None:
    d = decide(line)
    assert d.action is not Action.ALLOW, (line, d)  # type: ignore[attr-defined]


WRAPPER_FILL = {"timeout": "5", "faketime": "now", "logsave": "/dev/null", "lckdo": "/tmp/l"}


@pytest.mark.parametrize("name", _by("wrapper"))
def test_wrapper_runs_the_checked_command(name: str) -> None:
    p = CAT.programs[name]
    fill = " ".join([WRAPPER_FILL.get(name, "1")] * p.positionals)
    line = f"{name} {fill} touch {CANARY}".replace("  ", " ")
    d = decide(line)
    assert d.action is Action.DENY, (line, d)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", _by("shell"))
def test_shell_command_string_is_checked(name: str) -> None:
    d = decide(f"{name} -c 'touch {CANARY}'")
    assert d.action is Action.DENY, d  # type: ignore[attr-defined]
    assert held(decide(f"{name}", mode="exec"))


DANGEROUS = {
    "python": "__import__('os').system('id')",
    "perl": "system('id')",
    "ruby": "system('id')",
    "node": "require('child_process').execSync('id')",
    "php": "system('id');",
    "lua": "os.execute('id')",
    "tcl": "exec id",
    "mongo": "runProgram('id')",
    "opaque": "anything",
}


@pytest.mark.parametrize("name", _by("interp"))
def test_interpreter_code_and_repl(name: str) -> None:
    p = CAT.programs[name]
    payload = DANGEROUS.get(p.lang, "x")
    for opt in p.code:
        line = f'{name} {opt} "{payload}"'
        d = decide(line)
        assert d.action is not Action.ALLOW, (line, d)  # type: ignore[attr-defined]
    # bare: a REPL in a terminal (its lines are checked); on an exec, its input is held
    assert held(decide(name, mode="exec"))
    d = decide(name)
    assert d.action is Action.ALLOW and any(  # type: ignore[attr-defined]
        s.kind == "repl" for s in d.starts), d  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", _by("repl"))
def test_repl_program(name: str) -> None:
    assert held(decide(name, mode="exec"))
    d = decide(name)
    assert any(s.kind == "repl" for s in d.starts), d  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", _by("screen"))
def test_full_screen_program(name: str) -> None:
    p = CAT.programs[name]
    d = decide(name)
    assert any(s.kind == "screen" for s in d.starts), d  # type: ignore[attr-defined]
    e = decide(name, mode="exec")  # no terminal: its keys would come from unchecked input
    copies = p.lang == "harmless" or name in CAT_WITHOUT_TERMINAL  # pagers copy like cat
    assert (not held(e)) == copies, e


@pytest.mark.parametrize("name", _by("opaque"))
def test_opaque_program_is_uncertain(name: str) -> None:
    d = decide(f"{name} x")
    assert d.action is not Action.ALLOW, d  # type: ignore[attr-defined]


# handler -> (line template, expected): "deny" (the canary is seen), "block" (not allowed)
SPECIAL = {
    "ln": ("{n} -s /tmp x; touch x/bastille-canary-s", "deny"),
    "mode": ("{n} -R x /", "block"),
    "sed": ("{n} 'e touch " + CANARY + "' /etc/hostname", "deny"),
    "awk": ("{n} 'BEGIN{{system(\"id\")}}'", "block"),
    "tar": ("{n} -cf /dev/null x --checkpoint-action=exec=id", "block"),
    "rsync": ("{n} -e 'sh -c \"touch " + CANARY + "\"' a b:", "deny"),
    "ssh_opts": ("{n} -o ProxyCommand=id a b:", "block"),
    "ssh": ("{n} host touch " + CANARY, "deny"),
    "socat": ("{n} - SYSTEM:'touch " + CANARY + "'", "deny"),
    "sudo": ("{n} touch " + CANARY, "deny"),
    "su": ("{n} -c 'touch " + CANARY + "'", "deny"),
    "sg": ("{n} grp -c 'touch " + CANARY + "'", "deny"),
    "env": ("{n} touch " + CANARY, "deny"),
    "taskset": ("{n} 1 touch " + CANARY, "deny"),
    "setarch": ("{n} x86_64 touch " + CANARY, "deny"),
    "flock": ("{n} /tmp -c 'touch " + CANARY + "'", "deny"),
    "xargs": ("echo x | {n} touch", "block"),
    "watch": ("{n} 'touch " + CANARY + "'", "deny"),
    "strace": ("{n} -o /dev/null touch " + CANARY, "deny"),
    "perf": ("{n} stat -- touch " + CANARY, "deny"),
    "cpulimit": ("{n} -l 5 touch " + CANARY, "deny"),
    "busybox": ("{n} touch " + CANARY, "deny"),
    "capsh": ("{n} -- -c 'touch " + CANARY + "'", "deny"),
    "vi": ("{n} -c '!touch " + CANARY + "'", "deny"),
    "visudo": ("{n}", "block"),
    "pager": ("{n} '+!id' x", "block"),
    "man": ("{n} -P 'sh -c id' ls", "block"),
    "tmux": ("{n} new -d 'touch " + CANARY + "'", "deny"),
    "screen": ("{n} -dm touch " + CANARY, "deny"),
    "script": ("{n} -c 'touch " + CANARY + "' /dev/null", "deny"),
    "systemctl": ("{n} edit nginx", "block"),
    "service": ("{n} ../../bin/sh", "block"),
    "apt": ("{n} -o APT::Update::Pre-Invoke::=id update", "block"),
    "crontab": ("{n} x", "block"),
    "sqlclient": ("{n} -e 'system touch " + CANARY + "'", "block"),
    "redis": ("{n} config set dir /root/.ssh", "block"),
    "gdb": ("{n} -batch -ex 'shell touch " + CANARY + "'", "deny"),
    "git": ("{n} -c alias.x='!id' x", "block"),
    "make": ("{n} --eval='x:;id' x", "block"),
    "go": ("{n} generate ./...", "block"),
    "npm": ("{n} exec id", "block"),
    "pip": ("x > setup.py; {n} install .", "block"),
    "container": ("{n} run --rm alpine touch " + CANARY, "deny"),
    "kubectl": ("{n} exec pod -- touch " + CANARY, "deny"),
    "ansible": ("{n} all -m shell -a 'touch " + CANARY + "'", "deny"),
    "find": ("{n} / -exec touch " + CANARY + " \\;", "deny"),
    "ip": ("{n} netns exec x touch " + CANARY, "deny"),
    "sysctl": ("{n} -w kernel.core_pattern='|/tmp/x'", "block"),
    "stty": ("{n} -echo", "block"),
    "at": ("{n} now", "block"),
    "chroot": ("{n} /tmp id", "block"),
    "loader": ("x > m.ko; {n} m.ko", "block"),
}


OVERRIDE = {  # programs whose handler sample does not fit their own syntax
    "psql": ("psql -c '\\! touch " + CANARY + "'", "deny"),
    "mysql": ("mysql -e 'system touch " + CANARY + "'", "deny"),
    "mariadb": ("mariadb -e 'system touch " + CANARY + "'", "deny"),
    "sqlite3": ("sqlite3 x '.shell touch " + CANARY + "'", "deny"),
}


def _special() -> list[tuple[str, str, str]]:
    out = []
    for n, p in sorted(CAT.programs.items()):
        if p.kind != "special":
            continue
        line, expect = OVERRIDE.get(n) or (SPECIAL[p.handler][0].format(n=n),
                                           SPECIAL[p.handler][1])
        out.append((n, line, expect))
    return out


@pytest.mark.parametrize(("name", "line", "expect"), _special(), ids=[c[1] for c in _special()])
def test_special_handler(name: str, line: str, expect: str) -> None:
    d = decide(line)
    if expect == "deny":
        assert d.action is Action.DENY, (line, d)  # type: ignore[attr-defined]
    else:
        assert d.action is not Action.ALLOW, (line, d)  # type: ignore[attr-defined]


def test_every_special_handler_has_a_sample() -> None:
    handlers = {p.handler for p in CAT.programs.values() if p.kind == "special"}
    assert handlers <= set(SPECIAL), handlers - set(SPECIAL)


def test_sql_clients_shell_escapes() -> None:
    assert decide(f"psql -c '\\! touch {CANARY}'").action is Action.DENY  # type: ignore[attr-defined]
    assert decide(f"mysql -e 'system touch {CANARY}'").action is Action.DENY  # type: ignore[attr-defined]
    assert decide(f"sqlite3 x '.shell touch {CANARY}'").action is Action.DENY  # type: ignore[attr-defined]
    assert decide("psql -c 'select 1'").action is Action.ALLOW  # type: ignore[attr-defined]
    for line in ("psql -f", "psql -d db -f", "psql --file=x.sql"):  # read, not a crash
        assert "could not analyse" not in decide(line).reason, line  # type: ignore[attr-defined]


BUILTIN = {
    "plain": ("{n}", "allow"),
    "exit": ("{n}", "allow"),
    "printf": ("{n} -v 'a[$(touch " + CANARY + ")]' x", "deny"),
    "test": ("{n} -v 'a[$(touch " + CANARY + ")]'", "deny"),
    "wait": ("{n} -p 'a[$(touch " + CANARY + ")]'", "deny"),
    "getopts": ("{n} ab 'a[$(touch " + CANARY + ")]'", "deny"),
    "cd": ("{n} /tmp; touch bastille-canary-b", "deny"),
    "pushd": ("{n} /tmp; touch bastille-canary-b", "deny"),
    "popd": ("pushd /var; pushd /tmp; {n}; touch bastille-canary-b", "block"),
    "eval": ("{n} touch " + CANARY, "deny"),
    "source": ("echo x > s; {n} s", "block"),
    "exec": ("{n} 2>/dev/null", "block"),
    "command": ("{n} touch " + CANARY, "deny"),
    "builtin": ("{n} eval touch " + CANARY, "deny"),
    "trap": ("{n} id EXIT", "block"),
    "bind": ("{n} -x '\"\\C-t\": id'", "block"),
    "alias": ("{n} x='touch " + CANARY + "'", "deny"),
    "unalias": ("{n} -a", "allow"),
    "set": ("{n} -o posix", "block"),
    "shopt": ("{n} -s extdebug", "block"),
    "opaque": ("{n} -f /tmp/x.so x", "block"),
    "hash": ("{n} -p /tmp/x ls", "block"),
    "complete": ("{n} -C id ls", "block"),
    "compgen": ("{n} -C id x", "block"),
    "read": ("{n} 'a[$(touch " + CANARY + ")]' < /dev/null", "deny"),
    "mapfile": ("{n} -C id x < /dev/null", "block"),
    "declare": ("{n} 'a[$(touch " + CANARY + ")]=1'", "deny"),
    "unset": ("{n} -f ls; ls", "allow"),
    "let": ("{n} 'a[$(touch " + CANARY + ")]=1'", "deny"),
    "fc": ("{n} -s", "block"),
    "history": ("{n} -p '!!'", "block"),
}


@pytest.mark.parametrize("name", sorted(CAT.builtins))
def test_builtin(name: str) -> None:
    template, expect = BUILTIN[CAT.builtins[name]]
    line = template.format(n=name)
    d = decide(line)
    if expect == "allow":
        assert d.action is Action.ALLOW, (line, d)  # type: ignore[attr-defined]
    elif expect == "deny":
        assert d.action is Action.DENY, (line, d)  # type: ignore[attr-defined]
    else:
        assert d.action is not Action.ALLOW, (line, d)  # type: ignore[attr-defined]


def test_catalogue_is_well_formed() -> None:
    for name, p in CAT.programs.items():
        assert name and " " not in name, name
        for spec in (*p.writes, *p.deletes):
            kind = spec.split("|")[0].split(":")[0]
            assert kind in ("operands", "operands-but-first", "all-but-last", "last",
                            "target-dir", "first", "first-if", "nth", "opt", "prefix-opt",
                            "kv", "cwd", "cwd-if", "dir-opt", "ext", "strip-ext", "path",
                            "unknown", "unknown-if", "operands-unless", "operands-if",
                            "system", "url-name"), (name, spec)
    assert len(CAT.programs) >= 400 and len(CAT.autorun) >= 50
