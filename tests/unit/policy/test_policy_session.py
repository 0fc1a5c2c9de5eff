"""PolicySession: state carried between lines, programs in the foreground, held keys.

Snapshots are built by hand here (what ``LineTracker`` would see); the same paths with a
real bash under a pty are in test_policy_keys.py and, through the gateway, in
tests/e2e/test_policy_gateway_relay.py.
"""

from __future__ import annotations

import re

import pytest

from gateway.policy import Action, LineSnapshot, PolicyEngine, PolicySession, Rule, starter_rules

C = "/tmp/bastille-canary-s"
ENGINE = PolicyEngine([*starter_rules(),
                       Rule("canary", re.compile(r"^touch(?: \S+)* /tmp/bastille-canary"),
                            Action.DENY)])
U = {"user": "alice", "groups": ["ops"], "target": "web1"}


def session() -> PolicySession:
    return PolicySession(ENGINE, **U)


def run(s: PolicySession, line: str, *, prompt: str = "$ ") -> None:
    d = s.decide(LineSnapshot(text=line, prompt=prompt))
    assert d.action is Action.ALLOW, (line, d)
    s.commit(d)


def line(s: PolicySession, text: str, *, prompt: str = "$ ") -> Action:
    return s.decide(LineSnapshot(text=text, prompt=prompt)).action


def screen(s: PolicySession, bottom: str, *, cursor: str = "", on_bottom: bool = True,
           key: str = "enter") -> Action:
    snap = LineSnapshot("", alternate_screen=True, screen_bottom=bottom,
                        screen_cursor=cursor or bottom, cursor_bottom=on_bottom, key=key,
                        screen_text=bottom)
    return s.decide(snap).action


# --------------------------------------------------------------------------- shell state


def test_aliases_functions_variables_and_cwd_carry_over() -> None:
    s = session()
    run(s, "alias t=touch")
    assert line(s, f"t {C}") is Action.DENY
    run(s, "f() { touch \"$1\"; }")
    assert line(s, f"f {C}") is Action.DENY
    run(s, f"x={C}")
    assert line(s, "touch $x") is Action.DENY
    run(s, "cd /tmp")
    assert line(s, "touch bastille-canary-s") is Action.DENY
    assert line(s, "ls") is Action.ALLOW


def test_refused_lines_change_nothing() -> None:
    s = session()
    d = s.decide(LineSnapshot(text="alias ls=touch; touch " + C))
    assert d.action is Action.DENY  # not committed
    assert line(s, f"ls {C}") is Action.ALLOW


def test_state_changers_are_uncertain_and_then_followed() -> None:
    s = session()
    for text in ("PROMPT_COMMAND=id", "trap id DEBUG", "bind -x '\"\\C-t\": id'",
                 "exec 2>/dev/null", "VISUAL='sh -c id'", "complete -C id ls", "set -o posix"):
        assert line(s, text) is Action.APPROVE, text
    s.commit(s.decide(LineSnapshot(text="bind -x '\"\\C-t\": touch " + C + "'")),
             approved=True)
    # the bound key is now held, and its command is checked
    d = s.decide(LineSnapshot(text="", key="bound-exec", key_seq="\x14"))
    assert d.action is Action.DENY


def test_history_bang_bang_uses_the_session() -> None:
    s = session()
    assert line(s, "sudo !!") is Action.APPROVE  # nothing before: unknown
    run(s, "echo hello")
    assert line(s, "sudo !!") is Action.ALLOW
    s.commit(s.decide(LineSnapshot(text=f"touch {C}x")), approved=True)
    s2 = session()
    s2.commit(s2.decide(LineSnapshot(text="ls")))
    d = s2.decide(LineSnapshot(text="!!"))
    assert d.action is Action.ALLOW


def test_new_shell_forgets_what_it_cannot_follow() -> None:
    s = session()
    run(s, "alias ls=touch")
    run(s, "bash")  # a new interactive shell: the alias may or may not be there
    assert line(s, f"ls {C}") is not Action.ALLOW


