"""Which HTTP proxy the environment names for a URL (``HTTPS_PROXY`` / ``HTTP_PROXY``, unless
``NO_PROXY`` covers the host), for the clients that tunnel through it to an address they
checked themselves."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from promptline.core.errors import InvalidInputError

__all__ = ["Proxy", "proxy_for"]


@dataclass(frozen=True)
class Proxy:
    """An http:// proxy: where it listens, its ``Proxy-Authorization`` value, and how it is
    named in messages (``host:port``, never the credentials)."""

    host: str
    port: int
    auth: str | None
    shown: str


def proxy_for(scheme: str, host: str) -> Proxy | None:
    """The proxy for a URL of ``scheme`` on ``host``, or None to connect directly;
    `InvalidInputError` for a proxy that is not ``http://``."""
    import urllib.request

    found = urllib.request.getproxies().get(scheme)
    if not found or urllib.request.proxy_bypass(host):
        return None
    parts = urlsplit(found if "://" in found else f"http://{found}")
    if parts.scheme != "http" or not parts.hostname:
        raise InvalidInputError(
            f"the proxy {found!r} is not supported: only http:// proxies are",
            hint="set HTTPS_PROXY / HTTP_PROXY to an http:// URL, or unset it",
        )
    auth = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(pair.encode()).decode()
    return Proxy(parts.hostname, parts.port or 80, auth, f"{parts.hostname}:{parts.port or 80}")
