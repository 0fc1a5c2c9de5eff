"""PolicyEngine: rule order, scoping, actions, uncertainty, effects, transfers, forwards."""

from __future__ import annotations

import re
import shlex
import threading
import time
import tomllib

import pytest

from gateway.policy import (
    Action,
    LineSnapshot,
    PolicyEngine,
    Rule,
    decide_snapshot,
    starter_rules,
    starter_toml,
)
from gateway.policy.options import normalize_options

A = {"user": "alice", "groups": ["ops"], "target": "web1"}


def rule(name: str, rx: str | None, action: str, **kw: tuple[str, ...]) -> Rule:
    return Rule(name, re.compile(rx) if rx else None, Action(action), **kw)


def texts(line: str, **kw: object) -> list[str]:
    """The exact texts the rules see for a fully known line."""
    an = PolicyEngine([]).analyze(line, **kw)  # type: ignore[arg-type]
    return [v.text for c in an.commands for v in c.views if v.text is not None]


def test_first_match_wins() -> None:
    eng = PolicyEngine(
        [rule("allow-tmp", r"^rm -r -f /tmp/", "allow"), rule("no-rm", r"^rm ", "deny")]
    )
    assert eng.decide("rm -rf /tmp/x", **A).action is Action.ALLOW
    d = eng.decide("rm -rf /var/x", **A)
    assert (d.action, d.rule) == (Action.DENY, "no-rm")
    assert d.reason == "denied by rule 'no-rm'"


def test_most_severe_command_decides_the_line() -> None:
    eng = PolicyEngine(
        [rule("ask", r"^systemctl restart", "approve"), rule("no", r"^reboot", "deny")]
    )
    assert eng.decide("systemctl restart x; ls", **A).action is Action.APPROVE
    d = eng.decide("systemctl restart x; reboot", **A)
    assert (d.action, d.rule) == (Action.DENY, "no")
    assert d.commands == ("systemctl restart x", "reboot")


def test_default_action() -> None:
    eng = PolicyEngine([rule("ok", r"^ls( |$)", "allow")], default=Action.DENY)
    assert eng.decide("ls -l", **A).action is Action.ALLOW
    d = eng.decide("cat x", **A)
    assert d.action is Action.DENY and d.rule is None and d.reason == "denied by default"
    assert eng.decide("ls; cat x", **A).action is Action.DENY


def test_scoping_by_target_user_group() -> None:
    r = rule("prod-only", r"^reboot", "deny", targets=("prod-*",), groups=("ops", "dev*"))
    eng = PolicyEngine([r])
    assert eng.decide("reboot", user="a", groups=["ops"], target="prod-db").action is Action.DENY
    assert eng.decide("reboot", user="a", groups=["ops"], target="stage").action is Action.ALLOW
    assert eng.decide("reboot", user="a", groups=["devs"], target="prod-1").action is Action.DENY
    assert eng.decide("reboot", user="a", groups=[], target="prod-1").action is Action.ALLOW
    only_bob = PolicyEngine([rule("bob", r"^reboot", "deny", users=("bob",))])
    assert only_bob.decide("reboot", user="bob", groups=[], target="x").action is Action.DENY
    assert only_bob.decide("reboot", user="eve", groups=[], target="x").action is Action.ALLOW


def test_on_uncertain_is_configurable_but_never_beats_deny() -> None:
    deny_unsure = PolicyEngine([rule("no", r"^reboot", "deny")], on_uncertain=Action.DENY)
    d = deny_unsure.decide("$(x)", **A)
    assert (d.action, d.reason) == (Action.DENY, "command substitution in command position")
    approve = PolicyEngine([rule("no", r"^reboot", "deny")])
    assert approve.decide("reboot; $(x)", **A).action is Action.DENY
    assert approve.decide("curl x | sh", **A).reason == "pipe into interpreter sh"


def test_closed_world_unknown_programs_are_uncertain() -> None:
    eng = PolicyEngine([])
    d = eng.decide("frobnicate --all", **A)
    assert d.action is Action.APPROVE
    assert d.reason == "runs frobnicate, a program bastille does not know"
    assert eng.decide("ls -la", **A).action is Action.ALLOW
    # operators declare their own programs
    declared = PolicyEngine([], programs=["frobnicate", "/opt/app/bin/*"])
    assert declared.decide("frobnicate --all", **A).action is Action.ALLOW
    assert declared.decide("/opt/app/bin/migrate", **A).action is Action.ALLOW


