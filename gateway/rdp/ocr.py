"""Read text off sampled RDP desktops (Tesseract through tesserocr) and date each line.

:class:`OcrPlanner` is fed every :class:`gateway.rdp.desktop.Sample` in order. It OCRs a
sample once the screen has *settled* (no change for ``SETTLE`` s, or changes going on
for ``MAX_WAIT`` s), at most ``per_minute`` times per minute of session time (a token
bucket), and only the horizontal bands of the screen that changed since its previous
OCR (a typing session costs a line's height, not the whole screen); short bands are
read at 3x their size, tall ones at 2x. Each line read is dated when it *appeared*: the
latest sample since the previous OCR that changed a pixel of the line's box (its pixels
stayed the same from then until the OCR'd sample), so a search lands at the moment the
text was drawn even though OCR runs far less often. (The history keeps each sample's
rectangle and changed-pixel mask, not the whole screen: at most ``HISTORY_CAP``.)

Each distinct line is kept once (its first appearance), like the screen lines of SSH
sessions. Lines whose confidence is below ``MIN_CONFIDENCE`` or that have fewer than
two letters or digits are dropped.

:class:`TesseractEngine` needs Debian's ``tesseract-ocr`` + ``tesseract-ocr-eng`` (the
language data) and the ``tesserocr`` binding (the ``bastille[rdp-ocr]`` extra).

Known limits: OCR is an aid, not evidence: small fonts, anti-aliasing and 16-bit
colour cost accuracy (docs/rdp.md has the figures measured on our test screens); text
that appears and disappears between two OCRs of its region is not read; text in a
region that changes continuously (video) is read at most every ``MAX_WAIT`` s.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from gateway.rdp.desktop import TILE, Sample
from recorder.frames import OcrLine

SETTLE = 0.5  # seconds without change before a sample is OCR'd
MAX_WAIT = 5.0  # ... or this long after the first change not yet OCR'd
MIN_CONFIDENCE = 45.0  # Tesseract's line confidence (0-100)
MARGIN = 6  # pixels above and below a changed band
HISTORY_CAP = 128  # samples kept for dating lines (older changes date to the oldest kept)
SMALL_BAND = 240  # bands up to this height (a few lines: typing) are read at 3x ...
UPSCALE = (3, 2)  # ... taller ones at 2x (small terminal fonts read badly at 1x)
TESSDATA = ("/usr/share/tesseract-ocr/5/tessdata", "/usr/share/tesseract-ocr/4.00/tessdata",
            "/usr/share/tessdata", "/usr/local/share/tessdata")
_ALNUM = re.compile(r"[^\W_]", re.UNICODE)
_SPACES = re.compile(r"\s+")


class OcrUnavailable(Exception):
    """Tesseract, its English data or the tesserocr binding is missing."""


@dataclass(frozen=True)
class ReadLine:
    """A line as the engine read it: text, confidence and box (in the image given)."""

    text: str
    confidence: float
    box: tuple[int, int, int, int]  # x, y, w, h


class Engine(Protocol):
    def read(self, image: Any) -> list[ReadLine]: ...

    def close(self) -> None: ...


def tessdata_dir() -> str | None:
    """Where Tesseract's English data is (``TESSDATA_PREFIX`` first), or None."""
    candidates = [os.environ.get("TESSDATA_PREFIX", ""), *TESSDATA]
    for d in candidates:
        if d and (Path(d) / "eng.traineddata").is_file():
            return d
    return None


class TesseractEngine:
    """Tesseract's LSTM engine through tesserocr, one page-segmentation pass per image."""

    def __init__(self) -> None:
        try:
            import tesserocr
        except ImportError as exc:
            raise OcrUnavailable(f"the tesserocr binding is not installed "
                                 f"(pip install 'bastille[rdp-ocr]'): {exc}") from exc
        path = tessdata_dir()
        if path is None:
            raise OcrUnavailable("Tesseract's English data is not installed "
                                 "(apt-get install tesseract-ocr tesseract-ocr-eng)")
        self._t = tesserocr
        try:
            self._api = tesserocr.PyTessBaseAPI(path=path, lang="eng",
                                                psm=tesserocr.PSM.SINGLE_BLOCK)
        except RuntimeError as exc:
            raise OcrUnavailable(f"Tesseract cannot start: {exc}") from exc

    def read(self, image: Any) -> list[ReadLine]:
        """Lines of a PIL image (grayscale or RGB)."""
        api, level = self._api, self._t.RIL.TEXTLINE
        api.SetImage(image)
        api.Recognize()
        out: list[ReadLine] = []
        it = api.GetIterator()
        if it is None:
            return out
        for r in self._t.iterate_level(it, level):
            try:
                text = r.GetUTF8Text(level)
                box = r.BoundingBox(level)
            except RuntimeError:  # tesserocr: "No text returned" for an empty line
                continue
            if not text or box is None:
                continue
            x0, y0, x1, y1 = box
            out.append(ReadLine(text, float(r.Confidence(level)), (x0, y0, x1 - x0, y1 - y0)))
        return out

    def close(self) -> None:
        self._api.End()


