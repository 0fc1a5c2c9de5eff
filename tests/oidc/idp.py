"""A real OIDC provider for tests (npm ``oidc-provider`` run by node) and a browser
played with plain HTTP form posts.

``npm ci`` runs once per checkout (node_modules is cached next to package.json and
gitignored). The provider accepts any password for its test users (bob, alice, carol):
it stands in for a company IdP's login page, which is not what these tests test.
"""

from __future__ import annotations

import html
import http.cookiejar
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent


def have_node() -> str | None:
    """Why the provider cannot run here, or None when node and npm are present."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def npm_ci() -> None:
    """Install the provider's pinned packages once (``npm ci`` from the lock file)."""
    marker = HERE / "node_modules" / "oidc-provider" / "package.json"
    if marker.exists():
        return
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True,
                   capture_output=True, timeout=180)


class Provider:
    """One oidc-provider process on a loopback port."""

    def __init__(self, port: int, device_code_ttl: int = 600,
                 redirect_uris: tuple[str, ...] = ()) -> None:
        self.port = port
        self.issuer = f"http://127.0.0.1:{port}"
        self.device_code_ttl = device_code_ttl
        self.redirect_uris = redirect_uris  # also allow the code flow to these (web sign-in)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PORT": str(self.port),
               "DEVICE_CODE_TTL": str(self.device_code_ttl),
               "REDIRECT_URIS": " ".join(self.redirect_uris)}
        self.proc = subprocess.Popen(["node", str(HERE / "provider.mjs")], cwd=HERE, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("READY"):
            raise RuntimeError(f"oidc-provider did not start: {line!r}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


_FORM = re.compile(r"<form[^>]*action=\"([^\"]*)\"[^>]*>(.*?)</form>", re.S | re.I)
_INPUT = re.compile(r"<input[^>]*>", re.I)
_ATTR = re.compile(r"(\w+)=\"([^\"]*)\"")


class Browser:
    """Follows redirects with a cookie jar and submits the pages' forms."""

    def __init__(self) -> None:
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.url = ""

    def _open(self, url: str, data: dict[str, str] | None = None) -> str:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        try:
            with self.opener.open(url, body, timeout=10) as resp:
                self.url = resp.geturl()
                return resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            self.url = url
            return exc.read().decode("utf-8", "replace")

    def get(self, url: str) -> str:
        return self._open(url)

    def submit(self, page: str, **fields: str) -> str:
        """Submit the first form of ``page`` with its hidden inputs plus ``fields``."""
        m = _FORM.search(page)
        if m is None:
            raise AssertionError(f"no form on page {self.url}: {page[:400]}")
        values: dict[str, str] = {}
        for tag in _INPUT.findall(m.group(2)):
            attrs = dict(_ATTR.findall(tag))
            if "name" in attrs and attrs.get("type", "text") == "hidden":
                values[attrs["name"]] = html.unescape(attrs.get("value", ""))
        values.update(fields)
        return self._open(urllib.parse.urljoin(self.url, html.unescape(m.group(1))), values)


def approve(verification_uri: str, user_code: str, login: str) -> str:
    """Play the user's browser: enter the code, confirm, log in as ``login``, consent.

    Returns the last page's text (the provider's success or error page).
    """
    b = Browser()
    page = b.get(verification_uri)
    page = b.submit(page, user_code=user_code)          # code input
    page = b.submit(page, confirm="yes")                 # "is this your device?"
    for _ in range(4):                                   # login, then consent
        if 'name="login"' in page:
            page = b.submit(page, prompt="login", login=login, password="any")
        elif 'name="prompt" value="consent"' in page or "Authorize" in page:
            page = b.submit(page, prompt="consent")
        else:
            break
    return page