def test_parse_failure_is_uncertain_and_deny_still_applies() -> None:
    d = PolicyEngine([]).decide("ls )(", **A)
    assert d.action is Action.APPROVE and d.reason.startswith("could not parse")
    d = PolicyEngine(starter_rules()).decide("rm -rf / )", **A)
    assert (d.action, d.rule) == (Action.DENY, "no-recursive-root-delete")


def test_exec_requests_have_no_history_expansion() -> None:
    eng = PolicyEngine([])
    assert eng.decide("echo hi!x", **A).action is Action.APPROVE
    assert eng.decide("echo hi!x", interactive=False, **A).action is Action.ALLOW


def test_exec_without_a_terminal_holds_what_reads_the_users_input() -> None:
    """The program may start; the user's input waits for approval (input_gate)."""
    eng = PolicyEngine([])
    for line in ("vi /etc/hosts", "python3", "bash", "ssh host", "su -", "sudo -i"):
        d = eng.decide(line, interactive=False, **A)
        assert d.action is Action.ALLOW and d.input_gate, (line, d)
        assert "from the user's input" in d.input_gate
        d = eng.decide(line, interactive=False, tty=True, **A)
        assert d.action is Action.ALLOW and d.input_gate is None, line
    # pagers whose output is not a terminal copy like cat and read no keys
    for line in ("less /etc/hosts", "man ls", "more /etc/fstab", "zcat x.gz | less"):
        d = eng.decide(line, interactive=False, **A)
        assert d.action is Action.ALLOW and d.input_gate is None, line
    d = eng.decide("most /etc/hosts", interactive=False, **A)
    assert d.action is Action.ALLOW and d.input_gate
    # input that is not the user's: decided as before (no gate to hold it at)
    assert eng.decide("vi /etc/hosts < /dev/null", interactive=False,
                      **A).action is Action.APPROVE
    # held for another reason too: one approval at the start, and the approver sees both
    d = eng.decide("bash; $(cat x)", interactive=False, **A)
    assert d.action is Action.APPROVE and d.input_gate is None
    assert any("from the user's input" in u for u in d.uncertain), d
    # a rule still decides the command itself
    deny = PolicyEngine([Rule("no-su", re.compile("^su\\b"), Action.DENY)])
    assert deny.decide("su -", interactive=False, **A).action is Action.DENY


def test_decide_partial_lets_unfinished_lines_continue() -> None:
    eng = PolicyEngine(starter_rules())
    d = eng.decide_partial("for i in 1 2; do", **A)
    assert d.action is Action.ALLOW and d.incomplete
    assert eng.decide("for i in 1 2; do", interactive=False, **A).action is Action.APPROVE
    d = eng.decide_partial("for i in 1 2; do\nreboot\ndone", **A)
    assert (d.action, d.incomplete) == (Action.DENY, False)


def test_effect_rules_see_every_writer() -> None:
    eng = PolicyEngine([rule("etc", None, "deny", writes=("/etc/**",)),
                        rule("pg", None, "approve", deletes=("/var/lib/postgresql/**",))])
    for line in ("echo x > /etc/motd", "tee -a /etc/hosts < x", "cp x /etc/", "cd /etc && touch x",
                 "dd if=x of=/etc/x", "sed -i s/a/b/ /etc/hosts", "install x /etc/y",
                 "truncate -s0 /etc/x", "ln -s x /etc/y", "mkdir /etc/new", "chmod 600 /etc/x",
                 "touch /proc/self/root/etc/x", "cd /; cd etc; echo > x"):
        d = eng.decide(line, **A)
        assert (d.action, d.rule) == (Action.DENY, "etc"), (line, d)
    assert eng.decide("rm -rf /var/lib/postgresql/14", **A).rule == "pg"
    assert eng.decide("echo x > /tmp/motd", **A).action is Action.ALLOW
    d = eng.decide("echo x > $F", **A)  # where it goes is not known
    assert d.action is Action.APPROVE and "may match rule 'etc'" in d.reason


