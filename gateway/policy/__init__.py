"""Policy layer of bastille: pure (no I/O, no asyncio), fast to test exhaustively.

* ``PolicyEngine`` (rules.py): decides command lines, file transfers and forwarding
  requests against ordered rules; ``parse.py`` reads bash (on ``lexwords.py`` and
  ``lexer.py``), ``analyze.py`` interprets a line against a ``ShellState`` (state.py)
  with the carrier catalogue (catalogue.toml; handlers in builtins.py, and for programs
  handlers.py: programs.py and tools*.py; other languages in langs.py and
  program_langs.py); handlers see the analyser through ``ctx.py``; ``possible.py``
  decides whether a rule could match what is only partly known.
* ``PolicySession`` (session.py): one interactive session's policy state (the shell
  model, the program in the foreground, the keys that run a line); ``decide_snapshot``
  decides one line in a fresh session.
* ``LineTracker`` (linebuf.py): reconstructs the interactive command line at Enter.
* ``StreamMasker`` (masker.py): masks secrets in output streams.
* ``starter.py``: the starter rule set of the demo config.

See docs/policy.md for the language, the closed-world principle and the limits.
"""

from gateway.policy.linebuf import InputEvent, LineSnapshot, LineTracker
from gateway.policy.masker import BUILTIN_PATTERNS, MaskPattern, StreamMasker
from gateway.policy.rules import Action, Decision, PolicyEngine, Rule
from gateway.policy.session import PolicySession, decide_snapshot
from gateway.policy.starter import STARTER_RULES, starter_rules, starter_toml
from gateway.policy.state import ShellState

__all__ = [
    "BUILTIN_PATTERNS",
    "STARTER_RULES",
    "Action",
    "Decision",
    "InputEvent",
    "LineSnapshot",
    "LineTracker",
    "MaskPattern",
    "PolicyEngine",
    "PolicySession",
    "Rule",
    "ShellState",
    "StreamMasker",
    "decide_snapshot",
    "starter_rules",
    "starter_toml",
]
