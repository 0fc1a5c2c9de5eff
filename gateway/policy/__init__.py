"""Policy layer of bastille: pure (no I/O, no asyncio), fast to test exhaustively.

* ``PolicyEngine`` (rules.py): decides command lines, file transfers and forwarding
  requests against ordered rules; ``shell.py``/``normalize.py``/``options.py`` turn a
  line into normalized simple commands.
* ``LineTracker`` (linebuf.py): reconstructs the interactive command line at Enter.
* ``StreamMasker`` (masker.py): masks secrets in output streams.
* ``starter.py``: the starter rule set of the demo config.

See docs/policy.md for the language, the normalization and the limits.
"""

from gateway.policy.linebuf import InputEvent, LineSnapshot, LineTracker
from gateway.policy.masker import BUILTIN_PATTERNS, MaskPattern, StreamMasker
from gateway.policy.normalize import SimpleCommand
from gateway.policy.rules import Action, Decision, PolicyEngine, Rule
from gateway.policy.shell import Analysis, analyze
from gateway.policy.starter import STARTER_RULES, starter_rules, starter_toml

__all__ = [
    "BUILTIN_PATTERNS",
    "STARTER_RULES",
    "Action",
    "Analysis",
    "Decision",
    "InputEvent",
    "LineSnapshot",
    "LineTracker",
    "MaskPattern",
    "PolicyEngine",
    "Rule",
    "SimpleCommand",
    "StreamMasker",
    "analyze",
    "starter_rules",
    "starter_toml",
]
