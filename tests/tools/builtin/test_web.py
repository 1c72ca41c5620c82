"""web_get against a tiny HTTP server on 127.0.0.1 (which these tests allow it to reach): text
and HTML, charsets, redirects, the size and time limits, and refusals (other schemes, binary
content). Which addresses it may reach is tested in test_web_guard.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from promptline.core.errors import InvalidInputError
from promptline.tools import ToolOutput
from promptline.tools.base import ToolError
from promptline.tools.builtin import web_get_tool
from promptline.tools.builtin.web import DEFAULT_MAX_BYTES
from tools.support import call

Route = Callable[[asyncio.StreamWriter], Awaitable[None]]
HEADS: list[bytes] = []
"""The heads of the requests the server received, oldest first."""
LOCAL = ["127.0.0.1"]
"""What these tests let web_get reach: the test server."""


def answer(status: str, content_type: str | None, body: bytes, **headers: str) -> Route:
    async def send(writer: asyncio.StreamWriter) -> None:
        head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close"]
        if content_type:
            head.append(f"Content-Type: {content_type}")
        head += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()

    return send


async def hang(writer: asyncio.StreamWriter) -> None:
    await asyncio.Event().wait()  # never answers; cancelled when the server stops


HTML = b"<html><head><title>Page</title></head><body><p>Hi <a href='/x'>there</a></p></body>"
ROUTES: dict[str, Route] = {
    "/text": answer("200 OK", "text/plain; charset=utf-8", "hello wörld".encode()),
    "/latin1": answer("200 OK", "text/plain; charset=iso-8859-1", "café".encode("latin-1")),
    "/html": answer("200 OK", "text/html", HTML),
    "/json": answer("200 OK", "application/json", b'{"ok": true}'),
    "/big": answer("200 OK", "text/plain", b"a" * 3_000_000),
    "/binary": answer("200 OK", "image/png", b"\x89PNG\r\n\x1a\n\x00\x00\x00"),
    "/missing": answer("404 Not Found", "text/plain", b"not here"),
    "/redirect": answer("302 Found", None, b"", Location="/text"),
    "/to-ftp": answer("302 Found", None, b"", Location="ftp://example.com/file"),
    "/loop": answer("302 Found", None, b"", Location="/loop"),
    "/hang": hang,
}


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """The base URL of a server answering ``ROUTES``."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            HEADS.append(head)
            path = head.split(b" ", 2)[1].decode()
            route = ROUTES.get(path, answer("404 Not Found", "text/plain", b"no route"))
            await route(writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            handlers.discard(task)

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    srv.close()
    for task in list(handlers):
        task.cancel()
    await asyncio.gather(*handlers, return_exceptions=True)
    await srv.wait_closed()


async def fetch(workspace: Path, url: str, **options: float) -> ToolOutput:
    tool = web_get_tool(allow=LOCAL, **options)  # type: ignore[arg-type]
    result = await call(tool, workspace, url=url)
    assert isinstance(result, ToolOutput)
    return result


def body(result: ToolOutput) -> str:
    assert isinstance(result.content, str)
    return result.content


async def test_text_comes_back_with_status_and_content_type(server: str, workspace: Path) -> None:
    result = await fetch(workspace, f"{server}/text")

    assert body(result) == (
        "status: 200 OK\ncontent-type: text/plain; charset=utf-8\n\nhello wörld"
    )
    assert not result.is_error
    assert result.metadata["status"] == 200


async def test_the_declared_charset_is_used(server: str, workspace: Path) -> None:
    assert body(await fetch(workspace, f"{server}/latin1")).endswith("\n\ncafé")


async def test_html_is_returned_as_readable_text_unless_raw(server: str, workspace: Path) -> None:
    tool = web_get_tool(allow=LOCAL)

    readable = await call(tool, workspace, url=f"{server}/html")
    raw = await call(tool, workspace, url=f"{server}/html", raw=True)

    assert readable.content.endswith("\n\nPage\n\nHi [there](/x)")
    assert raw.content.endswith(HTML.decode())


async def test_json_is_text(server: str, workspace: Path) -> None:
    assert body(await fetch(workspace, f"{server}/json")).endswith('\n\n{"ok": true}')


async def test_an_error_status_is_an_error_result_with_the_body(
    server: str, workspace: Path
) -> None:
    result = await fetch(workspace, f"{server}/missing")

    assert result.is_error
    assert body(result).startswith("status: 404 Not Found\n")
    assert body(result).endswith("not here")


async def test_redirects_are_followed_and_the_final_url_shown(server: str, workspace: Path) -> None:
    result = await fetch(workspace, f"{server}/redirect")

    assert body(result).startswith(f"url: {server}/text\nstatus: 200 OK\n")
    assert result.metadata["url"] == f"{server}/text"


async def test_a_redirect_loop_ends_with_an_error(server: str, workspace: Path) -> None:
    with pytest.raises(ToolError, match="redirects more than 2 times"):
        await fetch(workspace, f"{server}/loop", max_redirects=2)


async def test_a_redirect_to_another_scheme_is_refused(server: str, workspace: Path) -> None:
    with pytest.raises(ToolError, match=r"only fetches http:// and https://.*a redirect from"):
        await fetch(workspace, f"{server}/to-ftp")


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/x", "javascript:alert(1)", "example.com"]
)
async def test_other_schemes_are_refused(workspace: Path, url: str) -> None:
    with pytest.raises(ToolError, match="web_get only fetches http:// and https:// URLs"):
        await fetch(workspace, url)


