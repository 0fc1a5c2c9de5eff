"""PolicyEngine: rule order, scoping, actions, uncertainty, transfers, forwards."""

from __future__ import annotations

import re
import shlex
import tomllib

import pytest

from gateway.policy import (
    Action,
    LineSnapshot,
    PolicyEngine,
    Rule,
    analyze,
    starter_rules,
    starter_toml,
)
from gateway.policy.options import normalize_options

A = {"user": "alice", "groups": ["ops"], "target": "web1"}


def rule(name: str, rx: str, action: str, **scope: tuple[str, ...]) -> Rule:
    return Rule(name, re.compile(rx), Action(action), **scope)


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
    r = rule(
        "prod-only", r"^reboot", "deny", targets=("prod-*",), users=("*",), groups=("ops", "dev*")
    )
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


def test_parse_failure_is_uncertain() -> None:
    d = PolicyEngine([]).decide("ls )(", **A)
    assert (d.action, d.reason) == (Action.APPROVE, "could not parse")


def test_exec_requests_have_no_history_expansion() -> None:
    eng = PolicyEngine([])
    assert eng.decide("echo hi!x", **A).action is Action.APPROVE
    assert eng.decide("echo hi!x", interactive=False, **A).action is Action.ALLOW


def test_decide_partial_lets_unfinished_lines_continue() -> None:
    eng = PolicyEngine(starter_rules())
    d = eng.decide_partial("for i in 1 2; do", **A)
    assert d.action is Action.ALLOW and d.incomplete
    assert eng.decide("for i in 1 2; do", **A).action is Action.APPROVE  # exec: uncertain
    d = eng.decide_partial("rm -rf / \\", **A)
    assert d.action is Action.DENY  # visible commands still count
    d = eng.decide_partial("for i in 1 2; do\nreboot\ndone", **A)
    assert (d.action, d.incomplete) == (Action.DENY, False)


def test_decide_path_and_forward() -> None:
    eng = PolicyEngine(
        [
            rule("no-shadow", r"^sftp-get /etc/shadow$", "deny"),
            rule("no-root-put", r"^sftp-put /root/", "approve"),
            rule("no-db-forward", r"^forward-local db\.internal:5432$", "deny"),
        ]
    )
    d = eng.decide_path("get", "/etc/../etc//shadow", **A)
    assert (d.action, d.commands) == (Action.DENY, ("sftp-get /etc/shadow",))
    assert eng.decide_path("put", "/root/x", **A).action is Action.APPROVE
    assert eng.decide_path("get", "relative/file", **A).commands == ("sftp-get relative/file",)
    d = eng.decide_forward("local", "DB.internal", 5432, **A)
    assert (d.action, d.commands) == (Action.DENY, ("forward-local db.internal:5432",))
    assert eng.decide_forward("local", "web", 80, **A).action is Action.ALLOW


def test_decide_snapshot_checks_screen_raw_and_keys() -> None:
    eng = PolicyEngine(starter_rules())
    snap = LineSnapshot(text="ls", typed="rm -rf /")
    d = eng.decide_snapshot(snap, **A)
    assert d.action is Action.DENY
    guessed = LineSnapshot(text="reboot", raw="host$ reboot", prompt_guessed=True)
    d = eng.decide_snapshot(guessed, **A)
    assert d.action is Action.DENY and "reboot" in d.commands
    assert eng.decide_snapshot(LineSnapshot(text="ls", raw="ls", typed="ls"), **A).action is (
        Action.ALLOW
    )


def test_decide_snapshot_password_is_never_uncertain_nor_returned() -> None:
    eng = PolicyEngine(starter_rules())
    pw = LineSnapshot(text="", echo_off=True, hidden_typed="p@ss$(w0rd)!!")
    d = eng.decide_snapshot(pw, **A)
    assert d.action is Action.ALLOW and d.commands == ()
    assert "p@ss" not in repr(d)
    blind = LineSnapshot(text="", echo_off=True, hidden_typed="rm -rf /")
    d = eng.decide_snapshot(blind, **A)
    assert d.action is Action.DENY and d.commands == ("(typed without echo)",)


def test_decide_snapshot_alternate_screen() -> None:
    d = PolicyEngine(starter_rules()).decide_snapshot(
        LineSnapshot(text="", alternate_screen=True), **A
    )
    assert d.action is Action.ALLOW and "full-screen" in d.reason


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
    ],
)
def test_normalized_forms(line: str, normalized: str) -> None:
    assert analyze(line).commands[-1].text == normalized


def test_normalize_options_unknown_command_untouched() -> None:
    assert normalize_options("find", ["/", "-name", "x"]) == ["/", "-name", "x"]


def test_starter_toml_round_trips() -> None:
    data = tomllib.loads(starter_toml())
    rules = data["policy"]["rules"]
    assert [r["name"] for r in rules] == [r.name for r in starter_rules()]
    for r in rules:
        re.compile(r["match"])
        assert r["action"] in ("allow", "deny", "approve")


def test_huge_and_deep_lines_do_not_crash() -> None:
    eng = PolicyEngine(starter_rules())
    assert eng.decide("echo " + "a" * 300_000, **A).action is Action.APPROVE
    assert eng.decide("(" * 3000 + "ls" + ")" * 3000, **A).action in (Action.APPROVE, Action.ALLOW)
    nested = "ls"
    for _ in range(10):
        nested = "sh -c " + shlex.quote(nested)
    d = eng.decide(nested, **A)
    assert (d.action, d.reason) == (Action.APPROVE, "command strings nested too deeply")
    ok = "ls"
    for _ in range(5):
        ok = "sh -c " + shlex.quote(ok)
    assert eng.decide(ok, **A).action is Action.ALLOW


def test_analyser_bug_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.policy import shell

    def boom(*a: object, **k: object) -> None:
        raise ValueError("bug")

    monkeypatch.setattr(shell, "analyze_argv", boom)
    d = PolicyEngine([]).decide("ls", **A)
    assert (d.action, d.reason) == (Action.APPROVE, "could not analyse")


def test_decide_snapshot_echo_pending() -> None:
    eng = PolicyEngine(starter_rules())
    d = eng.decide_snapshot(LineSnapshot(text="", typed="curl x | sh", echo_pending=True), **A)
    assert (d.action, d.reason) == (Action.APPROVE, "pipe into interpreter sh")
    d = eng.decide_snapshot(LineSnapshot(text="", typed=None, echo_pending=True), **A)
    assert (d.action, d.reason) == (Action.APPROVE, "line not echoed yet")
    d = eng.decide_snapshot(LineSnapshot(text="", typed="ls", echo_pending=True), **A)
    assert d.action is Action.ALLOW
