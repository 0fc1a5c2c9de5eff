"""Helpers for the policy end-to-end corpora: a gateway with the starter policy and the
canary rule of tests/unit/policy/corpus_evasion.py, terminals driven through tmux, and a
second target account whose shell runs nothing (for the ordinary-commands corpus).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.policy.starter import starter_toml
from tests.e2e.conftest import write_config
from tests.e2e.rig import Gateway, Rig, Tmux, ensure_user, free_port
from tests.unit.policy.corpus_evasion import CANARY_DIR, CANARY_PREFIX, CANARY_RULE, EFFECT_GLOB

PROMPT = "PROMPT$ "
DENIED = "bastille: denied by policy"
WAITING = re.compile(r"waiting for approval #(\d+)")
MARKERS = re.compile(r"bastille: denied by policy|waiting for approval #\d+|"
                     r"the policy could not decide")
NOT_RUN = "; the command was not run"
FP_USER = "bastille-fp"  # the account of the ordinary-commands corpus: runs nothing


def policy_extra(*, effect: bool = False, escapes: str = "allow", timeout: str = "1m",
                 fp_target: str = "", canary: bool = True) -> str:
    """The config additions: the starter policy, the canary rule (and the canary effect
    rule), bob as the approver."""
    rules = starter_toml()
    if canary:
        rules += f"""
[[policy.rules]]
name = "canary"
match = '{CANARY_RULE}'
action = "deny"
"""
    if effect:
        rules += f"""
[[policy.rules]]
name = "canary-writes"
writes = ["{EFFECT_GLOB}"]
action = "deny"
"""
    return f"""{fp_target}
[policy]
default = "allow"
on_uncertain = "approve"
escapes = "{escapes}"

{rules}

