"""Streaming masker for target output: secrets never reach the recording or the user.

``StreamMasker.feed`` works on the *visible* text (escape sequences are set aside, so a
colour code between two characters of a key does not hide it), across chunk
boundaries (the last ``CONTEXT`` visible bytes already emitted are kept as context and
a possible partial match at the end is held back), and replaces every masked
character with ``*`` characters of the same display width (wide characters become
``**``), keeping escape sequences, newlines and tabs: the terminal layout is kept.

Held bytes: only a suffix that could be the start of a match (``MaskPattern.prefix``)
is held. ``flush(now)`` releases it after ``hold_deadline``; a held partial at least
``min_mask`` characters long is masked then (more of the secret may follow), a shorter
one is emitted. ``flush(now, end=True)`` emits everything (end of stream: a partial is
not a secret).

Fails closed: any exception while masking a chunk emits that chunk with every
visible character masked (escape sequences and line breaks kept).

Known limits: a secret split by cursor movement (printed out of order, or drawn by a
full-screen program) is not recognised; a partial secret shorter than ``min_mask``
that stalls past the deadline is emitted (a leading fragment, e.g. the first digits
of a card number, which PCI DSS allows to show); secrets shorter than 4 characters are
not masked (they would mask ordinary text).
"""

from __future__ import annotations

import functools
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from gateway.policy import prefilter

CONTEXT = 256  # visible bytes of already-emitted text kept for matches that straddle
MAX_HOLD = 8192  # never hold more than this; beyond it the held part is masked and sent
MIN_SECRET = 4  # shorter vaulted secrets are ignored (documented)
KEY_MAX = 16 * 1024  # a private-key block with no END line stops masking after this much
# CSI, OSC, DCS/SOS/PM/APC, and two-byte escapes; the common ESC is factored out so that
# the regex engine scans for it at C speed (a quarter faster on random bytes).
_ESC_RE = re.compile(
    rb"\x1b(?:\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]"
    rb"|\][^\x07\x1b]{0,4096}(?:\x07|\x1b\\)"
    rb"|[PX^_][^\x1b]{0,4096}\x1b\\"
    rb"|[\x20-\x2f]*[\x30-\x4f\x51-\x57\x59\x5a\x5c\x60-\x7e])"  # not [ ] P X ^ _
)


def _project_py(data: bytes) -> bytes:
    """The visible projection: ``data`` without its complete escape sequences."""
    return b"".join(_ESC_RE.split(data))


# Two scans in C, several times faster on random bytes: the same projection
# (gateway/policy/_escapes.c; tests/unit/policy/test_escape_projection.py) and the
# digit-shape gate (gateway/policy/_shapes.c; tests/unit/policy/test_digit_shapes.py).
# Not built where the install found no C compiler: then the pure-Python paths, with the
# same output.
NO_C_ENV = "BASTILLE_NO_C_MASKER"  # set to 1 to use the pure-Python paths anyway
_C_OFF = os.environ.get(NO_C_ENV, "") in ("1", "true", "yes")
_project_c: Callable[[bytes], bytes] | None
_has_shape_c: Callable[..., bool] | None  # has_shape(data, shapes[, first, edge])
try:
    from gateway.policy._escapes import project as _project_c
except ImportError:
    _project_c = None
try:
    from gateway.policy._shapes import has_shape as _has_shape_c
except ImportError:
    _has_shape_c = None
project: Callable[[bytes], bytes] = (
    _project_c if _project_c is not None and not _C_OFF else _project_py
)

# An escape sequence that is still incomplete at the end of the data.
_PARTIAL_ESC_RE = re.compile(
    rb"\x1b(?:\[[\x30-\x3f]*[\x20-\x2f]*|\][^\x07\x1b]{0,4096}\x1b?|[PX^_][^\x1b]{0,4096}\x1b?"
    rb"|[\x20-\x2f]*)\Z"
)


