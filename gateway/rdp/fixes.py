"""Fixes to pyrdp-mitm 2.1.0, as subclasses and overrides (no copied pyrdp code).

What 2.1.0 gets wrong for us, and what this module does about it:

* **GCC Conference Create length** (xrdp): pyrdp writes the ConnectPDU length in PER's
  one-byte form (``0x2a``); xrdp skips a fixed header that assumes the two-byte form and
  then reads garbage ("Not enough bytes in the stream"). :class:`GCCParser2` writes the
  real length in the two-byte form, as Windows and FreeRDP do.
* **Unknown capability sets** (xrdp sends type 6): ``CapabilityType(6)`` raises, the
  Confirm/Demand Active PDU is dropped and the connection dies.
  :class:`SlowPathParser2` keeps capability sets of unknown types as raw data.
* **Clipboard format list parser loops forever** on a name without its UTF-16 NUL
  terminator (``stream.read(2)`` returns ``b""`` forever); so does the writer.
  :class:`ClipboardParser2` bounds both. (The dynamic channel parser's loop is not
  reachable: the MITM relays ``drdynvc`` as raw bytes, it never parses it.)
* **Secrets in logs**: the Client Info PDU (user's password, injected password) is
  logged and written to the replay; the TLS master secret of every connection is logged
  (``CLIENT_RANDOM ...`` on the ``ssl`` logger); a parser exception logs the decrypted
  bytes in hex; the login heuristic logs typed text as "credentials". Fixed by
  :class:`QuietTCPLayer` (no key log, no hex dumps), by the MITM's own Client Info
  handler (:mod:`gateway.rdp.mitm`) and by :func:`configure_logging`.
* **A new 2048-bit RSA key per connection** (for Standard RDP Security, which the
  bastion does not offer) blocks the reactor ~0.25 s: :func:`install` makes the state
  reuse one key generated per worker process.

:func:`install` rebinds the names pyrdp's modules use to these classes. It is called
once by the worker process (the only process that imports pyrdp).
"""

from __future__ import annotations

import importlib
import logging
from io import BytesIO
from typing import Any

from Crypto.PublicKey import RSA as _CryptoRSA
from pyrdp.core import Uint16BE, Uint16LE, Uint32LE
from pyrdp.enum import CapabilityType
from pyrdp.layer import ClipboardLayer, TwistedTCPLayer
from pyrdp.parser import GCCParser, SlowPathParser
from pyrdp.parser.rdp.virtual_channel.clipboard import ClipboardParser
from pyrdp.pdu import Capability, FormatListPDU, LongFormatName

log = logging.getLogger("bastille.rdp")

#: the most capability sets / clipboard formats one PDU may carry before we give up
MAX_ITEMS = 512
_KNOWN_CAPS = frozenset(int(c) for c in CapabilityType)


class GCCParser2(GCCParser):
    """Writes the GCC ConnectPDU length in the two-byte PER form (xrdp needs it)."""

    def write(self, pdu: Any) -> bytes:
        data: bytes = super().write(pdu)
        # choice(1) + object identifier(6) + length(1, 0x2a) + ConnectGCCPDU
        head, rest = data[:7], data[8:]
        return head + Uint16BE.pack(0x8000 | len(rest)) + rest


class SlowPathParser2(SlowPathParser):
    """Keeps capability sets of types pyrdp does not know (xrdp's type 6) as raw data."""

    def parseCapabilitySets(self, capabilitySetsRaw: bytes, numberCapabilities: int) -> Any:
        stream = BytesIO(capabilitySetsRaw)
        known = BytesIO()
        count = 0
        unknown: list[Capability] = []
        for _ in range(min(numberCapabilities, MAX_ITEMS)):
            head = stream.read(4)
            if len(head) < 4:
                break
            ctype = Uint16LE.unpack(head[:2])
            length = Uint16LE.unpack(head[2:])
            body = stream.read(max(0, length - 4))
            if ctype in _KNOWN_CAPS:
                known.write(head + body)
                count += 1
            else:
                unknown.append(Capability(ctype, body))
        sets = super().parseCapabilitySets(known.getvalue(), count)
        for cap in unknown:
            sets[cap.capabilityType] = cap
        return sets


