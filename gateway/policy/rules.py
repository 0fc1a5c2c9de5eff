"""Rules and the decision engine.

A rule matches a command by a regex over its normalized text (``match``) and/or by the
paths it writes or removes (``writes``/``deletes``: globs). Rules are evaluated in
order per command; the first that applies and matches gives that command's action; no
match gives the default. A line's action is the most severe of its commands' (deny >
approve > allow). When a rule *could* match a command whose text or paths are only
partly known (a variable, a substitution, a glob), the line is uncertain for that rule
(``possible.py`` decides it exactly, for every rule). Any uncertainty turns the line
into ``on_uncertain`` unless a deny already applies.

The engine is pure and keeps no per-call state: it may be called from worker threads.
Per-session state lives in ``ShellState``/``PolicySession`` (``session.py``).
"""

from __future__ import annotations

import fnmatch
import functools
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from gateway.policy import possible as P
from gateway.policy.analyze import MAX_SECONDS, Analyzer
from gateway.policy.catalogue import Catalogue, load
from gateway.policy.records import CommandInfo, Effect, Start, Stdin
from gateway.policy.state import ShellState
from gateway.policy.values import AStr, Hole, astr, static
from gateway.policy.views import View


class Action(StrEnum):
    """What happens to a command."""

    ALLOW = "allow"
    DENY = "deny"
    APPROVE = "approve"


SEVERITY = {Action.ALLOW: 0, Action.APPROVE: 1, Action.DENY: 2}


def most_severe(a: Action, b: Action) -> Action:
    """deny > approve > allow."""
    return a if SEVERITY[a] >= SEVERITY[b] else b


@dataclass(frozen=True)
class Rule:
    """One policy rule.

    Attributes:
        name: shown to the user when the rule denies or asks for approval.
        match: regex searched (``re.search``) in the normalized command; None for a
            rule about effects only.
        action: what a match does.
        targets, users, groups: fnmatch patterns; the rule applies if the target, the
            user and one of the user's groups match (``*`` also matches a user in no
            group).
        writes, deletes: path globs (``*`` within a directory, ``**`` across, ``~`` the
            target user's home) matched against every path the command writes/removes.
    """

    name: str
    match: re.Pattern[str] | None
    action: Action
    targets: tuple[str, ...] = ("*",)
    users: tuple[str, ...] = ("*",)
    groups: tuple[str, ...] = ("*",)
    writes: tuple[str, ...] = ()
    deletes: tuple[str, ...] = ()

    def applies(self, *, user: str, groups: Sequence[str], target: str) -> bool:
        """True if the rule is in scope for this user, their groups and the target."""
        if not any(fnmatch.fnmatchcase(target, p) for p in self.targets):
            return False
        if not any(fnmatch.fnmatchcase(user, p) for p in self.users):
            return False
        if "*" in self.groups:
            return True
        return any(fnmatch.fnmatchcase(g, p) for g in groups for p in self.groups)


@dataclass(frozen=True)
class Decision:
    """The outcome for one line (or one file transfer / forwarding request).

    Attributes:
        action: allow, deny or approve.
        rule: the rule that decided, None for the default or an uncertainty.
        reason: short, user-facing (no secret: it names rules and constructs only).
        commands: the normalized commands seen, in order.
        incomplete: the line is unfinished (the shell will ask for more).
        uncertain: every reason the line is uncertain (the first is ``reason``).
        state: the shell state after the line, if it runs (``PolicySession.commit``).
        starts: programs the line leaves in the foreground.
        input_gate: an exec without a terminal that may start, but one of its programs
            reads commands or keys from the user's input unchecked (``ssh host -- sudo
            -i``): the first byte of input the user sends waits for approval (why).
            Only on an allowed decision; otherwise it is one of the ``uncertain``.
    """

    action: Action
    rule: str | None
    reason: str
    commands: tuple[str, ...]
    incomplete: bool = False
    uncertain: tuple[str, ...] = ()
    state: ShellState | None = field(default=None, repr=False, compare=False)
    starts: tuple[Start, ...] = ()
    notes: dict[str, object] = field(default_factory=dict, repr=False, compare=False)
    input_gate: str | None = None