[approvals]
approvers = ["bob"]
timeout = "{timeout}"
"""


def start_gateway(rig: Rig, extra: str) -> tuple[Rig, Gateway]:
    """Like the ``make_gateway`` fixture, for module-scoped fixtures."""
    port = free_port()
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    config = write_config(rig.root, rig.sshd, port, name=f"pol-{tag}.toml", data=f"data-{tag}",
                          extra=extra)
    gw = Gateway(config, port)
    gw.start()
    known = rig.root / f"known_hosts-{tag}"
    host_pub = " ".join((rig.root / "gw_host_key.pub").read_text().split()[:2])
    known.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    return Rig(root=rig.root, sshd=rig.sshd, gateway=gw, known_hosts=known, keys=rig.keys,
               data_dir=rig.root / f"data-{tag}"), gw


def stop_gateway(gw: Gateway) -> None:
    gw.stop(signal.SIGTERM)


# ------------------------------------------------------------------------ canaries

def canaries() -> list[str]:
    """Canary files on the target (sshd runs on this machine: same /tmp)."""
    return sorted(p.name for p in Path(CANARY_DIR).glob(f"{CANARY_PREFIX}*"))


def clear_canaries() -> None:
    """Canaries left by an earlier failed run would fail every later one."""
    for p in Path(CANARY_DIR).glob(f"{CANARY_PREFIX}*"):
        p.unlink()


class TargetHome:
    """The target account's home is shared with every other e2e test: dotfiles are put
    back and the files the corpus lines create (named in ``texts``) are removed."""

    DOTFILES = (".bashrc", ".profile", ".bash_logout", ".inputrc", ".python_history",
                ".viminfo", ".lesshst")

    def __init__(self, user: str, texts: Sequence[str]) -> None:
        self.home = Path(os.path.expanduser(f"~{user}"))
        self.words = {w for t in texts for w in re.split(r"[\s;|&<>()'\"=/]+", t) if w}
        self.before = set(os.listdir(self.home))
        self.saved = {n: (self.home / n).read_bytes() for n in self.DOTFILES
                      if (self.home / n).is_file()}

    def restore(self) -> None:
        for n in self.DOTFILES:
            p = self.home / n
            if n in self.saved:
                if not p.is_file() or p.read_bytes() != self.saved[n]:
                    p.write_bytes(self.saved[n])
            elif p.exists() or p.is_symlink():
                p.unlink()
        for n in set(os.listdir(self.home)) - self.before:
            p = self.home / n
            if (n in self.words or n.startswith(self.DOTFILES)) and (
                    p.is_symlink() or p.is_file()):
                p.unlink()


# ------------------------------------------------------------------------ exec

@dataclass
class ExecResult:
    outcome: str  # deny | approve | ran
    stderr: str


def exec_line(g: Rig, target: str, text: str, *, tty: bool = False,
              timeout: float = 30, stdin: bytes = b"") -> ExecResult:
    """``ssh alice@gw TARGET -- TEXT`` with ``stdin`` as its input; a request for approval
    is abandoned (the client goes away: the gateway cancels the request and runs
    nothing)."""
    args = [*g.ssh_args("alice", tty=tty), target, "--", text]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if stdin:
        assert proc.stdin is not None
        proc.stdin.write(stdin)  # small: the pipe's buffer holds it
        proc.stdin.close()
        proc.stdin = None  # communicate() below must not flush it again
    assert proc.stderr is not None
    err = b""
    deadline = time.monotonic() + timeout
    outcome = "ran"
    try:
        os.set_blocking(proc.stderr.fileno(), False)
        while time.monotonic() < deadline:
            chunk = proc.stderr.read()
            if chunk:
                err += chunk
            if b"denied by policy" in err:
                outcome = "deny"
                break
            if b"waiting for approval" in err:
                outcome = "approve"
                break
            if proc.poll() is not None and not chunk:
                break
            time.sleep(0.02)
        else:
            outcome = "timeout"
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            rest = proc.communicate(timeout=10)[1]
        except subprocess.TimeoutExpired:
            proc.kill()
            rest = proc.communicate()[1]
        err += rest or b""
    return ExecResult(outcome, err.decode(errors="replace"))


# ------------------------------------------------------------------------ terminals

class Term:
    """``ssh -tt alice@gw TARGET`` in tmux, with the shell's prompt set to ``PROMPT``."""

    def __init__(self, g: Rig, target: str = "web1", *, set_prompt: bool = True,
                 extra: Sequence[str] = (), command: Sequence[str] = ()) -> None:
        self.g = g
        self.timeouts: list[tuple[str, str]] = []  # (line, last rows) of lines that hung
        remote = ["--", *command] if command else []
        # the whole session stays readable (a run of 963 lines makes ~3,000 rows)
        self.tmux = Tmux(g.root, [*g.ssh_args("alice", tty=True, extra=extra), target,
                                  *remote], history=50000)
        if command:
            return
        self.tmux.wait_re(r"[$#] ?$")
        if set_prompt:
            self.tmux.type(f"export PS1='{PROMPT}'\n")
            self.tmux.wait_for(f"\n{PROMPT.rstrip()}")

    def history(self) -> str:
        return subprocess.run(["tmux", "-S", self.tmux.sock, "capture-pane", "-p", "-J", "-S",
                               "-"], capture_output=True, check=True).stdout.decode()

    def markers(self) -> list[str]:
        return MARKERS.findall(self.history())

    def _rows(self) -> list[str]:
        return [x.rstrip() for x in self.history().splitlines() if x.strip()]

    def at_prompt(self) -> bool:
        rows = self._rows()
        return bool(rows) and rows[-1] == PROMPT.rstrip()

    def wait_prompt(self, timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.at_prompt():
                return True
            time.sleep(0.05)
        return False

    def run(self, text: str, *, timeout: float = 10, approver: str | None = None) -> str:
        """Type a line (and Enter). Returns ``deny``; ``approve`` (held: the request is
        cancelled with Ctrl-C, or approved by ``approver``: then ``approved``); ``ran``
        (a new empty prompt came back without a refusal) or ``timeout`` (Ctrl-C sent)."""
        return self.press(lambda: self.tmux.type(text + "\n"), text, timeout=timeout,
                          approver=approver)

    def press(self, keys: Callable[[], None], text: str = "", *, timeout: float = 10,
              approver: str | None = None) -> str:
        """``run`` for any keys (``keys`` sends them)."""
        rows = self._rows()
        before, markers = len(rows), len(MARKERS.findall("\n".join(rows)))
        keys()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.03)
            rows = self._rows()
            found = MARKERS.findall("\n".join(rows))
            if len(found) > markers:
                m = WAITING.match(found[markers])
                if m is None:
                    self.wait_prompt()
                    return "deny"
                done = "\n".join(rows).count(NOT_RUN)
                if approver is not None:
                    r = self.g.ssh(approver, "approvals", "approve", m.group(1))
                    assert b"approved" in r.stdout, r
                    self.tmux.wait_for(f"approved by {approver}")
                    self.wait_prompt()
                    return "approved"
                self.tmux.send("C-c")
                end = time.monotonic() + 10
                while self.history().count(NOT_RUN) <= done and time.monotonic() < end:
                    time.sleep(0.05)
                self.wait_prompt()
                return "approve"
            # a new prompt after the echo of the last line (a line of several commands
            # shows a prompt after each; background output may follow it on its row)
            last = text.split("\n")[-1].strip()
            echo = max((k for k in range(before - 1, len(rows)) if last and last in rows[k]),
                       default=before - 1)
            if any(r.startswith(PROMPT.rstrip()) for r in rows[max(echo + 1, before):]):
                return "ran"
        self.timeouts.append((text, "\n".join(self._rows()[-8:])))
        self.tmux.send("C-c")
        self.wait_prompt()
        return "timeout"

    def run_approved(self, text: str, timeout: float = 15) -> str:
        """Type a line and have bob approve it if it is held."""
        return self.run(text, timeout=timeout, approver="bob")

    def close(self) -> None:
        self.tmux.close()


