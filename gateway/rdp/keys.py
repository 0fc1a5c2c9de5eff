"""Keystrokes to text: what an RDP user typed, line by line (pure, stdlib only).

RDP sends key *positions* (scan codes), not characters; the character depends on the
client's keyboard layout, which the bastion cannot know for sure. This decoder assumes
a US layout (the common case and xfreerdp's default) and also accepts Unicode key events
(which carry the character itself). Enter ends a line; Backspace removes a character;
other non-printing keys (arrows, function keys, Ctrl combinations) are written as
``<name>`` so a line reads as it was typed, not necessarily as it was executed.

Known limits: a different layout maps some keys to other characters; text typed into
a password field of the remote desktop is recorded like any other text (RDP does not
say what a field is).
"""

from __future__ import annotations

from collections.abc import Callable

MAX_LINE = 4096

# scan code -> (unshifted, shifted) for a US keyboard
_US: dict[int, tuple[str, str]] = {
    0x02: ("1", "!"), 0x03: ("2", "@"), 0x04: ("3", "#"), 0x05: ("4", "$"), 0x06: ("5", "%"),
    0x07: ("6", "^"), 0x08: ("7", "&"), 0x09: ("8", "*"), 0x0A: ("9", "("), 0x0B: ("0", ")"),
    0x0C: ("-", "_"), 0x0D: ("=", "+"),
    0x10: ("q", "Q"), 0x11: ("w", "W"), 0x12: ("e", "E"), 0x13: ("r", "R"), 0x14: ("t", "T"),
    0x15: ("y", "Y"), 0x16: ("u", "U"), 0x17: ("i", "I"), 0x18: ("o", "O"), 0x19: ("p", "P"),
    0x1A: ("[", "{"), 0x1B: ("]", "}"),
    0x1E: ("a", "A"), 0x1F: ("s", "S"), 0x20: ("d", "D"), 0x21: ("f", "F"), 0x22: ("g", "G"),
    0x23: ("h", "H"), 0x24: ("j", "J"), 0x25: ("k", "K"), 0x26: ("l", "L"), 0x27: (";", ":"),
    0x28: ("'", '"'), 0x29: ("`", "~"), 0x2B: ("\\", "|"),
    0x2C: ("z", "Z"), 0x2D: ("x", "X"), 0x2E: ("c", "C"), 0x2F: ("v", "V"), 0x30: ("b", "B"),
    0x31: ("n", "N"), 0x32: ("m", "M"), 0x33: (",", "<"), 0x34: (".", ">"), 0x35: ("/", "?"),
    0x39: (" ", " "),
}
_KEYPAD = {0x37: "*", 0x4A: "-", 0x4E: "+", 0x47: "7", 0x48: "8", 0x49: "9", 0x4B: "4",
           0x4C: "5", 0x4D: "6", 0x4F: "1", 0x50: "2", 0x51: "3", 0x52: "0", 0x53: "."}
_NAMED = {0x01: "esc", 0x0F: "tab", 0x3B: "F1", 0x3C: "F2", 0x3D: "F3", 0x3E: "F4",
          0x3F: "F5", 0x40: "F6", 0x41: "F7", 0x42: "F8", 0x43: "F9", 0x44: "F10",
          0x57: "F11", 0x58: "F12"}
_EXT_NAMED = {0x48: "up", 0x50: "down", 0x4B: "left", 0x4D: "right", 0x47: "home",
              0x4F: "end", 0x49: "pgup", 0x51: "pgdn", 0x52: "ins", 0x53: "del",
              0x5B: "win", 0x5C: "win"}
SHIFT = (0x2A, 0x36)
CTRL = 0x1D
ALT = 0x38
CAPS = 0x3A
ENTER = 0x1C
BACKSPACE = 0x0E


class KeyDecoder:
    """Turns key events into lines of text; ``on_line(text)`` is called at each Enter."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self._on_line = on_line
        self._line: list[str] = []
        self._shift: set[int] = set()
        self._ctrl = False
        self._alt = False
        self._caps = False
        self.keys = 0  # key presses seen

    @property
    def pending(self) -> str:
        return "".join(self._line)

    def _add(self, text: str) -> None:
        if len(self._line) < MAX_LINE:
            self._line.append(text)

    def scancode(self, code: int, released: bool, extended: bool = False) -> None:
        """One scan code event (``released`` for key up)."""
        if code in SHIFT and not extended:
            if released:
                self._shift.discard(code)
            else:
                self._shift.add(code)
            return
        if code == CTRL:
            self._ctrl = not released
            return
        if code == ALT:
            self._alt = not released
            return
        if released:
            return
        self.keys += 1
        if code == CAPS and not extended:
            self._caps = not self._caps
        elif code == ENTER:
            self.flush()
        elif code == BACKSPACE and not extended:
            if self._line:
                self._line.pop()
        elif extended and code in _EXT_NAMED:
            self._add(f"<{_EXT_NAMED[code]}>")
        elif extended and code == 0x35:
            self._add("/")
        elif not extended and code in _KEYPAD:
            self._add(_KEYPAD[code])
        elif code in _US and not extended:
            lower, upper = _US[code]
            shifted = bool(self._shift)
            if lower.isalpha() and self._caps:
                shifted = not shifted
            char = upper if shifted else lower
            if self._ctrl or self._alt:
                self._add(f"<{'ctrl' if self._ctrl else 'alt'}-{lower}>")
            else:
                self._add(char)
        elif code in _NAMED and not extended:
            self._add(f"<{_NAMED[code]}>")

    def unicode(self, text: str, released: bool) -> None:
        """One Unicode key event (the client sent the character itself)."""
        if released or not text:
            return
        self.keys += 1
        if text in ("\r", "\n"):
            self.flush()
        elif text == "\b":
            if self._line:
                self._line.pop()
        elif text.isprintable():
            self._add(text)

    def flush(self) -> None:
        """End the current line (also at the end of the session)."""
        line = "".join(self._line)
        self._line.clear()
        if line.strip():
            self._on_line(line)
