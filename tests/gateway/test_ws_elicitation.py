"""A question an MCP server asks during a run (an elicitation) reaches a WebSocket client as a
``permission_request`` event and is answered with ``permission.respond`` and its ``content``;
content that does not match the question is refused (-32602) and the question stays open."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from ws_support import alice_on, ws_settings

from promptline.config import load_settings
from promptline.config.settings import Settings

SERVER = Path(__file__).parents[1] / "tools" / "mcp" / "mcp_test_server.py"
ASKER = [
    {"tool_calls": [{"name": "mcp.docs.ask", "arguments": {}}]},
    {"reply": "Thanks."},
]


def _settings(home: Path) -> Settings:
    ws_settings(home)  # the base config and scripts
    (home / "scripts" / "asker.json").write_text(json.dumps(ASKER), encoding="utf-8")
    config = home / "config.yaml"
    server = json.dumps({"command": sys.executable, "args": [str(SERVER)]})
    config.write_text(
        config.read_text(encoding="utf-8") + f"mcp_servers:\n  docs: {server}\n",
        encoding="utf-8",
    )
    return load_settings(config, environ={"PROMPTLINE_HOME": str(home)})


@pytest.mark.slow  # a real gateway and a real MCP server (a Python process importing the SDK)
async def test_a_question_is_answered_over_the_websocket_with_its_content(
    tmp_path: Path,
) -> None:
    async with alice_on(_settings(tmp_path / "home")) as (_, client):
        session_id = (await client.call("session.create"))["id"]
        await client.call("events.subscribe", {"session_id": session_id})
        started = await client.call(
            "session.send",
            {"session_id": session_id, "content": "who am I?", "model": "scripted/asker"},
        )
        asked = await client.events_until(lambda e: e["type"] == "permission_request")
        request = asked[-1]["data"]
        wrong = await client.error(
            "permission.respond",
            {"request_id": request["request_id"], "approve": True, "content": {"age": 1}},
        )
        outcome = await client.call(
            "permission.respond",
            {
                "request_id": request["request_id"],
                "approve": True,
                "content": {"name": "Ann", "age": 41},
            },
        )
        seen = await client.events_until(
            lambda e: e["type"] == "run_completed" and e["run_id"] == started["run_id"]
        )

    assert request["tool"] == "mcp.docs:elicitation"
    assert request["arguments"]["message"] == "Who are you?"
    assert wrong["code"] == -32602
    assert "'name' is a required property" in wrong["message"]
    assert outcome["status"] == "granted"
    result = next(e for e in seen if e["type"] == "tool_result")["data"]["result"]
    assert result["content"][0]["text"] == 'accept {"age":41,"name":"Ann"}'
