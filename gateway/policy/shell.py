"""Parse a shell line with tree-sitter-bash into normalized simple commands.

``analyze(line)`` returns every simple command the line would run (in lists,
pipelines, subshells, command substitutions, function and alias bodies, ``sh -c``
strings...), each normalized by ``normalize.py``, plus the reasons the line cannot be
decided with certainty (dynamic command words, pipes into interpreters, history
expansion, parse errors).

Known limits: tree-sitter-bash recovers from some errors bash would reject and may
accept a few constructs bash parses differently; that is why any parse error makes the
line uncertain. Redirections of compound commands (``{ ...; } > /dev/sda``) are
reported only through their inner commands. Aliases and functions defined earlier in
the session (or in rc files) are invisible: a line is analysed on its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import tree_sitter
import tree_sitter_bash

from gateway.policy.normalize import (
    Context,
    SimpleCommand,
    Sink,
    analyze_argv,
    is_decoder,
    norm_path,
)
from gateway.policy.words import DYNAMIC_TYPES, Word, lex_word

_LANGUAGE = tree_sitter.Language(tree_sitter_bash.language())
MAX_LINE = 256 * 1024  # longer lines are not parsed: uncertain
MAX_NESTING = 8  # sh -c 'sh -c "..."' depth


@dataclass(frozen=True)
class Analysis:
    """What a line would run.

    Attributes:
        commands: normalized simple commands, in source order.
        uncertain: reasons the line cannot be decided with certainty (empty if none).
        incomplete: the line is syntactically unfinished (open quote, trailing
            backslash, open ``if``/``for``/heredoc): the shell would ask for more.
    """

    commands: tuple[SimpleCommand, ...]
    uncertain: tuple[str, ...]
    incomplete: bool = False


def analyze(line: str, *, interactive: bool = True) -> Analysis:
    """Analyse one shell line (which may hold several commands and newlines).

    Args:
        line: the command line.
        interactive: history expansion (``!!``, ``!rm``) only exists in interactive
            shells; pass False for exec requests.

    Returns:
        The analysis; never raises on bad input (a failure is an uncertainty).
    """
    parser = tree_sitter.Parser(_LANGUAGE)
    walker = _Walker(parser)
    sink = Sink(parse_nested=walker.nested)
    incomplete = False
    if len(line) > MAX_LINE:
        sink.unsure("command too long to analyse")
        return Analysis((), tuple(sink.uncertain))
    try:
        if interactive and _has_history_expansion(line):
            sink.unsure("history expansion")
        incomplete = walker.parse_into(line, sink, top=True)
    except RecursionError:
        sink.unsure("command too deeply nested")
    except Exception:  # fail closed: any analyser bug is an uncertainty, never an allow
        sink.unsure("could not analyse")
    return Analysis(tuple(sink.commands), tuple(sink.uncertain), incomplete)


def _has_history_expansion(line: str) -> bool:
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
            if nxt not in ' \t\n=("' and not (prev and prev in "${"):
                return True
        i += 1
    return False


class _Walker:
    """Walks tree-sitter trees, feeding commands into a sink."""

    def __init__(self, parser: tree_sitter.Parser) -> None:
        self.parser = parser
        self.depth = 0

    def nested(self, text: str, sink: Sink) -> None:
        """Analyse a command string found inside a command (``sh -c``, ``eval``)."""
        if self.depth >= MAX_NESTING:
            sink.unsure("command strings nested too deeply")
            return
        self.depth += 1
        try:
            self.parse_into(text, sink, top=False)
        finally:
            self.depth -= 1

    def parse_into(self, text: str, sink: Sink, *, top: bool) -> bool:
        """Parse ``text`` and walk it; return True if it looks syntactically unfinished."""
        src = text.encode("utf-8", "surrogateescape")
        tree = self.parser.parse(src)
        root = tree.root_node
        incomplete = False
        if root.has_error:
            incomplete = _looks_incomplete(text, root)
            sink.unsure("incomplete command" if incomplete and top else "could not parse")
        _Visit(self, src, sink).walk(root, Context())
        return incomplete


_OPEN = {"if": 1, "fi": -1, "do": 1, "done": -1, "case": 1, "esac": -1, "{": 1, "}": -1}
_HEREDOC_RE = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")
_TRAILING_OPS = ("|", "&&", "||", "|&")


def _looks_incomplete(text: str, root: tree_sitter.Node) -> bool:
    """True if bash would print its continuation prompt rather than run or reject.

    Deliberately narrow: an open quote, a trailing backslash or operator, more
    ``if/do/case/{/(`` than closers, or a here-document without its end line.
    Anything else tree-sitter rejects is "could not parse".
    """
    del root
    quote = ""
    depth = 0
    word: list[str] = []
    i, n = 0, len(text)

    def end_word() -> None:
        nonlocal depth
        if word:
            depth += _OPEN.get("".join(word), 0)
            word.clear()

    while i < n:
        c = text[i]
        if quote == "'":
            if c == "'":
                quote = ""
        elif quote == '"':
            if c == "\\":
                i += 1
            elif c == '"':
                quote = ""
        elif c == "\\":
            if i + 1 >= n:
                return True
            word.append(text[i : i + 2])
            i += 1
        elif c in "'\"":
            quote = c
            word.append("q")
        elif c == "#" and not word:
            while i < n and text[i] != "\n":
                i += 1
            continue
        elif c in " \t\n;&|":
            end_word()
        elif c == "(":
            end_word()
            depth += 1
        elif c == ")":
            end_word()
            depth -= 1
        else:
            word.append(c)
        i += 1
    end_word()
    if quote or depth > 0:
        return True
    if text.rstrip().endswith(_TRAILING_OPS):
        return True
    for m in _HEREDOC_RE.finditer(text):
        rest = text[m.end() :].split("\n")[1:]
        if not any(line.strip("\t") == m.group(2) for line in rest):
            return True
    return False


def _substitutions(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    """Outermost command/process substitutions inside ``node`` (not descending into them)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if n.type in ("command_substitution", "process_substitution"):
            yield n
            continue
        stack.extend(reversed(n.children))


def _iter(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


_STAGE_WRAPPERS = frozenset({"redirected_statement"})


class _Visit:
    def __init__(self, walker: _Walker, src: bytes, sink: Sink) -> None:
        self.walker = walker
        self.src = src
        self.sink = sink

    def text(self, node: tree_sitter.Node) -> str:
        return self.src[node.start_byte : node.end_byte].decode("utf-8", "surrogateescape")

    def word(self, node: tree_sitter.Node) -> Word:
        spans: list[tuple[int, int, str]] = []
        stack = [node]
        while stack:
            n = stack.pop()
            if n.type in DYNAMIC_TYPES:
                spans.append((n.start_byte, n.end_byte, n.type))
                continue
            stack.extend(n.children)
        spans.sort()
        return lex_word(self.src, node.start_byte, node.end_byte, spans)

    def walk(self, node: tree_sitter.Node, ctx: Context) -> None:
        t = node.type
        if t == "command":
            self.command(node, [], ctx)
        elif t == "redirected_statement":
            body = node.child_by_field_name("body")
            redirects = [c for c in node.children if c.type.endswith("_redirect")]
            inner_ctx = self.stdin_ctx(redirects, ctx)
            if body is not None and body.type == "command":
                self.command(body, redirects, inner_ctx)
            elif body is not None:
                self.walk(body, inner_ctx)
            for r in redirects:
                self.redirect_children(r)
        elif t == "pipeline":
            stages = [c for c in node.named_children if c.type != "comment"]
            for k, stage in enumerate(stages):
                self.walk(stage, ctx if k == 0 else Context("pipe"))
                if k + 1 < len(stages) and self.stage_is_decoder(stage):
                    self.sink.unsure("decoded data piped into another command")
        elif t in ("command_substitution", "process_substitution"):
            for c in node.named_children:
                self.walk(c, Context())
        elif t in ("declaration_command", "unset_command"):
            self.declaration(node)
        elif t == "function_definition":
            body = node.child_by_field_name("body")
            if body is not None:
                self.walk(body, Context())
        elif t in (
            "heredoc_body",
            "comment",
            "string_content",
            "raw_string",
            "word",
            "heredoc_start",
            "heredoc_end",
            "variable_name",
            "number",
        ):
            return
        else:
            if t == "ERROR" and not node.named_children:
                return
            for c in node.named_children:
                self.walk(c, ctx)

    def declaration(self, node: tree_sitter.Node) -> None:
        """``export X=1``, ``declare -x``, ``unset HISTFILE``: a command rules can see."""
        words = [self.word(c) for c in node.children if c.is_named and c.type != "comment"]
        keyword = node.children[0] if node.children else None
        name = self.text(keyword) if keyword is not None and not keyword.is_named else ""
        if name:
            argv = [name, *(w.value for w in words)]
            self.sink.commands.append(SimpleCommand(" ".join(argv), tuple(argv)))
        for c in node.children:
            for d in _substitutions(c):
                self.walk(d, Context())

    def stage_is_decoder(self, stage: tree_sitter.Node) -> bool:
        cmd = stage
        if cmd.type == "redirected_statement":
            body = cmd.child_by_field_name("body")
            if body is None:
                return False
            cmd = body
        if cmd.type != "command":
            return False
        return is_decoder(self.argv_words(cmd))

    def stdin_ctx(self, redirects: list[tree_sitter.Node], ctx: Context) -> Context:
        for r in redirects:
            if r.type == "heredoc_redirect":
                return Context("heredoc")
            if r.type == "herestring_redirect":
                return Context("herestring")
        return ctx

    def redirect_children(self, r: tree_sitter.Node) -> None:
        """Walk what tree-sitter nests inside a redirect (``cat <<EOF | sh``, ``$(...)``)."""
        for c in r.named_children:
            if c.type == "pipeline":
                for stage in c.named_children:
                    self.walk(stage, Context("pipe"))
            elif c.type in (
                "list",
                "command",
                "redirected_statement",
                "subshell",
                "compound_statement",
            ):
                self.walk(c, Context())
            else:
                for d in _substitutions(c):
                    self.walk(d, Context())

    def argv_words(self, node: tree_sitter.Node) -> list[Word]:
        words: list[Word] = []
        name = node.child_by_field_name("name")
        if name is None:
            return words
        target = name.named_children[0] if name.named_children else name
        words.append(self.word(target))
        for a in node.children_by_field_name("argument"):
            words.append(self.word(a))
        return words

    def redirect_text(self, r: tree_sitter.Node) -> str | None:
        if r.type != "file_redirect":
            return None
        dest = r.child_by_field_name("destination")
        op = "".join(
            self.text(c)
            for c in r.children
            if c is not dest and c.type not in ("file_descriptor",) and not c.is_named
        )
        if dest is None:
            return None
        return f"{op} {norm_path(self.word(dest).value)}"

    def command(
        self, node: tree_sitter.Node, redirects: list[tree_sitter.Node], ctx: Context
    ) -> None:
        inner_redirects = [c for c in node.children if c.type.endswith("_redirect")]
        all_redirects = [*inner_redirects, *redirects]
        ctx = self.stdin_ctx(inner_redirects, ctx)
        texts = [t for t in (self.redirect_text(r) for r in all_redirects) if t]
        analyze_argv(self.argv_words(node), texts, ctx, self.sink)
        # Commands hidden in arguments, assignments and redirects still run.
        for c in node.children:
            if c.type.endswith("_redirect") and c in inner_redirects:
                self.redirect_children(c)
                continue
            for d in _substitutions(c):
                self.walk(d, Context())
