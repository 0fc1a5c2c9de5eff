"""Export a recording as asciicast (the format of asciinema): v3 or v2.

Output bytes are decoded as UTF-8 with an incremental decoder (a character split across
two events is kept whole); invalid byte sequences become U+FFFD (replacement), because
asciicast holds JSON text, not bytes. The export is therefore exact for valid UTF-8
output and lossy only where the original bytes were not UTF-8 (use ``bastille play``
or the recording itself for byte-exact output). Resizes become ``r`` events, input
``i`` events when ``include_input`` is set, the exit status an ``x`` event (v3).

Markers (``m`` events): by default one per command (``$ TEXT``) and recorded marker;
callers may pass their own (the evidence bundle passes one per timeline event). Marker
labels are shown by players as text: control characters in them are made visible
(``common.safetext.visible``).

v3 (asciinema 3's default): a ``term`` object in the header and event times relative
to the previous event. v2: absolute times, ``width``/``height``.

``safe=True`` filters the terminal output through ``common.safetext.TerminalFilter``
(no OSC 52 clipboard writes, title changes or report requests reach whoever replays the
file); the recording itself keeps the exact bytes.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator
from typing import IO

from common.safetext import TerminalFilter, visible
from recorder import events as ev
from recorder.reader import Recording

VERSIONS = (2, 3)


def default_markers(rec: Recording) -> list[tuple[float, str]]:
    """One marker per command (``$ TEXT``) and per recorded marker."""
    out = []
    for e in rec.events((ev.COMMAND, ev.MARKER)):
        label = str(e.fields().get("text", ""))
        out.append((e.time, "$ " + label if e.type == ev.COMMAND else label))
    return out


def _header(rec: Recording, version: int) -> dict[str, object]:
    cols, rows = rec.size
    title = f"{rec.header.get('user', '')}@{rec.header.get('target', '')} " \
        f"{rec.session_id}".strip()
    term = rec.header.get("term")
    term_type = term if isinstance(term, str) and term else None
    command = rec.header.get("command")
    if version == 3:
        header: dict[str, object] = {"version": 3, "term": {"cols": cols, "rows": rows}}
        if term_type:
            header["term"] = {"cols": cols, "rows": rows, "type": term_type}
        header["timestamp"] = int(rec.start_time)
        header["title"] = title
        if isinstance(command, str) and command:
            header["command"] = command
        return header
    header = {"version": 2, "width": cols, "height": rows, "timestamp": int(rec.start_time),
              "title": title}
    if term_type:
        header["env"] = {"TERM": term_type}
    if rec.trailer is not None:
        header["duration"] = rec.duration
    return header


def asciicast_lines(rec: Recording, *, include_input: bool = False, version: int = 2,
                    markers: Iterable[tuple[float, str]] | None = None,
                    safe: bool = False) -> Iterator[str]:
    """The lines of an asciicast file (header first), without newlines."""
    if version not in VERSIONS:
        raise ValueError(f"asciicast version {version} is not supported (2 or 3)")
    yield json.dumps(_header(rec, version), ensure_ascii=False)
    pending = sorted(markers if markers is not None else default_markers(rec),
                     key=lambda m: m[0])
    out_dec = codecs.getincrementaldecoder("utf-8")("replace")
    in_dec = codecs.getincrementaldecoder("utf-8")("replace")
    filt = TerminalFilter() if safe else None
    prev = 0.0
    last = 0.0
    mi = 0
    exit_at: tuple[float, int] | None = None

    def line(t: float, code: str, data: str) -> str:
        nonlocal prev
        t = round(max(t, prev if version == 3 else 0.0), 6)
        stamp = round(t - prev, 6) if version == 3 else t
        prev = t
        return json.dumps([stamp, code, data], ensure_ascii=False)

    for e in rec.events():
        t = round(e.time, 6)
        last = max(last, t)
        while mi < len(pending) and pending[mi][0] <= t:
            yield line(pending[mi][0], "m", visible(pending[mi][1]))
            mi += 1
        if e.type in (ev.OUTPUT, ev.STDERR):
            data = filt.feed(e.data) if filt is not None else e.data
            text = out_dec.decode(data)
            if text:
                yield line(t, "o", text)
        elif e.type == ev.INPUT and include_input:
            text = in_dec.decode(e.data)
            if text:
                yield line(t, "i", text)
        elif e.type == ev.RESIZE:
            f = e.fields()
            if f:
                yield line(t, "r", f"{f['cols']}x{f['rows']}")
        elif e.type == ev.EXIT:
            status = e.fields().get("status")
            if isinstance(status, int) and not isinstance(status, bool):
                exit_at = (t, status)
    tail = out_dec.decode(filt.flush() if filt else b"", final=True)
    if tail:
        yield line(last, "o", tail)
    while mi < len(pending):
        yield line(pending[mi][0], "m", visible(pending[mi][1]))
        mi += 1
    if exit_at is not None and version == 3:
        yield line(exit_at[0], "x", str(exit_at[1]))


def export_asciicast(rec: Recording, out: IO[str], *, include_input: bool = False,
                     version: int = 2, markers: Iterable[tuple[float, str]] | None = None,
                     safe: bool = False) -> int:
    """Write the asciicast to ``out``; returns the number of events written."""
    n = -1
    for text in asciicast_lines(rec, include_input=include_input, version=version,
                                markers=markers, safe=safe):
        out.write(text + "\n")
        n += 1
    return n
