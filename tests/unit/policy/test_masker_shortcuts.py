"""The masker's shortcuts find what the plain searches find.

* A pattern with triggers and a ``lead`` runs its regex only at the triggers'
  occurrences (``_near_triggers``), not at every byte: the matches must be exactly those
  of ``regex.finditer`` over the whole text.
* The hold point tries a prefix only where one of its ``prefix_starts`` bytes occurs,
  and finds the trailing run without white space with one regex: the point must be the
  one the plain searches give (the code before the shortcut, kept here as the
  reference).

Texts are built from the pieces that matter (keywords in any case, with and without the
``aws_`` lead, separators, 40-character values, token starts, digits, spaces, random
bytes), so that matches, near-misses and partial prefixes at the end are common.
"""

from __future__ import annotations

import random

import pytest

from gateway.policy import BUILTIN_PATTERNS, StreamMasker
from gateway.policy.masker import NEAR_TRIGGERS_MAX, _near_triggers

_PIECES = [
    b"aws_secret_access_key", b"AWS_SECRET_ACCESS_KEY", b"SecretAccessKey", b"secretaccesskey",
    b"aws", b"aws_", b"secret_access", b"Secret_Access_Key", b"secret_access_ke",
    b" = ", b"=", b": ", b'"', b"'", b"  ", b"\t", b"\n", b"\r\n",
    b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", b"wJalrXUtnFEMI/K7MDENG", b"+/+/",
    b"ghp_", b"gho_", b"github_pat_", b"xoxb-", b"xapp-", b"AKIA", b"ASIA",
    b"A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", b"IOSFODNN7EXAMPLE", b"_", b"-",
    b"4111 1111 1111 1111", b"5500-0000-0000-0004", b"378282246310005", b"4111 11",
    b"word", b"x", b"g", b"A", b"s", b"S", b"2", b"6",
    # whole secrets, so that matches (and matches next to each other) are common
    b"AKIAIOSFODNN7EXAMPLE", b"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    b'SecretAccessKey:"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"',
    b"AWS_SECRETACCESSKEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
]


def _text(rng: random.Random, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        if rng.random() < 0.15:
            out += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12)))
        else:
            out += rng.choice(_PIECES)
    return bytes(out)


def _triggered() -> list[tuple[str, object]]:
    return [(p.name, p) for p in BUILTIN_PATTERNS if p.triggers and p.lead is not None]


@pytest.mark.parametrize(("name", "pattern"), _triggered())
def test_matches_near_triggers_are_the_matches_of_the_whole_text(name: str, pattern) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(f"near-{name}")
    seen = 0
    for _ in range(3000):
        text = _text(rng, rng.randrange(1, 400))
        hay = text.lower() if pattern.lower else text
        want = [m.span() for m in pattern.regex.finditer(text)]
        got = [m.span() for m in _near_triggers(pattern.regex, text, hay, pattern.triggers,
                                                pattern.lead)]
        assert got == want, text
        seen += bool(want)
    assert seen > 50  # the texts do hold matches


def test_many_trigger_occurrences_fall_back_to_the_whole_text() -> None:
    p = next(p for p in BUILTIN_PATTERNS if p.name == "aws-secret-access-key")
    text = b"secret_access " * (NEAR_TRIGGERS_MAX + 1) + \
        b"aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    got = [m.span(1) for m in _near_triggers(p.regex, text, text.lower(), p.triggers, 4)]
    assert got == [m.span(1) for m in p.regex.finditer(text)] and len(got) == 1


def _reference_hold_point(masker: StreamMasker, text: bytes, off: int, in_key: bool) -> int:  # noqa: C901 - the old code, verbatim
    """``StreamMasker._hold_point`` as it was before the shortcuts."""
    from gateway.policy import masker as mod

    if text[-1:] in (b"\n", b"\r") or not text:
        return len(text)
    n = len(text)
    run = max(text.rfind(c, max(0, n - 512)) for c in (b" ", b"\t", b"\n", b"\r")) + 1
    hold = n
    for p in masker.patterns:
        px = p.prefix or mod._ANY_RUN_RE
        start = max(0, n - p.window)
        if p.spaceless or p.prefix is None:
            start = max(start, run)
        if p.prefix_starts and p.prefix is not None:
            found = [i for c in p.prefix_starts if (i := text.find(c, start)) >= 0]
            if not found:
                continue
            start = min(found)
        m = px.search(text, start)
        if m is not None:
            hold = min(hold, m.start())
    key_from = text.find(b"-", max(0, n - 96))
    if key_from >= 0:
        m = (mod._KEY_END_PREFIX_RE if in_key else mod._KEY_PREFIX_RE).search(text, key_from)
        if m is not None:
            hold = min(hold, m.start())
    for sec in masker._secrets:
        k = mod._secret_partial(text, sec)
        if k:
            hold = min(hold, n - k)
    return max(hold, off)


@pytest.mark.parametrize("length", [1, 30, 300, 2000])
def test_hold_point_is_the_one_the_plain_searches_give(length: int) -> None:
    rng = random.Random(f"hold-{length}")
    masker = StreamMasker(BUILTIN_PATTERNS, secrets=("Vault-S3cret!pw",))
    held = 0
    for _ in range(2500 if length < 2000 else 600):
        text = _text(rng, rng.randrange(1, length + 1))
        if rng.random() < 0.5:  # end on the start of something
            text += rng.choice(_PIECES)[: rng.randrange(1, 12)]
        off = rng.randrange(0, min(len(text), 256) + 1)
        in_key = rng.random() < 0.1
        want = _reference_hold_point(masker, text, off, in_key)
        assert masker._hold_point(text, off, in_key) == want, (text, off)
        held += want < len(text)
    assert held > 100  # partial prefixes at the end are common here