def test_home_paths_are_not_under_system_dirs() -> None:
    etc = PolicyEngine([rule("etc", None, "deny", writes=("/etc/**",))])
    assert etc.decide("touch ~/notes", **A).action is Action.ALLOW
    # a service account's home may be under /var/lib: the rule may match
    pg = PolicyEngine([rule("pg", None, "approve", writes=("/var/lib/postgresql/**",))])
    d = pg.decide("touch ~/notes", **A)
    assert d.action is Action.APPROVE and "may match rule 'pg'" in d.reason
    assert pg.decide("touch ~/notes", **A).rule is None


def test_decide_path_and_forward() -> None:
    eng = PolicyEngine(
        [
            rule("no-shadow", r"^sftp-get /etc/shadow$", "deny"),
            rule("no-root-put", r"^sftp-put /root/", "approve"),
            rule("no-db-forward", r"^forward-local db\.internal:5432$", "deny"),
            rule("no-etc-writes", None, "deny", writes=("/etc/**",)),
        ]
    )
    d = eng.decide_path("get", "/etc/../etc//shadow", **A)
    assert (d.action, d.commands) == (Action.DENY, ("sftp-get /etc/shadow",))
    assert eng.decide_path("put", "/root/x", **A).action is Action.APPROVE
    assert eng.decide_path("get", "relative/file", **A).commands == ("sftp-get relative/file",)
    assert eng.decide_path("put", "/etc/cron.d/x", **A).rule == "no-etc-writes"
    d = eng.decide_forward("local", "DB.internal", 5432, **A)
    assert (d.action, d.commands) == (Action.DENY, ("forward-local db.internal:5432",))
    assert eng.decide_forward("local", "web", 80, **A).action is Action.ALLOW


def test_decide_snapshot_checks_screen_raw_and_keys() -> None:
    eng = PolicyEngine(starter_rules())
    d = decide_snapshot(eng, LineSnapshot(text="ls", typed="rm -rf /"), **A)
    assert d.action is Action.DENY
    guessed = LineSnapshot(text="reboot", raw="host$ reboot", prompt_guessed=True)
    d = decide_snapshot(eng, guessed, **A)
    assert d.action is Action.DENY and "reboot" in d.commands
    assert decide_snapshot(eng, LineSnapshot(text="ls", raw="ls", typed="ls"), **A).action is (
        Action.ALLOW
    )


def test_echo_off_is_uncertain_unless_a_password_prompt_follows_a_password_program() -> None:
    from gateway.policy import PolicySession

    eng = PolicyEngine(starter_rules())
    s = PolicySession(eng, **A)
    blind = LineSnapshot(text="", echo_off=True, hidden_typed="ls")
    d = s.decide(blind)
    assert d.action is Action.APPROVE and "typed without echo" in d.reason
    d = s.decide(LineSnapshot(text="", echo_off=True, hidden_typed="rm -rf /"))
    assert d.action is Action.DENY and d.commands == ("(typed without echo)",)
    # a password prompt right after sudo: the keys are a password
    s.commit(s.decide(LineSnapshot(text="sudo ls")))
    pw = LineSnapshot(text="", prompt="[sudo] password for alice: ", echo_off=True,
                      hidden_typed="p@ss$(w0rd)!!")
    d = s.decide(pw)
    assert d.action is Action.ALLOW and d.commands == ()
    assert "p@ss" not in repr(d)
    # the same prompt after a program that asks for no password: uncertain
    s2 = PolicySession(eng, **A)
    s2.commit(s2.decide(LineSnapshot(text="ls")))
    assert s2.decide(pw).action is Action.APPROVE


def test_decide_snapshot_echo_pending() -> None:
    """No echo came even after the relay waited: the keys alone never allow a line."""
    eng = PolicyEngine(starter_rules())
    d = decide_snapshot(eng, LineSnapshot(text="", typed="rm -rf /", echo_pending=True), **A)
    assert (d.action, d.rule) == (Action.DENY, "no-recursive-root-delete")
    d = decide_snapshot(eng, LineSnapshot(text="", typed=None, echo_pending=True), **A)
    assert (d.action, d.reason) == (Action.APPROVE, "line not echoed yet")
    d = decide_snapshot(eng, LineSnapshot(text="", typed="ls", echo_pending=True), **A)
    assert d.action is Action.APPROVE and "not echoed" in d.reason


