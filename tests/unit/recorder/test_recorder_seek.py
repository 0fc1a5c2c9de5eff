"""Keyframes and seeking: the screen at time T equals a replay from the start to T."""

from __future__ import annotations

import random
from pathlib import Path

from recorder_helpers import build_recording, make_header

from recorder import events as ev
from recorder import keyframes
from recorder.reader import Recording
from recorder.screen import Terminal, sanitize


def _synthetic(minutes: int = 20, seed: int = 7) -> bytes:
    """A long session: prompts, colours, cursor moves, clears, resizes, UTF-8, a top-like
    full-screen redraw, split escape sequences and split UTF-8 characters."""
    rnd = random.Random(seed)
    batches = []
    t = 0.0
    n = 0
    while t < minutes * 60:
        batch = []
        for _ in range(rnd.randint(1, 5)):
            t += rnd.choice([0.01, 0.2, 1.0, 3.0, 7.0])
            n += 1
            kind = rnd.random()
            if kind < 0.5:
                data = f"\x1b[3{n % 8}mline {n} caf\u00e9 \u65e5\u672c\x1b[0m\r\n".encode()
            elif kind < 0.6:
                data = f"\x1b[2J\x1b[H\x1b[7mtop - {n}\x1b[0m\r\n".encode() + b"x" * 200
            elif kind < 0.7:
                data = f"\x1b[{rnd.randint(1, 24)};{rnd.randint(1, 80)}H*{n}".encode()
            elif kind < 0.75:
                data = b"\x1b[>4;2m\x1b[" + b"9" * 100 + b"m ok\r\n"  # pyte crash guards
            elif kind < 0.8:
                cols, rows = rnd.choice([(80, 24), (100, 30), (60, 20)])
                batch.append(
                    (t, ev.RESIZE, cols.to_bytes(2, "little") + rows.to_bytes(2, "little"))
                )
                continue
            else:
                whole = "\x1b[1;31msplit \u00e9\u00e8\x1b[0m\r\n".encode()
                cut = rnd.randint(1, len(whole) - 1)
                batch.append((t, ev.OUTPUT, whole[:cut]))
                data = whole[cut:]
            batch.append((t, ev.OUTPUT, data))
        batches.append(batch)
    data, _ = build_recording(batches, header=make_header("seek0001"))
    return data


def _replay(rec: Recording, t: float) -> Terminal:
    cols, rows = rec.size
    term = Terminal(cols, rows)
    for e in rec.events():
        if e.time > t:
            break
        if e.is_output:
            term.feed(e.data)
        elif e.type == ev.RESIZE:
            f = e.fields()
            term.resize(f["cols"], f["rows"])
    return term


def test_seek_matches_replay_from_start(tmp_path: Path) -> None:
    rec = Recording.from_bytes(_synthetic())
    kfi = keyframes.build(rec, interval=10.0)
    assert len(kfi.keyframes) > 50
    assert not any(k.approx for k in kfi.keyframes)
    rnd = random.Random(1)
    times = [0.0, 0.005, rec.duration, rec.duration + 5] + [
        rnd.uniform(0, rec.duration) for _ in range(25)
    ]
    times += [k.time for k in kfi.keyframes[1:4]]
    for t in times:
        got = keyframes.screen_at(rec, kfi, t)
        want = _replay(rec, t)
        assert got.snapshot() == want.snapshot(), f"screen differs at t={t}"
    # the cache round-trips and is used
    keyframes.save(tmp_path, kfi)
    again = keyframes.load_or_build(rec, tmp_path)
    assert [k.time for k in again.keyframes] == [k.time for k in kfi.keyframes]
    t = rec.duration / 2
    assert keyframes.screen_at(rec, again, t).display() == _replay(rec, t).display()


def test_screen_lines_are_collected() -> None:
    rec = Recording.from_bytes(_synthetic(minutes=2))
    kfi = keyframes.build(rec, interval=10.0)
    texts = [x for _t, x in kfi.lines]
    assert any(x.startswith("line ") and "caf\u00e9" in x for x in texts)
    assert any("top - " in x for x in texts)  # captured before the screen was cleared


def test_bulk_output_is_sampled_and_seek_still_agrees_with_itself() -> None:
    big = b"".join(b"row %07d\r\n" % i for i in range(60_000))  # ~660 KB in one interval
    data, _ = build_recording(
        [
            [(1.0, ev.OUTPUT, big[:300_000]), (2.0, ev.OUTPUT, big[300_000:])],
            [(15.0, ev.OUTPUT, b"after\r\n")],
        ],
        header=make_header("bulk0001"),
    )
    rec = Recording.from_bytes(data)
    kfi = keyframes.build(rec, interval=10.0)
    assert any(k.approx for k in kfi.keyframes)
    screen = keyframes.screen_at(rec, kfi, 5.0).text_lines()
    assert screen[-1] == "row 0059999"  # the tail of the burst is exact
    assert keyframes.screen_at(rec, kfi, 20.0).text_lines()[-1] == "after"


def test_the_screen_a_burst_starts_on_is_searchable() -> None:
    """Output past the burst cap is held back (not drawn) until the interval ends: the
    screen it started on is captured then, so a line scrolled off by what is drawn
    after the burst is still in the screen text (it was missed before)."""
    burst = b"x" * (keyframes.BURST_CAP + 1)  # no newline, no clear: held back whole
    data, _ = build_recording(
        [[(1.0, ev.OUTPUT, b"alpha on screen\r\n"), (1.1, ev.OUTPUT, burst),
          (1.2, ev.OUTPUT, b"\r\n" * 30 + b"omega\r\n")]],
        header=make_header("burst001"),
    )
    kfi = keyframes.build(Recording.from_bytes(data), interval=10.0)
    texts = [x for _t, x in kfi.lines]
    assert "alpha on screen" in texts
    assert "omega" in texts


def test_pyte_guards() -> None:
    assert sanitize("a\x1b[>4;2mb") == "ab"
    assert sanitize("a\x1b[" + "1" * 5000 + "mb") == "ab"
    term = Terminal(80, 24)
    term.feed(b"\x1b[>4;2m\x1b[" + b"1" * 20000 + b"m")
    term.feed(b"\x1b[")  # split sequence is held back, then completed
    term.feed(b"31mred\xff\r\n")
    assert term.text_lines() == ["red\ufffd"]
    assert term.screen.buffer[0][0].fg == "red"
