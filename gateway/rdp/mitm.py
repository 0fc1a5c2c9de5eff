"""pyrdp's MITM, specialised for a bastion (subclasses of pyrdp-mitm 2.1.0 components).

What differs from pyrdp's attacker-oriented MITM:

* routing happens at the X.224 Connection Request (:class:`BastilleX224MITM`): a
  one-time token, the ``alice#web1`` cookie or the listening port names the target;
  anything else is refused before the bastion opens a connection to a target; a client
  that does not offer TLS, and a target that demands NLA (CredSSP), are refused (no
  NTLM hash capture, no downgrade to Standard RDP Security);
* TLS toward the client uses the bastion's own certificate (TLS 1.2 and 1.3), and the
  target's certificate must match its pinned SHA-256 (:meth:`BastilleRDPMITM.startTLS`);
  pyrdp's certificate cloning (which writes private keys to disk) is not used;
* the Client Info PDU is checked by the bastion and never logged: the user's password
  or one-time PIN is verified, then the target's vaulted credentials are sent with
  autologon (:class:`BastilleSecurityMITM`); the replay gets the PDU without password;
* clipboard and device (drive) redirection channels relay nothing unless the target
  allows them (:meth:`BastilleRDPMITM.buildChannel`); the clipboard is observed
  passively (never actively read), and only text is recorded;
* no replay files, no extracted files, no crawler, no attacker channel, no payloads.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable
from typing import Any

from OpenSSL import SSL
from pyrdp.core import defer
from pyrdp.enum import (
    ClientInfoFlags,
    MCSChannelName,
    NegotiationFailureCode,
    NegotiationProtocols,
    PlayerPDUType,
    PointerFlag,
)
from pyrdp.layer import LayerChainItem, RawLayer
from pyrdp.mitm import RDPMITM, MITMConfig
from pyrdp.mitm.ClipboardMITM import PassiveClipboardStealer
from pyrdp.mitm.MITMRecorder import MITMRecorder
from pyrdp.mitm.SecurityMITM import SecurityMITM
from pyrdp.mitm.state import RDPMITMState
from pyrdp.mitm.X224MITM import X224MITM
from pyrdp.parser import ClientInfoParser, NegotiationRequestParser, NegotiationResponseParser
from pyrdp.pdu import (
    ClientInfoPDU,
    FastPathMouseEvent,
    FastPathScanCodeEvent,
    FastPathUnicodeEvent,
    FormatDataResponsePDU,
    InputPDU,
    KeyboardEvent,
    MouseEvent,
    NegotiationFailurePDU,
    UnicodeKeyboardEvent,
)
from twisted.internet import reactor as _reactor
from twisted.internet.interfaces import IOpenSSLContextFactory
from zope.interface import implementer

from gateway.audit import AuditEvent, Kind
from gateway.rdp.fixes import SlowPathParser2
from gateway.rdp.gate import RdpConnection, RdpGate, Refused
from gateway.rdp.routing import parse_cookie

log = logging.getLogger("bastille.rdp")
reactor: Any = _reactor

CF_UNICODETEXT = 13
CERT_WAIT = 10.0  # seconds to wait for the target's TLS certificate
KBDFLAGS_EXTENDED = 0x02  # fast-path keyboard event flag
SLOW_KBDFLAGS_EXTENDED = 0x0100
SLOW_KBDFLAGS_RELEASE = 0x8000


def fingerprint(cert: Any) -> str:
    """Lowercase hex SHA-256 of a pyOpenSSL certificate's DER encoding."""
    raw: bytes = cert.digest("sha256")
    return raw.decode().replace(":", "").lower()


class TLSContexts:
    """The two TLS contexts of a worker: toward clients (our certificate), toward targets."""

    def __init__(self, cert: str, key: str) -> None:
        server = SSL.Context(SSL.TLS_SERVER_METHOD)
        server.set_min_proto_version(SSL.TLS1_2_VERSION)
        server.use_certificate_chain_file(cert)
        server.use_privatekey_file(key)
        server.check_privatekey()
        self.server = server
        client = SSL.Context(SSL.TLS_CLIENT_METHOD)
        client.set_min_proto_version(SSL.TLS1_2_VERSION)
        # the target's certificate is checked by its pinned fingerprint, not by a CA
        client.set_verify(SSL.VERIFY_NONE, lambda *a: True)
        self.client = client


@implementer(IOpenSSLContextFactory)
class _Factory:
    """Twisted's context factory interface (``getContext``)."""

    def __init__(self, ctx: SSL.Context) -> None:
        self._ctx = ctx

    def getContext(self) -> SSL.Context:
        return self._ctx


def _conn(state: Any) -> RdpConnection | None:
    conn: RdpConnection | None = getattr(state, "bastille_conn", None)
    return conn


