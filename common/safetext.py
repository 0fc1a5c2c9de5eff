"""The one sanitiser for everything a human's terminal shows.

Commands, paths, user names, reasons and terminal output come from users and targets.
Anything of theirs that bastille prints (CLI tables, ``bastille audit``, ``sessions
show``, approval lists and replies, the player's lists and panes, webhook texts, raw
replay with ``bastille play``) goes through one of these two functions first:

* :func:`visible` for text in tables, lists and messages: every control character is
  shown as a visible escape (``\\x1b``, ``\\r``, ``\\u202e``) and never reaches the
  terminal as a control. That covers C0 and DEL, C1 (U+0080-U+009F), the Unicode
  bidirectional overrides and isolates ("Trojan Source"), zero-width characters, and the
  line and paragraph separators. Printable text, including non-ASCII, is unchanged.
* :class:`TerminalFilter` for a recorded terminal stream replayed raw: an *allowlist* of
  what draws on a screen (text, colours and attributes, cursor movement, erasing,
  scrolling regions, the alternate screen, cursor visibility, line-drawing charsets) is
  kept; everything else is dropped: OSC (window title, clipboard OSC 52, hyperlinks,
  palette changes, notifications), DCS/APC/PM/SOS strings, report requests (device
  status, device attributes, mode and window reports), mouse, focus, bracketed-paste
  and keyboard modes, terminal resets, the bell, and C1 controls.

Known limits: ``visible`` does not escape backslashes, so the typed text ``\\x1b`` and
an escaped ESC look alike (neither is interpreted). The filter keeps colours exactly,
so text can still be drawn in the background colour (it is still there to copy).
"""

from __future__ import annotations

import re

_CONTROL_RE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
    "\ufff9-\ufffb]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\x1b"}


def _escape(m: re.Match[str]) -> str:
    ch = m.group(0)
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(value: object, *, newlines: bool = False) -> str:
    """``value`` as text that no terminal interprets: controls become visible escapes.

    Args:
        value: any value; bytes are decoded as UTF-8 with replacement.
        newlines: keep ``\\n`` as a line break (multi-line messages); tabs become
            spaces. Otherwise a newline is shown as ``\\n`` (one table cell, one line).
    """
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", "replace")
    else:
        text = value if isinstance(value, str) else str(value)
    if newlines:
        return "\n".join(_CONTROL_RE.sub(_escape, line.replace("\t", "    "))
                         for line in text.split("\n"))
    return _CONTROL_RE.sub(_escape, text)


# ----------------------------------------------------------------------- raw replay

MAX_PENDING = 4096  # an unfinished escape sequence longer than this is dropped

# CSI final bytes that only draw: SGR, cursor movement, erase, insert/delete, scroll,
# scroll region, save/restore cursor (without a private prefix, checked below)
_CSI_DRAW = frozenset(b"mABCDEFGHJKLMPSTXZ@`abdefrsu")
# DEC private modes that only change what is drawn: cursor keys are left out (they
# change what the auditor's keys send), as are mouse, focus and paste modes
_SAFE_MODES = frozenset({b"?25", b"?7", b"?6", b"?1049", b"?1047", b"?47", b"?1048", b"4",
                         b"?12", b"?5"})
_ESC_KEEP = frozenset(b"78MDE")  # save/restore cursor, reverse index, index, next line

_SEQ_RE = re.compile(
    rb"\x1b\[(?P<cp>[\x30-\x3f]*)(?P<ci>[\x20-\x2f]*)(?P<cf>[\x40-\x7e])"  # CSI
    rb"|\x1b\](?:[^\x07\x1b]|\x1b(?!\\))*(?:\x07|\x1b\\)"  # OSC ... BEL/ST
    rb"|\x1b[PX^_](?:[^\x1b]|\x1b(?!\\))*\x1b\\"  # DCS/SOS/PM/APC ... ST
    rb"|\x1b(?P<cs>[()*+-./])(?P<cc>[\x20-\x2f]*[\x30-\x7e])"  # charset designation
    rb"|\x1b(?P<ei>[\x20-\x2f]*)(?P<ef>[\x30-\x7e])"  # other two-byte escapes
    rb"|\xc2[\x80-\x9f]"  # C1 controls encoded in UTF-8
    rb"|(?P<ctl>[\x00-\x07\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f])"  # C0 but BS, TAB, LF, CR, ESC
    rb"|\x1b"  # an ESC that starts nothing kept
)
_STRING_START_RE = re.compile(rb"\x1b[\]PX^_]")
_SHORT_PARTIAL_RE = re.compile(rb"\x1b(?:\[[\x30-\x3f]*[\x20-\x2f]*|[\x20-\x2f]*)")


