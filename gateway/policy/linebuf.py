"""Reconstruct the command line an interactive user is about to run.

One ``LineTracker`` per interactive session. The relay feeds it the target's output
(``feed_output``, hot path: appends to a bounded buffer and scans for a few mode
switches with C-speed byte searches) and the user's input (``feed_input``: splits it
into events so the relay can hold each Enter key). When an Enter is held, the relay
calls ``current_line`` in a worker thread: it renders only the output since the start
of the line (capped at ``RENDER_CAP`` bytes) with pyte and reads the line off the
emulated screen.

Prompt heuristic: the prompt is what the screen shows before the user's first
keystroke of the line (the output offset of that keystroke is the line's *mark*). The
line is the text from the end of the prompt to the last non-blank row. If a row after
the prompt starts with the prompt again (the user typed ahead while a command was
still running), the last such row is used. If there is no mark (Enter on an
untouched, possibly pre-filled line, or keys typed ahead in the same input chunk as a
previous Enter), the last prompt seen is looked for on the cursor's row; if it is not
found, ``prompt_guessed`` is set and ``raw`` holds the whole row, which the policy
checks as well.

Waiting for the echo: the relay forwards the bytes before an Enter, then should wait
until the target echoed them (``output_since_input()`` is True and the output has been
quiet for ~20 ms, at most ~300 ms) before calling ``current_line``.

Known limits: the emulated screen is not the user's (output before the line is not
rendered); a shell whose line editor draws suggestions after the cursor (fish, zsh
autosuggestions) shows text that will not run (it is checked too, so it can only make
a line stricter, and raises a *mismatch* signal); pyte has no alternate screen, so
full-screen programs are only detected (``alternate_screen``), not read.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import pyte

from gateway.policy.keys import ENTER, KeyLine, KeyPolicy
from gateway.policy.sanitize import sanitize, strip_escapes

TAIL_CAP = 64 * 1024  # output kept for line reconstruction; older output never matters
RENDER_CAP = 32 * 1024  # bytes rendered without a mark (~25 ms at pyte's ~1.2 MiB/s); with
# a mark, the line's output since the mark is rendered whole (at most the tail, 128 KiB)
MAX_ROWS = 1000  # emulated screen height cap
MAX_COLS = 1000  # emulated screen width cap (the gateway clamps client sizes to this too)
MAX_RECORDS = 64  # lines remembered for current_line(line_id): relay holds one at a time
MAX_SIGNALS = 256  # evasion signals kept until take_signals(); oldest dropped

_ALT_RE = re.compile(rb"\x1b\[\?(?:1049|1047|47)([hl])")
_INPUT_RE = re.compile(
    rb"(?P<ps>\x1b\[200~)|(?P<pe>\x1b\[201~)"
    rb"|(?P<csi>\x1b\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e])|(?P<ss3>\x1bO[\x40-\x7e])"
    rb"|(?P<meta>\x1b[^\x00-\x1f\x7f])|(?P<esc>\x1b)"
    rb"|(?P<enter>\r\n?|\n|\x0f)|(?P<ctl>[\x00-\x1f\x7f])|(?P<text>[^\x00-\x1f\x7f\x1b]+)"
)
# Only long prefixes are carried: a lone ESC or "ESC [" must reach the target at once.
_PASTE_PREFIXES = (b"\x1b[200", b"\x1b[201", b"\x1b[20")
_SEARCH_RE = re.compile(r"^\((?:failed )?(?:reverse-|forward-)?i-search\)`([^']*)': ?(.*)$")
_GUESS_PROMPT_RE = re.compile(r"^.{0,80}?[$#%>] ")


@dataclass(frozen=True)
class InputEvent:
    """One piece of user input for the relay.

    Attributes:
        kind: ``"data"`` (forward ``data`` now) or ``"enter"`` (forward ``data`` now,
            hold ``enter`` until the policy decides).
        data: bytes to forward at once.
        enter: the held Enter bytes (``\\r``, ``\\n``, ``\\r\\n`` or Ctrl-O).
        in_paste: the Enter is a newline inside a bracketed paste.
        line_id: pass it to ``current_line`` for this Enter.
        key: what the held key does: ``"enter"`` (runs the line), or another kind from
            ``keys.KeyPolicy`` (edit-and-execute, a bound key, a program's key...).
    """

    kind: str
    data: bytes
    enter: bytes = b""
    in_paste: bool = False
    line_id: int = 0
    key: str = ENTER


@dataclass(frozen=True)
class LineSnapshot:
    """The line the user is about to run, as far as the bastion can see it.

    Attributes:
        text: the command line (prompt stripped; earlier continuation lines joined
            with newlines).
        prompt: the prompt text detected before the line.
        raw: the whole screen row(s) of the line when the prompt was guessed, else
            the same as ``text``.
        typed: the line modelled from the keystrokes alone, when every key was
            understood and echo was on; else None.
        continuation: earlier lines of this command were accepted as unfinished.
        alternate_screen: a full-screen program owns the terminal: the line is not a
            shell line.
        echo_off: printable keys were typed but nothing was echoed (password prompt).
        mismatch: the keys and the echoed line disagree.
        search: the shell's incremental history search was showing.
        prompt_guessed: the prompt could not be located by the mark heuristic.
        echo_pending: the line's keys came in one chunk and the target has not output
            anything since: the screen does not show them yet (the relay read too
            early); ``typed`` is then the only view of the line.
        hidden_typed: the keystroke model when echo was off (may be a password:
            never log it; only match rules against it).
        key: the held key that asked for this decision (``"enter"`` or a kind from
            ``keys.KeyPolicy``).
        screen_bottom: in the alternate screen, the bottom row (where vi, less and
            friends read their command lines).
        screen_cursor: in the alternate screen, the cursor's row.
        cursor_bottom: the cursor is on the bottom row.
        screen_text: in the alternate screen, every row (for markers such as vim's
            command-line window).
    """

    text: str
    prompt: str = ""
    raw: str = ""
    typed: str | None = None
    continuation: bool = False
    alternate_screen: bool = False
    echo_off: bool = False
    mismatch: bool = False
    search: bool = False
    prompt_guessed: bool = False
    echo_pending: bool = False
    hidden_typed: str | None = field(default=None, repr=False)
    key: str = ENTER
    key_seq: str = ""
    screen_bottom: str = ""
    screen_cursor: str = ""
    cursor_bottom: bool = False
    screen_text: str = field(default="", repr=False)


@dataclass
class _Line:
    id: int
    mark: int | None
    keys: KeyLine = field(default_factory=KeyLine)
    pasted: bool = False  # bracketed paste seen: the shell echoes it only at its end
    chunk: int = -1  # last input chunk that touched this line
    input_at: int = 0  # output offset when that chunk was fed
    printable_before: int = 0  # printable keys typed in earlier chunks
    key: str = ENTER  # the held key that ended this line
    key_seq: str = ""  # its bytes (latin-1 text)


class LineTracker:
    """Per interactive session: reconstructs the command line at each Enter."""

    def __init__(self, cols: int = 80, rows: int = 24, keys: KeyPolicy | None = None) -> None:
        """Create a tracker for a terminal of ``cols`` x ``rows`` (clamped to the caps).

        ``keys`` says which keys run a line (default: readline's in emacs mode); the
        session updates it as bindings, modes and foreground programs change.
        """
        self.key_policy = keys or KeyPolicy()
        self._key_prefix = b""  # C-x or ESC forwarded: the next key completes a sequence
        self._vi_cmd = False  # vi editing mode, command mode (after ESC)
        self.eof_count = 0  # Ctrl-D typed on an empty line (a shell or REPL exits)
        self._alt_at = 0  # output offset where the alternate screen started
        self.cols = min(MAX_COLS, max(2, int(cols)))
        self.rows = min(MAX_ROWS, max(2, int(rows)))
        self._lock = threading.Lock()  # feed_* on the loop thread, current_line in a worker
        self._tail = bytearray()
        self._base = 0  # stream offset of _tail[0]
        self._total = 0  # output bytes seen
        self._carry = b""  # last bytes of output, for mode sequences split across chunks
        self._alt = False
        self._in_carry = b""  # partial bracketed-paste marker at the end of input
        self._in_paste = False
        self._line: _Line | None = None
        self._records: OrderedDict[int, _Line] = OrderedDict()
        self._next_id = 1
        self._pending: list[str] = []
        self._prompt = ""
        self._prompts: list[str] = []  # recent distinct prompts (PS1, PS2...), newest last
        self._shell_prompt = ""
        self._signals: deque[tuple[str, str]] = deque(maxlen=MAX_SIGNALS)
        self._last_input_at = 0  # output offset when input was last fed
        self._chunks = 0  # input chunks fed

    # ------------------------------------------------------------------ hot path

    def feed_output(self, data: bytes) -> None:
        """Record target output (cheap: bounded append plus C-speed scans)."""
        if not data:
            return
        with self._lock:
            if self._carry:  # a mode sequence may straddle the previous chunk
                for m in _ALT_RE.finditer(self._carry + data[:8]):
                    self._set_alt(m.group(1) == b"h", self._total)
            if b"\x1b[?" in data:
                for m in _ALT_RE.finditer(data):
                    self._set_alt(m.group(1) == b"h", self._total + m.start())
            end = data[-7:]
            esc = end.rfind(b"\x1b")
            self._carry = end[esc:] if esc >= 0 else b""
            self._tail += data
            self._total += len(data)
            if len(self._tail) > 2 * TAIL_CAP:
                cut = len(self._tail) - TAIL_CAP
                del self._tail[:cut]
                self._base += cut

    def _set_alt(self, on: bool, at: int = 0) -> None:
        if on and not self._alt:
            self._signal("alternate_screen", "a full-screen program took the terminal")
            self._alt_at = at
        self._alt = on

    def _signal(self, kind: str, detail: str) -> None:
        self._signals.append((kind, detail))

    @property
    def learned_prompt(self) -> str:
        """The prompt last found by the mark heuristic (the shell's or a program's)."""
        return self._prompt

    @property
    def learned_shell_prompt(self) -> str:
        """The last prompt of a line the session decided as a shell line."""
        return self._shell_prompt

    def shell_prompt_seen(self, prompt: str) -> None:
        """The session decided a line as a shell line: its prompt is the shell's."""
        if prompt.strip():
            self._shell_prompt = prompt

    def output_since_input(self) -> bool:
        """True if the target has sent output since the last input was fed."""
        return self._total > self._last_input_at

    def take_signals(self) -> list[tuple[str, str]]:
        """Evasion signals since the last call: ``(kind, detail)``, no secrets."""
        with self._lock:
            out = list(self._signals)
            self._signals.clear()
            return out

    # ------------------------------------------------------------------ input

    def feed_input(self, data: bytes) -> list[InputEvent]:
        """Split user input into events; every Enter becomes an ``enter`` event."""
        with self._lock:
            return self._feed_input(data)

    def _feed_input(self, data: bytes) -> list[InputEvent]:
        data = self._in_carry + data
        self._in_carry = b""
        for p in _PASTE_PREFIXES:
            if data.endswith(p) and len(data) > 0:
                self._in_carry = p
                data = data[: -len(p)]
                break
        events: list[InputEvent] = []
        if data.strip(b"\r\n"):
            # keys the target will echo; a lone Enter is not echoed before it is
            # released (the relay holds it), so it must not make the relay wait for echo
            self._last_input_at = self._total
        self._chunks += 1
        start = 0
        entered = False
        for m in _INPUT_RE.finditer(data):
            kind = m.lastgroup
            if self._line is None:
                # Typed ahead after an Enter, or Enter as the first key (a pre-filled
                # line): the output offset says nothing about where the prompt is.
                typeahead = entered or kind == "enter"
                self._line = self._new_line(None if typeahead else self._total)
            keys = self._line.keys
            if self._line.chunk != self._chunks:
                self._line.chunk = self._chunks
                self._line.input_at = self._total
                self._line.printable_before = keys.printable
            tok = m.group(0)
            held = None if self._in_paste or kind in ("ps", "pe") else self._held(kind, tok)
            if held is not None:
                cut, key_bytes, kind_held = held
                tok_start = m.start() + cut
                lid = self._line.id
                self._line.key = kind_held
                self._line.key_seq = (self._key_prefix + key_bytes).decode("latin-1") if \
                    self._key_prefix and cut == 0 else key_bytes.decode("latin-1")
                if cut and kind == "text":
                    keys.insert(tok[:cut].decode("utf-8", "replace"))
                elif cut:
                    keys.known = False
                events.append(InputEvent("enter", data[start:tok_start], key_bytes, False, lid,
                                         kind_held))
                start = tok_start + len(key_bytes)
                self._records[lid] = self._line
                while len(self._records) > MAX_RECORDS:
                    self._records.popitem(last=False)
                self._line = None
                self._key_prefix = b""
                self._vi_cmd = False
                entered = True
                rest = tok[cut + len(key_bytes):]
                if rest:  # text after a held key in the same token: a new line
                    self._line = self._new_line(None)
                    self._line.keys.insert(rest.decode("utf-8", "replace"))
                continue
            if kind == "ps":
                self._in_paste = True
                self._line.pasted = True
            elif kind == "pe":
                self._in_paste = False
            elif kind == "enter":
                lid = self._line.id
                events.append(
                    InputEvent("enter", data[start : m.start()], tok, self._in_paste, lid)
                )
                start = m.end()
                if self._in_paste:
                    keys.insert("\n")
                else:
                    self._records[lid] = self._line
                    while len(self._records) > MAX_RECORDS:
                        self._records.popitem(last=False)
                    self._line = None
                    entered = True
                    self._vi_cmd = False
            elif kind == "text":
                keys.insert(tok.decode("utf-8", "replace"))
                if self._vi_cmd and re.search(rb"[iIaAsScCoOR]", tok):
                    self._vi_cmd = False
            elif kind == "ctl":
                if self._in_paste and tok in (b"\t",):
                    keys.insert("\t")
                elif tok == b"\x03":
                    self._line = None  # the shell abandons the line and prints a prompt
                else:
                    if tok == b"\x04" and not keys.chars:
                        self.eof_count += 1
                    keys.control(tok[0])
            elif kind in ("csi", "ss3"):
                keys.escape(tok)
            else:
                keys.known = False
                if kind in ("esc", "meta") and self.key_policy.vi:
                    self._vi_cmd = not (kind == "meta" and tok[1:2] in b"iIaAsScCoOR")
            if not self._in_paste:
                self._key_prefix = tok if tok in (b"\x18", b"\x1b") else b""
        if start < len(data):
            events.append(InputEvent("data", data[start:]))
        return events

    def _held(self, kind: str | None, tok: bytes) -> tuple[int, bytes, str] | None:
        """Does this token (completing a C-x/ESC prefix) run a line? ``(offset in the
        token, the held bytes, the key's kind)``."""
        policy = self.key_policy
        if kind == "enter":
            what = policy.classify(tok, vi_command=False, alt=self._alt)
            return (0, tok, what) if what is not None and what != ENTER else None
        if kind == "text":
            if policy.per_char(self._vi_cmd, self._alt):
                for k, ch in enumerate(tok.decode("latin-1")):
                    b = ch.encode("latin-1")
                    what = None
                    if k == 0 and self._key_prefix:
                        what = policy.classify(self._key_prefix + b, vi_command=self._vi_cmd,
                                               alt=self._alt)
                    if what is None:
                        what = policy.classify(b, vi_command=self._vi_cmd, alt=self._alt)
                    if what is not None:
                        return k, b, what
                    if self._vi_cmd and ch in "iIaAsScCoOR":
                        return None
                return None
            bad = policy.stray_meta(tok)
            if bad is not None:
                return bad[0], tok[bad[0] : bad[0] + 1], bad[1]
            return None
        if kind == "meta" and policy.vi:
            # vi mode: ESC leaves insert mode, the key after it is a command
            what = policy.classify(tok[1:], vi_command=True, alt=self._alt)
            if what is not None:
                return 1, tok[1:], what
        seq = self._key_prefix + tok if kind in ("ctl", "meta", "esc", "csi", "ss3") else tok
        what = policy.classify(seq, vi_command=self._vi_cmd, alt=self._alt)
        if what is None and seq != tok:
            what = policy.classify(tok, vi_command=self._vi_cmd, alt=self._alt)
        return (0, tok, what) if what is not None else None

    def _new_line(self, mark: int | None) -> _Line:
        line = _Line(self._next_id, mark)
        self._next_id += 1
        self._records[line.id] = line
        while len(self._records) > MAX_RECORDS:
            self._records.popitem(last=False)
        return line

    def resize(self, cols: int, rows: int) -> None:
        """The user's terminal changed size."""
        with self._lock:
            self.cols = min(MAX_COLS, max(2, int(cols)))
            self.rows = min(MAX_ROWS, max(2, int(rows)))

    def continue_line(self, text: str) -> None:
        """The Enter just released left the command unfinished (continuation prompt).

        Args:
            text: the whole command so far (``LineSnapshot.text``).
        """
        with self._lock:
            self._pending = text.split("\n") if text else [""]

    def end_line(self) -> None:
        """The command is complete (run or refused): forget continuation lines."""
        with self._lock:
            self._pending = []

    # ------------------------------------------------------------------ reading

    def current_line(self, line_id: int | None = None) -> LineSnapshot:
        """Reconstruct the line for the Enter of ``line_id`` (default: the latest).

        CPU-bound (pyte over at most ``RENDER_CAP`` bytes): run it in a worker thread.
        Never raises: a rendering failure falls back to the output with escape
        sequences stripped, and raises a ``render_error`` signal.
        """
        line: _Line | None
        with self._lock:
            if line_id is not None and line_id in self._records:
                line = self._records[line_id]
            elif self._line is not None:
                line = self._line
            else:
                line = next(reversed(self._records.values()), None) if self._records else None
            alt = self._alt
            alt_at = self._alt_at
            tail = bytes(self._tail)
            base = self._base
            pending = list(self._pending)
            cols, rows = self.cols, self.rows
            learned = self._prompt
            known = list(self._prompts)
            total = self._total
        keys = line.keys if line is not None else KeyLine()
        mark = line.mark if line is not None else None
        key = line.key if line is not None else ENTER
        key_seq = line.key_seq if line is not None else ""
        if alt:
            snap = self._screen_snapshot(tail, base, alt_at, cols, rows, key, bool(pending))
            # the keys typed since the last held key (a program's command line as typed)
            return replace(snap, typed=keys.text if keys.known else None)
        try:
            text, prompt, raw, search, guessed = _render(
                tail, base, mark, cols, rows, learned, known,
                keys.text if keys.known and keys.printable else "")
        except Exception:  # fail closed: never lose the line because pyte misbehaved
            self._signal("render_error", "terminal emulation failed; used stripped output")
            text = _crude_line(tail, base, mark)
            prompt, raw, search, guessed = "", text, False, True
        if prompt and not guessed:
            with self._lock:
                self._prompt = prompt
                if prompt.strip() and prompt not in self._prompts[-1:]:
                    self._prompts = [*[p for p in self._prompts if p != prompt][-3:], prompt]
        pasted = line.pasted if line is not None else False
        # Keys all sent in one chunk and no output since: the echo has not arrived yet
        # (the relay did not wait): the screen is stale, the keystroke model decides.
        echo_pending = (
            line is not None
            and keys.printable > 0
            and line.printable_before == 0
            and total <= line.input_at
        )
        echo_off = (
            keys.printable > 0
            and not text.strip()
            and not raw.strip()
            and not pasted
            and not echo_pending
        )
        typed: str | None = keys.text if keys.known and not echo_off else None
        mismatch = False
        if (
            typed is not None
            and not search
            and not pasted
            and not echo_pending
            and typed.strip() != text.strip()
        ):
            mismatch = True
            self._signal("mismatch", f"typed {len(typed)} characters, the line shows {len(text)}")
        if echo_off:
            self._signal("echo_off", "keys typed without echo")
        if guessed:
            self._signal("prompt_guessed", "prompt not found by the mark heuristic")
        if pending:
            text = "\n".join([*pending, text])
            raw = "\n".join([*pending, raw])
            if typed is not None:
                typed = "\n".join([*pending, typed])
        return LineSnapshot(
            text=text,
            prompt=prompt,
            raw=raw,
            typed=typed,
            continuation=bool(pending),
            echo_off=echo_off,
            mismatch=mismatch,
            search=search,
            prompt_guessed=guessed,
            echo_pending=echo_pending,
            hidden_typed=keys.text if echo_off else None,
            key=key,
            key_seq=key_seq,
        )

    def _screen_snapshot(self, tail: bytes, base: int, alt_at: int, cols: int, rows: int,
                         key: str, pending: bool) -> LineSnapshot:
        """A full-screen program: the rows where programs read their command lines."""
        start = max(0, alt_at - base)
        data = tail[start:][-RENDER_CAP:]
        try:
            screen = pyte.Screen(cols, rows)
            pyte.Stream(screen).feed(sanitize(data).decode("utf-8", "replace"))
            rows_text = _screen_rows(screen, cols)
            cy = min(max(screen.cursor.y, 0), rows - 1)
        except Exception:  # fail closed: an unreadable screen is an empty, guessed one
            self._signal("render_error", "terminal emulation failed in a full-screen program")
            rows_text, cy = [""] * rows, rows - 1
        bottom = rows_text[-1].rstrip() if rows_text else ""
        return LineSnapshot(
            "",
            alternate_screen=True,
            continuation=pending,
            key=key,
            screen_bottom=bottom,
            screen_cursor=rows_text[cy].rstrip() if rows_text else "",
            cursor_bottom=cy >= rows - 1,
            screen_text="\n".join(r.rstrip() for r in rows_text),
        )


# --------------------------------------------------------------------------- render


def _row_text(screen: pyte.Screen, y: int, cols: int) -> str:
    """One emulated row as text, in time proportional to what was drawn on it (rows
    never written cost nothing, whatever the terminal's size)."""
    row = screen.buffer.get(y)
    if not row:
        return " " * cols
    cells = [" "] * cols
    for x, char in row.items():
        if 0 <= x < cols:
            cells[x] = char.data
    return "".join(cells)


def _screen_rows(screen: pyte.Screen, cols: int) -> list[str]:
    return [_row_text(screen, y, cols) for y in range(screen.lines)]


def _full(row: str, screen: pyte.Screen, y: int, cols: int) -> bool:
    """The row's last cell is drawn on (the line wraps into the next row)."""
    cells = screen.buffer.get(y)
    char = cells.get(cols - 1) if cells else None
    return char is not None and char.data != " "


def _join(screen: pyte.Screen, cols: int, first: int, first_col: int, last: int) -> str:
    parts: list[str] = []
    for y in range(first, last + 1):
        x0 = first_col if y == first else 0
        text = _row_text(screen, y, cols)[x0:]
        if y < last and _full(text, screen, y, cols):
            parts.append(text)
        else:
            parts.append(text.rstrip() + ("\n" if y < last else ""))
    return "".join(parts).rstrip()


DEFAULT_PS2 = "> "  # bash's continuation prompt


def _render(
    tail: bytes, base: int, mark: int | None, cols: int, rows: int, learned: str,
    known: Sequence[str] = (), typed: str = "",
) -> tuple[str, str, str, bool, bool]:
    """Render the line; return (text, prompt, raw, search, prompt_guessed)."""
    mark_idx = None if mark is None else mark - base
    if mark_idx is not None and not (0 <= mark_idx <= len(tail)):
        mark_idx = None
    # Sanitize before cutting so a long escape sequence cannot be cut into text.
    if mark_idx is not None:
        before = tail[:mark_idx]
        before = sanitize(before[before.rfind(b"\n") + 1 :])
        after = sanitize(tail[mark_idx:])
    else:
        cut = tail[-RENDER_CAP:]
        nl = cut.find(b"\n")
        before, after = b"", sanitize(cut[nl + 1 :] if 0 <= nl < len(cut) // 2 else cut)
    region = before + after
    needed = region.count(b"\n") + len(region) // cols + 2
    height = min(MAX_ROWS, max(rows, needed))
    screen = pyte.Screen(cols, height)
    stream = pyte.Stream(screen)
    pr, pc = -1, 0
    if mark_idx is not None:
        stream.feed(before.decode("utf-8", "replace"))
        pr, pc = screen.cursor.y, screen.cursor.x
    stream.feed(after.decode("utf-8", "replace"))
    cr = screen.cursor.y
    rows_text = _screen_rows(screen, cols)
    last = max(cr, max((y for y, t in enumerate(rows_text) if t.strip()), default=0))

    # Incremental history search shows its own prompt on the cursor's row.
    lstart = cr
    while lstart > 0 and _full(rows_text[lstart - 1], screen, lstart - 1, cols):
        lstart -= 1
    logical = _join(screen, cols, lstart, 0, max(cr, lstart))
    m = _SEARCH_RE.match(logical)
    if m:
        return m.group(2).rstrip(), "", logical, True, False

    if pr >= 0:
        prompt = rows_text[pr][:pc]
        # Typed ahead: the prompt was printed again after the mark.
        if len(prompt.strip()) >= 2:
            for y in range(last, pr, -1):
                if rows_text[y].startswith(prompt):
                    text = _join(screen, cols, y, len(prompt), last)
                    return text, prompt, text, False, False
        # Typed ahead of the shell's answer: the mark is on the previous line and the
        # line being edited starts on a later row with a prompt seen before (PS1, or
        # PS2 of a continuation), possibly after the terminal's own echo of the keys
        # (typed before readline took the terminal).
        if lstart > pr:
            logical = _join(screen, cols, lstart, 0, last)
            for p in sorted({*known, learned, DEFAULT_PS2}, key=len, reverse=True):
                for echo in dict.fromkeys(("", typed)):
                    if p.strip() and logical.startswith(echo + p):
                        text = logical[len(echo + p):]
                        return text, p, text, False, False
        if pr <= last:
            text = _join(screen, cols, pr, pc, last)
            return text, prompt, text, False, False
    # No usable mark: find the last prompt seen on the cursor's line.
    raw = _join(screen, cols, lstart, 0, last)
    if learned.strip():
        for y in range(last, -1, -1):
            if rows_text[y].startswith(learned):
                text = _join(screen, cols, y, len(learned), last)
                return text, learned, text, False, False
    g = _GUESS_PROMPT_RE.match(raw)
    text = raw[g.end() :] if g else raw
    return text, "", raw, False, True


def _crude_line(tail: bytes, base: int, mark: int | None) -> str:
    """Fallback line: output since the mark, escapes stripped, \\b and \\r applied."""
    start = 0 if mark is None else max(0, mark - base)
    data = strip_escapes(tail[start:][-RENDER_CAP:]).decode("utf-8", "replace")
    line: list[str] = []
    for ch in data.split("\n")[-1]:
        if ch == "\b":
            if line:
                line.pop()
        elif ch == "\r":
            line = []
        elif ch.isprintable():
            line.append(ch)
    return "".join(line).strip()