@dataclass(frozen=True)
class MaskPattern:
    """One thing to mask.

    Attributes:
        name: for docs and audit ("aws-access-key-id").
        regex: searched in the visible text (bytes).
        prefix: matches, at the end of the text (``\\Z``), a possible incomplete match
            to hold back; None holds any trailing run of non-space characters (safe,
            but it delays echo of ordinary words: give a prefix when you can).
        group: the regex group to mask (0: the whole match).
        min_mask: a held partial this long is masked at the deadline.
        luhn: only mask digit runs that pass the Luhn check (card numbers).
        triggers: literals one of which must be in the text for the regex to run
            (a C-speed ``in`` test that keeps ordinary output fast); empty: always run.
        lower: the triggers are tested against the lower-cased text.
        gate: for a pattern without literal triggers, a cheaper group-free regex
            that every match contains (tested before the full regex).
        window: the longest partial match ``prefix`` can hold.
        spaceless: ``prefix`` never matches white space (only the trailing run of
            non-space characters is examined).
        word_run: every match contains at least this many consecutive characters of
            ``[A-Za-z0-9_-]`` (0: no such promise). Tested first, at C speed, on a
            class-translated copy of the text (see ``_WORD_CLASS``).
        shapes: every match contains one of these strings in the digit-class
            translation of the text (digits -> ``0``, space and ``-`` kept, every
            other byte -> ``.``). Tested first, at C speed (see ``_DIGIT_CLASS``).
        prefix_starts: every match of ``prefix`` starts with one of these bytes (empty:
            no such promise). The hold point looks for ``prefix`` only where one of
            them occurs in the window (a C-speed ``find``), not at every position.
        shape_first, shape_edge: sharper conditions for the C shape gate: every match the
            masker keeps starts at a shape occurrence whose first byte is one of
            ``shape_first`` and (``shape_edge``) is not preceded by ``[A-Za-z0-9_]``
            (the translation's gate, where the C module is not built, ignores them).
        lead: every match starts at most this many bytes before a trigger it contains
            (None: no such promise). The regex is then tried only there, at each of
            the triggers' occurrences, instead of at every byte of the text (a keyword
            regex without a literal start costs ~60 ms per MiB of text that merely
            mentions the keyword); above :data:`NEAR_TRIGGERS_MAX` occurrences it runs
            over the whole text as before.

    A prefix must not match a partial ending in a line break (the masker skips the
    prefix checks when the text ends with one).
    """

    name: str
    regex: re.Pattern[bytes]
    prefix: re.Pattern[bytes] | None = None
    group: int = 0
    min_mask: int = 8
    luhn: bool = False
    triggers: tuple[bytes, ...] = ()
    lower: bool = False
    gate: bytes | None = None  # regex source (no groups) that any match must contain
    window: int = 512  # longest partial match the prefix may hold
    spaceless: bool = False  # the prefix never contains white space
    word_run: int = 0  # every match has this long a run of [A-Za-z0-9_-] (0: no promise)
    shapes: tuple[bytes, ...] = ()  # one of these is in the digit-class translation
    hs_gate: bytes | None = None  # Hyperscan expression every match contains (None: derived)
    prefix_starts: bytes = b""  # every ``prefix`` match starts with one of these bytes
    lead: int | None = None  # a match starts at most this far before a trigger it holds
    shape_first: bytes = b""  # a kept match's shape occurrence starts with one of these
    shape_edge: bool = False  # ... and is not preceded by [A-Za-z0-9_]

    def gate_expression(self) -> tuple[bytes, bool] | None:
        """``(expression, caseless)`` for the Hyperscan prefilter: a necessary
        condition of a match (see :mod:`gateway.policy.prefilter`); None: no gate."""
        if self.hs_gate is not None:
            return self.hs_gate, self.lower
        if self.gate is not None:
            return self.gate, False
        if self.triggers:
            return b"|".join(prefilter.literal(t) for t in self.triggers), self.lower
        if self.regex.flags & ~re.IGNORECASE:
            return None  # flags the gate would not see
        return self.regex.pattern, bool(self.regex.flags & re.IGNORECASE)

    @classmethod
    def from_config(cls, name: str, regex: str, prefix: str | None = None) -> MaskPattern:
        """Build a pattern from config strings (``re.error`` on a bad regex)."""
        rx = re.compile(regex.encode())
        px = re.compile(prefix.encode() + rb"\Z") if prefix else re.compile(rb"\S{1,128}\Z")
        return cls(name, rx, px, 0, 4)


def _prefixes(*literals: str) -> bytes:
    """``(?:a|ab|abc)`` for every non-empty proper prefix of the literals."""
    out = sorted({lit[:k] for lit in literals for k in range(1, len(lit))}, key=len, reverse=True)
    return b"(?:" + b"|".join(re.escape(p).encode() for p in out) + b")"