def _unfinished(data: bytes) -> int:
    """Where an escape sequence left unfinished at the end of ``data`` starts (or -1)."""
    low = max(0, len(data) - MAX_PENDING)
    strings = list(_STRING_START_RE.finditer(data, low))
    if strings:
        j = strings[-1].start()
        body = data[j + 2:]
        ended = b"\x1b\\" in body or (data[j + 1] == ord("]") and b"\x07" in body)
        if not ended:
            return j
    i = data.rfind(b"\x1b", low)
    if i >= 0 and _SHORT_PARTIAL_RE.fullmatch(data, i):
        return i
    if data.endswith(b"\xc2"):
        return len(data) - 1
    return -1


def _keep(m: re.Match[bytes]) -> bytes:
    if m.group("cf") is not None:
        params, inter, final = m.group("cp"), m.group("ci"), m.group("cf")[0]
        if inter:
            return b""  # DECSCUSR, DECRQM and friends: not needed to draw
        if final in (ord("h"), ord("l")):
            modes = params.split(b";")
            prefix = b"?" if params.startswith(b"?") else b""
            safe = [x for x in modes if (x if x.startswith(b"?") or not prefix
                                         else prefix + x) in _SAFE_MODES]
            if not safe:
                return b""
            first = safe[0] if safe[0].startswith(prefix) else prefix + safe[0]
            rest = [x.lstrip(b"?") for x in safe[1:]]
            return b"\x1b[" + b";".join([first, *rest]) + bytes([final])
        if params[:1] in (b"<", b"=", b">", b"?") or final not in _CSI_DRAW:
            return b""  # reports, keyboard modes, window operations, private CSI
        if final == ord("m") and len(params) > 64:
            return b""
        return m.group(0)
    if m.group("cs") is not None:
        return m.group(0)
    if m.group("ef") is not None:
        if not m.group("ei") and m.group("ef")[0] in _ESC_KEEP:
            return m.group(0)
        return b""
    return b""  # OSC, DCS/SOS/PM/APC, C1, other C0 controls


def _fixpoint(data: bytes) -> bytes:
    """Filter until nothing changes: dropping a sequence joins its neighbours, and the
    join must not form a new one (e.g. a lone ESC, a dropped sequence, then ``]52;``)."""
    while True:
        out = _SEQ_RE.sub(_keep, data)
        if out == data:
            return out
        data = out


class TerminalFilter:
    """Stateful filter for a terminal stream replayed into a real terminal (see module
    docstring); feed chunks in order, sequences split across chunks are handled."""

    def __init__(self) -> None:
        self._pending = b""
        self._after_c2 = False  # the last byte written was a UTF-8 lead byte \xc2

    def feed(self, data: bytes) -> bytes:
        data = self._pending + data
        self._pending = b""
        cut = _unfinished(data)
        if cut >= 0:
            self._pending = data[cut:]
            data = data[:cut]
            if len(self._pending) >= MAX_PENDING:
                self._pending = b""  # an endless sequence: drop it
        out = _fixpoint(data)
        if out.endswith(b"\xc2"):
            # what follows a dropped sequence must not complete a C1 control (\xc2\x9b)
            # with it: the lead byte waits for the next chunk
            self._pending = b"\xc2" + self._pending
            out = out[:-1]
        # the output so far may end with a lead byte that was followed by a dropped
        # sequence: a continuation byte now must not complete a C1 control with it
        while self._after_c2 and out[:1] and 0x80 <= out[0] <= 0x9F:
            out = out[1:]
        if out:
            self._after_c2 = out.endswith(b"\xc2")
        return out

    def flush(self) -> bytes:
        """End of stream: an unfinished escape sequence is dropped (a lone UTF-8 lead
        byte is kept: it cannot start anything any more)."""
        pending, self._pending = self._pending, b""
        lead = b""
        if pending.startswith(b"\xc2"):
            lead, pending = b"\xc2", pending[1:]
        return lead + (b"" if pending.startswith(b"\x1b") else pending)


def safe_replay(data: bytes) -> bytes:
    """One whole terminal stream, filtered (see :class:`TerminalFilter`)."""
    f = TerminalFilter()
    return f.feed(data) + f.flush()
