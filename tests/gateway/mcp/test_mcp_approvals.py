"""A call over ``/mcp`` whose tool call waits for an approval: the person at a client that can
show forms (elicitation) is asked, and their answer is given as the caller's, on the record
and audited as over REST; a client that cannot is told, in its progress, which approval waits
and where to answer it; an answer from elsewhere wins and ends the question."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from gateway_support import auth
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_server_support import CALL_SECS, MODES, Served, mcp_home, rest, serve_home

from promptline.gateway.mcp_server.service import KEEP_CALL_SECS, KeptCalls
from promptline.security.auth import Caller

ASKER = """\
- tool_calls:
    - name: shell_execute
      arguments: {command: "echo approved-run"}
- reply: "Finished."
"""

EXTRA = """\
mcp_server:
  expose_tools: true
"""

Elicit = Callable[[Any, types.ElicitRequestParams], Awaitable[types.ElicitResult]]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    home = mcp_home(tmp_path, EXTRA)
    (tmp_path / "scripts" / "asker.yaml").write_text(ASKER, encoding="utf-8")
    config = home / "config.yaml"
    text = config.read_text(encoding="utf-8").replace("shell_execute: allow", "shell_execute: ask")
    text = text.replace(
        "agents:\n",
        "agents:\n  asker:\n    model: scripted/asker\n    description: Runs one command.\n",
        1,
    )
    config.write_text(text, encoding="utf-8")
    async with serve_home(home) as found:
        yield found


@contextlib.asynccontextmanager
async def client_of(
    served: Served, key: str, *, mode: str, elicit: Elicit | None = None
) -> AsyncIterator[Client]:
    timeout = httpx2.Timeout(30.0, read=CALL_SECS)
    async with httpx2.AsyncClient(headers=auth(key), timeout=timeout) as http:
        transport = streamable_http_client(served.mcp, http_client=http)
        async with Client(
            transport, mode=mode, read_timeout_seconds=CALL_SECS, elicitation_callback=elicit
        ) as client:
            yield client


async def events_of(served: Served, key: str, session_id: str) -> list[dict[str, Any]]:
    found = await rest(served, "GET", f"/v1/events?session_id={session_id}&limit=500", key)
    return list(found["items"])


def answering(answer: types.ElicitResult, asked: list[str]) -> Elicit:
    async def elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return answer

    return elicit


@pytest.mark.parametrize("mode", MODES)
async def test_an_approval_is_put_to_the_client_and_its_yes_runs_the_command(
    served: Served, mode: str
) -> None:
    asked: list[str] = []
    yes = types.ElicitResult(action="accept", content={"approve": True})
    async with client_of(
        served, served.keys.alice, mode=mode, elicit=answering(yes, asked)
    ) as client:
        result = await client.call_tool("asker", {"task": "run it"})
    assert result.is_error is False, result.content
    assert result.content[0].text == "Finished."
    assert len(asked) == 1
    assert asked[0].startswith("Allow shell_execute ")
    assert "approved-run" in asked[0]
    assert result.structured_content is not None
    events = await events_of(served, served.keys.alice, result.structured_content["session_id"])
    granted = [e for e in events if e["type"] == "permission_granted"]
    assert [g["data"]["decided_by"] for g in granted] == ["alice"]
    outputs = [e["data"]["result"] for e in events if e["type"] == "tool_result"]
    assert "approved-run" in str(outputs[0]["content"])
    assert not outputs[0]["is_error"]


async def test_the_answer_given_at_the_client_is_audited_with_its_source(served: Served) -> None:
    yes = types.ElicitResult(action="accept", content={"approve": True})
    async with client_of(served, served.keys.alice, mode="legacy", elicit=answering(yes, [])) as c:
        result = await c.call_tool("asker", {"task": "run it"})
    assert result.is_error is False
    audit = await rest(served, "GET", "/v1/events?types=audit&limit=500", served.keys.acme_admin)
    answers = [e["data"] for e in audit["items"] if e["type"] == "audit"]
    granted = [a for a in answers if a.get("action") == "approval.granted"]
    assert len(granted) == 1
    assert granted[0]["actor"] == "alice"
    assert granted[0]["source"] == "mcp"


@pytest.mark.parametrize("mode", MODES)
async def test_a_no_at_the_client_refuses_the_command_and_the_run_goes_on(
    served: Served, mode: str
) -> None:
    no = types.ElicitResult(action="decline")
    async with client_of(served, served.keys.alice, mode=mode, elicit=answering(no, [])) as client:
        result = await client.call_tool("asker", {"task": "run it"})
    assert result.content[0].text == "Finished."
    assert result.structured_content is not None
    events = await events_of(served, served.keys.alice, result.structured_content["session_id"])
    denied = [e["data"] for e in events if e["type"] == "permission_denied"]
    assert len(denied) == 1
    assert denied[0]["decided_by"] == "alice"
    assert denied[0]["reason"] == "refused at the MCP client"
    assert not any(e["type"] == "tool_progress" for e in events)


@pytest.mark.parametrize("mode", MODES)
async def test_a_tool_called_directly_is_asked_about_too(served: Served, mode: str) -> None:
    asked: list[str] = []
    yes = types.ElicitResult(action="accept", content={"approve": True})
    async with client_of(
        served, served.keys.alice, mode=mode, elicit=answering(yes, asked)
    ) as client:
        result = await client.call_tool("shell_execute", {"command": "echo direct-call"})
    assert result.is_error is False, result.content
    assert "direct-call" in result.content[0].text
    assert len(asked) == 1
    assert "direct-call" in asked[0]


@pytest.mark.parametrize("mode", MODES)
async def test_without_forms_the_progress_names_the_approval_and_rest_answers_it(
    served: Served, mode: str
) -> None:
    waiting = asyncio.Event()
    steps: list[str] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        steps.append(message or "")
        if message and message.startswith("waiting for approval "):
            waiting.set()

    async with client_of(served, served.keys.alice, mode=mode) as client:
        call = asyncio.create_task(
            client.call_tool("asker", {"task": "run it"}, progress_callback=progress)
        )
        await asyncio.wait_for(waiting.wait(), CALL_SECS)
        line = next(s for s in steps if s.startswith("waiting for approval "))
        found = re.search(r"POST /v1/approvals/(\S+)$", line)
        assert found is not None, line
        request_id = found.group(1)
        assert line.startswith(f"waiting for approval {request_id}: shell_execute")
        pending = await rest(served, "GET", "/v1/approvals", served.keys.alice)
        assert [p["request_id"] for p in pending["items"]] == [request_id]
        await rest(
            served, "POST", f"/v1/approvals/{request_id}", served.keys.alice, json={"approve": True}
        )
        result = await asyncio.wait_for(call, CALL_SECS)
    assert result.content[0].text == "Finished."
    assert "shell_execute approved" in steps
    assert steps.index("shell_execute approved") < steps.index("shell_execute done")


@pytest.mark.parametrize("mode", MODES)
async def test_a_dismissed_question_leaves_the_approval_open_for_an_answer_elsewhere(
    served: Served, mode: str
) -> None:
    dismissed = asyncio.Event()

    async def elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        dismissed.set()
        return types.ElicitResult(action="cancel")

    async with client_of(served, served.keys.alice, mode=mode, elicit=elicit) as client:
        call = asyncio.create_task(client.call_tool("asker", {"task": "run it"}))
        await asyncio.wait_for(dismissed.wait(), CALL_SECS)
        # The request was on the record before the question was put.
        pending = (await rest(served, "GET", "/v1/approvals", served.keys.alice))["items"]
        assert len(pending) == 1
        await rest(
            served,
            "POST",
            f"/v1/approvals/{pending[0]['request_id']}",
            served.keys.acme_admin,
            json={"approve": True},
        )
        result = await asyncio.wait_for(call, CALL_SECS)
    assert result.content[0].text == "Finished."
    assert result.structured_content is not None
    events = await events_of(served, served.keys.alice, result.structured_content["session_id"])
    granted = [e["data"] for e in events if e["type"] == "permission_granted"]
    assert [g["decided_by"] for g in granted] == ["ops"]


@pytest.mark.parametrize("mode", MODES)
async def test_an_answer_from_elsewhere_wins_over_a_question_still_open(
    served: Served, mode: str
) -> None:
    asked = asyncio.Event()
    release = asyncio.Event()

    async def elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.set()
        await release.wait()  # the person at the client answers late, and says no
        return types.ElicitResult(action="accept", content={"approve": False})

    async with client_of(served, served.keys.alice, mode=mode, elicit=elicit) as client:
        call = asyncio.create_task(client.call_tool("asker", {"task": "run it"}))
        await asyncio.wait_for(asked.wait(), CALL_SECS)
        pending = (await rest(served, "GET", "/v1/approvals", served.keys.alice))["items"]
        await rest(
            served,
            "POST",
            f"/v1/approvals/{pending[0]['request_id']}",
            served.keys.alice,
            json={"approve": True},
        )
        release.set()
        result = await asyncio.wait_for(call, CALL_SECS)
    assert result.content[0].text == "Finished."
    assert result.structured_content is not None
    events = await events_of(served, served.keys.alice, result.structured_content["session_id"])
    assert [e["type"] for e in events if e["type"].startswith("permission_")] == [
        "permission_request",
        "permission_granted",
    ]


async def test_a_handed_back_call_retried_by_another_tenant_learns_and_answers_nothing(
    served: Served,
) -> None:
    never = answering(types.ElicitResult(action="cancel"), [])
    async with client_of(served, served.keys.alice, mode="auto", elicit=never) as alice:
        handed = await alice.session.call_tool(
            "asker", {"task": "run it"}, allow_input_required=True
        )
    assert isinstance(handed, types.InputRequiredResult)
    assert handed.request_state is not None
    assert handed.input_requests is not None
    assert set(handed.input_requests) == {"approval"}
    yes = {"approval": types.ElicitResult(action="accept", content={"approve": True})}
    async with client_of(served, served.keys.carol, mode="auto", elicit=never) as carol:
        taken = await carol.session.call_tool(
            "asker",
            {"task": "run it"},
            request_state=handed.request_state,
            input_responses=yes,
            allow_input_required=True,
        )
        assert isinstance(taken, types.CallToolResult)
        assert taken.is_error is True
        assert "no run" in taken.content[0].text
        with pytest.raises(MCPError, match="requestState"):
            await carol.session.call_tool(
                "asker", {"task": "x"}, request_state="not json", allow_input_required=True
            )
    pending = (await rest(served, "GET", "/v1/approvals", served.keys.alice))["items"]
    assert len(pending) == 1  # still waiting for alice


async def test_a_kept_call_is_given_only_to_its_caller_and_forgotten_after_its_time() -> None:
    now = [0.0]
    kept = KeptCalls(clock=lambda: now[0])
    alice = Caller(user_id="alice", tenant_id="acme", role="user")
    carol = Caller(user_id="carol", tenant_id="globex", role="user")
    first: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    kept.keep("call_1", alice, first)
    assert kept.find("call_1", carol) is None
    assert kept.find("call_1", alice) is first
    first.set_result("done")
    await asyncio.sleep(0)  # the done callback runs on the next turn of the loop
    now[0] = KEEP_CALL_SECS - 1
    kept.keep("call_2", alice, asyncio.get_running_loop().create_future())
    assert kept.find("call_1", alice) is first  # ended, but not long enough ago
    now[0] += KEEP_CALL_SECS + 1
    kept.keep("call_3", alice, asyncio.get_running_loop().create_future())
    assert kept.find("call_1", alice) is None
    assert kept.find("call_2", alice) is not None  # still running: never forgotten
    doc = (Path(__file__).parents[3] / "docs" / "mcp.md").read_text(encoding="utf-8")
    assert f"kept for {KEEP_CALL_SECS / 60:g} minutes after it ends, `KEEP_CALL_SECS`" in doc
