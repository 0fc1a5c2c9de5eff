"""One interactive session's policy: the shell model, the foreground program, the keys.

The interactive driver (``gateway/ssh/policy_relay.py``, later ``gateway/core/
interactive.py``) owns one ``PolicySession`` per PTY shell and calls, in order:

1. ``feed_output(data)`` for target output and ``feed_input(data)`` for user input
   (events: forward ``data`` now, hold ``enter`` bytes: Enter and every other key that
   runs a line, see ``keys.KeyPolicy``);
2. for a held key, ``snapshot(line_id)`` in a worker thread (pyte), then
   ``decide(snapshot)`` (pure: reads the session, changes nothing);
3. ``commit(decision, approved=...)`` once the held key was released (the line ran):
   the line's effects on the shell (aliases, functions, variables, cwd, options, key
   bindings, files written) and on the foreground (a REPL, an editor, a pager started;
   a program left) are applied, and the held-key policy is updated. Nothing is
   committed for a refused line.

What a line is depends on the foreground: a shell line is analysed as bash against the
session's ``ShellState``; a REPL line (python, psql, mysql, gdb...) through its language
(``langs.py``); in a full-screen program the command line it shows on its bottom row
(vi ``:``, less ``!``/``|``, nano's prompts). Lines typed without echo are uncertain
unless the screen shows a password prompt right after a program that asks for one.

Known limits: the foreground is followed from the lines that start and leave programs
(and Ctrl-D on an empty line); a program that exits some other way is noticed when
the shell's prompt comes back (the stricter reading applies until then).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

from gateway.policy.analyze import ANSWERS
from gateway.policy.keys import ENTER
from gateway.policy.langs import LangResult
from gateway.policy.linebuf import InputEvent, LineSnapshot, LineTracker
from gateway.policy.program_langs import check_less, check_line, check_nano
from gateway.policy.rules import SEVERITY, Action, Decision, PolicyEngine
from gateway.policy.values import astr

REPL_PROMPTS = {
    "python": re.compile(r"^(?:>>>|\.\.\.) ?$|^In \[\d+\]: $|^\s+\.\.\.: $"),
    "node": re.compile(r"^> ?$|^\.\.\. ?$"),
    "ruby": re.compile(r"^irb\(.*\):\d+(?::\d+)?[>*\"'] ?$|^\[\d+\] pry\(.*\)[>*] ?$"),
    "php": re.compile(r"^php [>*] ?$"),
    "lua": re.compile(r"^>>? ?$"),
    "perl": re.compile(r"^\s*DB<+\d+>+ ?$"),
    "psql": re.compile(r"^[\w.-]*[=\-(*'\"$][#>] ?$"),
    "mysql": re.compile(r"^(?:mysql|MariaDB \[.*\])> ?$|^\s+(?:->|'>|\">|`>|/\*>) ?$"),
    "sqlite": re.compile(r"^sqlite> ?$|^\s+\.\.\.> ?$"),
    "gdb": re.compile(r"^\(gdb\) ?$"),
    "ftp": re.compile(r"^(?:ftp|sftp|telnet)> ?$|^lftp .*> ?$"),
    "tcl": re.compile(r"^% ?$"),
    "mail": re.compile(r"^[?&] ?$"),
    "bc": re.compile(r"^$"),
    "ed": re.compile(r"^\*?$"),
    "ex": re.compile(r"^:?$"),
}
_SHELL_PROMPT = re.compile(r"[$#%] ?$")
_PASSWORD = re.compile(
    r"(?i)(?:pass(?:word|phrase)|\bpin\b|passcode|token|otp|verification code|secret|"
    r"\[sudo\])[^\n]*[:?]\s*$"
)
PASSWORD_PROGRAMS = frozenset(
    "sudo su doas pkexec runuser ssh scp sftp rsync passwd mysql mariadb psql git gpg "
    "openssl htpasswd kinit docker podman ansible ansible-playbook ssh-keygen ssh-add ftp "
    "lftp telnet login vault sshpass curl wget chpasswd smbclient ldapsearch".split()
)
# programs that ask questions on the terminal (y/n, a name, a path): their answers are
# input, not commands, while the prompt on the line is a question and not the shell's
PROMPTING = PASSWORD_PROGRAMS | frozenset(
    "apt apt-get aptitude dpkg dpkg-reconfigure adduser deluser addgroup delgroup certbot cp "
    "mv rm ln npm pip pip3 docker podman ufw terraform git aws gcloud az fdisk gdisk parted "
    "mdadm lvremove vgremove pvremove cryptsetup mkfs mkfs.ext4 mkfs.xfs mke2fs ssh-keygen "
    "keytool chfn chsh htpasswd ssh-copy-id ansible-playbook composer yarn read".split()
)
_QUESTION = re.compile(r"[A-Za-z].*(?:\?|:|\]|\)|>)\s*$")
_NOT_DATA = re.compile(r"[;&|<>$`(){}!*?\[\]'\"\\\n#~=]")
_PAGERS = frozenset(
    "git systemctl journalctl man less more most loginctl busctl dpkg apt apt-get "
    "coredumpctl machinectl hostnamectl timedatectl psql mysql hg ansible-doc dmesg".split()
)


@dataclass(frozen=True)
class Foreground:
    """A program in front of the shell: a REPL, a full-screen program, a password prompt.

    ``trusted``: it was started by a line an approver approved although it could not be
    read (an opaque program): its keys are passed, the approver accepted that.
    """

    name: str
    kind: str
    lang: str
    trusted: bool = False


class PolicySession:
    """One interactive session's policy state (see the module docstring)."""

    def __init__(self, engine: PolicyEngine, *, user: str, groups: Sequence[str],
                 target: str, cols: int = 80, rows: int = 24) -> None:
        self.engine = engine
        self.user = user
        self.groups = tuple(groups)
        self.target = target
        self.state = engine.new_state(interactive=True)
        self.stack: list[Foreground] = []
        self.block: list[str] = []  # lines of an open REPL block (Python "...")
        self.tracker = LineTracker(cols, rows)
        self._eof_seen = 0
        self._lock = threading.Lock()
        self._last_programs: frozenset[str] = frozenset()
        self._sync_keys()

    # ------------------------------------------------------------------ data path

    def feed_output(self, data: bytes) -> None:
        self.tracker.feed_output(data)

    def feed_input(self, data: bytes) -> list[InputEvent]:
        return self.tracker.feed_input(data)

    def snapshot(self, line_id: int | None = None) -> LineSnapshot:
        """The line at a held key (CPU-bound: call it in a worker thread)."""
        return self.tracker.current_line(line_id)

    def describe(self, snap: LineSnapshot) -> str:
        """The line as the audit, the recording and the approvers see it (no secret: a
        line typed without echo is never shown)."""
        if snap.echo_off:
            return "(typed without echo)"
        if snap.alternate_screen:
            line = snap.screen_bottom if snap.cursor_bottom else snap.screen_cursor
            top = next((f.name for f in reversed(self.stack) if f.kind == "screen"), "")
            what = f" in {top}" if top else ""
            if snap.key != ENTER:
                return f"(key {snap.key}{what})"
            return f"{line.strip()} (full-screen{what})"
        if snap.key != ENTER:
            return f"{snap.text} (key {snap.key})"
        return snap.text

    # ------------------------------------------------------------------ decisions

    def decide(self, snap: LineSnapshot) -> Decision:
        """Decide the line of a held key. Pure: the session changes only at ``commit``."""
        with self._lock:
            stack = list(self.stack)
            eof = self.tracker.eof_count - self._eof_seen
        if eof > 0 and stack and stack[-1].kind in ("repl", "password"):
            stack = stack[:-1]  # Ctrl-D on an empty line left the REPL
        if snap.key != ENTER:
            return self._tag(self._decide_key(snap, stack), stack)
        if snap.alternate_screen:
            return self._tag(self._decide_screen(snap, stack), stack)
        while stack and stack[-1].kind == "screen":
            stack = stack[:-1]  # the full-screen program has left the terminal
        top = stack[-1] if stack else None
        if snap.echo_off or (snap.echo_pending and (snap.typed or "").strip()):
            # nothing of the line was echoed, even after the relay waited for it
            return self._tag(self._decide_hidden(snap, top), stack)
        if top is not None and top.kind == "password":
            stack = stack[:-1]
            top = stack[-1] if stack else None
        if top is not None and top.kind == "program":
            answer = self._decide_answer(snap, top)
            if answer is not None:
                return self._tag(answer, stack)
            stack = stack[:-1]  # the shell prompt is back
            top = stack[-1] if stack else None
        if top is not None and top.kind == "repl":
            return self._tag(self._decide_repl(snap, top, stack), stack)
        return self._tag(self._decide_shell(snap), stack)

    def commit(self, decision: Decision, *, approved: bool = False) -> None:
        """The held key was released: apply what the line changed (see the module doc)."""
        with self._lock:
            self._eof_seen = self.tracker.eof_count
            meta = decision.notes
            stack = list(meta.get("stack", self.stack))  # type: ignore[call-overload]
            if decision.state is not None and not decision.incomplete:
                self.state = decision.state
                line = meta.get("line", self.state.last_line)
                self.state.last_line = line if isinstance(line, str) else None
            if meta.get("repl_block") is not None:
                self.block = list(meta["repl_block"])  # type: ignore[call-overload]
            elif meta.get("repl"):
                self.block = []
            if meta.get("pop"):
                stack = stack[:-1]
            _apply_starts(decision, stack, approved)
            _programs_in_front(decision, stack)
            if meta.get("shell_prompt"):
                self.tracker.shell_prompt_seen(str(meta["shell_prompt"]))
            if meta.get("vi_mode") is not None:
                self.state.options["vi"] = bool(meta["vi_mode"])
            progs = meta.get("programs", ())
            self._last_programs = frozenset(progs) if isinstance(progs, (set, frozenset,
                                                                        tuple)) else frozenset()
            self.stack = stack[-16:]
            self._sync_keys()

    # ------------------------------------------------------------------ shell lines

    def _shell(self, text: str, *, partial: bool = True) -> Decision:
        if partial:
            return self.engine.decide_partial(text, state=self.state, user=self.user,
                                              groups=self.groups, target=self.target)
        return self.engine.decide(text, state=self.state, user=self.user, groups=self.groups,
                                  target=self.target)

    def _decide_shell(self, snap: LineSnapshot) -> Decision:
        if snap.echo_pending and snap.typed is None:
            return self._uncertain("line not echoed yet")
        primary = snap.text
        texts = [primary]
        if snap.prompt_guessed and snap.raw and snap.raw not in texts:
            texts.append(snap.raw)
        if snap.typed is not None and snap.typed not in texts:
            texts.append(snap.typed)
        decisions = [self._shell(t) for t in texts]
        if all(d.action is Action.ALLOW for d in decisions) and len(decisions) > 1:
            # the screen and the keys tell different lines: both are allowed, but they
            # must agree on whether bash runs something now and on what it changes
            if len({d.incomplete for d in decisions}) > 1:
                return self._uncertain("the screen and the keys typed disagree on whether "
                                       "the command is complete")
            if len({d.state.fingerprint() for d in decisions if d.state is not None}) > 1:
                return self._uncertain("the screen and the keys typed disagree on what "
                                       "this line changes in the shell")
        best = _most_severe(decisions)
        if best.action is Action.ALLOW and best.incomplete and snap.typed is None:
            # The Enter of an unfinished line goes to bash, which runs the line if it is in
            # fact complete. The screen alone is not certain enough for that: keys sent
            # while bash is between two readline calls are echoed twice (by the tty, then
            # by readline), so the screen can show a line bash never reads. Only the keys
            # typed (when every one is understood) confirm it; else approval.
            return self._uncertain("an unfinished line whose keys cannot be read (Tab, "
                                   "history or editing keys): the shell may run it as it is")
        d0 = decisions[0]
        commands = tuple(dict.fromkeys(c for d in decisions for c in d.commands))
        d = replace(best, commands=commands, state=d0.state, starts=d0.starts,
                    incomplete=best.incomplete and best.action is Action.ALLOW, notes={})
        d.notes.update({"line": primary, "programs": _programs(d0), "shell_prompt":
                        snap.prompt if not snap.prompt_guessed else ""})
        return d

    def _decide_hidden(self, snap: LineSnapshot, top: Foreground | None) -> Decision:
        """Keys typed without echo: a password, or a line the bastion cannot see."""
        prompt = snap.prompt or snap.raw or ""
        expected = (top is not None and top.kind in ("password", "repl")) or bool(
            self._last_programs & PASSWORD_PROGRAMS)
        if expected and _PASSWORD.search(prompt) and not self.state.echo_hidden:
            d = Decision(Action.ALLOW, None, "typed without echo (a password prompt)", ())
            d.notes.update({"pop": top is not None and top.kind == "password"})
            return d
        hidden = snap.hidden_typed if snap.hidden_typed is not None else (snap.typed or "")
        seen = self._shell(hidden, partial=False)
        why = "typed without echo" if snap.echo_off else "the line was not echoed"
        reasons = (f"{why}: the bastion cannot see the line", *seen.uncertain)
        action = Action.DENY if seen.action is Action.DENY else self.engine.on_uncertain
        if action is Action.DENY:
            return Decision(action, seen.rule, seen.reason, ("(typed without echo)",),
                            uncertain=reasons)
        return Decision(action, None, reasons[0], ("(typed without echo)",), uncertain=reasons)


    def _decide_answer(self, snap: LineSnapshot, top: Foreground) -> Decision | None:
        """A line typed at a program's question (``Continue? [Y/n]``, ``Full Name []:``):
        input to that program when the prompt is a question that is not the shell's
        prompt and the line is plain words (no shell syntax at all)."""
        prompt = snap.prompt.rstrip("\n")
        if snap.prompt_guessed or not prompt.strip() or not _QUESTION.search(prompt):
            return None
        if prompt.strip() == self.tracker.learned_shell_prompt.strip() or \
                _SHELL_PROMPT.search(prompt):
            return None
        text = snap.text.strip()
        if _NOT_DATA.search(snap.text) or len(text) > 200 or (
                snap.typed is not None and snap.typed.strip() != text):
            return None
        words = text.split()
        if words:
            first = words[0]
            known = (self.engine.catalogue.program(first) is not None or
                     self.engine.catalogue.builtin(first) is not None or
                     first in self.state.aliases or first in self.state.functions)
            if known and first not in ANSWERS and not first.isdigit():
                return None  # it reads as a command: decide it as one
            if len(words) > 1 and "/" in text:
                return None
        d = Decision(Action.ALLOW, None, f"an answer to {top.name}'s question", ())
        d.notes["keep_program"] = True
        return d

    # ------------------------------------------------------------------ REPL lines

    def _decide_repl(self, snap: LineSnapshot, top: Foreground,
                     stack: list[Foreground]) -> Decision:
        rx = REPL_PROMPTS.get(top.lang)
        prompt = snap.prompt
        in_repl = rx is not None and bool(rx.search(prompt)) and not snap.prompt_guessed
        if snap.prompt_guessed and rx is not None and top.lang in ("bc", "ed", "ex"):
            in_repl = True
        shell_back = not in_repl and bool(_SHELL_PROMPT.search(prompt)) and (
            self.tracker.learned_prompt == prompt or snap.prompt_guessed is False)
        if shell_back:
            d = self._decide_shell(snap)
            d.notes["pop"] = True
            return d
        text = snap.text
        lines = [*self.block, text] if self.block else [text]
        r = check_line(top.lang, "\n".join(lines))
        d = self._lang_decision(r, f"{top.name} line")
        meta: dict[str, object] = {"repl": True}
        if r.exits:
            meta["pop"] = True
        if r.incomplete and d.action is Action.ALLOW:
            meta["repl_block"] = lines
            d = replace(d, incomplete=False, reason=f"{top.name} block continues", notes={})
        if not in_repl:
            # the prompt is not the REPL's: decide it as a shell line too, most severe
            sd = self._decide_shell(snap)
            worst = _most_severe([d, sd])
            d = replace(worst, commands=tuple(dict.fromkeys((*d.commands, *sd.commands))),
                        notes={})
        d.notes.update(meta)
        return d

    def _lang_decision(self, r: LangResult, where: str, *, extra: Sequence[str] = ()
                       ) -> Decision:
        """A language's findings: its shell commands decided as bash, its writes as effects."""
        parts: list[Decision] = []
        for cmd in r.shell:
            child = self.state.child()
            parts.append(self.engine.decide(cmd, user=self.user, groups=self.groups,
                                            target=self.target, state=child))
        for cmd in r.piped:  # these also get data on their input (a buffer, a table)
            an = self.engine.analyze(cmd, self.state.child(), interactive=False, stdin="pipe")
            parts.append(self.engine._decide(an, user=self.user, groups=self.groups,
                                             target=self.target))
        writes = [w for w in r.writes if w]
        if writes and any(rule.writes for rule in self.engine.rules):
            for w in writes:
                path = "?" if w in ("%", "?") else w
                cmd = f"> {path}" if path != "?" else "> $UNKNOWN_FILE"
                parts.append(self.engine.decide(cmd, user=self.user, groups=self.groups,
                                                target=self.target, state=self.state.child(),
                                                interactive=False))
        reasons = [*extra, *r.uncertain]
        base = Decision(Action.ALLOW, None, "allowed", ())
        if reasons:
            base = Decision(self.engine.on_uncertain, None, reasons[0], (), uncertain=tuple(
                reasons))
        best = _most_severe([base, *parts])
        commands = tuple(c for p in parts for c in p.commands)
        if best is base:
            return replace(base, commands=commands, notes={})
        return replace(best, commands=commands, state=None, starts=(), notes={})

    # ------------------------------------------------------------------ full-screen programs

    def _decide_screen(self, snap: LineSnapshot, stack: list[Foreground]) -> Decision:
        top = next((f for f in reversed(stack) if f.kind == "screen"), None)
        lang = top.lang if top is not None else ""
        bottom, cursor = snap.screen_bottom, snap.screen_cursor
        if top is not None and top.trusted:
            return Decision(Action.ALLOW, None, f"{top.name} was approved", ())
        if lang == "vi" or (not lang and bottom.startswith(":")):
            return self._screen_vi(snap)
        if lang == "less" or (not lang and bottom[:1] in ("!", "|")):
            return self._screen_less(snap)
        if lang == "nano" or "Command to execute" in cursor:
            return self._lang_decision(check_nano(cursor), "nano")
        if lang == "harmless":
            return Decision(Action.ALLOW, None, "allowed", ())
        if lang == "shell-screen":
            return self._screen_shell(cursor)
        if not lang and self._last_programs & _PAGERS:
            return Decision(Action.ALLOW, None, "allowed", ())
        return self._uncertain(f"Enter in {top.name if top else 'a full-screen program'}, "
                               "whose lines bastille cannot read")

    def _screen_vi(self, snap: LineSnapshot) -> Decision:
        """Enter in vi: an ex command line is checked, typing text is not."""
        bottom, cursor = snap.screen_bottom, snap.screen_cursor
        if "[Command Line]" in snap.screen_text:
            return self._uncertain("vi's command-line window runs the line under the cursor")
        insert = bool(re.search(r"-- (?:\(\w+\) )?(?:INSERT|REPLACE|VREPLACE)", bottom))
        command = bottom if snap.cursor_bottom and bottom.startswith(":") else (
            cursor if cursor.startswith(":") else None)
        if insert or command is None:
            if not insert and ":" in (snap.typed or ""):
                return self._uncertain("vi's command line is not where bastille reads it")
            return Decision(Action.ALLOW, None, "editing text", ())
        r = check_line("vi", command[1:])
        d = self._lang_decision(r, "vi")
        if r.exits:
            d.notes.update({"pop": True})
        return d

    def _screen_less(self, snap: LineSnapshot) -> Decision:
        """Enter in less/more/man: its ``!``/``|`` command line is checked."""
        bottom, cursor = snap.screen_bottom, snap.screen_cursor
        # less writes its command line after the text when the file is shorter than the
        # screen: the cursor's row as well as the bottom one
        rows = [r for r in dict.fromkeys((bottom, cursor)) if r.strip()]
        ds = [self._lang_decision(check_less(r), "less") for r in rows]
        # an editor started from the pager (v) shows its ":" line on the same rows
        ds += [self._lang_decision(check_line("vi", r.lstrip()[1:]), "vi") for r in rows
               if r.lstrip().startswith(":")]
        d = _most_severe(ds or [Decision(Action.ALLOW, None, "allowed", ())])
        typed = snap.typed or ""
        if d.action is Action.ALLOW and re.search(r"[!|]", typed) and not any(
                r.lstrip()[:1] in ("!", "|") for r in rows):
            return self._uncertain("less's command line is not where bastille reads it")
        return d

    def _screen_shell(self, cursor: str) -> Decision:
        """A shell inside a full-screen program (tmux, screen): the line at the cursor."""
        m = re.search(r"(?:^|.*?[$#%>] )(.*)$", cursor)
        line = (m.group(1) if m else cursor).strip()
        if not line:
            return Decision(Action.ALLOW, None, "allowed", ())
        return self.engine.decide(line, user=self.user, groups=self.groups,
                                  target=self.target, state=self.state.child(
                                      interactive=True))

    # ------------------------------------------------------------------ other keys

    def _decide_key(self, snap: LineSnapshot, stack: list[Foreground]) -> Decision:
        key = snap.key
        if snap.alternate_screen:
            return self._key_in_screen(snap)
        if key in _KEY_REASONS:
            line = self._decide_shell(snap) if snap.text.strip() else None
            if line is not None and line.action is Action.DENY:
                return line
            return self._uncertain(_KEY_REASONS[key] or key)
        if key == "insert-comment":
            text = snap.text
            variants = [text, text[1:] if text.startswith("#") else text]
            ds = [self._shell(v) for v in variants]
            return replace(_most_severe(ds), notes={}, state=None)
        if key == "shell-expand-line":
            return self._decide_shell(snap)
        if key == "re-read-init-file":
            return self._key_reread()
        if key == "vi-editing-mode":
            d = Decision(Action.ALLOW, None, "allowed", ())
            d.notes.update({"vi_mode": True})
            return d
        if key == "bound-exec":
            return self._key_bound_exec(snap)
        return self._uncertain(f"a key that runs something ({key})")

    def _key_reread(self) -> Decision:
        """readline re-reads ~/.inputrc: uncertain if this session may have written it."""
        an = self.engine.analyze(":", self.state)
        if an.written_match(astr("~/.inputrc"), self.state) or self.state.unknown_writes:
            return self._uncertain("re-reads key bindings written in this session")
        return Decision(Action.ALLOW, None, "allowed", ())

    def _key_bound_exec(self, snap: LineSnapshot) -> Decision:
        """A key bound with ``bind -x``: its command is decided."""
        bound = self.state.bindings.get(snap.key_seq)
        if bound is None or bound[0] != "exec":
            return self._uncertain("a key bound to a command")
        return replace(self._shell(bound[1], partial=False), state=None, notes={})

    def _key_in_screen(self, snap: LineSnapshot) -> Decision:
        """A held key in a full-screen program."""
        key = snap.key
        if re.search(r"-- (?:\(\w+\) )?(?:INSERT|REPLACE)", snap.screen_bottom):
            return Decision(Action.ALLOW, None, "typing text", ())
        if key == "less-editor" and any(c in "/?!|&:#" for c in snap.typed or ""):
            # typed into less's prompt (a search pattern, a command): just text
            return Decision(Action.ALLOW, None, "typing text", ())
        return self._uncertain(f"a key that runs commands in the full-screen program ({key})")

    # ------------------------------------------------------------------ helpers

    def _uncertain(self, reason: str) -> Decision:
        return Decision(self.engine.on_uncertain, None, reason, (), uncertain=(reason,))

    def _tag(self, d: Decision, stack: list[Foreground]) -> Decision:
        d.notes["stack"] = stack
        return d

    def _sync_keys(self) -> None:
        st = self.state
        k = self.tracker.key_policy
        k.bindings = dict(st.bindings)
        k.bindings_unknown = st.bindings_unknown
        k.vi = bool(st.options.get("vi"))
        k.tab_runs_code = st.tab_runs_code
        screen = next((f for f in reversed(self.stack) if f.kind == "screen"), None)
        k.screen = screen.lang if screen is not None else None


