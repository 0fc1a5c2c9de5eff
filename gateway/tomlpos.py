"""Find the line of each key in a TOML document, for error messages.

``tomllib`` parses but forgets positions; this scanner recovers them well enough to
point a user at the right line: table headers (``[a.b]``, ``[[a.b]]``), ``key = value``
and dotted keys. Keys inside inline tables and multi-line values resolve to the line of
the enclosing key. Paths use dots and ``[i]`` for arrays of tables: ``policy.rules[2].match``.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_PART = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_KEY = re.compile(rf"^\s*({_PART}(?:\s*\.\s*{_PART})*)\s*=")
_MULTI_START = re.compile(r'=\s*("""|\'\'\')')


def _split_key(raw: str) -> list[str]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", raw)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


def key_lines(text: str) -> dict[str, int]:
    """Map every dotted key path in ``text`` to its 1-based line number."""
    lines: dict[str, int] = {}
    counters: dict[str, int] = {}
    prefix = ""
    in_multiline: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if in_multiline in line:
                in_multiline = None
            continue
        header = _HEADER.match(line)
        if header and not line.lstrip().startswith("#"):
            name = ".".join(_split_key(header.group(2)))
            if header.group(1) == "[[":
                index = counters.get(name, 0)
                counters[name] = index + 1
                prefix = f"{name}[{index}]"
            else:
                prefix = name
            lines.setdefault(prefix, number)
            continue
        key = _KEY.match(line)
        if key:
            path = ".".join([*([prefix] if prefix else []), *_split_key(key.group(1))])
            lines.setdefault(path, number)
            multi = _MULTI_START.search(line)
            if multi and line.count(multi.group(1)) == 1:
                in_multiline = multi.group(1)
    return lines


def line_of(lines: dict[str, int], path: str) -> int | None:
    """Line of ``path`` or of its nearest enclosing key/table."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return None