def _trie(literals: Sequence[bytes]) -> bytes:
    """A regex matching any of ``literals``, factored by common prefixes (fast in sre)."""
    if not literals:
        return b""
    if any(len(x) == 0 for x in literals):
        rest = [x for x in literals if x]
        return b"(?:" + _trie(rest) + b")?" if rest else b""
    groups: dict[int, list[bytes]] = {}
    for x in literals:
        groups.setdefault(x[0], []).append(x[1:])
    alts = [re.escape(bytes([c])) + _trie(tails) for c, tails in sorted(groups.items())]
    return alts[0] if len(alts) == 1 else b"(?:" + b"|".join(alts) + b")"


def _class_table(keep: bytes, to: bytes, other: bytes) -> bytes:
    table = bytearray(other * 256)
    for c in keep:
        table[c] = to[0]
    return bytes(table)


# C-speed prefilters (``bytes.translate`` + ``in``, ~1 GB/s): most output contains no
# run of 13 digits and no long token-like word, so no pattern regex runs on it at all.
_WORD_CLASS = _class_table(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-", b"w", b"."
)
_DIGIT_CLASS = bytes(
    48 if 48 <= c <= 57 else c if c in (32, 45) else 46 for c in range(256)
)


def c_shape_gate(shapes: tuple[bytes, ...], first: bytes = b"",
                 edge: bool = False) -> Callable[[bytes], bool] | None:
    """The C scan for ``shapes`` (the same answer as the digit-class translation, and
    cheaper than Hyperscan's gate for the card pattern: it probes one byte in four on
    text with few digits); with ``first`` / ``edge``, only occurrences that start with
    one of those bytes / not after ``[A-Za-z0-9_]`` count. None where the module is not
    built, is turned off, or the shapes are not ones it takes (1 to 16, of ``0``, space
    and ``-``, starting with ``0``)."""
    c = _has_shape_c
    if (
        c is None
        or _C_OFF
        or not 1 <= len(shapes) <= 16
        or not all(sh[:1] == b"0" and not sh.strip(b"0 -") for sh in shapes)
    ):
        return None
    return lambda text: c(text, shapes, first, edge)


def _token(name: str, starts: Sequence[str], body: bytes, lo: int, hi: int) -> MaskPattern:
    lits = b"(?:" + b"|".join(re.escape(s).encode() for s in starts) + b")"
    edge = rb"(?<![A-Za-z0-9_])"
    # The left edge is checked in Python: a leading look-behind would disable the
    # regex engine's literal-prefix scan.
    rx = re.compile(lits + body + b"{%d,%d}" % (lo, hi) + rb"(?!" + body + b")")
    px = re.compile(edge + b"(?:" + _prefixes(*starts) + b"|" + lits + body + b"{0,%d})\\Z" % hi)
    return MaskPattern(
        name,
        rx,
        px,
        triggers=tuple(x.encode() for x in starts),
        window=hi + max(len(x) for x in starts) + 1,
        spaceless=True,
        word_run=min(len(x) for x in starts) + lo,
        hs_gate=lits + body + b"{%d}" % lo,
        prefix_starts=bytes(sorted({ord(x[0]) for x in starts})),
        lead=0,
    )


_KEYWORD = (
    rb"(?:[Aa][Ww][Ss]_?)?(?:[Ss][Ee][Cc][Rr][Ee][Tt]_?[Aa][Cc][Cc][Ee][Ss][Ss]_?[Kk][Ee][Yy])"
)

