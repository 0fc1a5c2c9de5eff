"""HTML of the web endpoint: small, script-free pages.

Every value that a user, a target or an IdP controls goes through :func:`esc`:
``common.safetext.visible`` (control characters, bidi overrides and zero-width
characters shown as visible escapes) and then HTML escaping. Pages carry no script;
the response headers (gateway/web/server.py) forbid scripts, framing and referrers.
"""

from __future__ import annotations

import html
import time

from common.safetext import visible

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;max-width:46em;margin:2em auto;padding:0 1em;
color:#1d1d1f}h1{font-size:1.3em}table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:.3em .6em;border-bottom:1px solid #ddd;vertical-align:top}
code,pre{font:13px/1.4 ui-monospace,monospace;background:#f4f4f6;padding:.1em .3em;
white-space:pre-wrap;word-break:break-all}.warn{background:#fff4d6;padding:.6em;
border-left:4px solid #e0a800}.err{background:#fde8e8;padding:.6em;border-left:4px solid
#d33}.ok{background:#e6f6ea;padding:.6em;border-left:4px solid #2a8a3e}
button{font-size:1em;padding:.4em 1em;margin-right:.6em}textarea{width:100%}
"""


def esc(value: object) -> str:
    """Text from users, targets or IdPs, safe inside HTML and visible as typed."""
    return html.escape(visible(value), quote=True)


def page(title: str, body: str, *, who: str = "") -> str:
    """A whole page; ``body`` is trusted HTML built with :func:`esc`."""
    head = f"<p style='float:right'>{esc(who)}</p>" if who else ""
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width,initial-scale=1'>"
            f"<title>{esc(title)} - bastille</title><style>{_STYLE}</style></head>"
            f"<body>{head}<h1>{esc(title)}</h1>{body}</body></html>")


def hidden(name: str, value: str) -> str:
    return f"<input type='hidden' name='{esc(name)}' value='{esc(value)}'>"


def when(ts: float | None) -> str:
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def message(title: str, text: str, kind: str = "err", who: str = "") -> str:
    return page(title, f"<p class='{kind}'>{esc(text)}</p>", who=who)