class BastilleX224MITM(X224MITM):
    """Routes at the Connection Request; refuses no-TLS clients and NLA-only targets."""

    def onConnectionRequest(self, pdu: Any) -> None:
        state = self.state
        mitm: BastilleRDPMITM = state.bastille_mitm
        request = NegotiationRequestParser().parse(pdu.payload)
        source = mitm.source or str(state.clientIp or "")
        try:
            if request.requestedProtocols is None or \
                    not request.requestedProtocols & NegotiationProtocols.SSL:
                raise mitm.gate.refuse(source, "the client does not offer TLS (the bastion "
                                       "accepts TLS only; turn off NLA-only/RDP security)")
            conn = mitm.gate.route(parse_cookie(request.cookie), source, mitm.fixed_target)
        except Refused as exc:
            log.info("rdp: refused %s: %s", source, exc)
            mitm.drop()
            return
        state.bastille_conn = conn
        conn.on_terminate = mitm.drop
        conn.pause_reading = mitm.pause_reading
        state.effectiveTargetHost = conn.target.host
        state.effectiveTargetPort = conn.target.port
        mitm.connect_deadline = conn.target.connect_timeout
        super().onConnectionRequest(pdu)

    def onConnectionConfirm(self, pdu: Any) -> None:
        response = NegotiationResponseParser().parse(pdu.payload)
        if isinstance(response, NegotiationFailurePDU):
            conn = _conn(self.state)
            reason = NegotiationFailureCode.getMessage(response.failureCode)
            if response.failureCode == NegotiationFailureCode.HYBRID_REQUIRED_BY_SERVER:
                reason = "the target requires NLA (CredSSP), which the bastion cannot do: " \
                         "turn NLA off on the target (docs/rdp.md)"
            if conn is not None:
                conn.gate.audit(conn.event(Kind.TARGET_CONNECT, "failed", {"error": reason}))
            self.state.bastille_mitm.drop()
            return
        super().onConnectionConfirm(pdu)


class BastilleSecurityMITM(SecurityMITM):
    """Checks the user at the Client Info PDU and injects the target's credentials."""

    def onClientInfo(self, data: bytes) -> None:
        pdu = ClientInfoParser().parse(data)
        defer(self._login(pdu))

    async def _login(self, pdu: ClientInfoPDU) -> None:
        mitm: BastilleRDPMITM = self.state.bastille_mitm
        conn = _conn(self.state)
        if conn is None:
            mitm.drop()
            return
        username = (pdu.username or "").rstrip("\x00")
        password = (pdu.password or "").rstrip("\x00")
        pdu.password = ""
        try:
            creds = await asyncio.wait_for(
                conn.login(username, password, (pdu.domain or "").rstrip("\x00")),
                timeout=30)
        except (Refused, TimeoutError) as exc:
            del password
            log.info("rdp: login refused from %s: %s", conn.source, exc)
            mitm.drop()
            return
        except Exception as exc:  # never leave a half-open connection behind
            del password
            log.error("rdp: login of %s failed: %s", conn.source, type(exc).__name__)
            mitm.drop()
            return
        del password
        # the replay keeps what the user sent, without the password
        self.recorder.record(pdu, PlayerPDUType.CLIENT_INFO)
        pdu.username = creds.user
        pdu.password = creds.password
        pdu.domain = creds.domain
        pdu.flags |= ClientInfoFlags.INFO_AUTOLOGON
        pdu.flags &= ~ClientInfoFlags.INFO_COMPRESSION
        pdu.flags &= ~ClientInfoFlags.INFO_CompressionTypeMask
        self.state.loggedIn = True  # turns off pyrdp's "credentials" typing heuristic
        self.server.sendClientInfo(pdu)
        pdu.password = ""


class BastilleClipboard(PassiveClipboardStealer):
    """Passive clipboard observer: records copied text, never reads the clipboard itself."""

    _direction = "upload"

    def onClientPDUReceived(self, pdu: Any) -> None:
        self._direction = "upload"  # client -> target
        super().onClientPDUReceived(pdu)

    def onServerPDUReceived(self, pdu: Any) -> None:
        self._direction = "download"  # target -> client
        super().onServerPDUReceived(pdu)

    def onFormatDataResponse(self, pdu: FormatDataResponsePDU) -> bool:
        conn = _conn(self.state)
        if conn is not None and pdu.formatId == CF_UNICODETEXT and pdu.requestedFormatData:
            text = bytes(pdu.requestedFormatData).decode("utf-16-le", "replace").rstrip("\x00")
            conn.on_clipboard(self._direction, text)
        forward: bool = super().onFormatDataResponse(pdu)
        return forward


class ReplayTransport(LayerChainItem):
    """The end of pyrdp's recorder chain: replay bytes go to the bastion's recording."""

    def __init__(self, state: Any) -> None:
        super().__init__()
        self._state = state

    def sendBytes(self, data: bytes) -> None:
        conn = _conn(self._state)
        if conn is not None:
            conn.on_replay(data)