BUILTIN_PATTERNS: tuple[MaskPattern, ...] = (
    _token(
        "aws-access-key-id",
        ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA", "APKA"),
        rb"[A-Z0-9]",
        16,
        16,
    ),
    MaskPattern(
        "aws-secret-access-key",
        re.compile(
            _KEYWORD + rb"[\"']?\s{0,4}[:=]\s{0,4}[\"']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"
        ),
        re.compile(_KEYWORD + rb"[\"']?[ \t]{0,4}[:=][ \t]{0,4}[\"']?[A-Za-z0-9/+]{0,40}\Z"),
        group=1,
        triggers=(b"secret_access", b"secretaccess"),
        lower=True,
        window=100,
        hs_gate=b"secret_?access",
        prefix_starts=b"AaSs",
        lead=len("aws_"),
    ),
    _token("github-token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), rb"[A-Za-z0-9]", 36, 255),
    _token("github-fine-grained-token", ("github_pat_",), rb"[A-Za-z0-9_]", 22, 255),
    _token(
        "slack-token",
        ("xoxa-", "xoxb-", "xoxp-", "xoxr-", "xoxs-", "xoxe-", "xapp-"),
        rb"[A-Za-z0-9-]",
        10,
        250,
    ),
    MaskPattern(
        "credit-card",
        # 13-19 digits, or 4-4-4-(1..7) / 4-6-(4..5) groups with one separator kind;
        # issuer digit 2-6 (Mastercard 2/5, Amex/Diners 3, Visa 4, Discover 6).
        re.compile(
            rb"[2-6][0-9]{3}(?:[0-9]{9,15}|([ -])[0-9]{4}\1[0-9]{4}\1[0-9]{1,7}"
            rb"|([ -])[0-9]{6}\2[0-9]{4,5})(?![0-9])"
        ),
        re.compile(rb"(?<![0-9])[2-6](?:[ -]?[0-9]){5,17}[ -]?\Z"),
        min_mask=6,
        luhn=True,
        window=40,
        prefix_starts=b"23456",
        # kept matches start with the issuer digit, not inside a word or a longer number
        # (the left-edge check in _match_ranges): 13-digit timestamps do not pass
        shape_first=b"23456",
        shape_edge=True,
        gate=(
            rb"[2-6][0-9]{3}(?:[0-9]{9}|[ -][0-9]{4}[ -][0-9]{4}[ -][0-9]"
            rb"|[ -][0-9]{6}[ -][0-9]{4})"
        ),
        shapes=(
            b"0" * 13,
            b"0000 0000 0000 0",
            b"0000-0000-0000-0",
            b"0000 000000 0000",
            b"0000-000000-0000",
        ),
    ),
)
_KEY_BEGIN_RE = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_KEY_END_RE = re.compile(rb"-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_KEY_END_PREFIX_RE = re.compile(
    rb"(?:-{1,5}|-----E|-----EN|-----END|-----END [A-Z0-9 ]{0,60}-{0,4})\Z"
)
_KEY_PREFIX_RE = re.compile(
    rb"(?:" + _prefixes("-----BEGIN ") + rb"|-----BEGIN (?:[A-Z0-9]+ ?){0,6}(?:P(?:R(?:I(?:V(?:"
    rb"A(?:T(?:E(?: (?:K(?:E(?:Y(?:-{0,4})?)?)?)?)?)?)?)?)?)?)?)?)\Z"
)


_ANY_RUN_RE = re.compile(rb"\S{1,128}\Z")
#: up to the last white space (greedy: one backtrack from the end)
_LAST_SPACE_RE = re.compile(rb".*[ \t\n\r]", re.S)


def _secret_partial(text: bytes, secret: bytes) -> int:
    """Length of the longest proper prefix of ``secret`` that ``text`` ends with."""
    tail = text[-(len(secret) - 1) :] if len(secret) > 1 else b""
    first = secret[:1]
    i = tail.find(first)
    while i >= 0:
        if secret.startswith(tail[i:]):
            return len(tail) - i
        i = tail.find(first, i + 1)
    return 0


#: trigger occurrences in one text above which a pattern's regex runs over all of it
NEAR_TRIGGERS_MAX = 64


def _near_triggers(rx: re.Pattern[bytes], text: bytes, hay: bytes,
                   triggers: tuple[bytes, ...], lead: int) -> Iterable[re.Match[bytes]]:
    """The matches ``rx.finditer(text)`` gives, for a regex whose every match holds one
    of ``triggers`` (found in ``hay``: ``text`` or its lower-cased copy) and starts at
    most ``lead`` bytes before it: the regex is tried only at those starts, left to
    right. Many occurrences: the plain ``finditer`` (bounded work either way)."""
    at: set[int] = set()
    for t in triggers:
        i = hay.find(t)
        while i >= 0:
            if len(at) >= NEAR_TRIGGERS_MAX:
                return rx.finditer(text)
            at.add(i)
            i = hay.find(t, i + 1)
    found: list[re.Match[bytes]] = []
    pos = 0  # finditer's next start
    for q in sorted(at):
        for start in range(max(pos, q - lead), q + 1):
            m = rx.match(text, start)
            if m is not None:
                found.append(m)
                pos = m.end() if m.end() > m.start() else m.end() + 1
                break
    return found


@functools.lru_cache(maxsize=64)
def _starts_re(starts: bytes) -> re.Pattern[bytes]:
    """Finds the next byte that is one of ``starts``."""
    return re.compile(b"[" + b"".join(re.escape(bytes([c])) for c in starts) + b"]")


def luhn_ok(digits: bytes) -> bool:
    """Luhn checksum of an ASCII digit string."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ch - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _mask_text(raw: bytes, replacement: str) -> bytes:
    """Replace every visible character with ``replacement`` of the same width."""
    out: list[str] = []
    for ch in raw.decode("utf-8", "surrogateescape"):
        if ch in "\r\n\t" or (not ch.isprintable() and not ("\udc80" <= ch <= "\udcff")):
            out.append(ch)
        elif unicodedata.combining(ch):
            continue
        elif unicodedata.east_asian_width(ch) in ("W", "F"):
            out.append(replacement * 2)
        else:
            out.append(replacement)
    return "".join(out).encode("utf-8", "surrogateescape")


def _mask_bytes(raw: bytes, replacement: str) -> bytes:
    """Binary streams (file transfers): every byte but CR, LF and tab becomes the
    replacement, so lengths and offsets in the surrounding protocol stay valid."""
    rep = replacement.encode()[0]
    return bytes(b if b in (9, 10, 13) else rep for b in raw)


def mask_all(data: bytes, replacement: str = "*") -> bytes:
    """Mask every visible character, keeping escape sequences (fail-closed output)."""
    out = bytearray()
    pos = 0
    for m in _ESC_RE.finditer(data):
        out += _mask_text(data[pos : m.start()], replacement)
        out += m.group(0)
        pos = m.end()
    out += _mask_text(data[pos:], replacement)
    return bytes(out)


class StreamMasker:
    """Masks secrets in one output stream (one per channel direction)."""

    def __init__(
        self,
        patterns: Sequence[MaskPattern] = BUILTIN_PATTERNS,
        *,
        secrets: Sequence[str] = (),
        hold_deadline: float = 0.05,
        replacement: str = "*",
        accelerate: bool | None = None,
        binary: bool = False,
    ) -> None:
        """Create a masker.

        Args:
            patterns: what to mask (``BUILTIN_PATTERNS`` plus configured ones).
            secrets: literal strings to mask (the vaulted target secrets); lines of a
                multi-line secret are masked one by one; shorter than 4: ignored.
            hold_deadline: seconds a possible partial match may be held back.
            replacement: one narrow character.
            accelerate: use the Hyperscan prefilter (None: when available); the
                output is the same either way, only faster.
            binary: a byte stream, not a terminal (SFTP/scp data): a masked span keeps
                its length in bytes (every byte becomes ``replacement``) instead of its
                display width, and the fail-closed path masks bytes the same way.
        """
        if len(replacement) != 1 or unicodedata.east_asian_width(replacement) in ("W", "F"):
            raise ValueError("replacement must be one narrow character")
        self.patterns = tuple(patterns)
        self.deadline = hold_deadline
        self.replacement = replacement
        self.binary = binary
        parts: set[bytes] = set()
        for s in secrets:
            for line in s.replace("\r", "\n").split("\n"):
                line = line.strip()
                if len(line) >= MIN_SECRET:
                    parts.add(line.encode())
        self._secrets = sorted(parts, key=len, reverse=True)
        self._secret_re = (
            re.compile(b"|".join(re.escape(p) for p in self._secrets)) if parts else None
        )
        lits = sorted({t for p in self.patterns if not p.lower for t in p.triggers})
        # One prefix-factored regex pass decides whether any token pattern must run
        # (one pass per gate: a single alternation of everything is 3x slower in sre).
        self._gate = re.compile(_trie(lits)) if lits else None
        self._gates = {id(p): re.compile(p.gate) for p in self.patterns if p.gate}
        # patterns whose shapes the C scan tests (instead of Hyperscan or a translation)
        self._shape_c: dict[int, Callable[[bytes], bool]] = {}
        for i, p in enumerate(self.patterns):
            gate = c_shape_gate(p.shapes, p.shape_first, p.shape_edge) if p.shapes else None
            if gate is not None:
                self._shape_c[i] = gate
        self._covered: frozenset[object] = frozenset()
        self._scan = self._prefilter_scanner(accelerate)
        self._held = b""
        self._held_since: float | None = None
        self._ctx = b""
        self._in_key = False
        self._key_count = 0  # visible bytes emitted inside the current key block

    def _prefilter_scanner(
        self, accelerate: bool | None
    ) -> Callable[[bytes], set[object]] | None:
        if accelerate is None:
            accelerate = prefilter.available()
        if not accelerate:
            return None
        gates: list[tuple[object, bytes, bool]] = []
        for i, p in enumerate(self.patterns):
            if i in self._shape_c:  # the C shape scan is the cheaper gate
                continue
            g = p.gate_expression()
            if g is not None:
                gates.append((i, g[0], g[1]))
        if self._secrets:
            gates.append(("secrets", b"|".join(prefilter.literal(x) for x in self._secrets), False))
        gates.append(("key", b"PRIVATE KEY-----", False))
        pre = prefilter.compiled(tuple(gates))
        self._covered = pre.covered
        return pre.scanner()

    # ------------------------------------------------------------------ public

    def feed(self, data: bytes, now: float) -> bytes:
        """Mask a chunk; return what is safe to emit now (may hold a partial match)."""
        buf = self._held + data if self._held else data
        if not buf:
            return b""
        try:
            out, held = self._process(buf, final=False, deadline=False)
        except Exception:  # fail closed
            self._held, self._held_since = b"", None
            return self._mask_everything(buf)
        if held:
            if not self._held:
                self._held_since = now
        else:
            self._held_since = None
        self._held = held
        return out

    def flush(self, now: float, *, end: bool = False) -> bytes:
        """Emit held bytes whose deadline passed (or all of them at end of stream)."""
        if not self._held:
            return b""
        since = self._held_since if self._held_since is not None else now
        if not end and now - since < self.deadline:
            return b""
        buf, self._held, self._held_since = self._held, b"", None
        try:
            out, _ = self._process(buf, final=True, deadline=not end)
        except Exception:
            return self._mask_everything(buf)
        return out

    def next_deadline(self) -> float | None:
        """When ``flush`` will have something to emit (None: nothing held)."""
        if not self._held or self._held_since is None:
            return None
        return self._held_since + self.deadline

    # ------------------------------------------------------------------ internals

    def _mask_everything(self, buf: bytes) -> bytes:
        return _mask_bytes(buf, self.replacement) if self.binary else mask_all(
            buf, self.replacement)

    def _process(self, buf: bytes, *, final: bool, deadline: bool) -> tuple[bytes, bytes]:
        # 1. visible projection (C-speed split; segments only built when needed)
        pending = len(buf)
        has_esc = not self.binary and b"\x1b" in buf  # files: bytes, not a terminal
        if has_esc:
            tail_esc = buf.rfind(b"\x1b", max(0, len(buf) - 4200))
            if tail_esc >= 0 and not _ESC_RE.match(buf, tail_esc):
                if _PARTIAL_ESC_RE.match(buf, tail_esc) and not final:
                    pending = tail_esc
            vis = project(buf[:pending])
        else:
            vis = buf
        off = len(self._ctx)
        text = self._ctx + vis if off else vis

        # 2. ranges to mask (text coordinates)
        hits = self._scan(text) if self._scan is not None else None
        ranges = self._match_ranges(text, off, hits)
        key_ranges, key_events = self._key_ranges(text, off, hits)
        ranges.extend(key_ranges)

        # 3. hold point (text coordinates)
        hold = len(text)
        if not final:
            in_key_at_end = key_events[-1][1] if key_events else self._in_key
            hold = self._hold_point(text, off, in_key_at_end)
            if len(text) - hold > MAX_HOLD:
                hold = len(text)  # too long to be a partial: emit, masked below
                ranges.append((max(off, len(text) - MAX_HOLD), len(text)))
        elif deadline:
            ranges.extend(self._partial_ranges(text, off))
        hold_vis = max(0, hold - off)

        # 4. emit
        if not ranges and hold_vis == len(vis):  # fast path: nothing to mask or hold
            self._ctx = text[-CONTEXT:]
            return buf[:pending], buf[pending:]
        segs = self._segments(buf, pending) if has_esc else [(0, 0, len(buf))]
        orig_hold = self._orig_index(segs, hold_vis, pending)
        out = bytearray(buf[:orig_hold])
        spans: list[tuple[int, int]] = []
        for s, e in ranges:
            s, e = max(s - off, 0), min(e - off, hold_vis)
            if s < e:
                spans.extend(self._orig_spans(segs, s, e, buf))
        for a, b in sorted(set(spans), reverse=True):
            out[a:b] = (_mask_bytes if self.binary else _mask_text)(buf[a:b], self.replacement)
        self._ctx = (text[:hold])[-CONTEXT:]
        was_in_key = self._in_key
        for pos, state in key_events:
            if pos <= hold:
                self._in_key = state
                self._key_count = 0
        if self._in_key and was_in_key:
            self._key_count += hold_vis
            if self._key_count > KEY_MAX:  # no END line: a truncated key, stop masking
                self._in_key = False
        return bytes(out), buf[orig_hold:]

    def _match_ranges(
        self, text: bytes, off: int, hits: set[object] | None
    ) -> list[tuple[int, int]]:
        ranges: list[tuple[int, int]] = []
        covered = self._covered if hits is not None else frozenset()
        lowered: bytes | None = None
        hay: bytes | None = None
        gated: bool | None = None
        words: bytes | None = None
        digits: bytes | None = None
        for i, p in enumerate(self.patterns):
            if i in covered:  # the Hyperscan gate decided
                assert hits is not None
                if i not in hits:
                    continue
            else:  # pure-Python gates (no Hyperscan here, or a gate it cannot compile)
                if p.word_run:
                    words = text.translate(_WORD_CLASS) if words is None else words
                    if b"w" * p.word_run not in words:
                        continue
                shape_c = self._shape_c.get(i)
                if shape_c is not None:
                    if not shape_c(text):
                        continue
                elif p.shapes:
                    digits = text.translate(_DIGIT_CLASS) if digits is None else digits
                    if not any(shape in digits for shape in p.shapes):
                        continue
            if p.gate is not None and not self._gates[id(p)].search(text):
                continue
            if p.triggers and not p.lower:
                if gated is None:
                    gated = self._gate is not None and self._gate.search(text) is not None
                if not gated:
                    continue
            if p.triggers:
                if p.lower:
                    lowered = text.lower() if lowered is None else lowered
                    hay = lowered
                else:
                    hay = text
                if not any(t in hay for t in p.triggers):
                    continue
            if p.triggers and p.lead is not None and hay is not None:
                matches = _near_triggers(p.regex, text, hay, p.triggers, p.lead)
            else:
                matches = p.regex.finditer(text)
            for m in matches:
                s, e = m.span(p.group)
                if e <= off:
                    continue
                ms = m.start()
                if ms > 0 and (text[ms - 1 : ms].isalnum() or text[ms - 1] == 95):
                    if (p.triggers and p.group == 0) or p.luhn:  # tokens, cards: left edge
                        continue
                if p.luhn:
                    digits = bytes(c for c in m.group(0) if 48 <= c <= 57)
                    if not (13 <= len(digits) <= 19 and luhn_ok(digits)):
                        continue
                ranges.append((s, e))
        if "secrets" in covered:
            assert hits is not None
            look = "secrets" in hits
        else:
            look = self._secret_re is not None and any(x in text for x in self._secrets)
        if look and self._secret_re is not None:
            for m in self._secret_re.finditer(text):
                if m.end() > off:
                    ranges.append(m.span())
        return ranges

    @staticmethod
    def _segments(buf: bytes, pending: int) -> list[tuple[int, int, int]]:
        """(orig_start, vis_start, length) of each run of visible bytes."""
        segs: list[tuple[int, int, int]] = []
        pos = vpos = 0
        for m in _ESC_RE.finditer(buf, 0, pending):
            if m.start() > pos:
                segs.append((pos, vpos, m.start() - pos))
                vpos += m.start() - pos
            pos = m.end()
        if pending > pos:
            segs.append((pos, vpos, pending - pos))
        return segs

    def _key_ranges(
        self, text: bytes, off: int, hits: set[object] | None = None
    ) -> tuple[list[tuple[int, int]], list[tuple[int, bool]]]:
        """Private-key blocks: mask between the BEGIN and END lines (state kept).

        Returns the ranges to mask and the state changes ``(position, in_key)`` so the
        caller can keep the state at the point it actually emits up to.
        """
        ranges: list[tuple[int, int]] = []
        events: list[tuple[int, bool]] = []
        in_key = self._in_key
        if not in_key and (
            "key" not in hits if hits is not None and "key" in self._covered
            else b"PRIVATE KEY-----" not in text
        ):
            return ranges, events
        pos = off
        while True:
            if not in_key:
                m = _KEY_BEGIN_RE.search(text, max(0, pos - 64) if pos == off else pos)
                while m is not None and m.end() <= off:
                    m = _KEY_BEGIN_RE.search(text, m.end())
                if m is None:
                    return ranges, events
                in_key, pos = True, m.end()
                events.append((pos, True))
            end = _KEY_END_RE.search(text, max(0, pos - 40) if pos == off else pos)
            while end is not None and end.end() <= off:
                end = _KEY_END_RE.search(text, end.end())
            if end is None:
                ranges.append((pos, len(text)))
                return ranges, events
            ranges.append((pos, end.start()))
            in_key, pos = False, end.end()
            events.append((pos, False))

    def _hold_point(self, text: bytes, off: int, in_key: bool) -> int:
        if text[-1:] in (b"\n", b"\r") or not text:
            return len(text)  # no prefix can end with a line break
        n = len(text)
        # Start of the trailing run without white space: spaceless prefixes live there.
        last_space = _LAST_SPACE_RE.match(text, max(0, n - 512))
        run = last_space.end() if last_space is not None else 0
        hold = n
        for p in self.patterns:
            px = p.prefix or _ANY_RUN_RE
            start = max(0, n - p.window)
            if p.spaceless or p.prefix is None:
                start = max(start, run)
            if p.prefix_starts and p.prefix is not None:
                # try the prefix only where it can start (a search from the first such
                # byte tries every byte after it: 5 us a pattern at each feed); the
                # first that matches is where search() would have found it
                first = _starts_re(p.prefix_starts)
                pos = start
                while (c := first.search(text, pos, hold)) is not None:
                    if px.match(text, c.start()) is not None:
                        hold = c.start()
                        break
                    pos = c.start() + 1
                continue
            m = px.search(text, start)
            if m is not None:
                hold = min(hold, m.start())
        key_from = text.find(b"-", max(0, n - 96))  # both key prefixes start with "-"
        if key_from >= 0:
            m = (_KEY_END_PREFIX_RE if in_key else _KEY_PREFIX_RE).search(text, key_from)
            if m is not None:
                hold = min(hold, m.start())
        for sec in self._secrets:
            k = _secret_partial(text, sec)
            if k:
                hold = min(hold, n - k)
        return max(hold, off)

    def _partial_ranges(self, text: bytes, off: int) -> list[tuple[int, int]]:
        """At a deadline: partial matches long enough to be worth masking."""
        out: list[tuple[int, int]] = []
        window_start = max(0, len(text) - 512)
        window = text[window_start:]
        for p in self.patterns:
            if p.prefix is None:
                continue
            m = p.prefix.search(window)
            if m is not None and m.end() - m.start() >= p.min_mask:
                out.append((window_start + m.start(), len(text)))
        for sec in self._secrets:
            k = _secret_partial(text, sec)
            if k >= min(3, len(sec)):
                out.append((len(text) - k, len(text)))
        return out

    @staticmethod
    def _orig_index(segs: list[tuple[int, int, int]], vis_idx: int, pending: int) -> int:
        """Original byte index of visible index ``vis_idx`` (escapes before it included)."""
        for o, v, n in segs:
            if vis_idx < v + n:
                return o + max(0, vis_idx - v)
        return pending

    @staticmethod
    def _orig_spans(
        segs: list[tuple[int, int, int]], s: int, e: int, buf: bytes
    ) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for o, v, n in segs:
            a, b = max(s, v), min(e, v + n)
            if a >= b:
                continue
            oa, ob = o + a - v, o + b - v
            while oa > o and (buf[oa] & 0xC0) == 0x80:  # whole UTF-8 characters
                oa -= 1
            while ob < o + n and (buf[ob] & 0xC0) == 0x80:
                ob += 1
            out.append((oa, ob))
        return out
