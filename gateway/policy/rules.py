"""Rules and the decision engine.

A rule is a regex searched in one normalized simple command (see ``normalize.py``),
scoped by target, user and group (fnmatch patterns). Rules are evaluated in order; the
first rule that applies and matches gives that command's action; a command no rule
matches gets the default action. A line's action is the most severe of its commands'
(deny > approve > allow). Uncertainty (a dynamic command word, a pipe into an
interpreter, a parse error...) turns the line into ``on_uncertain`` unless a deny
already applies.

Known limits: see docs/policy.md "Limits". The engine is pure and thread-safe (it
keeps no per-call state), so the relay may call it from worker threads.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from gateway.policy.linebuf import LineSnapshot
from gateway.policy.normalize import SimpleCommand, norm_path
from gateway.policy.shell import Analysis, analyze


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
        match: regex searched (``re.search``) in the normalized simple command; anchor
            it with ``^`` and ``$`` to match whole commands.
        action: what a match does.
        targets, users, groups: fnmatch patterns; the rule applies if the target, the
            user and one of the user's groups match (``*`` also matches a user in no
            group).
    """

    name: str
    match: re.Pattern[str]
    action: Action
    targets: tuple[str, ...] = ("*",)
    users: tuple[str, ...] = ("*",)
    groups: tuple[str, ...] = ("*",)

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
        commands: the normalized simple commands seen, in order.
        incomplete: the line is unfinished (the shell will ask for more); only set by
            ``decide_partial``.
    """

    action: Action
    rule: str | None
    reason: str
    commands: tuple[str, ...]
    incomplete: bool = False


class PolicyEngine:
    """Decides lines, file transfers and forwarding requests against ordered rules."""

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        default: Action = Action.ALLOW,
        on_uncertain: Action = Action.APPROVE,
    ) -> None:
        """Create an engine.

        Args:
            rules: evaluated in order, first match wins.
            default: action for a command no rule matches.
            on_uncertain: action for a line the engine cannot read with certainty.
        """
        self.rules = tuple(rules)
        self.default = Action(default)
        self.on_uncertain = Action(on_uncertain)

    # ------------------------------------------------------------------ public

    def decide(
        self,
        command_line: str,
        *,
        user: str,
        groups: Sequence[str],
        target: str,
        interactive: bool = True,
    ) -> Decision:
        """Decide one complete command line.

        Args:
            command_line: the line as the shell would read it (may contain newlines).
            user: bastion user name.
            groups: the user's groups.
            target: target name.
            interactive: False for exec requests (no history expansion there).

        Returns:
            The decision. An unfinished line is uncertain here (an exec request runs
            what it has); the relay uses ``decide_partial`` for an interactive Enter.
        """
        analysis = analyze(command_line, interactive=interactive)
        return self._decide(analysis, user=user, groups=groups, target=target)

    def decide_partial(
        self,
        command_line: str,
        *,
        user: str,
        groups: Sequence[str],
        target: str,
    ) -> Decision:
        """Decide an interactive line at Enter, allowing an unfinished line to continue.

        An unfinished line (open quote, trailing backslash, open ``for``/``if``/heredoc)
        does not run yet: the shell prints its continuation prompt. Its visible commands
        are still checked (a deny or approve applies at once); otherwise the result is
        ALLOW with ``incomplete=True`` and the whole text is decided at the final Enter.
        """
        analysis = analyze(command_line, interactive=True)
        if not analysis.incomplete:
            return self._decide(analysis, user=user, groups=groups, target=target)
        others = tuple(u for u in analysis.uncertain if u != "incomplete command")
        partial = Analysis(analysis.commands, others, True)
        d = self._decide(partial, user=user, groups=groups, target=target)
        if d.action is Action.ALLOW:
            return Decision(
                Action.ALLOW,
                None,
                "unfinished command: waiting for the rest",
                d.commands,
                incomplete=True,
            )
        return d

    def decide_snapshot(
        self,
        snapshot: LineSnapshot,
        *,
        user: str,
        groups: Sequence[str],
        target: str,
    ) -> Decision:
        """Decide an interactive Enter from a ``LineTracker`` snapshot.

        * alternate screen (a full-screen program): ALLOW, the line is not a shell
          line (the tracker raised an ``alternate_screen`` signal for the audit);
        * echo off (password prompt): only rules are matched against the typed keys
          (never uncertainty, a password is not shell); the keys are never returned;
        * echo pending (the relay read the line before the target echoed it) and keys
          that cannot be modelled: ``on_uncertain``;
        * otherwise the screen text, the raw row (when the prompt was guessed) and the
          keystroke model (when complete) are all decided with ``decide_partial``;
          the most severe wins.
        """
        if snapshot.alternate_screen:
            return Decision(Action.ALLOW, None, "full-screen program: not a shell line", ())
        if snapshot.echo_off:
            hidden = snapshot.hidden_typed or ""
            a = analyze(hidden, interactive=True)
            d = self._decide(Analysis(a.commands, ()), user=user, groups=groups, target=target)
            if d.action is Action.ALLOW:
                return Decision(Action.ALLOW, None, "typed without echo", ())
            return Decision(d.action, d.rule, d.reason, ("(typed without echo)",))
        if snapshot.echo_pending and snapshot.typed is None:
            # The screen is stale and the keys cannot be modelled (Tab, history...).
            return Decision(self.on_uncertain, None, "line not echoed yet", ())
        texts = [snapshot.text]
        if snapshot.prompt_guessed and snapshot.raw and snapshot.raw not in texts:
            texts.append(snapshot.raw)
        if snapshot.typed is not None and snapshot.typed not in texts:
            texts.append(snapshot.typed)
        best: Decision | None = None
        commands: list[str] = []
        for t in texts:
            d = self.decide_partial(t, user=user, groups=groups, target=target)
            commands.extend(c for c in d.commands if c not in commands)
            if best is None or SEVERITY[d.action] > SEVERITY[best.action]:
                best = d
        assert best is not None
        return Decision(
            best.action,
            best.rule,
            best.reason,
            tuple(commands),
            incomplete=best.incomplete and best.action is Action.ALLOW,
        )

    def decide_path(
        self, op: str, path: str, *, user: str, groups: Sequence[str], target: str
    ) -> Decision:
        """Decide a file transfer: the rules see ``sftp-<op> <normalized path>``.

        Args:
            op: ``get``, ``put``, ``remove``, ``rename``, ``mkdir``, ``rmdir``,
                ``setstat``, ``symlink``, ``list``... (the relay's names).
            path: the path the client asked for.
        """
        p = norm_path(path) if path.startswith("/") else path
        return self._decide_texts([f"sftp-{op} {p}"], user=user, groups=groups, target=target)

    def decide_forward(
        self, kind: str, host: str, port: int, *, user: str, groups: Sequence[str], target: str
    ) -> Decision:
        """Decide a forwarding request: the rules see ``forward-<kind> host:port``.

        Args:
            kind: ``local``, ``remote``, ``agent``, ``x11``... (the relay's names).
            host: destination (local) or bind address (remote), lower-cased here.
            port: port number.
        """
        text = f"forward-{kind} {host.lower()}:{int(port)}"
        return self._decide_texts([text], user=user, groups=groups, target=target)

    # ------------------------------------------------------------------ internals

    def _match(self, text: str, scoped: Sequence[Rule]) -> tuple[Action, Rule | None]:
        for rule in scoped:
            if rule.match.search(text):
                return rule.action, rule
        return self.default, None

    def _decide_texts(
        self, texts: Sequence[str], *, user: str, groups: Sequence[str], target: str
    ) -> Decision:
        analysis = Analysis(tuple(SimpleCommand(t, tuple(t.split(" "))) for t in texts), ())
        return self._decide(analysis, user=user, groups=groups, target=target)

    def _decide(
        self, analysis: Analysis, *, user: str, groups: Sequence[str], target: str
    ) -> Decision:
        scoped = [r for r in self.rules if r.applies(user=user, groups=groups, target=target)]
        action = Action.ALLOW
        deciding: Rule | None = None
        uncertain = list(analysis.uncertain)
        for cmd in analysis.commands:
            a, rule = self._match(cmd.text, scoped)
            if SEVERITY[a] > SEVERITY[action] or (
                deciding is None and rule is not None and a is action
            ):
                action, deciding = a, rule
            for probe in cmd.probes:
                pa, prule = self._match(probe, scoped)
                if SEVERITY[pa] > SEVERITY[a]:
                    what = cmd.argv[0] if cmd.argv else "command"
                    name = f" {prule.name!r}" if prule else ""
                    reason = f"dynamic or glob argument of {what} may match rule{name}"
                    if reason not in uncertain:
                        uncertain.append(reason)
                    break
        commands = tuple(c.text for c in analysis.commands)
        if action is Action.DENY:
            assert deciding is not None or self.default is Action.DENY
            return Decision(
                action, deciding.name if deciding else None, _reason(action, deciding), commands
            )
        if (uncertain and SEVERITY[self.on_uncertain] > SEVERITY[action]) or (
            uncertain and self.on_uncertain is action and deciding is None
        ):
            return Decision(self.on_uncertain, None, uncertain[0], commands)
        return Decision(
            action, deciding.name if deciding else None, _reason(action, deciding), commands
        )


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