class BastilleRDPMITM(RDPMITM):
    """One RDP connection through the bastion."""

    def __init__(self, gate: RdpGate, tls: TLSContexts, fixed_target: str | None,
                 main_log: Any, crawler_log: Any, config: MITMConfig) -> None:
        self.gate = gate
        self.tls = tls
        self.fixed_target = fixed_target
        self.source = ""
        self.connect_deadline = 10.0
        self.login_timeout = 60.0
        self.on_gone: Callable[[BastilleRDPMITM], None] | None = None
        self._dropped = False
        self._gone = False
        state = RDPMITMState(config, main_log.sessionID)
        state.bastille_mitm = self
        state.bastille_conn = None
        recorder = MITMRecorder([], state)
        recorder.setParser(PlayerPDUType.SLOW_PATH_PDU, SlowPathParser2())
        super().__init__(main_log, crawler_log, config, state=state, recorder=recorder)
        self.recorder.addTransport(ReplayTransport(state))
        for side in (self.client, self.server):
            side.slowPath.mainParser = SlowPathParser2()
        self.client.tcp.createObserver(onConnection=self._client_connected,
                                       onDisconnection=self._closed)
        self.server.tcp.createObserver(onConnection=lambda: None,
                                       onDisconnection=self._closed)

    # ------------------------------------------------------------------ lifecycle
    def _client_connected(self) -> None:
        peer = self.client.tcp.transport.getPeer()
        self.source = f"{peer.host}:{peer.port}"
        reactor.callLater(self.login_timeout, self._login_deadline)

    def _login_deadline(self) -> None:
        if self.state.loggedIn or self._dropped or self._gone:
            return
        log.info("rdp: %s did not log in within %.0f s", self.source, self.login_timeout)
        self.drop()

    def _closed(self, reason: Any = None) -> None:
        if self._gone:
            return
        self._gone = True
        conn = _conn(self.state)
        if conn is not None:
            defer(conn.closed())
        if self.on_gone is not None:
            self.on_gone(self)

    def drop(self) -> None:
        """Close both sides now (refusals, failures, kills)."""
        if self._dropped:
            return
        self._dropped = True
        for side in (self.client.tcp, self.server.tcp):
            if side.transport is not None:
                side.transport.abortConnection()
        self._closed()

    def pause_reading(self, paused: bool) -> None:
        """Stop (or resume) reading from the client and the target: the recording
        cannot take more for now (back-pressure, see :mod:`gateway.rdp.gate`)."""
        if self._dropped:
            return
        for side in (self.client.tcp, self.server.tcp):
            transport = side.transport
            if transport is not None:
                if paused:
                    transport.pauseProducing()
                else:
                    transport.resumeProducing()

    async def connectToServer(self) -> None:
        conn = _conn(self.state)
        log.debug("rdp: connecting to %s:%s", self.state.effectiveTargetHost,
                  self.state.effectiveTargetPort)
        try:
            await asyncio.wait_for(super().connectToServer(), timeout=self.connect_deadline)
        except TimeoutError:
            if conn is not None:
                conn.gate.audit(conn.event(Kind.TARGET_CONNECT, "failed",
                                           {"error": "connection timed out"}))
            self.drop()
            raise

    # ------------------------------------------------------------------ TLS
    def startTLS(self, onTlsReady: Any) -> None:
        self.onTlsReady = onTlsReady
        self.server.tcp.startTLS(_Factory(self.tls.client))
        self._wait_for_target_cert(reactor.seconds() + CERT_WAIT)

    def _wait_for_target_cert(self, deadline: float) -> None:
        if self._dropped:
            return
        transport = self.server.tcp.transport
        cert = transport.getPeerCertificate() if transport is not None else None
        conn = _conn(self.state)
        if cert is None:
            if reactor.seconds() > deadline:
                if conn is not None:
                    conn.gate.audit(conn.event(Kind.TARGET_CONNECT, "failed",
                                               {"error": "no TLS certificate from target"}))
                self.drop()
                return
            reactor.callLater(0.02, self._wait_for_target_cert, deadline)
            return
        seen = fingerprint(cert)
        if conn is None or seen not in conn.target.rdp_cert_sha256:
            if conn is not None:
                conn.gate.audit(AuditEvent(
                    Kind.HOST_KEY_MISMATCH, "denied", user=conn.routed_user, source=conn.source,
                    target=conn.target.name,
                    detail={"protocol": "rdp", "sha256": seen,
                            "pinned": list(conn.target.rdp_cert_sha256)}))
            log.warning("rdp: target certificate %s does not match the pin", seen)
            self.drop()
            return
        ready, self.onTlsReady = self.onTlsReady, None
        if ready is not None:
            ready()
        self.client.tcp.startTLS(_Factory(self.tls.server))

    # pyrdp's doClientTls clones the target's certificate and adds NLA handlers: unused
    def doClientTls(self) -> None:  # pragma: no cover - never scheduled
        return None

    # ------------------------------------------------------------------ channels
    def buildChannel(self, client: Any, server: Any) -> None:
        """Channels a target does not allow (clipboard, device redirection) go nowhere.

        The channel is kept in the MCS connection (removing it from the client's list
        breaks clients that count their channels) but nothing on it is relayed.
        """
        conn = _conn(self.state)
        name = self.state.channelMap.get(client.channelID)
        denied = conn is not None and (
            (name == MCSChannelName.CLIPBOARD and not conn.target.allow_clipboard)
            or (name == MCSChannelName.DEVICE_REDIRECTION
                and not conn.target.allow_drive_redirection))
        if not denied or conn is None:
            super().buildChannel(client, server)
            return
        client_layer, server_layer = RawLayer(), RawLayer()
        LayerChainItem.chain(client, client_layer)
        LayerChainItem.chain(server, server_layer)
        reported: list[bool] = []

        def denied_pdu(pdu: Any) -> None:
            if not reported:
                reported.append(True)
                conn.channel_denied(str(name))

        client_layer.createObserver(onPDUReceived=denied_pdu)
        server_layer.createObserver(onPDUReceived=denied_pdu)

    # ------------------------------------------------------------------ input
    def buildIOChannel(self, client: Any, server: Any) -> None:
        super().buildIOChannel(client, server)
        self.client.fastPath.createObserver(onPDUReceived=self._fastpath_input)
        self.client.slowPath.createObserver(onPDUReceived=self._slowpath_input)

    def _fastpath_input(self, pdu: Any) -> None:
        conn = _conn(self.state)
        if conn is None:
            return
        conn.touch()
        for event in pdu.events:
            if isinstance(event, FastPathScanCodeEvent):
                conn.keys.scancode(event.scanCode, bool(event.isReleased),
                                   bool(event.rawHeaderByte & KBDFLAGS_EXTENDED))
            elif isinstance(event, FastPathUnicodeEvent):
                conn.keys.unicode(str(event.text), bool(event.released))
            elif isinstance(event, FastPathMouseEvent):
                self._mouse(conn, event.mouseX, event.mouseY, event.pointerFlags)

    def _slowpath_input(self, pdu: Any) -> None:
        conn = _conn(self.state)
        if conn is None or not isinstance(pdu, InputPDU):
            return
        conn.touch()
        for event in pdu.events:
            if isinstance(event, KeyboardEvent):
                conn.keys.scancode(event.keyCode, bool(event.flags & SLOW_KBDFLAGS_RELEASE),
                                   bool(event.flags & SLOW_KBDFLAGS_EXTENDED))
            elif isinstance(event, UnicodeKeyboardEvent):
                conn.keys.unicode(chr(event.keyCode),
                                  bool(event.flags & SLOW_KBDFLAGS_RELEASE))
            elif isinstance(event, MouseEvent):
                self._mouse(conn, event.x, event.y, event.flags)

    @staticmethod
    def _mouse(conn: RdpConnection, x: int, y: int, flags: int) -> None:
        if flags & PointerFlag.PTRFLAGS_DOWN:
            button = "left" if flags & PointerFlag.PTRFLAGS_BUTTON1 else \
                "right" if flags & PointerFlag.PTRFLAGS_BUTTON2 else "middle"
            conn.on_mouse_click(x, y, button)


