"""Tenant isolation on ``/mcp``: a caller of globex (a user, and the tenant's admin, with an
API key or an access token), using the official MCP client over Streamable HTTP against a
live gateway, lists and calls every tool the server offers with acme's ids and texts in its
arguments. Nothing of acme comes back: a call that names acme's session fails exactly as for
a session that does not exist, and acme's data stays as it was."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from gateway_support import Keys, auth, live_gateway, make_keys, settings_for
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from promptline.app import build_app
from promptline.gateway.mcp_server.protocol import MCP_SCOPES
from promptline.gateway.mcp_server.service import McpService
from promptline.security.auth import KeyStore

CALL_SECS = 60.0
"""The longest a call may take (a bound, never reached)."""

SECRET = "ACME-SECRET-PLAN"
NOTES = "acme-notes.txt"

# No shared workspace: the file tools called over MCP work in a folder of each caller's own.
# The tools that write are allowed (a call waits for no person, and does what it can); the
# web is not (the tests stay offline).
EXTRA = """\
mcp_server:
  expose_tools: true
tools:
  file_write: allow
  file_delete: allow
  git_commit: allow
  shell_execute: allow
  web_get: deny
"""

REQUESTS = {"tools/list", "tools/call"}
"""The MCP requests this walk covers; the server answers no others (no resources, no
prompts): one more needs its cases here."""

CASES: dict[str, list[dict[str, Any]]] = {
    "assistant": [
        {"task": "what was said before?", "session_id": "{session}"},
        {"task": "what was said before?", "session_id": "{run}"},
    ],
    "codebase_search": [{"query": SECRET}, {"query": "{session}"}],
    "file_delete": [{"path": NOTES}],
    "file_read": [
        {"path": NOTES},
        {"path": f"../{NOTES}"},
        {"path": f"../mcp-acme-alice/{NOTES}"},  # acme's folder, next to globex's own
    ],
    "file_write": [{"path": NOTES, "content": "globex's own", "append": True}],
    "git_commit": [{"message": "take it", "paths": [NOTES]}],
    "git_status": [{}],
    "read_skill_file": [{"name": "{session}", "path": NOTES}],
    "shell_execute": [{"command": f"cat {NOTES}; ls"}],
    "use_skill": [{"name": "{session}"}],
    "web_get": [{"url": "http://127.0.0.1:9/v1/sessions/{session}"}],
}
"""Every tool the server offers here, and the arguments the outsider calls it with
(``{session}`` and ``{run}``: acme's ids). A new tool needs its cases here; one with an
id-shaped argument needs a case that passes acme's id in it."""


@dataclass
class Served:
    base: str
    keys: Keys
    globex_admin: str
    offers: dict[str, dict[str, Any]]

    @property
    def mcp(self) -> str:
        return f"{self.base}/mcp"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    settings = settings_for(tmp_path / "home", EXTRA)
    async with build_app(settings) as app:
        await app.start_runtime()
        keys = await make_keys(app)
        _, globex_admin = await KeyStore(app.state, clock=app.clock).create(
            "root", tenant_id="globex", role="admin"
        )
        offers = {name: offer.input_schema for name, offer in McpService(app).offers().items()}
    async with live_gateway(settings) as info:
        yield Served(f"http://127.0.0.1:{info.port}", keys, globex_admin, offers)


@contextlib.asynccontextmanager
async def _client(url: str, credential: str) -> AsyncIterator[Client]:
    timeout = httpx2.Timeout(30.0, read=CALL_SECS)
    async with httpx2.AsyncClient(headers=auth(credential), timeout=timeout) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, read_timeout_seconds=CALL_SECS) as client:
            yield client


async def _rest(served: Served, method: str, path: str, key: str) -> Any:
    async with httpx.AsyncClient(base_url=served.base, timeout=CALL_SECS) as client:
        response = await client.request(method, path, headers=auth(key))
    assert response.status_code < 300, response.text
    return response.json()


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {key: _fill(item, ids) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, ids) for item in value]
    if isinstance(value, str):
        for name, id_ in ids.items():
            value = value.replace("{" + name + "}", id_)
    return value


def _other_id(value: str) -> str:
    return value[:-1] + ("Z" if value[-1] != "Z" else "Y")


def _masked(result: Any, ids: dict[str, str]) -> str:
    """A call's result with ``ids`` written as their names, and the ids a call makes
    itself (its ``call_id``) left out."""
    data = result.model_dump(mode="json")
    if isinstance(data.get("structured_content"), dict):
        data["structured_content"].pop("call_id", None)
    text = json.dumps(data, sort_keys=True)
    for name, id_ in ids.items():
        text = text.replace(id_, "{" + name + "}")
    return text


async def _acme(served: Served) -> dict[str, str]:
    """Alice's data: a conversation with an agent, and a file in her MCP workspace."""
    async with _client(served.mcp, served.keys.alice) as client:
        said = await client.call_tool("assistant", {"task": SECRET})
        wrote = await client.call_tool("file_write", {"path": NOTES, "content": SECRET})
    assert said.is_error is False, said
    assert wrote.is_error is False, wrote
    assert said.structured_content is not None
    return {
        "session": said.structured_content["session_id"],
        "run": said.structured_content["run_id"],
    }


async def _token(served: Served, key: str) -> str:
    async with httpx.AsyncClient(base_url=served.base) as client:
        response = await client.post("/v1/auth/token", headers=auth(key))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_every_offered_tool_and_request_has_its_cases(served: Served) -> None:
    assert set(MCP_SCOPES) == REQUESTS
    assert set(CASES) == set(served.offers)
    for name, schema in served.offers.items():
        id_shaped = {arg for arg in schema.get("properties", {}) if arg.endswith("_id")}
        for arg in id_shaped:
            assert any("{" in str(case.get(arg, "")) for case in CASES[name]), (name, arg)