# ------------------------------------------------------------------------ the FP account

def fp_account(rig: Rig) -> Iterator[str]:
    """A target account whose shell runs nothing: an exec request prints ``RAN-OK``; an
    interactive login is a real bash (readline, prompts, continuation lines) with PATH
    empty and every builtin disabled, so a line that is let through reaches bash and
    fails with "command not found". Yields the ``[targets.fp]`` table."""
    home = Path(tempfile.mkdtemp(prefix="bastille-fp-"))
    os.chmod(home, 0o755)
    rc = home / "rc"
    rc.write_text(f"PS1='{PROMPT}'\nPS2='> '\nHISTFILE=\n__b=$(compgen -b)\n"
                  "PATH=/nonexistent\nenable -n $__b\n")
    shell = home / "shell"
    shell.write_text(f"""#!/bin/bash
if [ "$1" = -c ]; then printf 'RAN-OK\\n'; exit 0; fi
exec /bin/bash --noprofile --rcfile {shlex.quote(str(rc))} -i
""")
    os.chmod(shell, 0o755)
    os.chmod(rc, 0o644)
    ensure_user(FP_USER, "fp-" + os.urandom(8).hex())
    subprocess.run(["usermod", "-s", str(shell), FP_USER], check=True)
    target_pub = (rig.root / "target_key.pub").read_text()
    (rig.sshd.root / "authorized" / FP_USER).write_text(target_pub)
    yield f"""
[targets.fp]
host = "127.0.0.1"
port = {rig.sshd.port}
user = "{FP_USER}"
key_file = "target_key"
host_keys = ["{rig.sshd.host_key_pub}"]
groups = ["ops"]
"""
    subprocess.run(["usermod", "-s", "/bin/bash", FP_USER], check=False)
    for p in (rc, shell):
        p.unlink()
    home.rmdir()
