"""The Python example of docs/mcp.md's server section, run as written against a live gateway
(only its URL is put in, and the key it reads from the environment): it prints what the page
says it prints."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import anyio
from gateway_support import live_gateway, make_keys, settings_for
from mcp_server_support import CALL_SECS

from promptline.app import build_app

DOC = Path(__file__).parents[3] / "docs" / "mcp.md"


def server_section() -> str:
    text = DOC.read_text(encoding="utf-8")
    return text.split("\n## PromptLine as an MCP server\n", 1)[1].split("\n## ", 1)[0]


def test_the_section_covers_the_transports_settings_and_client_configuration() -> None:
    section = server_section()
    for needle in (
        "promptline mcp serve",
        '"mcpServers"',
        "/mcp",
        "Authorization: Bearer",
        "mcp_server.enabled",
        "mcp_server.agents",
        "mcp_server.expose_tools",
        "session_id",
        "progress",
        "readOnlyHint",
    ):
        assert needle in section, needle


async def test_the_python_example_prints_what_the_page_shows(tmp_path: Path) -> None:
    section = server_section()
    example = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    shown = re.search(r"it prints:\n\n```text\n(.*?)```", section, re.DOTALL)
    assert example is not None
    assert shown is not None
    settings = settings_for(tmp_path / "home")
    async with build_app(settings) as app:
        keys = await make_keys(app)
    async with live_gateway(settings) as info:
        code = example.group(1).replace(
            "http://localhost:8080/mcp", f"http://127.0.0.1:{info.port}/mcp"
        )
        env = {**os.environ, "PROMPTLINE_API_KEY": keys.alice}
        with anyio.fail_after(CALL_SECS):
            done = await anyio.run_process([sys.executable, "-c", code], env=env, check=False)
    assert done.returncode == 0, done.stderr.decode()
    printed = done.stdout.decode().splitlines()
    expected = shown.group(1).splitlines()
    assert len(printed) == len(expected)
    for got, want in zip(printed, expected, strict=True):
        if want.startswith("session: ses_"):
            assert re.fullmatch(r"session: ses_\w+", got), got
        else:
            assert got == want
