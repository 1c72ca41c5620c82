"""Shared pieces of the MCP server tests: a PromptLine home whose agents call tools (offline
scripted models), and the official MCP client connected to `promptline mcp serve` or to a
gateway's ``/mcp``."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
from gateway_support import Keys, auth, live_gateway, make_keys
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from promptline.app import build_app
from promptline.config import load_settings
from promptline.config.settings import Settings

NOTE = "hello from the note\n"

SCRIPTS = {
    # Reads the note, then answers: a run with one tool call.
    "reader.yaml": """\
- tool_calls:
    - name: file_read
      arguments: {path: note.txt}
- reply: "The note says hello."
""",
    # Starts a command that takes a minute: a run that is still going when it is cancelled.
    "sleeper.yaml": """\
- tool_calls:
    - name: shell_execute
      arguments: {command: "echo started; sleep 60"}
- reply: "Done waiting."
""",
    # The provider refuses the request: a run that fails.
    "broken.yaml": """\
- error: {kind: rejected, message: "the model refused the request"}
""",
}

CONFIG = """\
models:
  default: scripted/demo
  providers:
    scripted:
      scripts_dir: {scripts}
agent:
  default_mode: act
  workspace: {work}
agents:
  reader:
    model: scripted/reader
    description: Reads the note in its workspace.
  sleeper:
    model: scripted/sleeper
    description: Waits a minute.
  broken:
    model: scripted/broken
    description: Always fails.
tools:
  shell_execute: allow
  file_delete: deny
"""

MCP_SETTINGS = """\
mcp_server:
  expose_tools: true
"""

CALL_SECS = 60.0
"""The longest any call of these tests may take (a generous bound, never reached)."""


def mcp_home(root: Path, extra: str = MCP_SETTINGS) -> Path:
    """A PromptLine home under ``root``: the scripts, a workspace holding note.txt, and a
    config with the agents `reader`, `sleeper` and `broken` (plus the built-in `assistant`)
    and ``extra`` (by default: the registered tools offered over MCP)."""
    home = root / "home"
    scripts = root / "scripts"
    work = root / "work"
    for folder in (home, scripts, work):
        folder.mkdir(parents=True, exist_ok=True)
    for name, text in SCRIPTS.items():
        (scripts / name).write_text(text, encoding="utf-8")
    (work / "note.txt").write_text(NOTE, encoding="utf-8")
    config = CONFIG.format(scripts=scripts, work=work) + extra
    (home / "config.yaml").write_text(config, encoding="utf-8")
    return home


def home_settings(home: Path) -> Settings:
    """The settings of the home ``mcp_home`` made."""
    return load_settings(home / "config.yaml", environ={"PROMPTLINE_HOME": str(home)})


def serve_command(home: Path) -> StdioServerParameters:
    """`promptline mcp serve` on ``home``, as an MCP client starts it."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home.parent),
        "PROMPTLINE_HOME": str(home),
        "NO_COLOR": "1",
    }
    return StdioServerParameters(
        command=sys.executable, args=["-m", "promptline.cli.main", "mcp", "serve"], env=env
    )


@contextlib.asynccontextmanager
async def stdio_client(home: Path, *, mode: str = "auto") -> AsyncIterator[Client]:
    """The official client, connected to a `promptline mcp serve` it started."""
    async with Client(serve_command(home), mode=mode, read_timeout_seconds=CALL_SECS) as client:
        yield client


@contextlib.asynccontextmanager
async def http_client(url: str, key: str | None, *, mode: str = "auto") -> AsyncIterator[Client]:
    """The official client, connected to ``url`` (a gateway's /mcp) with ``key``."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    timeout = httpx2.Timeout(30.0, read=CALL_SECS)
    async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, read_timeout_seconds=CALL_SECS) as client:
            yield client


MODES = ["auto", "legacy"]
"""How the client connects: 2026-07-28 single requests (its default), or a handshake-era
session (what most clients in the field still do)."""


@dataclass
class Served:
    """A live gateway and the keys of its tenants' users."""

    base: str
    keys: Keys

    @property
    def mcp(self) -> str:
        return f"{self.base}/mcp"


@contextlib.asynccontextmanager
async def serve_home(home: Path) -> AsyncIterator[Served]:
    """`promptline serve` on ``home`` (its test tenants' keys made first), on 127.0.0.1."""
    settings = home_settings(home)
    async with build_app(settings) as app:
        keys = await make_keys(app)
    async with live_gateway(settings) as info:
        yield Served(f"http://127.0.0.1:{info.port}", keys)


async def rest(served: Served, method: str, path: str, key: str, **options: Any) -> Any:
    """A REST call to ``served`` with ``key``, that must succeed: its JSON answer."""
    async with httpx.AsyncClient(base_url=served.base, timeout=CALL_SECS) as client:
        response = await client.request(method, path, headers=auth(key), **options)
    assert response.status_code < 300, response.text
    return response.json()