def mitm_config(out_dir: str) -> MITMConfig:
    """pyrdp's configuration with every attacker feature off."""
    from pathlib import Path

    config = MITMConfig()
    config.outDir = Path(out_dir)
    config.recordReplays = False
    config.extractFiles = False
    config.enableCrawler = False
    config.disableActiveClipboardStealing = True
    config.downgrade = True
    config.useGdi = False
    config.authMethods = NegotiationProtocols.SSL
    config.payload = ""
    config.transparent = False
    config.attackerHost = None
    config.attackerPort = None
    config.redirectionHost = None
    config.redirectionPort = None
    config.replacementUsername = None
    config.replacementPassword = None
    config.sspChallenge = None
    config.certificateFileName = "bastille"  # not None: pyrdp must not clone certificates
    config.privateKeyFileName = "bastille"
    return config


def install_components() -> None:
    """Make pyrdp's RDPMITM build the bastion's components (worker process only)."""
    rdpmitm_mod = importlib.import_module("pyrdp.mitm.RDPMITM")  # the module, not the class
    for name, value in (("X224MITM", BastilleX224MITM), ("SecurityMITM", BastilleSecurityMITM),
                        ("PassiveClipboardStealer", BastilleClipboard)):
        setattr(rdpmitm_mod, name, value)