def clean(text: str) -> str:
    """One line of OCR output as indexed: NFKC, no control characters, spaces collapsed."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c if unicodedata.category(c)[0] != "C" else " " for c in text)
    return _SPACES.sub(" ", text).strip()


def bands(tiles: Any, height: int) -> Iterator[tuple[int, int]]:
    """(y0, y1) pixel bands covering the tile rows that changed (with a margin)."""
    rows = [bool(v) for v in tiles.any(axis=1)]
    start: int | None = None
    for i, on in enumerate([*rows, False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            yield max(0, start * TILE - MARGIN), min(height, i * TILE + MARGIN)
            start = None


class _Change(NamedTuple):
    time: float
    box: tuple[int, int, int, int]
    mask: Any  # changed pixels of ``box`` (None: all of them)


@dataclass
class OcrPlanner:
    """Chooses which samples to OCR, reads them, dates and deduplicates the lines.

    Args:
        engine: the OCR engine (:class:`TesseractEngine`).
        per_minute: OCR runs allowed per minute of session time (bucket size and rate).
        image_of: turns a sample's array into an image for the engine (PIL).
    """

    engine: Engine
    per_minute: int
    image_of: Callable[[Any], Any]
    lines: list[OcrLine] = field(default_factory=list)
    runs: int = 0
    skipped: int = 0  # settled samples left unread for want of tokens
    _seen: set[str] = field(default_factory=set)
    _tokens: float = 0.0
    _clock: float = 0.0
    _pending: Any = None  # union of tiles changed since the previous OCR
    _history: list[_Change] = field(default_factory=list)  # since the previous OCR
    _last: Sample | None = None
    _first_change: float | None = None

    def __post_init__(self) -> None:
        self._tokens = float(self.per_minute)

    def _refill(self, t: float) -> None:
        self._tokens = min(float(self.per_minute),
                           self._tokens + (t - self._clock) * self.per_minute / 60.0)
        self._clock = max(self._clock, t)

    def feed(self, sample: Sample) -> None:
        """The next sample (in time order)."""
        last = self._last
        if last is not None and self._pending is not None:
            settled = sample.time - last.time >= SETTLE
            waited = self._first_change is not None and \
                sample.time - self._first_change >= MAX_WAIT
            if settled or waited:
                self._refill(sample.time)
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    self._read(last)
                else:
                    self.skipped += 1
        if sample.key or self._pending is None or self._pending.shape != sample.tiles.shape:
            self._pending = sample.tiles.copy()
            self._history = []
        else:
            self._pending |= sample.tiles
        self._history.append(_Change(sample.time, sample.box, sample.mask))
        if len(self._history) > HISTORY_CAP:
            del self._history[0]
        if self._first_change is None:
            self._first_change = sample.time
        self._last = sample

    def finish(self) -> list[OcrLine]:
        """Read what is left at the end of the session (once, whatever the bucket)."""
        if self._last is not None and self._pending is not None:
            self._read(self._last)
        self.lines.sort(key=lambda line: line.time)
        return self.lines

    def _appeared(self, box: tuple[int, int, int, int], default: float) -> float:
        """The time of the latest sample that changed a pixel inside ``box``."""
        x, y, w, h = box
        for s in reversed(self._history):
            sx, sy, sw, sh = s.box
            x0, y0 = max(x, sx), max(y, sy)
            x1, y1 = min(x + w, sx + sw), min(y + h, sy + sh)
            if x0 >= x1 or y0 >= y1:
                continue
            if s.mask is None or s.mask[y0 - sy:y1 - sy, x0 - sx:x1 - sx].any():
                return s.time
        return self._history[0].time if self._history else default

    def _read(self, sample: Sample) -> None:
        pending = self._pending
        self._pending = None
        self._first_change = None
        if pending is None:
            return
        self.runs += 1
        rgb = sample.rgb
        height, width = rgb.shape[:2]
        for y0, y1 in bands(pending, height):
            scale = UPSCALE[0] if y1 - y0 <= SMALL_BAND else UPSCALE[1]
            image = self.image_of(rgb[y0:y1])
            image = image.resize((width * scale, (y1 - y0) * scale))
            for line in self.engine.read(image):
                self._keep(line, scale, y0, sample.time)
        self._history = []

    def _keep(self, line: ReadLine, scale: int, y0: int, t: float) -> None:
        text = clean(line.text)
        if line.confidence < MIN_CONFIDENCE or len(_ALNUM.findall(text)) < 2:
            return
        if text in self._seen:
            return
        self._seen.add(text)
        x, y, w, h = line.box
        box = (x // scale, y0 + y // scale, -(-w // scale), -(-h // scale))
        self.lines.append(OcrLine(self._appeared(box, t), text, box))