class PolicyEngine:
    """Decides lines, file transfers and forwarding requests against ordered rules."""

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        default: Action = Action.ALLOW,
        on_uncertain: Action = Action.APPROVE,
        escapes: Action = Action.ALLOW,
        programs: Sequence[str] = (),
        catalogue: Catalogue | None = None,
    ) -> None:
        """Create an engine.

        Args:
            rules: evaluated in order, first match wins.
            default: action for a command no rule matches.
            on_uncertain: action for a line the engine cannot read with certainty.
            escapes: action for starting a program with its own command prompt (REPLs,
                editors, pagers...): ``allow`` (their lines are checked) or ``approve``.
            programs: extra program names the operator declares plain (their argv is
                data, they run no code given on their command line).
            catalogue: the carrier catalogue (default: the shipped one).
        """
        self.rules = tuple(rules)
        self.default = Action(default)
        self.on_uncertain = Action(on_uncertain)
        self.escapes = Action(escapes)
        self.catalogue = (catalogue or load()).with_plain(programs)
        for r in self.rules:
            if r.match is not None:
                try:
                    P.rule_nfa(r.match.pattern, r.match.flags)
                except (ValueError, TypeError):
                    pass  # matched with "could match" whenever a view is partly known

    # ------------------------------------------------------------------ public

    def new_state(self, *, interactive: bool = True) -> ShellState:
        """A fresh shell state for a session (interactive) or an exec request."""
        return ShellState(interactive=interactive)

    def analyze(self, line: str, state: ShellState | None = None, *, interactive: bool = True,
                stdin: str | None = None) -> Analyzer:
        """Run the analyser on ``line`` against a copy of ``state``."""
        st = (state or ShellState(interactive=interactive)).copy(share_fs=False)
        kind = stdin or ("tty" if interactive else "user")
        an = Analyzer(self.catalogue, exec_mode=not interactive, tty=kind == "tty")
        an.line(line, st, Stdin(kind))
        an.final_state = st  # type: ignore[attr-defined]
        return an

    def decide(
        self,
        command_line: str,
        *,
        user: str,
        groups: Sequence[str],
        target: str,
        interactive: bool = True,
        state: ShellState | None = None,
        tty: bool = False,
    ) -> Decision:
        """Decide one complete command line.

        Args:
            command_line: the line as the shell would read it (may contain newlines).
            user: bastion user name.
            groups: the user's groups.
            target: target name.
            interactive: False for exec requests (a non-interactive shell, its input
                is the user's data; no history expansion, no aliases).
            state: the session's shell state (interactive); None for a fresh shell.
            tty: an exec request with a terminal (``ssh -t host -- cmd``): its input is
                keys the relay decides (a REPL or an editor it starts is followed), not
                data the bastion cannot see.

        Returns:
            The decision; an unfinished line is uncertain here (use ``decide_partial``
            for an interactive Enter).
        """
        stdin = "tty" if interactive or tty else "user"
        if interactive and _history_expansion(command_line):
            expanded = self._expand_history(command_line, state)
            if expanded is None:
                an = self.analyze(command_line, state, interactive=interactive, stdin=stdin)
                an.uncertain.insert(0, "history expansion")
                return self._decide(an, user=user, groups=groups, target=target)
            command_line = expanded
        an = self.analyze(command_line, state, interactive=interactive, stdin=stdin)
        return self._decide(an, user=user, groups=groups, target=target)

    def decide_partial(
        self,
        command_line: str,
        *,
        user: str,
        groups: Sequence[str],
        target: str,
        state: ShellState | None = None,
    ) -> Decision:
        """Decide an interactive line at Enter, allowing an unfinished line to continue.

        An unfinished line (open quote, trailing backslash, open ``for``/heredoc) does not
        run yet: its visible commands are checked (a deny or approve applies at once);
        otherwise the result is ALLOW with ``incomplete=True`` and the whole text is
        decided at the final Enter.
        """
        d = self.decide(command_line, user=user, groups=groups, target=target, state=state)
        if not d.incomplete:
            return d
        others = tuple(u for u in d.uncertain if u != "incomplete command")
        if d.action is Action.DENY or (others and self.on_uncertain is not Action.ALLOW) or (
                d.action is Action.APPROVE and d.rule is not None):
            return Decision(d.action, d.rule, others[0] if others and d.rule is None else
                            d.reason, d.commands, False, others)
        return Decision(Action.ALLOW, None, "unfinished command: waiting for the rest",
                        d.commands, incomplete=True)

    def decide_path(
        self, op: str, path: str, *, user: str, groups: Sequence[str], target: str
    ) -> Decision:
        """Decide a file transfer: the rules see ``sftp-<op> <normalized path>``, and
        effect rules see a write (put, mkdir, rename, setstat, symlink) or a removal
        (remove, rmdir, rename) of the path."""
        from gateway.policy.values import norm_path

        p = norm_path(path) if path.startswith("/") else path
        text = f"sftp-{op} {p}"
        effects: list[Effect] = []
        apath = astr(p) if p.startswith("/") else astr("~/", p)
        if op in ("put", "mkdir", "rename", "setstat", "symlink", "write", "fsetstat", "link"):
            effects.append(Effect("write", apath, source="sftp"))
        if op in ("remove", "rmdir", "rename"):
            effects.append(Effect("delete", apath, source="sftp"))
        cmd = CommandInfo(text.split(" ")[0], text, [View(None, text, text)], effects)
        return self._decide_commands([cmd], [], user=user, groups=groups, target=target)

    def decide_forward(
        self, kind: str, host: str, port: int, *, user: str, groups: Sequence[str], target: str
    ) -> Decision:
        """Decide a forwarding request: the rules see ``forward-<kind> host:port``."""
        text = f"forward-{kind} {host.lower()}:{int(port)}"
        cmd = CommandInfo(f"forward-{kind}", text, [View(None, text, text)])
        return self._decide_commands([cmd], [], user=user, groups=groups, target=target)

    # ------------------------------------------------------------------ internals

    def _expand_history(self, line: str, state: ShellState | None) -> str | None:
        """``!!`` from this session's previous line; anything else is unknown."""
        if state is None or state.last_line is None or not state.history_known:
            return None
        stripped = re.sub(r"!!", "\0", line)
        if _history_expansion(stripped.replace("\0", "")):
            return None
        return stripped.replace("\0", state.last_line)

    def _decide(self, an: Analyzer, *, user: str, groups: Sequence[str], target: str
                ) -> Decision:
        uncertain = list(an.uncertain)
        escapes: list[str] = []
        for s in an.starts:
            if s.kind in ("repl", "screen", "shell") and s.lang != "harmless":
                escapes.append(f"starts {s.name}, which has its own command prompt")
        d = self._decide_commands(an.commands, uncertain, user=user, groups=groups,
                                  target=target, escapes=escapes)
        gate = None
        more = tuple(r for r in an.input_readers if r not in d.uncertain)
        if more and d.action is Action.ALLOW:
            gate = more[0]
        elif more and d.action is Action.APPROVE:  # the approver sees every reason
            d = Decision(d.action, d.rule, d.reason, d.commands, uncertain=(*d.uncertain,
                                                                            *more))
        return Decision(d.action, d.rule, d.reason, d.commands, an.incomplete, d.uncertain,
                        getattr(an, "final_state", None), tuple(an.starts),
                        input_gate=gate)

    def _decide_commands(self, commands: Sequence[CommandInfo], uncertain: list[str], *,
                         user: str, groups: Sequence[str], target: str,
                         escapes: Sequence[str] = ()) -> Decision:
        scoped = [r for r in self.rules if r.applies(user=user, groups=groups, target=target)]
        action = Action.ALLOW
        deciding: Rule | None = None
        rule_unsure: list[str] = []
        deadline = time.thread_time() + MAX_SECONDS
        for k, cmd in enumerate(commands):
            if k % 16 == 15 and time.thread_time() > deadline:
                uncertain.append("line too long to analyse")  # the rest is not matched
                break
            a, rule, maybe = self._match(cmd, scoped)
            if SEVERITY[a] > SEVERITY[action] or (
                deciding is None and rule is not None and a is action
            ):
                action, deciding = a, rule
            for r in maybe if not cmd.definition else ():
                if SEVERITY[r.action] > SEVERITY[a]:
                    what = cmd.name or "a command"
                    reason = f"dynamic or glob argument of {what} may match rule {r.name!r}"
                    if reason not in rule_unsure:
                        rule_unsure.append(reason)
        uncertain = rule_unsure + [u for u in uncertain if u not in rule_unsure]
        shown = tuple(c.display for c in commands)
        if action is Action.DENY:
            return Decision(action, deciding.name if deciding else None,
                            _reason(action, deciding), shown, uncertain=tuple(uncertain))
        if escapes and SEVERITY[self.escapes] > SEVERITY[action]:
            return Decision(self.escapes, None, escapes[0], shown, uncertain=tuple(uncertain))
        if (uncertain and SEVERITY[self.on_uncertain] > SEVERITY[action]) or (
            uncertain and self.on_uncertain is action and deciding is None
        ):
            return Decision(self.on_uncertain, None, uncertain[0], shown,
                            uncertain=tuple(uncertain))
        return Decision(action, deciding.name if deciding else None, _reason(action, deciding),
                        shown, uncertain=tuple(uncertain))

    def _match(self, cmd: CommandInfo, scoped: Sequence[Rule]
               ) -> tuple[Action, Rule | None, list[Rule]]:
        maybe: list[Rule] = []
        for rule in scoped:
            m = _rule_matches(rule, cmd)
            if m == "yes":
                return rule.action, rule, maybe
            if m == "maybe":
                maybe.append(rule)
        return self.default, None, maybe


