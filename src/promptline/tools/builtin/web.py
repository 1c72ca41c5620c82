"""``web_get``: one http(s) URL fetched with a size and a time limit, its text returned (HTML
reduced to its readable text). Only public addresses are reached, checked after DNS resolution
and on every redirect, each request pinned to the address checked (`web_guard`), as the egress
policy says (`promptline.security.egress`)."""

from __future__ import annotations

import asyncio
import codecs
import http
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from promptline.core.errors import InvalidInputError
from promptline.models.transport import TransportError, TransportTimeout
from promptline.tools.base import ToolError, ToolOutput
from promptline.tools.builtin.html_text import html_to_text
from promptline.tools.builtin.text_files import looks_binary
from promptline.tools.builtin.web_guard import PinnedClient
from promptline.tools.function import FunctionTool, tool

if TYPE_CHECKING:
    import ssl

    from promptline.security.egress import Resolver

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_WEB_TIMEOUT", "web_get_tool"]

DEFAULT_MAX_BYTES = 2 * 1024 * 1024
DEFAULT_WEB_TIMEOUT = 30.0
DEFAULT_MAX_REDIRECTS = 5

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HTML = frozenset({"text/html", "application/xhtml+xml"})
_TEXT_TYPES = frozenset(
    {"application/json", "application/xml", "application/javascript", "application/x-yaml"}
)
_HEADERS = {
    "User-Agent": "PromptLine web_get",
    "Accept": "text/html, text/plain, application/json, text/*;q=0.9, */*;q=0.5",
    # Uncompressed, so the size limit counts what is received and no small compressed body
    # can expand into a large one.
    "Accept-Encoding": "identity",
    "Connection": "close",
}


