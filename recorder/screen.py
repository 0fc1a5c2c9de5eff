"""A guarded pyte terminal: sanitised input, crash containment, snapshot/restore.

pyte is slow (~1.2 MiB/s), so this runs only off the event loop (after a session closes,
in the background thread, or in a reader). Guards for known pyte 0.8.2 problems:

* ``ESC[>...m`` (xterm modifyOtherKeys, sent by vim) crashed some pyte paths: every
  ``ESC[>`` sequence is dropped before parsing (it never changes what is displayed).
* A CSI with a long parameter run is quadratic (and over 4300 digits raises): CSI
  sequences with 64+ parameter characters are dropped.
* Any other exception raised by pyte's parser is contained: the parser is reset and
  ``errors`` is incremented; the screen keeps what it had.

Escape sequences split across feeds are held back (up to 4 KiB) so they are never cut
by the sanitiser, and so a snapshot is always taken with the parser in its ground state.
Bytes are decoded as UTF-8 with U+FFFD for invalid sequences.

* pyte's ``Screen.display`` raises on an empty cell left by a resize that cut a wide
  character: :meth:`Terminal.display` renders the buffer itself.

* pyte has no alternate screen: :class:`_AltScreen` adds one (private modes 47, 1047,
  1049): entering saves the main screen and cursor and clears, leaving restores them, so
  a replay shows the shell again after vim/less/htop exit.

Known limits: no scrollback here; cells hidden by a shrinking resize are not part of a
snapshot.
"""

from __future__ import annotations

import codecs
import re
from typing import Any

import pyte
from pyte.charsets import MAPS
from pyte.screens import Char, Cursor, Margins, Savepoint

_CARRY_MAX = 4096
_PRIVATE_GT = re.compile(r"\x1b\[>[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?")
_LONG_CSI = re.compile(r"\x1b\[[\x30-\x3f]{64,}[\x20-\x2f]*[\x40-\x7e]?")
_FLAGS = ("bold", "italics", "underscore", "strikethrough", "reverse", "blink")
_SINGLE = 0x80  # run flag: one cell whose data is not exactly one character
_DEFAULT = Char(" ")


def sanitize(text: str) -> str:
    """Remove the sequences known to crash or stall pyte."""
    if "\x1b[" not in text:
        return text
    text = _PRIVATE_GT.sub("", text)
    return _LONG_CSI.sub("", text)


def incomplete_tail(text: str) -> int:
    """Index where an unfinished escape sequence starts at the end of ``text`` (else len)."""
    i = text.rfind("\x1b")
    if i < 0:
        return len(text)
    tail = text[i:]
    if len(tail) < 2:
        return i
    kind = tail[1]
    if kind == "[":
        j = 2
        while j < len(tail) and "\x20" <= tail[j] <= "\x3f":
            j += 1
        return len(text) if j < len(tail) else i
    if kind in "]P_^X":
        return len(text) if "\x07" in tail else i
    if "\x20" <= kind <= "\x2f":
        return len(text) if len(tail) >= 3 else i
    return len(text)


def _attrs(c: Char) -> tuple[str, str, int]:
    flags = 0
    for bit, name in enumerate(_FLAGS):
        if getattr(c, name):
            flags |= 1 << bit
    return c.fg, c.bg, flags


def _char(data: str, fg: str, bg: str, flags: int) -> Char:
    kw = {name: bool(flags & (1 << bit)) for bit, name in enumerate(_FLAGS)}
    return Char(data, fg, bg, **kw)


def _charset_name(table: str) -> str:
    for name, mapping in MAPS.items():
        if mapping == table:
            return name
    return "B"


_ALT_MODES = (47, 1047, 1049)


