"""RDP through the bastion (optional extra ``bastille[rdp]``, built on pyrdp, GPLv3).

Only :mod:`gateway.rdp.worker`, :mod:`gateway.rdp.mitm` and :mod:`gateway.rdp.fixes`
import pyrdp or Twisted, and only inside RDP worker processes (plus
:mod:`gateway.rdp.render`, in the ``bastille rdp-replay --format mp4|png`` command); the
rest of this package (routing, tokens, keystroke decoding, the gate, TLS helpers, the
supervisor, CLI commands) is stdlib/cryptography only, so the SSH gateway never loads
pyrdp. See docs/rdp.md.
"""