@pytest.mark.parametrize(
    ("line", "normalized"),
    [
        ("rm -rf /", "rm -r -f /"),
        ("rm --force --recursive /", "rm -r -f /"),
        ("/usr/bin/../bin/rm -fv x", "rm -f -v x"),
        ("r''m \"-r\" $'-\\x66' /", "rm -r -f /"),
        ("sudo -u root nice -n 5 chmod --recursive 777 /srv//www/", "chmod -R 777 /srv/www"),
        ("kill -9 1", "kill -9 1"),
        ("kill -s TERM 1", "kill -s TERM 1"),
        ("chmod -x file", "chmod -x file"),
        ("rm -- -weird", "rm -- -weird"),
        ("systemctl stop --now nginx", "systemctl --now stop nginx"),
        ("dd if=/dev/zero of=/dev/../dev/sda", "dd if=/dev/zero of=/dev/sda"),
        ("echo hi >> /var/log/../x", "echo hi >> /var/x"),
        ("tar -xzf a.tgz", "tar -xzf a.tgz"),
        ("export A=1", "export A=1"),
        ("touch /proc/self/root/etc/x", "touch /etc/x"),
        ("cd /etc && cat shadow", "cat /etc/shadow"),
        ("x=/etc; cat $x/shadow", "cat /etc/shadow"),
        ("tou\\\nch f", "touch f"),
    ],
)
def test_normalized_forms(line: str, normalized: str) -> None:
    assert normalized in texts(line)


def test_normalize_options_unknown_command_untouched() -> None:
    assert normalize_options("find", ["/", "-name", "x"]) == ["/", "-name", "x"]


def test_starter_toml_round_trips() -> None:
    data = tomllib.loads(starter_toml())
    rules = data["policy"]["rules"]
    assert [r["name"] for r in rules] == [r.name for r in starter_rules()]
    for r in rules:
        re.compile(r["match"])
        assert r["action"] in ("allow", "deny", "approve")
    disks = next(r for r in rules if r["name"] == "no-raw-disk-write")
    assert "/dev/sd*" in disks["writes"]


def test_huge_and_deep_lines_do_not_crash() -> None:
    eng = PolicyEngine(starter_rules())
    assert eng.decide("echo " + "a" * 300_000, **A).action is Action.APPROVE
    assert eng.decide("(" * 3000 + "ls" + ")" * 3000, **A).action is Action.APPROVE
    d = eng.decide("eval " * 20 + "ls", **A)
    assert (d.action, d.reason) == (Action.APPROVE, "commands nested too deeply")
    ok = "ls"
    for _ in range(5):
        ok = "sh -c " + shlex.quote(ok)
    assert eng.decide(ok, **A).action is Action.ALLOW


def test_analyser_bug_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.policy import analyze

    def boom(*a: object, **k: object) -> None:
        raise ValueError("bug")

    monkeypatch.setattr(analyze.Analyzer, "simple", boom)
    d = PolicyEngine([]).decide("ls", **A)
    assert (d.action, d.reason) == (Action.APPROVE, "could not analyse")


def test_an_unknown_working_directory_is_absolute() -> None:
    """After ``cd ..`` from the (unknown) home directory, relative operands are absolute
    paths under an unknown directory: they are no option and no rule's word, and a rule
    that matches with the directory "/" is uncertain, not certain."""
    eng = PolicyEngine(starter_rules())

    def after(setup: str, line: str) -> Action:
        st = eng.decide(setup, **A).state
        return eng.decide(line, state=st, **A).action

    assert after("cd ..", "sudo systemctl reload nginx") is Action.ALLOW
    assert after("cd ..", "ls -la") is Action.ALLOW
    assert after("cd ..", "rm -rf bin") is Action.APPROVE  # /bin if the directory is /
    assert after("cd $x", "rm -rf *") is Action.APPROVE
    assert after("cd /", "rm -rf etc") is Action.DENY