class _AltScreen(pyte.Screen):
    """pyte screen with an alternate screen buffer (see the module docstring)."""

    def __init__(self, columns: int, lines: int) -> None:
        super().__init__(columns, lines)
        self.saved_main: tuple[dict[int, dict[int, Char]], Cursor] | None = None

    def set_mode(self, *modes: int, **kwargs: Any) -> None:
        if kwargs.get("private") and any(m in _ALT_MODES for m in modes):
            if self.saved_main is None:
                lines = {y: dict(self.buffer[y]) for y in range(self.lines)}
                cur = self.cursor
                saved = Cursor(cur.x, cur.y, cur.attrs)
                saved.hidden = cur.hidden
                self.saved_main = (lines, saved)
                self.erase_in_display(2)
            modes = tuple(m for m in modes if m not in _ALT_MODES)
            if not modes:
                return
        super().set_mode(*modes, **kwargs)

    def reset_mode(self, *modes: int, **kwargs: Any) -> None:
        if kwargs.get("private") and any(m in _ALT_MODES for m in modes):
            if self.saved_main is not None:
                lines, cur = self.saved_main
                self.saved_main = None
                self.erase_in_display(2)
                for y, row in lines.items():
                    if y < self.lines:
                        line = self.buffer[y]
                        for x, ch in row.items():
                            if x < self.columns:
                                line[x] = ch
                restored = Cursor(min(cur.x, self.columns - 1), min(cur.y, self.lines - 1),
                                  cur.attrs)
                restored.hidden = cur.hidden
                self.cursor = restored
                self.dirty.update(range(self.lines))
            modes = tuple(m for m in modes if m not in _ALT_MODES)
            if not modes:
                return
        super().reset_mode(*modes, **kwargs)