@pytest.mark.parametrize("as_token", [False, True], ids=["api-key", "access-token"])
async def test_globex_lists_and_calls_every_tool_with_acmes_ids_and_gets_nothing_of_acme(
    served: Served, as_token: bool
) -> None:
    ids = await _acme(served)
    unknown = {name: _other_id(id_) for name, id_ in ids.items()}
    secrets = [*ids.values(), SECRET, "alice", "acme"]
    outsiders = {"user": served.keys.carol, "admin": served.globex_admin}
    if as_token:
        outsiders = {who: await _token(served, key) for who, key in outsiders.items()}

    wrong: dict[str, list[str]] = {}
    for who, credential in outsiders.items():
        wrong[who] = []
        async with _client(served.mcp, credential) as client:
            capabilities = client.server_capabilities
            assert capabilities is not None
            assert capabilities.resources is None  # nothing to list but tools
            assert capabilities.prompts is None
            listed = (await client.list_tools()).model_dump_json()
            wrong[who] += [f"tools/list answers {text}" for text in secrets if text in listed]
            for name, cases in CASES.items():
                for case in cases:
                    arguments = _fill(case, ids)
                    result = await client.call_tool(name, arguments)
                    seen = result.model_dump_json()
                    sent = json.dumps(arguments)
                    leaked = [text for text in secrets if text in seen and text not in sent]
                    if leaked:
                        wrong[who].append(f"{name} {case}: answers {leaked}: {seen}")
                    if name == "assistant":  # a session not theirs: as one that is not there
                        if not result.is_error or result.structured_content is not None:
                            wrong[who].append(f"{name} {case}: not refused: {seen}")
                        nothing = await client.call_tool(name, _fill(case, unknown))
                        if _masked(result, ids) != _masked(nothing, unknown):
                            wrong[who].append(f"{name} {case}: told apart: {seen}")

    assert wrong == {"user": [], "admin": []}
    # Acme's data is as alice left it.
    session = await _rest(
        served, "GET", f"/v1/sessions/{ids['session']}?history_limit=10", served.keys.alice
    )
    assert [m["role"] for m in session["history"]] == ["user", "assistant"]
    async with _client(served.mcp, served.keys.alice) as client:
        note = await client.call_tool("file_read", {"path": NOTES})
    assert note.is_error is False
    assert SECRET in note.model_dump_json()
    assert "globex" not in note.model_dump_json()


async def test_an_idempotency_key_of_acme_gives_globex_a_call_of_its_own(
    served: Served,
) -> None:
    meta: Any = {"promptline/idempotency_key": "acme-call-1"}
    async with _client(served.mcp, served.keys.alice) as client:
        first = await client.call_tool("assistant", {"task": SECRET}, meta=meta)
    async with _client(served.mcp, await _token(served, served.keys.carol)) as client:
        theirs = await client.call_tool("assistant", {"task": "mine"}, meta=meta)

    assert first.structured_content is not None
    assert theirs.is_error is False, theirs
    assert theirs.structured_content is not None
    assert theirs.structured_content["session_id"] != first.structured_content["session_id"]
    assert theirs.structured_content["run_id"] != first.structured_content["run_id"]
    assert SECRET not in theirs.model_dump_json()


MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "tests", "version": "1"},
    },
}


async def _in_session(
    client: httpx.AsyncClient, served: Served, credential: str, session: str, method: str
) -> tuple[int, str]:
    """Status and body of a request in the MCP session ``session``."""
    headers = {
        **MCP_HEADERS,
        **auth(credential),
        "Mcp-Session-Id": session,
        "Mcp-Protocol-Version": "2025-06-18",
    }
    if method == "GET":
        headers["Accept"] = "text/event-stream"
        async with client.stream("GET", served.mcp, headers=headers) as response:
            if response.status_code == 200:  # a stream of the session: say so, do not wait
                return 200, "a stream"
            return response.status_code, (await response.aread()).decode()
    if method == "DELETE":
        response = await client.delete(served.mcp, headers=headers)
    else:
        body = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        response = await client.post(served.mcp, json=body, headers=headers)
    return response.status_code, response.text


@pytest.mark.parametrize("as_token", [False, True], ids=["api-key", "access-token"])
async def test_globex_cannot_join_read_or_end_acmes_mcp_session(
    served: Served, as_token: bool
) -> None:
    async with httpx.AsyncClient(timeout=CALL_SECS) as client:
        opened = await client.post(
            served.mcp, json=INITIALIZE, headers={**MCP_HEADERS, **auth(served.keys.alice)}
        )
        assert opened.status_code == 200, opened.text
        session = opened.headers["mcp-session-id"]
        unknown = _other_id(session)
        outsiders = [served.keys.carol, served.globex_admin]
        if as_token:
            outsiders = [await _token(served, key) for key in outsiders]

        answers = {}
        for n, outsider in enumerate(outsiders):
            for method in ("POST", "GET", "DELETE"):
                theirs = await _in_session(client, served, outsider, session, method)
                nothing = await _in_session(client, served, outsider, unknown, method)
                answers[(n, method)] = (theirs, nothing)
        still = await _in_session(client, served, served.keys.alice, session, "POST")

    for (_, method), (theirs, nothing) in answers.items():
        assert theirs[0] == 404, (method, theirs)
        assert theirs == nothing, method
    assert still[0] == 200
    assert "assistant" in still[1]