def test_monster_lines_are_uncertain_not_analysed_forever() -> None:
    """Analysis is bounded (commands, bytes, CPU time): past the bound the line is
    uncertain (bench/policy_hotpath.py times the worst cases)."""
    eng = PolicyEngine(starter_rules())
    for line in ("echo a; " * 4000, "x" * 40000, "\n".join(f"echo {i}" for i in range(3000))):
        d = eng.decide(line, **A)
        assert d.action is Action.APPROVE and "too long" in d.reason, d.reason
    d = eng.decide("echo a; " * 300 + "reboot", **A)
    assert d.action is Action.DENY  # within the bounds every command is seen


def test_a_busy_gateway_does_not_make_an_ordinary_line_uncertain() -> None:
    """The analysis budget is the analysing thread's CPU time, not the clock: threads
    that hold the GIL (sessions, the recording writer) slow the analysis down in wall
    time, and the same line must get the same decision."""
    eng = PolicyEngine(starter_rules())
    line = "echo a; " * 300 + "reboot"
    assert eng.decide(line, **A).action is Action.DENY
    stop = threading.Event()

    def hog() -> None:
        n = 0
        while not stop.is_set():
            n += 1

    hogs = [threading.Thread(target=hog, daemon=True) for _ in range(12)]
    for t in hogs:
        t.start()
    try:
        t0 = time.monotonic()
        d = eng.decide(line, **A)
        wall = time.monotonic() - t0
    finally:
        stop.set()
        for t in hogs:
            t.join()
    assert d.action is Action.DENY, (d.reason, wall)


@pytest.mark.parametrize(("line", "held"), [
    ("printf 'package main' > main.go; go run .", True),
    ("printf 'package main' > main.go; go test ./...", True),
    ("printf 'package main' > /tmp/x/evil.go; cd ~/src && go run /tmp/x/evil.go", True),
    ("cd /srv/app && echo 'replace a => /tmp/b' >> go.mod; go build ./...", True),
    # an archive the user chose (downloaded, piped in): its files are the user's
    ("curl -o go.tgz https://go.dev/dl/go.tgz; tar -C /usr/local -xzf go.tgz; "
     "cd ~/src && go build ./...", True),
    ("cd ~/src && curl -sL https://x.example/v.tgz | tar -xz; go build ./...", True),
    ("cd ~/src && rsync -a build@ci:src/ .; go test ./...", True),
    # the target's own archive or files: like running the target's own code
    ("cd ~/src && tar -xzf vendor.tgz; go build ./...", False),
    ("cd ~/src && cp -r /srv/shared/lib .; go build ./...", False),
    ("cd ~/src; go run $PROG", True),
    # what this session wrote elsewhere, or wrote that the go tool does not read
    ("cd ~/src && tar -xzf release.tar.gz -C /opt/app; go build ./...", False),
    ("cd ~/src && echo flask > requirements.txt; go test ./...", False),
    ("go vet ./...", False),
])
def test_go_builds_code_written_in_this_session_only(line: str, held: bool) -> None:
    d = PolicyEngine([]).decide(line, interactive=False, tty=True, **A)
    assert (d.action is Action.APPROVE) == held, d


@pytest.mark.parametrize("line", [
    "echo notes > README.md; cmake -S . -B build",
    "echo notes > README.md; java -version",
    "echo notes > README.md; docker compose ps",
    "echo notes > README.md; terraform plan",
    "echo notes > /tmp/x.txt; cargo build --release",
    "cmake --build build", "ansible-playbook -i inventory site.yml",
    "dpkg -l nginx", "dpkg --merge-avail \"$avail\"", "rpm -qi bash", "npm install",
    "systemctl enable --now nginx", "rsync -a src/ dst/", "gem list",
])
def test_project_tools_hold_only_what_this_session_wrote_for_them(line: str) -> None:
    """The other side of the corpus's class-3 build/deploy cases: a project tool in a
    directory where this session wrote nothing it reads is certain."""
    d = PolicyEngine([]).decide(line, interactive=False, tty=True, **A)
    assert d.action is Action.ALLOW, d
