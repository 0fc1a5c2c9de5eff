"""Export a recording as asciicast v2 (the format of asciinema).

Output bytes are decoded as UTF-8 with an incremental decoder (a character split across
two events is kept whole); invalid byte sequences become U+FFFD (replacement), because
asciicast holds JSON text, not bytes. The export is therefore exact for valid UTF-8
output and lossy only where the original bytes were not UTF-8 (use ``bastille play``
or the recording itself for byte-exact output). Resizes become "r" events, markers and
commands "m" events, and input "i" events when ``include_input`` is set.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from typing import IO

from recorder import events as ev
from recorder.reader import Recording


def asciicast_lines(rec: Recording, *, include_input: bool = False) -> Iterator[str]:
    """The lines of an asciicast v2 file (header first), without newlines."""
    cols, rows = rec.size
    header: dict[str, object] = {
        "version": 2,
        "width": cols,
        "height": rows,
        "timestamp": int(rec.start_time),
        "title": f"{rec.header.get('user', '')}@{rec.header.get('target', '')} "
        f"{rec.session_id}".strip(),
    }
    term = rec.header.get("term")
    if isinstance(term, str) and term:
        header["env"] = {"TERM": term}
    if rec.trailer is not None:
        header["duration"] = rec.duration
    yield json.dumps(header, ensure_ascii=False)
    out_dec = codecs.getincrementaldecoder("utf-8")("replace")
    in_dec = codecs.getincrementaldecoder("utf-8")("replace")
    last = 0.0
    for e in rec.events():
        t = round(e.time, 6)
        last = t
        if e.type in (ev.OUTPUT, ev.STDERR):
            text = out_dec.decode(e.data)
            if text:
                yield json.dumps([t, "o", text], ensure_ascii=False)
        elif e.type == ev.INPUT and include_input:
            text = in_dec.decode(e.data)
            if text:
                yield json.dumps([t, "i", text], ensure_ascii=False)
        elif e.type == ev.RESIZE:
            f = e.fields()
            if f:
                yield json.dumps([t, "r", f"{f['cols']}x{f['rows']}"])
        elif e.type in (ev.MARKER, ev.COMMAND):
            f = e.fields()
            label = str(f.get("text", ""))
            if e.type == ev.COMMAND:
                label = "$ " + label
            yield json.dumps([t, "m", label], ensure_ascii=False)
    tail = out_dec.decode(b"", final=True)
    if tail:
        yield json.dumps([last, "o", tail], ensure_ascii=False)


def export_asciicast(rec: Recording, out: IO[str], *, include_input: bool = False) -> int:
    """Write the asciicast to ``out``; returns the number of events written."""
    n = -1
    for line in asciicast_lines(rec, include_input=include_input):
        out.write(line + "\n")
        n += 1
    return n
