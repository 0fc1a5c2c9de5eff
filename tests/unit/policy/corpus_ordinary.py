"""The ordinary-commands corpus of issue #15 (``ordinary_commands.txt``) and the lines
the starter policy holds on purpose, with why (docs/policy.md "False holds").

Sources: man-page EXAMPLES sections (Debian), the first policy's admin history, public
cheat sheets. One command per line; "⏎" joins the lines of a multi-line command;
"## " lines are section comments.
"""

from __future__ import annotations

from pathlib import Path

ORDINARY = [line.replace("⏎", "\n") for line in (
    Path(__file__).with_name("ordinary_commands.txt").read_text("utf-8").splitlines())
    if line.strip() and not line.startswith("## ")]

# Held on purpose, with why (docs/policy.md "False holds"):
EXPECTED_HOLDS = {
    "crontab -e": "installs commands that run later",
    "nano ~/.bashrc": "edits a shell start-up file (runs at the next login)",
    'echo "export LANG=fi_SE.UTF-8" >> $HOME/.bashrc': "writes a shell start-up file",
    'echo "export LOCPATH=\\$HOME/.locale" >> $HOME/.bashrc': "writes a shell start-up file",
    "find /tmp -name core -type f -print | xargs /bin/rm -f":
        "file names become rm options (-print without -0)",
    "find /tmp -name core -type f -print0 | xargs -0 /bin/rm -f":
        "a path under /tmp may be a .bash_history (rule approve-history-wipe)",
    "zip stuff *": "a file name may be a zip option that runs a command (-TT)",
    "zip stuff .* *": "idem",
    "git rebase -i HEAD~3": "the edited todo list may hold exec lines",
}


# Typed one after the other in one session (the corpus is not one admin's session: it
# goes from directory to directory), these are held as well, with why:
LONG_SESSION_HOLDS = {
    # `cd ..` from the home directory leads to an unknown directory (the home may be
    # anywhere: for root, `cd ~/..; rm -rf etc` is /etc); every later `cd` may have
    # failed (bastille does not read success from the screen: docs/policy.md), so the
    # shell may still be there, and a relative path under it may be under /var/log
    "rm -f hello.c": "may be a log file (rule approve-history-wipe)",
    "rm goodbye.c": "idem",
    # `rsync -aiv rhost:/tmp/{file1,file2}.c ~/src/` brought files chosen on another host
    # under ~/src, and the shell may be in any directory (above): the tool may read them
    "terraform init": "may read a *.tf file copied from another host",
    "terraform validate": "idem", "terraform output": "idem",
    "docker compose restart api": "may read a compose file copied from another host",
    "go build ./...": "may build Go code copied from another host",
    "go test ./...": "may run Go tests copied from another host",
}


# Exec requests without a terminal (``ssh host -- CMD``): what reads the user's input
# (a shell, a REPL, an editor) would read it unchecked, so these run but the first byte
# of input the user sends waits for approval (``Decision.input_gate``; without input they
# run and end as they would: not a hold). Pagers are not gated: without a terminal they
# copy like cat and read no keys.
NO_TERMINAL_INPUT_HELD = {
    "telnet mail.internal 25", "docker exec -it web sh", "docker run --rm -it alpine sh",
    "sftp user@host", "ssh bastion", "sudo -i", "sudo su -", "su - postgres",
    "vim /etc/hosts", "vi /etc/nginx/nginx.conf", "tmux attach -t main", "iftop -i eth0",
    "systemd-run --scope --user screen", "systemd-run -t --send-sighup bash",
    "kubectl exec -it api-7d9f8 -n prod -- sh",
}


