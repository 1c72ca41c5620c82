"""The hub: a message goes through routing, its session and the runtime, and comes back as
an answer; the CLI and HTTP channels use it."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from promptline.app import App, build_app
from promptline.channels import ChannelHub, InboundMessage
from promptline.channels.cli import CliChannel
from promptline.config import load_settings
from promptline.gateway.app import create_gateway
from promptline.security.auth import KeyStore
from promptline.sessions.models import Principal

CONFIG = """\
models:
  default: scripted/demo
agent:
  default_mode: act
channels:
  routes:
    - channel: http
      thread: "team-*"
      session: per_user
"""


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text(CONFIG, encoding="utf-8")
    settings = load_settings(home / "config.yaml", environ={"PROMPTLINE_HOME": str(home)})
    async with build_app(settings) as built:
        await built.start_runtime()
        yield built


async def test_a_message_is_answered_in_its_routed_session(app: App) -> None:
    hub = ChannelHub(app)

    first = await hub.handle(InboundMessage.of("slack", "u1", "hello there", thread_id="T1"))
    second = await hub.handle(InboundMessage.of("slack", "u1", "again", thread_id="T1"))

    assert not first.error
    assert "hello there" in first.text
    assert first.session_id == second.session_id
    session = await app.sessions.get(first.session_id or "", Principal(user_id="u1"))
    assert [m.text for m in session.history if m.role == "user"] == ["hello there", "again"]
    assert session.channel == "slack"


async def test_a_failure_is_an_answer_not_a_lost_message(app: App) -> None:
    hub = ChannelHub(app)
    hub.router.default_agent = "no-such-agent"

    answer = await hub.handle(InboundMessage.of("slack", "u1", "hello", thread_id="T9"))

    assert answer.error
    assert "no-such-agent" in answer.text


async def test_the_cli_channel_answers_each_line_of_its_input(app: App) -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"first question\n\nsecond question\n")
    reader.feed_eof()
    out = io.StringIO()
    channel = CliChannel(reader, out, user_id="me")
    hub = ChannelHub(app)

    await hub.start([channel])
    await asyncio.wait_for(channel.done.wait(), timeout=30)
    await hub.stop()

    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "first question" in lines[0]
    assert "second question" in lines[1]


async def test_the_http_channel_routes_by_rule(app: App) -> None:
    _, key = await KeyStore(app.state).create("alice", tenant_id="default")
    api = create_gateway(app)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api), base_url="http://gw"
    ) as client:
        a = await client.post(
            "/v1/channels/http/messages",
            json={"text": "hi", "thread_id": "team-a"},
            headers=headers,
        )
        b = await client.post(
            "/v1/channels/http/messages",
            json={"text": "yo", "thread_id": "team-b"},
            headers=headers,
        )
        c = await client.post(
            "/v1/channels/http/messages", json={"text": "hm", "thread_id": "solo"}, headers=headers
        )
        bad = await client.post("/v1/channels/http/messages", json={"text": ""}, headers=headers)

    assert a.status_code == 200
    assert not a.json()["error"]
    assert a.json()["session_id"] == b.json()["session_id"]  # per_user for team-* threads
    assert c.json()["session_id"] != a.json()["session_id"]
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_input"
