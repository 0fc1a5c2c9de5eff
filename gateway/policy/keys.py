"""Keys: which ones run a line (``KeyPolicy``), and a model of the line they type.

``KeyPolicy.classify`` says whether a key sequence runs something in the shell or the
foreground program, given what the session knows (readline's defaults in emacs or vi
mode, keys bound earlier in the session, completion that runs code, the full-screen
program in the foreground). The relay holds every such key until the policy decides,
exactly like Enter. What cannot be known is held: after ``bind -f`` or an unknown
binding, every control and meta key is.

Readline keys that run a line or code without Enter (emacs mode): C-m, C-j (accept-line),
C-o (operate-and-get-next), C-x C-e (edit-and-execute-command), M-C-e
(shell-expand-line: runs command substitutions), M-# (insert-comment: with an argument
it uncomments and runs), C-x C-r (re-read-init-file), M-C-j (switch to vi mode). Vi
command mode: ``v`` (edit-and-execute), ``#`` (insert-comment), ``@`` (macros). In a
non-UTF-8 locale a byte with the high bit set is a meta key: stray such bytes are held.



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

from dataclasses import dataclass, field

_WORD_SEP = " \t"
ENTER = "enter"

# readline (emacs mode) key sequences that run a line or code, as raw bytes
_EMACS_RUNS = {
    b"\x18\x05": "edit-and-execute-command",
    b"\x18\x1b\x05": "edit-and-execute-command",
    b"\x1b\x05": "shell-expand-line",
    b"\x1b#": "insert-comment",
    b"\x18\x12": "re-read-init-file",
    b"\x1b\n": "vi-editing-mode",
    b"\x1b\r": "vi-editing-mode",
    b"\x18\x18\x05": "edit-and-execute-command",
}
# high-bit "meta" bytes readline reads as ESC+key when the locale is not UTF-8
_STRAY_META = {0x85: "shell-expand-line", 0xA3: "insert-comment", 0x8A: "vi-editing-mode",
               0x8D: "vi-editing-mode", 0x92: "re-read-init-file"}
_VI_CMD_RUNS = {"v": "edit-and-execute-command", "#": "insert-comment", "@": "vi-macro"}
# keys of full-screen programs that run commands without Enter
_SCREEN_KEYS = {"vi": {"@": "vi-register", "Q": "vi-ex-mode", "K": "vi-keywordprg"},
                "less": {"v": "less-editor"}}
_SAFE_CONTROL = frozenset({b"\x7f", b"\x08", b"\x15", b"\x0b", b"\x17", b"\x19", b"\x01",
                           b"\x05", b"\x02", b"\x06", b"\x04", b"\x03", b"\x0c"})


@dataclass
class KeyPolicy:
    """Which keys run a line, given the session's state (see the module docstring).

    Attributes:
        bindings: key sequence (as text, one char per byte) -> (kind, argument) from
            ``bind`` in this session (kinds: exec, run, macro, func, unknown).
        bindings_unknown: key bindings were changed in a way that cannot be followed.
        vi: readline is in vi mode.
        tab_runs_code: completion runs code (``complete -C/-F``).
        screen: the language of the full-screen program in the foreground, if any.
    """

    bindings: dict[str, tuple[str, str]] = field(default_factory=dict)
    bindings_unknown: bool = False
    vi: bool = False
    tab_runs_code: bool = False
    screen: str | None = None

    def per_char(self, vi_command: bool, alt: bool) -> bool:
        """Must printable text be looked at key by key?"""
        if alt:
            return self.screen in _SCREEN_KEYS
        return vi_command or any(len(k) == 1 and k.isprintable() for k in self.bindings)

    def classify(self, seq: bytes, *, vi_command: bool, alt: bool) -> str | None:
        """The kind of a held key, or None if the key does not run anything."""
        text = seq.decode("latin-1")
        bound = self.bindings.get(text)
        if bound is not None:
            kind, arg = bound
            if kind == "run":
                return ENTER if arg in ("accept-line", "operate-and-get-next") else arg
            if kind in ("exec", "macro", "unknown"):
                return "bound-" + kind
        if seq in (b"\r", b"\n", b"\r\n", b"\x0f"):
            return ENTER
        if alt:
            keys = _SCREEN_KEYS.get(self.screen or "", {})
            return keys.get(text)
        if seq in _EMACS_RUNS:
            return _EMACS_RUNS[seq]
        if self.tab_runs_code and seq == b"\t":
            return "completion"
        if vi_command and text in _VI_CMD_RUNS:
            return _VI_CMD_RUNS[text]
        if self.bindings_unknown and (seq[:1] == b"\x1b" or (len(seq) == 1 and seq[0] < 0x20)) \
                and seq not in _SAFE_CONTROL:
            return "unknown-binding"
        return None

    def stray_meta(self, data: bytes) -> tuple[int, str] | None:
        """A high-bit byte that is not part of valid UTF-8 and would be a meta key."""
        if not any(b >= 0x80 for b in data):
            return None
        i, n = 0, len(data)
        while i < n:
            b = data[i]
            if b < 0x80:
                i += 1
                continue
            width = 2 if 0xC2 <= b <= 0xDF else 3 if 0xE0 <= b <= 0xEF else 4 if \
                0xF0 <= b <= 0xF4 else 0
            if width and i + width <= n and all(0x80 <= c <= 0xBF for c in data[i + 1 : i + width]):
                i += width
                continue
            if b in _STRAY_META:
                return i, _STRAY_META[b]
            i += 1
        return None


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