async def test_a_url_without_a_host_is_refused(workspace: Path) -> None:
    with pytest.raises(ToolError, match="names no host"):
        await fetch(workspace, "http:///path")


async def test_a_body_over_the_size_limit_is_cut_and_said_so(server: str, workspace: Path) -> None:
    result = await fetch(workspace, f"{server}/big", max_bytes=1000)

    text = body(result)
    assert "note: the body is larger than 1000 bytes; only the first 1000 were read" in text
    assert text.endswith("\n\n" + "a" * 1000)
    assert result.metadata["truncated"] is True
    assert result.metadata["bytes"] == 1000


async def test_the_default_size_limit_is_two_mebibytes(server: str, workspace: Path) -> None:
    result = await fetch(workspace, f"{server}/big")

    assert DEFAULT_MAX_BYTES == 2 * 1024 * 1024
    assert result.metadata["bytes"] == DEFAULT_MAX_BYTES
    assert "2 MiB" in web_get_tool().description


async def test_a_server_that_hangs_hits_the_time_limit(server: str, workspace: Path) -> None:
    with pytest.raises(ToolError, match=r"no complete answer from .*/hang within 0.2 s"):
        await fetch(workspace, f"{server}/hang", timeout=0.2)


async def test_binary_content_is_refused(server: str, workspace: Path) -> None:
    with pytest.raises(ToolError, match=r"binary content \(image/png, 11 bytes\)"):
        await fetch(workspace, f"{server}/binary")


async def test_a_refused_connection_is_reported(workspace: Path) -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()

    with pytest.raises(ToolError, match="could not fetch"):
        await fetch(workspace, f"http://127.0.0.1:{port}/")


def test_web_get_is_read_only_and_checks_its_options() -> None:
    assert web_get_tool().read_only
    with pytest.raises(InvalidInputError):
        web_get_tool(max_bytes=0)


async def test_the_request_asks_for_uncompressed_text_and_closes_the_connection(
    server: str, workspace: Path
) -> None:
    HEADS.clear()

    await fetch(workspace, f"{server}/text")

    [head] = HEADS
    lines = head.decode().split("\r\n")
    assert lines[0] == "GET /text HTTP/1.1"
    assert f"Host: {server.removeprefix('http://')}" in lines
    assert "Accept-Encoding: identity" in lines
    assert "Connection: close" in lines