class Terminal:
    """A terminal screen fed with raw output bytes.

    Args:
        cols: width in cells (clamped to 1..1000).
        rows: height in cells (clamped to 1..1000).
    """

    def __init__(self, cols: int = 80, rows: int = 24) -> None:
        cols = min(max(int(cols), 1), 1000)
        rows = min(max(int(rows), 1), 1000)
        self.screen = _AltScreen(cols, rows)
        self.stream = pyte.Stream(self.screen)
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._carry = ""
        self.errors = 0

    def feed(self, data: bytes) -> None:
        """Feed output bytes (any bytes; invalid UTF-8 becomes U+FFFD)."""
        text = self._carry + self._decoder.decode(data)
        cut = incomplete_tail(text)
        if len(text) - cut > _CARRY_MAX:
            cut = len(text)
        text, self._carry = text[:cut], text[cut:]
        if text:
            self._feed_text(sanitize(text))

    def _feed_text(self, text: str) -> None:
        try:
            self.stream.feed(text)
        except Exception:  # pyte parser bug: contain it, reset the parser, keep the screen
            self.errors += 1
            self.stream = pyte.Stream(self.screen)

    def resize(self, cols: int, rows: int) -> None:
        cols = min(max(int(cols), 1), 1000)
        rows = min(max(int(rows), 1), 1000)
        try:
            self.screen.resize(rows, cols)
        except Exception:  # pyte bug guard, same policy as feed
            self.errors += 1

    @property
    def size(self) -> tuple[int, int]:
        return self.screen.columns, self.screen.lines

    def display(self) -> list[str]:
        """The visible lines as text (trailing spaces kept, one str per row).

        pyte's own ``display`` raises on an empty cell left by a resize that cut a wide
        character; here the second cell of a wide character simply adds nothing.
        """
        s = self.screen
        cols = range(s.columns)
        return ["".join(s.buffer[y][x].data for x in cols) for y in range(s.lines)]

    def text_lines(self) -> list[str]:
        """The visible, non-blank lines with trailing spaces removed."""
        return [line.rstrip() for line in self.display() if line.strip()]

    # ----------------------------------------------------------- snapshot/restore

    def _row(self, y: int) -> list[list[Any]]:
        return self._runs(self.screen.buffer[y])

    def _runs(self, line: Any) -> list[list[Any]]:
        runs: list[list[Any]] = []
        cur: list[Any] | None = None
        for x in range(self.screen.columns):
            c = line.get(x, _DEFAULT) if isinstance(line, dict) and not hasattr(
                line, "default") else line[x]
            if c == _DEFAULT:
                cur = None
                continue
            fg, bg, flags = _attrs(c)
            if len(c.data) != 1:
                runs.append([x, fg, bg, flags | _SINGLE, c.data])
                cur = None
            elif (
                cur is not None
                and cur[1] == fg
                and cur[2] == bg
                and cur[3] == flags
                and cur[0] + len(cur[4]) == x
            ):
                cur[4] += c.data
            else:
                cur = [x, fg, bg, flags, c.data]
                runs.append(cur)
        return runs

    @staticmethod
    def _cursor(cur: Cursor) -> list[Any]:
        return [cur.x, cur.y, bool(cur.hidden), *_attrs(cur.attrs)]

    @staticmethod
    def _make_cursor(v: list[Any]) -> Cursor:
        cur = Cursor(int(v[0]), int(v[1]), _char(" ", str(v[3]), str(v[4]), int(v[5])))
        cur.hidden = bool(v[2])
        return cur

    def snapshot(self) -> dict[str, Any]:
        """The full terminal state as a JSON-serialisable dict."""
        s = self.screen
        return {
            "cols": s.columns,
            "rows": s.lines,
            "lines": [self._row(y) for y in range(s.lines)],
            "cursor": self._cursor(s.cursor),
            "mode": sorted(s.mode),
            "margins": [s.margins.top, s.margins.bottom] if s.margins else None,
            "tabstops": sorted(s.tabstops),
            "charset": s.charset,
            "g0": _charset_name(s.g0_charset),
            "g1": _charset_name(s.g1_charset),
            "save": [
                [
                    self._cursor(p.cursor),
                    _charset_name(p.g0_charset),
                    _charset_name(p.g1_charset),
                    p.charset,
                    bool(p.origin),
                    bool(p.wrap),
                ]
                for p in s.savepoints
            ],
            "alt": None if s.saved_main is None else [
                [[y, self._runs(row)] for y, row in s.saved_main[0].items() if row],
                self._cursor(s.saved_main[1]),
            ],
            "title": s.title,
            "icon": s.icon_name,
            "carry": self._carry,
            "dec": self._decoder.getstate()[0].hex(),
        }

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any]) -> Terminal:
        """Rebuild a terminal from :meth:`snapshot` output (trusted, locally built data)."""
        term = cls(int(snap["cols"]), int(snap["rows"]))
        s = term.screen
        for y, runs in enumerate(snap["lines"]):
            line = s.buffer[y]
            for x, fg, bg, flags, data in runs:
                if flags & _SINGLE:
                    line[x] = _char(data, fg, bg, flags & ~_SINGLE)
                else:
                    for i, ch in enumerate(data):
                        line[x + i] = _char(ch, fg, bg, flags)
        s.cursor = cls._make_cursor(snap["cursor"])
        s.mode = set(snap["mode"])
        s.margins = Margins(*snap["margins"]) if snap["margins"] else None
        s.tabstops = set(snap["tabstops"])
        s.charset = int(snap["charset"])
        s.g0_charset = MAPS.get(snap["g0"], MAPS["B"])
        s.g1_charset = MAPS.get(snap["g1"], MAPS["B"])
        s.savepoints = [
            Savepoint(
                cls._make_cursor(p[0]),
                MAPS.get(p[1], MAPS["B"]),
                MAPS.get(p[2], MAPS["B"]),
                int(p[3]),
                bool(p[4]),
                bool(p[5]),
            )
            for p in snap["save"]
        ]
        alt = snap.get("alt")
        if alt:
            saved: dict[int, dict[int, Char]] = {}
            for y, runs in alt[0]:
                row: dict[int, Char] = {}
                for x, fg, bg, flags, data in runs:
                    if flags & _SINGLE:
                        row[x] = _char(data, fg, bg, flags & ~_SINGLE)
                    else:
                        for i, ch in enumerate(data):
                            row[x + i] = _char(ch, fg, bg, flags)
                saved[int(y)] = row
            s.saved_main = (saved, cls._make_cursor(alt[1]))
        s.title = snap["title"]
        s.icon_name = snap["icon"]
        term._carry = snap["carry"]
        term._decoder.setstate((bytes.fromhex(snap["dec"]), 0))
        return term
