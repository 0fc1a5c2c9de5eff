"""The text masker that the recorder's tools apply to what they index or show.

The recorder cannot import the gateway, which owns the masking patterns and the vaulted
secrets (``gateway.core.masking``). The ``bastille`` command registers its text masker
here (as it registers exporters), and :func:`recorder.postprocess.reindex` and
``sessions show`` pass command lines, search text and event fields through it: an index
rebuilt with ``bastille reindex`` is masked even for recordings made before typed lines
were masked. Without a registered masker (a library user, the gateway process, whose
recordings are masked as they are written) text goes through unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

#: masks one text (a line, or lines joined by newlines); unchanged when nothing matches
TextMask = Callable[[str], str]
T = TypeVar("T")

_registered: list[TextMask] = []


def register(mask: TextMask | None) -> None:
    """Use ``mask`` from now on (None: no masking)."""
    _registered[:] = [mask] if mask is not None else []


def active() -> bool:
    """Whether a masker is registered."""
    return bool(_registered)


def mask(text: str) -> str:
    """``text`` masked (unchanged without a registered masker)."""
    return _registered[0](text) if _registered and text else text


def texts(items: Sequence[str]) -> list[str]:
    """Texts masked: one masker run for single lines, one per text with line breaks."""
    if not _registered or not items:
        return list(items)
    if any("\n" in t for t in items):
        return [mask(t) for t in items]
    masked = mask("\n".join(items)).split("\n")
    if len(masked) != len(items):  # a mask never adds or removes lines; be safe anyway
        masked = [mask(t) for t in items]
    return masked


def lines(items: Sequence[tuple[T, str]]) -> list[tuple[T, str]]:
    """``(key, line)`` pairs with their lines masked (see :func:`texts`)."""
    if not _registered:
        return list(items)
    masked = texts([t for _k, t in items])
    return [(k, m) for (k, _t), m in zip(items, masked, strict=True)]


def fields(value: Any) -> Any:
    """Every string in a JSON-like value masked (dict keys are kept)."""
    if not _registered:
        return value
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, Mapping):
        return {k: fields(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [fields(v) for v in value]
    return value