def _rule_matches(rule: Rule, cmd: CommandInfo) -> str:
    """``"yes"``, ``"maybe"`` (some value of the unknown parts would match) or ``"no"``."""
    views = _views_match(rule.match, cmd) if rule.match is not None else "no"
    if views == "yes":
        return "yes"
    effects = _effects_match(rule, cmd)
    if effects == "yes":
        return "yes"
    return "maybe" if "maybe" in (views, effects) else "no"


def _views_match(rx: re.Pattern[str], cmd: CommandInfo) -> str:
    """The rule's regex against the texts of a command."""
    result = "no"
    for v in cmd.views:
        if v.text is not None:
            if rx.search(v.text):
                if not v.maybe:
                    return "yes"
                result = "maybe"
            continue
        if rx.search(v.instance) and not v.maybe:
            return "yes"
        if result == "no" and v.node is not None and (
                v.head is None or _may_start(rx.pattern, rx.flags, v.head)
        ) and _could(rx, v.node):
            result = "maybe"
    return result


def _effects_match(rule: Rule, cmd: CommandInfo) -> str:
    """The rule's ``writes``/``deletes`` globs against the paths a command changes."""
    result = "no"
    for kind, globs in (("write", rule.writes), ("delete", rule.deletes)):
        if not globs:
            continue
        for e in cmd.effects:
            if e.kind != kind:
                continue
            for g in globs:
                m = _glob_matches(g, e.path)
                if m == "yes" and not e.maybe:
                    return "yes"
                if m != "no":
                    result = "maybe"
    return result