def web_get_tool(
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = DEFAULT_WEB_TIMEOUT,
    max_redirects: int = DEFAULT_MAX_REDIRECTS,
    allow: Iterable[str] = (),
    resolver: Resolver | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> FunctionTool:
    """The ``web_get`` tool: reads at most ``max_bytes`` of a body and gives up after
    ``timeout`` seconds for the whole fetch (redirects included).

    It reaches public addresses only, plus the hosts, addresses and networks in ``allow``
    (``security.egress_allow``: ``intranet.example.com``, ``*.corp.example``,
    ``10.1.0.0/16``). ``resolver`` looks names up (by default the system's resolver) and
    ``ssl_context`` checks https certificates (by default the system's trust store).
    """
    if max_bytes < 1 or timeout <= 0 or max_redirects < 0:
        raise InvalidInputError(
            "web_get needs max_bytes >= 1, timeout > 0 and max_redirects >= 0",
            hint=f"got max_bytes={max_bytes}, timeout={timeout}, max_redirects={max_redirects}",
        )
    from promptline.security.egress import EgressPolicy

    client = PinnedClient(EgressPolicy(allow), resolver=resolver, ssl_context=ssl_context)
    fetcher = _Fetcher(client, max_bytes, timeout, max_redirects)
    size = f"{max_bytes // 1024} KiB" if max_bytes < 1048576 else f"{max_bytes / 1048576:g} MiB"

    @tool(
        name="web_get",
        read_only=True,
        description=(
            "Fetch an http(s) URL: its status, content type and text (HTML as readable "
            f"text). At most {size} in {timeout:g} s; binary content is refused."
        ),
    )
    async def web_get(url: str, raw: bool = False) -> ToolOutput:
        """Args:
        url: An absolute http:// or https:// URL.
        raw: Return HTML as received.
        """
        return await fetcher.fetch(url, raw=raw)

    return web_get


class _Fetcher:
    def __init__(
        self, client: PinnedClient, max_bytes: int, timeout: float, max_redirects: int
    ) -> None:
        self.client = client
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_redirects = max_redirects

    async def fetch(self, url: str, *, raw: bool) -> ToolOutput:
        current = _checked(url, url)
        try:
            async with asyncio.timeout(self.timeout):
                for _ in range(self.max_redirects + 1):
                    via = "" if current == url else f" (a redirect from {url})"
                    async with self.client.get(current, _HEADERS, via=via) as answer:
                        location = answer.headers.get("location")
                        if answer.status in _REDIRECTS and location:
                            current = _checked(urljoin(current, location), url)
                            continue
                        body, truncated = await self._read(answer.iter_bytes())
                        return self._render(
                            url, current, answer.status, answer.headers, body, truncated, raw
                        )
        except (TimeoutError, TransportTimeout) as exc:
            raise ToolError(
                f"no complete answer from {url} within {self.timeout:g} s",
                hint="the site may be slow or down; try again later or another source",
            ) from exc
        except TransportError as exc:
            raise ToolError(f"could not fetch {url}: {exc}") from exc
        except InvalidInputError as exc:  # a URL the HTTP client cannot send
            raise ToolError(exc.message, hint=exc.hint) from exc
        raise ToolError(
            f"{url} redirects more than {self.max_redirects} times",
            hint="the site may redirect in a loop; try the final address directly",
        )

    async def _read(self, chunks: AsyncIterator[bytes]) -> tuple[bytes, bool]:
        """The body up to ``max_bytes``, and whether there was more (left unread)."""
        parts: list[bytes] = []
        size = 0
        truncated = False
        try:
            async for piece in chunks:
                room = self.max_bytes - size
                if len(piece) > room:
                    parts.append(piece[:room])
                    truncated = True
                    break
                parts.append(piece)
                size += len(piece)
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()
        return b"".join(parts), truncated

    def _render(
        self,
        url: str,
        final: str,
        status: int,
        headers: Any,
        body: bytes,
        truncated: bool,
        raw: bool,
    ) -> ToolOutput:
        content_type = str(headers.get("content-type", ""))
        mime, _, params = content_type.partition(";")
        mime = mime.strip().lower()
        textual = (
            mime.startswith("text/") or mime in _TEXT_TYPES or mime.endswith(("+json", "+xml"))
        )
        if not textual and looks_binary(body):
            raise ToolError(
                f"{final} answered with binary content ({mime or 'no content type'}, "
                f"{len(body)}{'+' if truncated else ''} bytes); web_get returns text only",
                hint="look for a text or HTML version of the resource",
            )
        text = body.decode(_charset(params), errors="replace")
        if mime in _HTML and not raw:
            text = html_to_text(text)
        lines = []
        if final != url:
            lines.append(f"url: {final}")
        lines.append(f"status: {status} {_phrase(status)}".rstrip())
        lines.append(f"content-type: {content_type or 'unknown'}")
        if truncated:
            lines.append(
                f"note: the body is larger than {self.max_bytes} bytes; only the first "
                f"{self.max_bytes} were read"
            )
        return ToolOutput(
            content="\n".join(lines) + "\n\n" + text,
            is_error=status >= 400,
            metadata={
                "status": status,
                "content_type": content_type,
                "url": final,
                "bytes": len(body),
                "truncated": truncated,
            },
        )


def _checked(url: str, asked: str) -> str:
    """``url`` if it is an absolute http(s) URL; `ToolError` naming the rule otherwise."""
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise ToolError(f"{url!r} is not a valid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        via = "" if url == asked else f" (a redirect from {asked})"
        shown = f"{scheme}:" if scheme else "a URL without a scheme"
        raise ToolError(
            f"web_get only fetches http:// and https:// URLs, and {url!r}{via} is {shown}",
            hint="give an absolute http:// or https:// URL",
        )
    if not parts.hostname:
        raise ToolError(f"{url!r} names no host", hint="give a URL such as https://example.com/")
    return url.strip()


def _charset(params: str) -> str:
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            name = value.strip().strip("\"'")
            try:
                return codecs.lookup(name).name
            except LookupError:
                break
    return "utf-8"


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""
