"""Security headers on every HTTP response of the gateway.

Every response carries ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``,
``Referrer-Policy: no-referrer`` and a ``Content-Security-Policy``: the strict `DEFAULT_CSP`
(nothing may load, nothing may frame it) unless the route set its own (``/docs`` allows its
own files and the hash of its one inline script). A pure ASGI middleware: streamed responses
(SSE) pass through untouched but for their headers.
"""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["DEFAULT_CSP", "SecurityHeaders", "page_csp"]

DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
"""The policy of every response that sets none: API answers are data, never a page."""

FIXED = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", flags=re.S)


def page_csp(html: str) -> str:
    """The policy of one of the gateway's own HTML pages: its files from the gateway only, its
    inline scripts by their hashes, styles inline too (Swagger UI sets style attributes),
    images also as ``data:``, never framed."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'none'"
    )


class SecurityHeaders:
    """Adds the headers above to every HTTP response that lacks them (by their names, in the
    raw header list of the response's start: no header object is built per response)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {bytes(name).lower() for name, _ in headers}
                headers.extend(item for item in _RAW if item[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


_RAW = [
    (name.encode("latin-1"), value.encode("latin-1"))
    for name, value in {**FIXED, "content-security-policy": DEFAULT_CSP}.items()
]
"""The headers as an ASGI response lists them (lower-case names, in `FIXED`'s order, then
the policy)."""
