"""The WebSocket section of docs/api.md, checked against the server: every method has an
example, every example request is one the server takes (or refuses, when its answer says so),
every example answer has the keys the server's own answer has, the error and close code tables
are the codes in use, and the Python example runs as written."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from ws_support import ends, rpc, served, ws_settings

from promptline.gateway.ws.connection import CLOSE_INTERNAL_ERROR, CLOSE_SLOW_CLIENT, CLOSE_TOO_BIG
from promptline.gateway.ws.handshake import (
    CLOSE_CHANNEL_OFF,
    CLOSE_ORIGIN_REFUSED,
    CLOSE_RATE_LIMITED,
    CLOSE_UNAUTHORIZED,
)
from promptline.gateway.ws.methods import METHODS
from promptline.gateway.ws.protocol import SERVER_ERROR_CODES

DOC = Path(__file__).parents[2] / "docs" / "api.md"


def _section() -> str:
    text = DOC.read_text(encoding="utf-8")
    return text.split("\n## WebSocket control plane\n", 1)[1].split("\n## ", 1)[0]


def _frames() -> list[Any]:
    return [json.loads(body) for body in re.findall(r"```json\n(.*?)```", _section(), re.DOTALL)]


def _exchanges() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(request, answer) pairs: a request's example is followed by its answer's."""
    frames = _frames()
    pairs = []
    for index, frame in enumerate(frames):
        if "method" in frame and "id" in frame:
            pairs.append((frame, frames[index + 1]))
    return pairs


def _table_codes(heading: str) -> set[int]:
    table = _section().split(heading, 1)[1].split("\n\n", 1)[0]
    return {int(code) for code in re.findall(r"^\| (-?\d+) \|", table, re.MULTILINE)}


def test_every_method_has_an_example_and_every_example_is_well_formed() -> None:
    exchanges = _exchanges()

    assert {request["method"] for request, _ in exchanges} == set(METHODS)
    for request, answer in exchanges:
        assert request["jsonrpc"] == answer["jsonrpc"] == "2.0"
        assert answer["id"] == request["id"], request
        model = METHODS[request["method"]].params
        refused = answer.get("error", {}).get("code") == -32602
        try:
            model.model_validate(request.get("params", {}))
        except ValidationError:
            assert refused, f"the example of {request['method']} is not valid: {request}"
        else:
            assert not refused, f"the example of {request['method']} is valid: {request}"


def test_the_error_and_close_code_tables_are_the_codes_in_use() -> None:
    standard = {-32700, -32600, -32601, -32602, -32603}
    closes = {
        CLOSE_TOO_BIG,
        CLOSE_INTERNAL_ERROR,
        CLOSE_SLOW_CLIENT,
        CLOSE_UNAUTHORIZED,
        CLOSE_ORIGIN_REFUSED,
        CLOSE_RATE_LIMITED,
        CLOSE_CHANNEL_OFF,
    }

    assert _table_codes("| code | `data.code` | when |") == standard | set(
        SERVER_ERROR_CODES.values()
    )
    assert _table_codes("| close code | meaning | what to do |") == closes | {1000, 1012}


def _keys(result: Any) -> Any:
    if isinstance(result, dict):
        if isinstance(result.get("items"), list) and result["items"]:
            return sorted(result), sorted(result["items"][0])
        return sorted(result)
    return type(result).__name__


async def test_the_example_answers_have_the_keys_of_the_servers_answers(tmp_path: Path) -> None:
    live: dict[str, Any] = {}
    async with served(ws_settings(tmp_path / "home")) as gw, rpc(gw.url, gw.keys.alice) as c:

        async def call(method: str, params: dict[str, Any] | None = None) -> Any:
            live[method] = await c.call(method, params)
            return live[method]

        session_id = (await call("session.create", {"context": {"topic": "billing"}}))["id"]
        await call("events.subscribe", {"session_id": session_id, "from_seq": 0})
        run_id = (await call("session.send", {"session_id": session_id, "content": "Hi"}))["run_id"]
        event = (await c.events_until(ends(run_id)))[0]
        await call("state.set", {"scope": "local", "key": "k", "value": 1})
        await call("state.get", {"scope": "local", "key": "k"})
        await call("events.unsubscribe", {"subscription": "sub_1"})
        await call("tools.list")
        await call("models.list")
        await call("ping")
        writing = str((await c.call("session.create"))["id"])
        await c.call("events.subscribe", {"session_id": writing})
        sent = {"session_id": writing, "content": "go", "model": "scripted/writer"}
        run_id = (await c.call("session.send", sent))["run_id"]
        asked = await c.events_until(lambda e: e["type"] == "permission_request")
        await call("run.pause", {"run_id": run_id})
        await call("run.resume", {"run_id": run_id})
        request_id = asked[-1]["data"]["request_id"]
        await call("permission.respond", {"request_id": request_id, "approve": False})
        await c.events_until(ends(run_id))
        other = str((await c.call("session.create"))["id"])
        run_id = (await c.call("session.send", {**sent, "session_id": other}))["run_id"]
        await call("run.cancel", {"run_id": run_id})

    for request, answer in _exchanges():
        if "result" in answer:
            assert _keys(answer["result"]) == _keys(live[request["method"]]), request["method"]
    notification = next(f for f in _frames() if f.get("method") == "event")
    assert sorted(notification["params"]) == ["event", "subscription"]
    assert sorted(notification["params"]["event"]) == sorted(event)


async def test_the_python_example_runs_as_written(tmp_path: Path) -> None:
    code = re.findall(r"```python\n(.*?)```", _section(), re.DOTALL)[0]
    async with served(ws_settings(tmp_path / "home")) as gw:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code.replace("ws://localhost:8080/v1/ws", gw.url),
            env={**os.environ, "PROMPTLINE_API_KEY": gw.keys.alice},
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(process.communicate(), 30)

    assert process.returncode == 0
    assert json.loads(out) == {"jsonrpc": "2.0", "id": 1, "result": "pong"}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_is_in_the_methods_table(name: str) -> None:
    assert f"| `{name}` |" in _section()