# keys that run what bastille cannot follow: why (a line that is denied anyway is denied)
_KEY_REASONS = {
    "edit-and-execute-command": "the key opens the line in an editor and runs what comes back",
    "vi-macro": "a vi-mode macro key",
    "completion": "completion that runs code",
    "unknown-binding": "a key whose binding is not known",
    "bound-macro": "a key bound to a macro",
    "bound-unknown": "a key whose binding is not known",
    "vi-editing-mode-unknown": "",
}


def _apply_starts(decision: Decision, stack: list[Foreground], approved: bool) -> None:
    """Programs the line started take the foreground; ``exit`` goes back to the shell."""
    for s in decision.starts:
        if s.kind == "exit":
            while stack and stack[-1].kind != "shell":
                stack.pop()
        elif s.kind == "password":
            stack.append(Foreground(s.name, "password", ""))
        elif s.kind in ("repl", "screen"):
            trusted = approved and bool(decision.uncertain) and s.lang == "opaque"
            stack.append(Foreground(s.name, s.kind, s.lang, trusted))


def _programs_in_front(decision: Decision, stack: list[Foreground]) -> None:
    """A program that asks questions or a password is in the foreground after the line
    (its answers are not shell lines)."""
    progs = decision.notes.get("programs")
    if not progs or any(st.kind in ("repl", "screen", "shell") for st in decision.starts):
        return
    asks = sorted(progs & PROMPTING)  # type: ignore[operator]
    if asks and not any(f.kind == "program" for f in stack[-1:]):
        stack.append(Foreground(asks[0], "program", ""))
    names = progs & PASSWORD_PROGRAMS  # type: ignore[operator]
    if names and not any(f.kind == "password" for f in stack[-1:]):
        stack.append(Foreground(sorted(names)[0], "password", ""))


def _programs(d: Decision) -> frozenset[str]:
    return frozenset(c.split(" ", 1)[0] for c in d.commands if c)


def _most_severe(ds: Sequence[Decision]) -> Decision:
    best = ds[0]
    for d in ds[1:]:
        if SEVERITY[d.action] > SEVERITY[best.action]:
            best = d
    return best


def decide_snapshot(engine: PolicyEngine, snap: LineSnapshot, *, user: str,
                    groups: Sequence[str], target: str) -> Decision:
    """Decide one snapshot in a fresh session (tests, tools)."""
    s = PolicySession(engine, user=user, groups=groups, target=target)
    return s.decide(snap)

