"""The pyrdp-mitm 2.1.0 fixes (gateway/rdp/fixes.py), against pyrdp's own parsers."""

from __future__ import annotations

import logging
from io import BytesIO

import pytest

pytest.importorskip("pyrdp", reason="pyrdp is not installed (the bastille[rdp] extra)")

from pyrdp.core import Uint16LE, Uint32LE
from pyrdp.parser import GCCParser
from pyrdp.pdu import GCCConferenceCreateRequestPDU

from gateway.rdp import fixes


def test_gcc_length_in_two_byte_form_and_still_parses() -> None:
    payload = b"\x01" * 300
    pdu = GCCConferenceCreateRequestPDU("1", payload)
    old = GCCParser().write(pdu)
    new = fixes.GCCParser2().write(pdu)
    assert old[7] == 0x2A  # pyrdp's one-byte form that xrdp misreads
    length = int.from_bytes(new[7:9], "big")
    assert length & 0x8000 and (length & 0x7FFF) == len(new) - 9
    assert new[9:] == old[8:]
    parsed = GCCParser().parse(new)
    assert parsed.payload == payload


def _cap(ctype: int, body: bytes) -> bytes:
    return Uint16LE.pack(ctype) + Uint16LE.pack(len(body) + 4) + body


def test_unknown_capability_type_is_kept_raw() -> None:
    from pyrdp.enum import CapabilityType

    general = _cap(1, bytes(20))
    bitmap = _cap(2, bytes(24))
    order = _cap(3, bytes(84))
    raw = general + bitmap + order + _cap(6, b"\xaa\xbb") + _cap(0x7777, b"")
    parser = fixes.SlowPathParser2()
    sets = parser.parseCapabilitySets(raw, 5)
    assert CapabilityType.CAPSTYPE_GENERAL in sets
    assert sets[6].rawData == b"\xaa\xbb" and sets[0x7777].rawData == b""
    with pytest.raises(ValueError):  # what pyrdp itself does with xrdp's type 6
        from pyrdp.parser import SlowPathParser

        SlowPathParser().parseCapabilitySets(raw, 5)
    out = BytesIO()
    parser.writeCapabilitySets(list(sets.values()), out)
    assert _cap(6, b"\xaa\xbb") in out.getvalue()


@pytest.mark.timeout(5)
def test_clipboard_format_list_without_terminator_ends() -> None:
    parser = fixes.ClipboardParser2()
    good = Uint32LE.pack(13) + "Text".encode("utf-16-le") + b"\x00\x00"
    unterminated = Uint32LE.pack(14) + "abc".encode("utf-16-le")
    pdu = parser.parseFormatList(good + unterminated + b"\x01", 0)
    assert set(pdu.formatList) == {13, 14}
    out = BytesIO()
    parser.writeFormatList(out, pdu)
    assert out.getvalue().endswith(b"\x00\x00")
    assert parser.parseFormatList(b"\x01\x02", 0).formatList == {}


def test_install_rebinds_pyrdp_names() -> None:
    import importlib

    fixes.install()
    assert importlib.import_module("pyrdp.mitm.MCSMITM").GCCParser is fixes.GCCParser2
    assert importlib.import_module("pyrdp.mitm.layerset").TwistedTCPLayer is fixes.QuietTCPLayer
    state = importlib.import_module("pyrdp.mitm.state")
    assert state.RSA.generate(1024) is state.RSA.generate(1024)  # one key per process


def test_logging_never_shows_secrets(caplog: pytest.LogCaptureFixture) -> None:
    fixes.configure_logging(logging.DEBUG)
    pyrdp_log = logging.getLogger("pyrdp.mitm.connections.security")
    assert pyrdp_log.getEffectiveLevel() >= logging.INFO  # its DEBUG dumps every PDU
    handler = logging.getLogger("pyrdp").handlers[0]
    rec = logging.LogRecord("pyrdp.x", logging.WARNING, "", 0, "pw %(password)s",
                            ({"password": "hunter2"},), None)
    assert not handler.filter(rec)
    ok = logging.LogRecord("pyrdp.x", logging.WARNING, "", 0, "closed %(reason)s",
                           ({"reason": "x"},), None)
    assert handler.filter(ok)
    assert logging.getLogger("ssl").disabled  # pyrdp's TLS master-key log
