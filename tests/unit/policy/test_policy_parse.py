"""The bash parser and word expansion, checked against the real bash.

Differential: each case is typed after ``printf '%s\\0'`` and run by bash (in an empty
directory, with a fixed ``HOME``); the argv bash produces must be exactly the fields the
analyser expands the same words to. Then structural cases: what the parser must
accept, reject as an error, and report as unfinished.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile

import pytest

from gateway.policy.analyze import Analyzer
from gateway.policy.catalogue import load
from gateway.policy.parse import Incomplete, ParseError, Parser
from gateway.policy.state import ShellState
from gateway.policy.syntax import Sequence, Simple

BASH = shutil.which("bash") or "/bin/bash"
HOME = "/nonexistent-home-bastille"

WORDS = [
    "a b c",
    "'a b' c",
    '"a b" c',
    "a\\ b",
    "a\\\nb",
    "'a\\\nb'",
    '"a\\\nb"',
    "$'a\\tb' $'\\x41\\x42' $'\\101' $'\\u00e9' $'it\\'s'",
    '$"hello world"',
    "{a,b}c",
    "x{a,b{1,2}}y",
    "{1..5}",
    "{a..e}",
    "{05..10..2}",
    "{z..v..2}",
    '"{a,b}"',
    "\\{a,b\\}",
    "{a}",
    "{}",
    "{,}",
    "a{,b}",
    "'x'\"y\"z",
    '"a\\"b" "c\\$d" "e\\\\f" "g\\h"',
    "a#b #comment",
    "a\\#b",
    "~",
    "~/x",
    "a~b",
    "'~'",
    "\\~",
    "x=~/a",
    '"$HOME"',
    "${HOME}x",
    "${HOME:-no}",
    "${UNSET_BASTILLE:-dflt}",
    '"${UNSET_BASTILLE-$HOME}"',
    "$UNSET_BASTILLE x",
    '"$UNSET_BASTILLE" x',
    "${#HOME}",
    "a''b",
    "\"\"",
    "''",
    "a\"\"b",
    "\\'",
    "'\\'",
    '"\'"',
    "$'\\''",
    "a\\\\b",
    "x\\\n\\\ny",
    "--flag=value -x",
    "x=~/a:~/b",
    "x=a~",
    "--opt=~/x",
]


def _bash_argv(words: str, cwd: str) -> list[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": HOME, "LANG": "C.UTF-8"}
    script = f"set -- {words}\nfor a; do printf '%s\\0' \"$a\"; done"
    out = subprocess.run([BASH, "-c", script], capture_output=True, cwd=cwd, env=env,
                         timeout=10)
    return out.stdout.decode("utf-8", "surrogateescape").split("\0")[:-1]


def _our_argv(words: str) -> list[str] | None:
    line = f"printf '%s\\0' {words}"
    p = Parser(line)
    try:
        parsed = p.next()
    except ParseError:
        return None
    node = parsed.command if parsed else None
    while isinstance(node, Sequence):
        node = node.items[0][0]
    if not isinstance(node, Simple):
        return None  # the words made a compound command: compared elsewhere
    st = ShellState(interactive=False)
    st.vars["HOME"] = HOME
    an = Analyzer(load(), exec_mode=True)
    fields = []
    for w in node.words[2:]:
        fields.extend(an.expand(w, st))
    texts = [f.text for f in fields]
    if any(t is None for t in texts):
        return None
    return [t for t in texts if t is not None]


@pytest.fixture(scope="module")
def empty_dir() -> str:
    d = tempfile.mkdtemp(prefix="bastille-parse-")
    yield d  # type: ignore[misc]
    os.rmdir(d)


@pytest.mark.parametrize("words", WORDS)
def test_words_expand_like_bash(words: str, empty_dir: str) -> None:
    ours = _our_argv(words)
    if ours is None:
        pytest.skip("not a plain argv (operators or unknown values)")
    assert ours == _bash_argv(words, empty_dir), words


PIECES = ["a", "'b c'", '"d e"', "\\f", "$'g\\x68'", "{i,j}", "k\\\nl", '"$HOME"', "~"]


def test_generated_words_expand_like_bash(empty_dir: str) -> None:
    """Every pair and triple of the pieces above, glued together, one bash run each."""
    combos = ["".join(c) for n in (2, 3) for c in itertools.product(PIECES, repeat=n)]
    checked = 0
    for words in combos[:300]:
        ours = _our_argv(words)
        if ours is None:
            continue
        assert ours == _bash_argv(words, empty_dir), words
        checked += 1
    assert checked > 200


# --------------------------------------------------------------------------- structure


def _parse_all(text: str) -> list[object]:
    p = Parser(text, aliases={"ll": "ls -l ", "s": "sudo "}, expand_aliases=True)
    out = []
    while (c := p.next()) is not None:
        out.append(c.command)
    return out


@pytest.mark.parametrize("text", [
    "ls -la /tmp",
    "a && b || c; d & e",
    "a | b |& c",
    "! a",
    "time -p a | b",
    "{ a; b; } > /dev/null 2>&1",
    "(a; b) | c",
    "if a; then b; elif c; then d; else e; fi",
    "for i in 1 2; do echo $i; done",
    "for i in 1 2; { echo $i; }",
    "for ((i=0;i<3;i++)); do :; done",
    "while read l; do :; done < f",
    "until false; do break; done",
    "select x in a b; do break; done",
    "case $x in a|b) ls;; (c) pwd;& *) :;;& esac",
    "case x in esac",
    "f() { a; }",
    "function g { a; }",
    "function h() ( a )",
    "[[ $x =~ ^(a|b)+$ && -n $y || ! -e /x ]]",
    "[[ a < b ]]",
    "(( x = 1 + y[2] ))",
    "coproc cat",
    "coproc NAME { cat; }",
    "x=(1 2 3) y[1]=2 z+=3 cmd",
    "declare -a z=(1 $(a) 3)",
    "exec 3>&1 {fd}>x &>y 4<&- 5<>f",
    "cat <<EOF\nhi $(a)\nEOF",
    "cat <<-'EOF'\n\thi\n\tEOF",
    "cat <<A <<B\na\nA\nb\nB",
    "a <<< \"$x\"",
    "echo $(( $(a) + 1 )) $[1+2] ${x:-$(b)} ${#y} ${!z} ${a/b/$(c)} ${x@Q}",
    "echo `a \\`b\\``",
    "echo <(a) >(b)",
    "echo @(a|b) !(c) *(d) ?(e) +(f)",
    "ll /tmp",
    "s ll",
])
def test_parser_accepts(text: str) -> None:
    assert _parse_all(text)


@pytest.mark.parametrize("text", ["ls )(", "fi", "then x", "a && && b", "{ }", "a |", "(",
                                  "echo $(", "if true; then", "case x in", "echo 'x",
                                  'echo "x', "cat <<EOF\nno end", "a \\"])
def test_parser_rejects_or_waits(text: str) -> None:
    with pytest.raises(ParseError):
        _parse_all(text)


@pytest.mark.parametrize("text", ["a |", "echo $(", "if true; then", "echo 'x", "a \\",
                                  "cat <<EOF\nno end", "for i in 1; do"])
def test_unfinished_is_incomplete(text: str) -> None:
    with pytest.raises(Incomplete):
        _parse_all(text)


def test_alias_expansion_is_recursive_but_guarded() -> None:
    p = Parser("a", aliases={"a": "b", "b": "a x"}, expand_aliases=True)
    cmd = p.next().command  # type: ignore[union-attr]
    assert "a" in repr(cmd) and "x" in repr(cmd)
    p = Parser("a", aliases={"a": "a a a a"}, expand_aliases=True)
    assert p.next() is not None


def test_heredoc_delimiter_lines_join_like_bash() -> None:
    # bash joins "EO\\<newline>F" before comparing with the delimiter
    cmds = _parse_all("cat <<EOF\nx\nEO\\\nF\necho after")
    assert len(cmds) == 2