# --------------------------------------------------------------------------- REPLs


def test_python_repl_lines_are_python() -> None:
    s = session()
    run(s, "python3")
    assert line(s, "print(1 + 1)", prompt=">>> ") is Action.ALLOW
    assert line(s, "import os; os.system('id')", prompt=">>> ") is Action.APPROVE
    assert line(s, "__import__('os').popen('id')", prompt=">>> ") is Action.APPROVE
    # a command visible in the code is decided as a shell line too
    assert line(s, f"import os; os.system('touch {C}')", prompt=">>> ") is Action.DENY
    assert line(s, f"import subprocess as p; p.run(['touch', '{C}'])",
                prompt=">>> ") is Action.DENY
    # a block is decided whole when it closes
    d = s.decide(LineSnapshot(text="for i in range(3):", prompt=">>> "))
    assert d.action is Action.ALLOW
    s.commit(d)
    d = s.decide(LineSnapshot(text="    import subprocess", prompt="... "))
    assert d.action is Action.APPROVE
    s.block = []
    run(s, "exit()", prompt=">>> ")
    assert line(s, f"touch {C}") is Action.DENY  # back to the shell


def test_repl_prompt_not_found_decides_both_ways() -> None:
    s = session()
    run(s, "python3")
    # the prompt does not look like python's: the line is also decided as shell
    assert line(s, f"touch {C}", prompt="weird ") is Action.DENY


def test_sql_clients() -> None:
    s = session()
    run(s, "psql")
    assert line(s, "select * from users;", prompt="postgres=# ") is Action.ALLOW
    assert line(s, f"\\! touch {C}", prompt="postgres=# ") is Action.DENY
    assert line(s, "copy t to program 'sh'", prompt="postgres=# ") is Action.APPROVE
    assert line(s, "\\o | sh", prompt="postgres=# ") is Action.APPROVE
    run(s, "\\q", prompt="postgres=# ")
    m = session()
    run(m, "mysql")
    assert line(m, f"system touch {C}", prompt="mysql> ") is Action.DENY
    assert line(m, "show databases;", prompt="mysql> ") is Action.ALLOW


def test_gdb_ftp_ed() -> None:
    s = session()
    run(s, "gdb /bin/true")
    assert line(s, "break main", prompt="(gdb) ") is Action.ALLOW
    assert line(s, f"shell touch {C}", prompt="(gdb) ") is Action.DENY
    assert line(s, "call system(\"id\")", prompt="(gdb) ") is Action.APPROVE
    f = session()
    run(f, "ftp")
    assert line(f, f"!touch {C}", prompt="ftp> ") is Action.DENY


# --------------------------------------------------------------------------- full-screen


def test_vi_command_line() -> None:
    s = session()
    run(s, "vim /etc/hosts")
    assert screen(s, f":!touch {C}") is Action.DENY
    assert screen(s, f":r !touch {C}") is Action.DENY
    assert screen(s, ":w !sh") is Action.APPROVE  # the buffer goes into sh
    assert screen(s, ":sh") is Action.APPROVE
    assert screen(s, ":%s/a/b/g") is Action.ALLOW
    assert screen(s, "-- INSERT --", cursor="some text", on_bottom=False) is Action.ALLOW
    assert screen(s, ":call system('id')") is Action.APPROVE
    # keys that run commands without Enter in normal mode are held and uncertain
    assert screen(s, "", key="vi-register") is Action.APPROVE
    assert screen(s, "-- INSERT --", key="vi-register") is Action.ALLOW


def test_pagers() -> None:
    s = session()
    run(s, "less /etc/hosts")
    assert screen(s, f"!touch {C}") is Action.DENY
    assert screen(s, "|a sh") is Action.APPROVE
    assert screen(s, ":") is Action.ALLOW
    g = session()
    run(g, "git log")  # a pager started by the program: checked the same way
    assert screen(g, f"!touch {C}") is Action.DENY
    assert screen(g, ":") is Action.ALLOW


