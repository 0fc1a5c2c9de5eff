"""Test harness for the web endpoint: the real :class:`WebService` on its own event loop
in a thread (real TLS on a loopback port), the real test IdP in its own process, and a
scripted browser (urllib with a cookie jar, plain HTTP form posts) that trusts only the
bastion's own certificate.
"""

from __future__ import annotations

import asyncio
import html
import http.cookiejar
import re
import shutil
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gateway.audit import AuditEvent
from gateway.config import Config
from gateway.ssh.keys import generate_host_key
from gateway.web.server import WebService
from state.approvals import ApprovalStore
from tests.e2e.rig import free_port, wait_port

HERE = Path(__file__).resolve().parent
T = TypeVar("T")


def have_xmlsec() -> str | None:
    return None if shutil.which("xmlsec1") else "xmlsec1 is not installed (apt-get install " \
        "xmlsec1)"


def write_config(root: Path, *, web_port: int, saml: str = "", oidc: str = "",
                 extra: str = "") -> Path:
    """A minimal gateway config with ``[web]`` (and the given sign-in sections)."""
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "host_key").exists():
        generate_host_key(root / "host_key", "test")
    cfg = root / "bastille.toml"
    cfg.write_text(f"""\
[gateway]
listen = "127.0.0.1:{free_port()}"
host_keys = ["host_key"]
data_dir = "data"

[users.alice]
keys = ["{(root / 'host_key.pub').read_text().strip()}"]
groups = ["admins"]

[targets.demo]
builtin = "local-shell"
groups = ["ops"]

[approvals]
approvers = ["group:ops"]

[web]
listen = "127.0.0.1:{web_port}"
session_ttl = "10m"
{saml}
{oidc}
{extra}
""")
    return cfg


def saml_section(metadata: Path, **extra: str) -> str:
    lines = [f'idp_metadata = "{metadata}"', *(f"{k} = {v}" for k, v in extra.items()
                                              if not k.startswith("group_map"))]
    group_map = extra.get("group_map_table", "")
    return "\n[saml]\n" + "\n".join(lines) + "\n" + group_map + "\n"


class WebThread:
    """A WebService served from its own event loop in a thread."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.events: list[AuditEvent] = []
        self.approvals = ApprovalStore(config.data_dir / "approvals.sqlite3")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.service = WebService(config, audit=self.events.append, approvals=self.approvals)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        async def wrapped() -> T:
            return fn()
        return self.run(wrapped())

    def start(self) -> WebThread:
        self.run(self.service.start())
        return self

    def stop(self) -> None:
        try:
            self.run(self.service.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
            self.approvals.close()

    @property
    def cert(self) -> Path:
        return self.config.data_dir / "web" / "tls.crt"

    def url(self, path: str) -> str:
        return f"{self.service.base_url}{path}"


class IdpProcess:
    """tests/saml/idp.py in its own process."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, sp_metadata_url: str, ca: Path) -> None:
        self.log = self.root / "idp.log"
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-W", "ignore::DeprecationWarning", str(HERE / "idp.py"),
                 "--dir", str(self.root), "--port", str(self.port), "--sp-metadata-url",
                 sp_metadata_url, "--ca", str(ca)], stdout=subprocess.PIPE, stderr=err)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("READY"):
            self.proc.wait(5)
            raise RuntimeError(f"test IdP did not start: {line}{self.log.read_text()}")
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


_FORM = re.compile(r"<form[^>]*action=['\"]([^'\"]*)['\"][^>]*>(.*?)</form>", re.S | re.I)
_INPUT = re.compile(r"<(?:input|button)[^>]*>", re.I)
_ATTR = re.compile(r"(\w+)=['\"]([^'\"]*)['\"]")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class Page:
    status: int
    url: str
    text: str
    headers: Any = None
    cookies_set: list[str] = field(default_factory=list)

    def form(self, index: int = 0) -> tuple[str, dict[str, str]]:
        forms = _FORM.findall(self.text)
        if len(forms) <= index:
            raise AssertionError(f"no form {index} on {self.url} ({self.status}): "
                                 f"{self.text[:600]}")
        action, inner = forms[index]
        values: dict[str, str] = {}
        for tag in _INPUT.findall(inner):
            attrs = dict(_ATTR.findall(tag))
            if attrs.get("type") == "hidden" and "name" in attrs:
                values[attrs["name"]] = html.unescape(attrs.get("value", ""))
        return urllib.parse.urljoin(self.url, html.unescape(action)), values


class Browser:
    """Cookies, redirects, forms; trusts ``ca`` (the bastion's certificate) for https."""

    def __init__(self, ca: Path | None = None) -> None:
        self.jar = http.cookiejar.CookieJar()
        ctx = ssl.create_default_context(cafile=str(ca)) if ca else None
        handlers: list[Any] = [urllib.request.HTTPCookieProcessor(self.jar)]
        if ctx is not None:
            handlers.append(urllib.request.HTTPSHandler(context=ctx))
        self.opener = urllib.request.build_opener(*handlers)
        self.raw = urllib.request.build_opener(*handlers, _NoRedirect())

    def open(self, url: str, data: dict[str, str] | None = None, *, follow: bool = True,
             headers: dict[str, str] | None = None) -> Page:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(url, body, headers=headers or {})
        opener = self.opener if follow else self.raw
        try:
            with opener.open(req, timeout=30) as resp:
                return Page(resp.status, resp.geturl(), resp.read().decode("utf-8", "replace"),
                            resp.headers, resp.headers.get_all("Set-Cookie") or [])
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            return Page(exc.code, exc.geturl() or url, text, exc.headers,
                        exc.headers.get_all("Set-Cookie") or [] if exc.headers else [])

    def get(self, url: str, **kw: Any) -> Page:
        return self.open(url, **kw)

    def submit(self, page: Page, index: int = 0, **fields: str) -> Page:
        action, values = page.form(index)
        values.update(fields)
        return self.open(action, values)

    def cookie(self, name: str) -> http.cookiejar.Cookie | None:
        return next((c for c in self.jar if c.name == name), None)


def idp_login(browser: Browser, page: Page, user: str, attack: str = "") -> Page:
    """At the IdP's login page: sign in as ``user``; return the IdP's auto-post page."""
    assert "Test IdP login" in page.text, page.text[:500]
    fields = {"username": user, "password": "any"}
    if attack:
        fields["attack"] = attack
    return browser.submit(page, **fields)
