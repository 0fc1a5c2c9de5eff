"""The syntax tree of a bash command line, as ``parse.py`` builds it.

Words keep their parts apart: literal text (with whether it was quoted, so globbing,
brace expansion, tilde expansion and word splitting are decided later, like bash does),
parameter expansions, command and process substitutions, arithmetic. Commands mirror
bash's grammar: simple commands, pipelines, and-or lists, sequences, and every compound
command bash has.

Known limits: none of its own; this module is data only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# --------------------------------------------------------------------------- words


@dataclass(frozen=True, slots=True)
class Lit:
    """Literal text after quote removal. ``quoted``: no glob, brace, tilde or split."""

    text: str
    quoted: bool


@dataclass(frozen=True, slots=True)
class Tilde:
    """An unquoted ``~`` or ``~user`` prefix (``text`` is what was written)."""

    text: str


@dataclass(frozen=True, slots=True)
class Param:
    """``$name``, ``${name}``, ``${name OP word}``, ``${#name}``, ``${!name}``...

    Attributes:
        name: the parameter (``x``, ``1``, ``@``, ``?``...), without subscript.
        source: as written.
        quoted: inside double quotes.
        op: ``""`` (plain), ``":-"``, ``"-"``, ``":="``, ``"="``, ``":+"``, ``"+"``,
            ``":?"``, ``"?"``, ``"#"`` (length), ``"!"`` (indirection), ``"other"``
            (pattern removal, substitution, case, slices, transformations...).
        word: the word operand of ``:-``-style operators.
        subscript: the ``[...]`` text, if any (arithmetic for indexed arrays).
        arith: arithmetic texts evaluated by the expansion (subscripts, offsets).
        inner: substitutions nested in operands (``${x:-$(cmd)}``, ``${x/$(a)/b}``).
        transform: the ``@X`` operator letter (``P`` runs prompt expansion).
    """

    name: str
    source: str
    quoted: bool
    op: str = ""
    word: Word | None = None
    subscript: str | None = None
    arith: tuple[str, ...] = ()
    inner: tuple[Part, ...] = ()
    transform: str = ""


@dataclass(frozen=True, slots=True)
class CmdSub:
    """``$(...)`` or a backquoted command: ``body`` runs in a subshell."""

    body: tuple[Command, ...]
    source: str
    quoted: bool


@dataclass(frozen=True, slots=True)
class ArithSub:
    """``$((...))`` or ``$[...]``."""

    expr: Arith
    quoted: bool


@dataclass(frozen=True, slots=True)
class ProcSub:
    """``<(...)`` or ``>(...)``: expands to a ``/dev/fd/N`` path."""

    body: tuple[Command, ...]
    direction: str
    source: str


Part = Lit | Tilde | Param | CmdSub | ArithSub | ProcSub


@dataclass(frozen=True, slots=True)
class Word:
    """One shell word: parts in order, and its source text."""

    parts: tuple[Part, ...]
    source: str

    @property
    def literal(self) -> str | None:
        """The word's text if it is made of literal parts only (any quoting)."""
        out: list[str] = []
        for p in self.parts:
            if isinstance(p, Lit):
                out.append(p.text)
            else:
                return None
        return "".join(out)

    @property
    def unquoted_literal(self) -> str | None:
        """The text if the word is one unquoted literal (keywords, alias names)."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Lit) and not self.parts[0].quoted:
            return self.parts[0].text
        return None


@dataclass(frozen=True, slots=True)
class Arith:
    """An arithmetic expression: its source, the expansions in it and its bare names.

    Bare names are variables whose *values* are evaluated as arithmetic in turn (so a
    value like ``a[$(cmd)]`` runs ``cmd``); the analyser treats unknown values as
    possibly running commands.
    """

    source: str
    parts: tuple[Part, ...]
    names: tuple[str, ...]
    subscripts: tuple[str, ...] = ()


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class Heredoc:
    """A here-document: its delimiter, whether it was quoted, its body.

    ``body`` is the literal text; ``word`` the body parsed for expansions when the
    delimiter is unquoted (None when quoted: the body is literal).
    """

    delimiter: str
    quoted: bool
    strip_tabs: bool
    body: str = ""
    word: Word | None = None
    complete: bool = True


@dataclass(slots=True)
class Redir:
    """One redirection: ``[fd]op target``.

    Attributes:
        fd: ``""``, digits, or ``{name}`` (bash allocates a descriptor).
        op: ``<``, ``>``, ``>>``, ``>|``, ``<>``, ``<&``, ``>&``, ``&>``, ``&>>``,
            ``<<``, ``<<-``, ``<<<``.
        target: the word (file, descriptor, here-string).
        heredoc: for ``<<`` and ``<<-``.
    """

    fd: str
    op: str
    target: Word | None = None
    heredoc: Heredoc | None = None


@dataclass(frozen=True, slots=True)
class Assign:
    """``NAME=value``, ``NAME+=value``, ``NAME[sub]=value``, ``NAME=(a b)``."""

    name: str
    value: Word | None
    append: bool = False
    array: tuple[Word, ...] | None = None
    subscript: str | None = None
    source: str = ""


@dataclass(frozen=True, slots=True)
class Simple:
    """A simple command: assignments, words, redirections."""

    assigns: tuple[Assign, ...]
    words: tuple[Word, ...]
    redirs: tuple[Redir, ...]


@dataclass(frozen=True, slots=True)
class Pipeline:
    """``[time] [!] a | b |& c``."""

    cmds: tuple[Command, ...]
    negated: bool = False
    timed: bool = False


@dataclass(frozen=True, slots=True)
class AndOr:
    """``a && b || c``: ``rest`` holds ``(operator, command)`` pairs."""

    first: Command
    rest: tuple[tuple[str, Command], ...]


@dataclass(frozen=True, slots=True)
class Sequence:
    """Commands separated by ``;``, ``&`` or newlines; ``background`` per item."""

    items: tuple[tuple[Command, bool], ...]


@dataclass(frozen=True, slots=True)
class Subshell:
    body: Sequence


@dataclass(frozen=True, slots=True)
class Group:
    body: Sequence


@dataclass(frozen=True, slots=True)
class If:
    clauses: tuple[tuple[Sequence, Sequence], ...]
    else_: Sequence | None


@dataclass(frozen=True, slots=True)
class While:
    cond: Sequence
    body: Sequence
    until: bool = False


@dataclass(frozen=True, slots=True)
class For:
    """``for``/``select NAME [in WORDS]; do ...; done`` (``words`` None: ``"$@"``)."""

    var: str
    words: tuple[Word, ...] | None
    body: Sequence
    select: bool = False


@dataclass(frozen=True, slots=True)
class ArithFor:
    init: Arith
    cond: Arith
    step: Arith
    body: Sequence


@dataclass(frozen=True, slots=True)
class CaseItem:
    patterns: tuple[Word, ...]
    body: Sequence | None
    terminator: str


@dataclass(frozen=True, slots=True)
class Case:
    word: Word
    items: tuple[CaseItem, ...]


@dataclass(frozen=True, slots=True)
class FuncDef:
    name: str
    body: Command
    source: str = ""


@dataclass(frozen=True, slots=True)
class Cond:
    """``[[ ... ]]``: operands (words) and operators (strings) in order."""

    items: tuple[Word | str, ...]


@dataclass(frozen=True, slots=True)
class ArithCmd:
    """``(( ... ))``."""

    expr: Arith


@dataclass(frozen=True, slots=True)
class Coproc:
    name: str | None
    body: Command


@dataclass(frozen=True, slots=True)
class Redirected:
    """A compound command with redirections after it."""

    body: Command
    redirs: tuple[Redir, ...]


Command = (
    Simple
    | Pipeline
    | AndOr
    | Sequence
    | Subshell
    | Group
    | If
    | While
    | For
    | ArithFor
    | Case
    | FuncDef
    | Cond
    | ArithCmd
    | Coproc
    | Redirected
)


@dataclass
class Parsed:
    """One complete command read from the input (up to an unquoted newline).

    ``source`` is the text it was read from (after alias expansion).
    """

    command: Command | None
    source: str
    heredocs: list[Heredoc] = field(default_factory=list)
