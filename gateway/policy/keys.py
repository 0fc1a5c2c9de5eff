"""A model of the line editor driven by the user's keystrokes alone.

``KeyLine`` applies the keys every line editor agrees on (printable text, backspace,
Ctrl-U/K/W/Y, Ctrl-A/E/B/F/D, arrows left/right, Home/End/Delete, bracketed paste) and
gives up (``known = False``) on anything whose effect depends on the shell's state
(Tab completion, history Up/Down, Ctrl-R, Meta keys, vi command mode, Ctrl-T...).

While ``known`` it is an independent reconstruction of the line: the policy checks it
as well as the screen text (so a command typed ahead of its prompt is still seen) and
compares both to flag keystrokes that do not match the echoed line.

Known limits: readline's ``kill ring`` is modelled with one slot; a user binding that
remaps one of the modelled keys (``bind``, ``inputrc``) makes the model wrong: that
shows as a *mismatch* signal, never as an allow (the screen text is decided too).
"""

from __future__ import annotations

_WORD_SEP = " \t"


class KeyLine:
    """The line being typed, as the keys alone describe it."""

    def __init__(self) -> None:
        self.chars: list[str] = []
        self.cursor = 0
        self.known = True
        self.printable = 0  # printable characters typed (to tell echo-off)
        self._kill = ""

    @property
    def text(self) -> str:
        """The modelled line."""
        return "".join(self.chars)

    def insert(self, text: str) -> None:
        """Insert typed or pasted text at the cursor."""
        self.chars[self.cursor : self.cursor] = list(text)
        self.cursor += len(text)
        self.printable += sum(1 for c in text if c.isprintable())

    def control(self, byte: int) -> None:
        """Apply one control byte (not Enter)."""
        c = self.chars
        if byte in (0x7F, 0x08):  # backspace
            if self.cursor > 0:
                del c[self.cursor - 1]
                self.cursor -= 1
        elif byte == 0x15:  # Ctrl-U: kill to start
            self._kill = "".join(c[: self.cursor])
            del c[: self.cursor]
            self.cursor = 0
        elif byte == 0x0B:  # Ctrl-K: kill to end
            self._kill = "".join(c[self.cursor :])
            del c[self.cursor :]
        elif byte == 0x17:  # Ctrl-W: unix-word-rubout
            i = self.cursor
            while i > 0 and c[i - 1] in _WORD_SEP:
                i -= 1
            while i > 0 and c[i - 1] not in _WORD_SEP:
                i -= 1
            self._kill = "".join(c[i : self.cursor])
            del c[i : self.cursor]
            self.cursor = i
        elif byte == 0x19:  # Ctrl-Y: yank
            self.insert(self._kill)
        elif byte == 0x01:
            self.cursor = 0
        elif byte == 0x05:
            self.cursor = len(c)
        elif byte == 0x02:
            self.cursor = max(0, self.cursor - 1)
        elif byte == 0x06:
            self.cursor = min(len(c), self.cursor + 1)
        elif byte == 0x04:  # Ctrl-D: delete char (EOF on an empty line)
            if self.cursor < len(c):
                del c[self.cursor]
        elif byte == 0x03:  # Ctrl-C: the line is abandoned
            self.chars, self.cursor = [], 0
        elif byte == 0x0C:  # Ctrl-L: redraw only
            pass
        else:
            self.known = False

    def escape(self, seq: bytes) -> None:
        """Apply one escape sequence (CSI or SS3) typed by the user."""
        if seq in (b"\x1b[D", b"\x1bOD"):
            self.control(0x02)
        elif seq in (b"\x1b[C", b"\x1bOC"):
            self.control(0x06)
        elif seq in (b"\x1b[H", b"\x1bOH", b"\x1b[1~", b"\x1b[7~"):
            self.cursor = 0
        elif seq in (b"\x1b[F", b"\x1bOF", b"\x1b[4~", b"\x1b[8~"):
            self.cursor = len(self.chars)
        elif seq == b"\x1b[3~":
            self.control(0x04)
        else:
            self.known = False
