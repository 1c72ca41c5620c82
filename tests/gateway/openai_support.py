"""A live gateway for the tests of the OpenAI-compatible API (chat completions, models, the
Responses API): scripted agents that remember, stream, call a tool, think aloud, wait or fail,
and the official `openai` client pointed at it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import openai
from gateway_support import Keys, live_gateway, make_keys

from promptline.app import App, build_app
from promptline.config import load_settings
from promptline.config.settings import Settings
from promptline.runtime.records import RunRecord, load_run
from promptline.security.auth import Caller

CONFIG = """\
models:
  default: scripted/demo
  providers:
    scripted:
      scripts_dir: "{scripts}"
tools:
  shell_execute: allow
agents:
  historian:
    model: scripted/memory
    description: Says how many times it answered in this conversation before.
  streamer:
    model: scripted/chunks
  tooler:
    model: scripted/tooler
  thinker:
    model: scripted/thinker
    use_chain_of_thought: true
  waiter:
    model: scripted/waiter
  broken:
    model: scripted/broken
agent:
  default_mode: act
  stream_enabled: true
  workspace: "{workspace}"
"""

# Turn n answers a conversation that already holds n assistant messages: the reply says how
# much history the model was given.
MEMORY = """\
- reply: "Nothing came before this."
- reply: "One exchange came before this."
- reply: "Two exchanges came before this."
"""

CHUNKS = """\
- reply: "one two three"
  stream_chunks: ["one ", "two ", "three"]
  usage: {input_tokens: 11, output_tokens: 7, cached_tokens: 2}
"""

TOOLER = """\
- tool_calls:
    - name: shell_execute
      arguments: {command: "echo hi"}
  usage: {input_tokens: 20, output_tokens: 5}
- reply: "the tool said hi"
  stream_chunks: ["the tool ", "said hi"]
  usage: {input_tokens: 30, output_tokens: 4}
"""

WAITER = """\
- tool_calls:
    - name: shell_execute
      arguments: {{command: "until [ -f '{release}' ]; do sleep 0.02; done; echo released"}}
- reply: "released at last"
"""

THINKER = """\
- reply: "<thinking>the user wants a number</thinking>Forty-two."
"""

BROKEN = """\
- error: {kind: rejected, message: "the scripted model refuses"}
"""

MESSAGE = [{"role": "user", "content": "hello"}]

API_PAGE = Path(__file__).parents[2] / "docs" / "api.md"


@dataclass
class Live:
    """A served gateway: its address, the test tenants' keys, and a reader of its log."""

    port: int
    base_url: str
    keys: Keys
    session_id: str  # alice's
    release: Path  # the waiter's run ends once this file (in the workspace) exists
    reader: App  # a second app on the same database, to read what the server recorded

    def client(self, key: str | None = None) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=self.base_url, api_key=key or self.keys.alice, max_retries=0
        )

    def sync_client(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=key or self.keys.alice, max_retries=0)

    async def record(self, run_id: str) -> RunRecord:
        return await load_run(self.reader.events, run_id)


def settings_in(tmp_path: Path) -> Settings:
    """The settings of a home in ``tmp_path`` configuring the scripted agents."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    # In the workspace: the command runs in a sandbox that sees nothing else of the host.
    release = tmp_path / "workspace" / "release"
    for name, text in {
        "memory": MEMORY,
        "chunks": CHUNKS,
        "tooler": TOOLER,
        "waiter": WAITER.format(release=release),
        "broken": BROKEN,
        "thinker": THINKER,
    }.items():
        (scripts / f"{name}.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "workspace").mkdir()
    home = tmp_path / "home"
    home.mkdir()
    config = home / "config.yaml"
    config.write_text(
        CONFIG.format(scripts=scripts, workspace=tmp_path / "workspace"), encoding="utf-8"
    )
    return load_settings(config, environ={"PROMPTLINE_HOME": str(home)})


@contextlib.asynccontextmanager
async def live_openai(tmp_path: Path) -> AsyncIterator[Live]:
    """A gateway serving the scripted agents on a free port, with alice's session made."""
    settings = settings_in(tmp_path)
    async with build_app(settings) as app:
        keys = await make_keys(app)
        alice = Caller(user_id="alice", tenant_id="acme", role="user")
        session = await app.sessions.create(alice.principal, channel="http")
    async with live_gateway(settings) as info, build_app(settings) as reader:
        yield Live(
            port=info.port,
            base_url=f"http://127.0.0.1:{info.port}/v1",
            keys=keys,
            session_id=session.id,
            release=tmp_path / "workspace" / "release",
            reader=reader,
        )


def api_page_example(language: str, containing: str) -> str:
    """The one ``language`` code block of the API page's OpenAI-compatible section that
    holds ``containing``."""
    page = API_PAGE.read_text(encoding="utf-8")
    section = page.split("\n## OpenAI-compatible API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(rf"```{language}\n(.*?)```", section, re.DOTALL)
    [found] = [block for block in blocks if containing in block]
    return str(found)


async def run_command(*command: str, env: dict[str, str] | None = None) -> str:
    """What ``command`` prints (it must succeed within 60 s)."""
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, f"stdout:\n{out.decode()}\nstderr:\n{err.decode()}"
    return out.decode()