class ClipboardParser2(ClipboardParser):
    """Clipboard parser whose format list reading and writing always terminate."""

    def parseFormatList(self, payload: bytes, msgFlags: int) -> FormatListPDU:
        stream = BytesIO(payload)
        self.formats: dict[int, Any] = {}
        end = len(payload)
        while stream.tell() + 4 <= end and len(self.formats) < MAX_ITEMS:
            format_id = Uint32LE.unpack(stream)
            name = b""
            while True:
                pair = stream.read(2)
                name += pair
                if len(pair) < 2 or pair == b"\x00\x00":
                    break
            if not name.endswith(b"\x00\x00"):
                name = name[: len(name) & ~1] + b"\x00\x00"
            self.formats[format_id] = LongFormatName(format_id, name)
        return FormatListPDU(dict(self.formats), msgFlags)

    def writeFormatList(self, stream: BytesIO, pdu: FormatListPDU) -> None:
        sub = BytesIO()
        for fmt in pdu.formatList.values():
            Uint32LE.pack(fmt.formatId, sub)
            name = bytes(fmt.formatName)
            cut = name.find(b"\x00\x00")
            while cut != -1 and cut % 2:
                cut = name.find(b"\x00\x00", cut + 1)
            name = name[:cut] if cut != -1 else name[: len(name) & ~1]
            sub.write(name + b"\x00\x00")
        Uint32LE.pack(len(sub.getvalue()), stream)
        stream.write(sub.getvalue())


class ClipboardLayer2(ClipboardLayer):
    """A clipboard layer with :class:`ClipboardParser2`."""

    def __init__(self, parser: ClipboardParser | None = None) -> None:
        super().__init__(parser if parser is not None else ClipboardParser2())


class QuietTCPLayer(TwistedTCPLayer):
    """TCP layer that never logs TLS secrets nor decrypted bytes.

    pyrdp's layer logs every connection's TLS master secret and, on a parser error, the
    decrypted bytes (which may hold a password) in hex. Here a parser error is logged by
    its type only and the connection is aborted.
    """

    def logSSLParameters(self) -> None:  # pyrdp logs CLIENT_RANDOM + master key here
        return None

    def dataReceived(self, data: bytes) -> None:
        self.logSSLRequired = False
        try:
            self.recv(data)
        except Exception as exc:  # a malformed or unsupported PDU ends the connection
            log.warning("rdp: cannot parse %s (%d bytes): %s; closing the connection",
                        "data", len(data), type(exc).__name__)
            self.disconnect(True)


class _SharedRSA:
    """Stand-in for ``Crypto.PublicKey.RSA`` in :mod:`pyrdp.mitm.state`: one key per process.

    The key serves only Standard RDP Security (RC4), which the bastion refuses (TLS only),
    so sharing it costs nothing and saves ~0.25 s of blocked reactor per connection.
    """

    _key: Any = None

    @classmethod
    def generate(cls, bits: int, *args: Any, **kwargs: Any) -> Any:
        if cls._key is None:
            cls._key = _CryptoRSA.generate(bits)
        return cls._key


def install() -> None:
    """Point pyrdp's module-level names at the fixed classes (idempotent).

    ``importlib.import_module`` is used because ``pyrdp.mitm`` shadows some of its
    modules with classes of the same name (``pyrdp.mitm.RDPMITM``).
    """
    for module, name, value in (
        ("pyrdp.mitm.MCSMITM", "GCCParser", GCCParser2),
        ("pyrdp.mitm.layerset", "TwistedTCPLayer", QuietTCPLayer),
        ("pyrdp.mitm.RDPMITM", "ClipboardLayer", ClipboardLayer2),
        ("pyrdp.recording.recorder", "SlowPathParser", SlowPathParser2),
        ("pyrdp.recording.recorder", "ClipboardParser", ClipboardParser2),
        ("pyrdp.mitm.state", "RSA", _SharedRSA),
    ):
        setattr(importlib.import_module(module), name, value)


class _NoSecrets(logging.Filter):
    """Drops pyrdp log records that may carry a secret or typed/copied text."""

    _KEYS = frozenset({"password", "credentials_attempt", "clipboardData", "data", "pdu"})

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (isinstance(args, dict) and self._KEYS & set(args))


def configure_logging(level: int = logging.WARNING) -> None:
    """pyrdp's loggers: never below INFO (its DEBUG logs every PDU, passwords included),
    never its TLS key log, never records that carry PDUs, passwords or clipboard data."""
    for name in ("ssl", "crawler"):
        off = logging.getLogger(name)
        off.handlers.clear()
        off.propagate = False
        off.disabled = True
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("bastille-rdp %(name)s %(levelname)s %(message)s"))
    handler.addFilter(_NoSecrets())
    for name in ("pyrdp", "ntlmssp"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.setLevel(max(level, logging.INFO))
        lg.propagate = False
        lg.addHandler(handler)