def test_nano_and_unknown_screens() -> None:
    s = session()
    run(s, "nano notes.txt")
    assert screen(s, "", cursor=f"Command to execute: touch {C}", on_bottom=False) is (
        Action.DENY)
    u = session()
    assert screen(u, "whatever") is Action.APPROVE  # nothing known is in front


# --------------------------------------------------------------------------- echo, answers


def test_answers_to_program_questions() -> None:
    s = session()
    run(s, "ls")
    run(s, "sudo apt install jq")
    assert line(s, "y", prompt="Do you want to continue? [Y/n] ") is Action.ALLOW
    assert line(s, "Bob Smith", prompt="Full Name []: ") is Action.ALLOW
    # shell syntax or a known program is never an answer
    assert line(s, f"touch {C}", prompt="Do you want to continue? [Y/n] ") is Action.DENY
    assert line(s, "$(id)", prompt="Name: ") is Action.APPROVE
    # the shell prompt again: lines are commands
    assert line(s, "frobnicate x") is Action.APPROVE


def test_keys_that_run_without_enter() -> None:
    s = session()
    for key in ("edit-and-execute-command", "vi-macro", "completion", "unknown-binding",
                "bound-macro"):
        assert s.decide(LineSnapshot(text="echo hi", key=key)).action is Action.APPROVE
    d = s.decide(LineSnapshot(text=f"#touch {C}", key="insert-comment"))
    assert d.action is Action.DENY  # with an argument, M-# uncomments and runs
    d = s.decide(LineSnapshot(text=f"echo $(touch {C})", key="shell-expand-line"))
    assert d.action is Action.DENY
    assert s.decide(LineSnapshot(text="ls", key="re-read-init-file")).action is Action.ALLOW


def test_describe_never_shows_hidden_keys() -> None:
    s = session()
    snap = LineSnapshot(text="", echo_off=True, hidden_typed="s3cret")
    assert s.describe(snap) == "(typed without echo)"
    vi = LineSnapshot("", alternate_screen=True, screen_bottom=":!id", cursor_bottom=True)
    assert ":!id" in s.describe(vi)



LOGS = PolicyEngine([Rule("no-log-removal", re.compile(r"^rm( -\S+)* /var/log/"),
                          Action.DENY)])


def _logs_session(*lines: str) -> PolicySession:
    """Each line committed, then answered by the shell's prompt."""
    s = PolicySession(LOGS, **U)
    for line in lines:
        d = s.decide(LineSnapshot(text=line, prompt="$ "))
        s.commit(d, approved=True)
        s.feed_output(b"\r\n$ ")
    return s


def _rm(s: PolicySession) -> Action:
    return s.decide(LineSnapshot(text="rm -f syslog", prompt="$ ")).action


def test_where_a_cd_led_is_not_read_from_the_screen() -> None:
    """`cd /srv/app` may have failed, leaving the shell in /var/log. The screen cannot say:
    an earlier background job or another session writing to the same terminal can print
    a prompt before bash prints `cd: ...: No such file or directory`. So the old
    directory stays possible, and `rm -f syslog` may be /var/log/syslog."""
    assert _rm(_logs_session("cd /var/log", "cd /srv/app")) is Action.APPROVE
    assert _rm(_logs_session("cd /srv/app")) is Action.ALLOW  # ~ or /srv/app
    assert _rm(_logs_session("cd /var/log")) is Action.DENY


@pytest.mark.parametrize(("lines", "action"), [
    # the target's own file (a venv's activate, ~/.bashrc): the model keeps its directory
    ((". venv/bin/activate",), Action.ALLOW),
    (("source ~/.bashrc",), Action.ALLOW),
    # a file this session wrote may `cd` anywhere: approved, it leaves the directory open
    (("echo 'cd /var/log' > env.sh", ". ./env.sh"), Action.APPROVE),
])
def test_a_sourced_file_moves_the_shell_only_if_written_here(lines: tuple[str, ...],
                                                            action: Action) -> None:
    assert _rm(_logs_session("cd /srv/app", *lines)) is action