@functools.lru_cache(maxsize=8192)
def _may_start(pattern: str, flags: int, head: str) -> bool:
    """Could the rule match some text that starts with ``head`` (a command's name)? Most
    rules name their commands: this prunes the full check for every other command."""
    try:
        nfa = P.rule_nfa(pattern, flags)
    except (ValueError, TypeError):
        return True
    return P.intersects(nfa, P.astr_nfa((head, Hole.ANY)))


def _could(rx: re.Pattern[str], node: P.Node) -> bool:
    try:
        nfa = P.rule_nfa(rx.pattern, rx.flags)
    except (ValueError, TypeError):
        return True  # a regex we cannot model: fail closed
    return P.intersects(nfa, P.text_nfa(node))


_NOT_HOME = ("/dev/", "/proc/", "/sys/", "/etc/", "/usr/", "/bin/", "/sbin/", "/lib", "/boot/",
             "/run/")


@functools.lru_cache(maxsize=16384)
def _glob_matches(glob: str, path: AStr) -> str:
    if path == (Hole.ANY,):
        return "maybe"
    s = static(path)
    first = path[0] if path else ""
    if isinstance(first, str) and first.startswith("~") and not glob.startswith("~") and \
            glob.startswith(_NOT_HOME):
        return "no"  # a home directory is never under /dev, /etc, /usr...
    if s is not None:
        if P.glob_to_regex(glob).match(s):
            return "yes"
        if s.startswith("~") and not glob.startswith("~"):
            # the home directory is somewhere on the target: could be under the glob
            rest = s.split("/", 1)[1] if "/" in s else ""
            return "maybe" if _glob_matches(glob, astr(Hole.WORD, "/" + rest if rest else "")
                                            ) != "no" else "no"
        return "no"
    if isinstance(first, str) and first.startswith("~") and not glob.startswith("~"):
        _, _, rest = first.partition("/")
        path = astr(Hole.WORD, "/" + rest if rest or len(path) > 1 else "", *path[1:])
    if not P.affixes_clash(P.astr_affixes(path), P.glob_affixes(glob)) and P.intersects(
            P.glob_nfa(glob), P.astr_nfa(path)):
        return "maybe"
    return "no"


def _history_expansion(line: str) -> bool:
    """True if bash's interactive history expansion would rewrite the line."""
    if line.lstrip().startswith("^"):
        return True
    quote = ""
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if quote == "'":
            if c == "'":
                quote = ""
        elif c == "\\":
            i += 1
        elif c == "'" and not quote:
            quote = "'"
        elif c == '"':
            quote = "" if quote == '"' else '"'
        elif c == "!" and i + 1 < n:
            nxt = line[i + 1]
            prev = line[i - 1] if i else ""
            if nxt not in ' \t\n=("' and not (prev and prev in "${["):
                return True
        i += 1
    return False


def _reason(action: Action, rule: Rule | None) -> str:
    if rule is None:
        return {
            Action.ALLOW: "allowed",
            Action.DENY: "denied by default",
            Action.APPROVE: "needs approval by default",
        }[action]
    return {
        Action.ALLOW: f"allowed by rule {rule.name!r}",
        Action.DENY: f"denied by rule {rule.name!r}",
        Action.APPROVE: f"rule {rule.name!r} needs approval",
    }[action]
