"""The target menu shown by ``ssh -t alice@bastion`` with no target.

A tiny line editor (printable keys, backspace, Ctrl-U, Enter, Ctrl-C/Ctrl-D to quit) that
resolves a choice by number or name. Pure: it turns input bytes into output bytes and a
result, the session does the I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

QUIT = object()


@dataclass(frozen=True)
class MenuEntry:
    name: str
    description: str


class TargetMenu:
    """Feed it the user's bytes; ``result`` becomes a target name or QUIT."""

    def __init__(self, user: str, entries: Sequence[MenuEntry]) -> None:
        self.user = user
        self.entries = list(entries)
        self.result: str | object | None = None
        self._line = bytearray()

    def intro(self) -> bytes:
        if not self.entries:
            self.result = QUIT
            return f"bastille: no targets are available to {self.user}.\r\n".encode()
        width = max(len(e.name) for e in self.entries)
        lines = [f"Targets available to {self.user}:", ""]
        for i, e in enumerate(self.entries, start=1):
            lines.append(f"  {i:>2}) {e.name:<{width}}  {e.description}".rstrip())
        lines += ["", "Tip: ssh -t USER@BASTION TARGET connects directly.", ""]
        return ("\r\n".join(lines) + "\r\n" + self.prompt()).encode()

    @staticmethod
    def prompt() -> str:
        return "Select a target (number or name, q to quit): "

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        for byte in data:
            if self.result is not None:
                break
            if byte in (3, 4):  # Ctrl-C, Ctrl-D
                self.result = QUIT
                out += b"\r\n"
            elif byte in (13, 10):
                out += b"\r\n" + self._choose()
            elif byte in (8, 127):
                if self._line:
                    self._line.pop()
                    out += b"\b \b"
            elif byte == 21:  # Ctrl-U
                out += b"\b \b" * len(self._line)
                self._line.clear()
            elif 32 <= byte < 127 and len(self._line) < 64:
                self._line.append(byte)
                out.append(byte)
        return bytes(out)

    def _choose(self) -> bytes:
        text = self._line.decode("ascii", "replace").strip()
        self._line.clear()
        if text in ("q", "quit", "exit"):
            self.result = QUIT
            return b""
        if not text:
            return self.prompt().encode()
        if text.isdigit() and 1 <= int(text) <= len(self.entries):
            self.result = self.entries[int(text) - 1].name
            return b""
        for e in self.entries:
            if e.name == text:
                self.result = e.name
                return b""
        return f"No target {text!r} here.\r\n{self.prompt()}".encode()
