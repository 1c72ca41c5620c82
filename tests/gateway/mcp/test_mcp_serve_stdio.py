"""`promptline mcp serve` as MCP clients run it: a real subprocess on stdin/stdout, driven by
the official MCP client, on a temporary home with offline scripted models."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import anyio
import pytest
from mcp_server_support import CALL_SECS, NOTE, mcp_home, serve_command, stdio_client

from promptline import __version__


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return mcp_home(tmp_path)


async def test_the_agents_and_the_exposed_tools_are_listed_with_their_schemas(home: Path) -> None:
    async with stdio_client(home) as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        info = client.server_info

    assert {"assistant", "reader", "sleeper"} <= set(listed)
    reader = listed["reader"]
    assert reader.description is not None
    assert "Reads the note" in reader.description
    assert reader.input_schema["required"] == ["task"]
    assert set(reader.input_schema["properties"]) == {"task", "session_id"}
    assert reader.output_schema is not None
    assert "session_id" in reader.output_schema["required"]
    # With mcp_server.expose_tools, the registered tools, with their hints.
    assert listed["file_read"].annotations is not None
    assert listed["file_read"].annotations.read_only_hint is True
    assert listed["shell_execute"].annotations is not None
    assert listed["shell_execute"].annotations.read_only_hint is False
    assert listed["shell_execute"].annotations.destructive_hint is True
    assert "path" in listed["file_read"].input_schema["properties"]
    assert info is not None
    assert (info.name, info.version) == ("promptline", __version__)


async def test_calling_an_agent_answers_and_its_session_id_continues_the_conversation(
    home: Path,
) -> None:
    async with stdio_client(home) as client:
        first = await client.call_tool("assistant", {"task": "hello there"})
        assert first.is_error is False
        assert 'You said: "hello there"' in first.content[0].text
        assert first.structured_content is not None
        session_id = first.structured_content["session_id"]
        assert first.structured_content["status"] == "completed"
        assert first.structured_content["answer"] == first.content[0].text

        second = await client.call_tool(
            "assistant", {"task": "and again", "session_id": session_id}
        )
    assert second.is_error is False
    assert second.structured_content is not None
    assert second.structured_content["session_id"] == session_id
    assert second.structured_content["run_id"] != first.structured_content["run_id"]
    # The session holds both turns, owned by the local user.
    document = json.loads(await _promptline(home, "sessions", "export", session_id))
    assert document["session"]["user_id"] == "local"
    assert document["session"]["channel"] == "mcp"
    asked = [
        part["text"]
        for message in document["history"]
        if message["role"] == "user"
        for part in message["content"]
    ]
    assert asked == ["hello there", "and again"]


async def test_a_run_with_tool_calls_reports_its_steps_as_progress(home: Path) -> None:
    steps: list[str | None] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        steps.append(message)

    async with stdio_client(home) as client:
        result = await client.call_tool(
            "reader", {"task": "what does the note say?"}, progress_callback=progress
        )
    assert result.is_error is False
    assert result.content[0].text == "The note says hello."
    assert "calling file_read" in steps
    assert "file_read done" in steps
    assert steps.index("calling file_read") < steps.index("file_read done")
    assert steps[-1] == "the model answered"


async def test_an_exposed_read_only_tool_runs_and_a_denied_one_is_an_error_result(
    home: Path,
) -> None:
    async with stdio_client(home) as client:
        read = await client.call_tool("file_read", {"path": "note.txt"})
        denied = await client.call_tool("file_delete", {"path": "note.txt"})
    assert read.is_error is False
    assert read.content[0].text == NOTE
    assert denied.is_error is True
    assert "permission denied for file_delete" in denied.content[0].text
    assert (home.parent / "work" / "note.txt").read_text() == NOTE


async def test_cancelling_a_call_cancels_the_run(home: Path) -> None:
    started = anyio.Event()

    async def progress(value: float, total: float | None, message: str | None) -> None:
        if message and "started" in message:
            started.set()

    async with stdio_client(home) as client:
        async with anyio.create_task_group() as group:

            async def call() -> None:
                await client.call_tool("sleeper", {"task": "wait"}, progress_callback=progress)

            group.start_soon(call)
            with anyio.fail_after(CALL_SECS):
                await started.wait()
            group.cancel_scope.cancel()
        # The server goes on serving; its log soon shows how the run ended.
        status = await _sleeper_status(home, until_not="running")
    assert status == "cancelled"


async def _sleeper_status(home: Path, *, until_not: str) -> str:
    """The status of the sleeper's run as the log shows it, once it is not ``until_not``."""
    with anyio.fail_after(CALL_SECS):
        while True:
            runs = json.loads(await _promptline(home, "runs", "list", "--json"))
            found = [r["status"] for r in runs if r["agent"] == "sleeper"]
            if found and found[0] != until_not:
                return str(found[0])
            await anyio.sleep(0.2)  # polls the log; the deadline above bounds it


def test_stdout_carries_only_mcp_and_the_server_exits_when_stdin_closes(home: Path) -> None:
    messages = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "1"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "reader", "arguments": {"task": "read it"}},
        },
    ]
    command = serve_command(home)
    server = subprocess.Popen(
        [command.command, *command.args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=command.env,
    )
    assert server.stdin is not None
    assert server.stdout is not None
    server.stdin.write("".join(json.dumps(m) + "\n" for m in messages))
    server.stdin.flush()
    lines = []
    answers: dict[int, dict[str, object]] = {}
    while 2 not in answers:  # the call is answered (a line that is not JSON fails here)
        line = server.stdout.readline()
        assert line, "the server closed stdout before answering"
        lines.append(line)
        message = json.loads(line)
        if "id" in message:
            answers[message["id"]] = message
    server.stdin.close()  # the client goes: the server ends, and says nothing more
    assert server.stderr is not None
    rest, errors = server.stdout.read(), server.stderr.read()
    assert server.wait(timeout=CALL_SECS) == 0, errors
    assert rest == ""
    assert answers[1]["result"]["serverInfo"]["name"] == "promptline"  # type: ignore[index]
    result = answers[2]["result"]
    assert result["content"][0]["text"] == "The note says hello."  # type: ignore[index]
    assert "Traceback" not in errors


async def _promptline(home: Path, *args: str) -> str:
    """What ``promptline ARGS`` prints on ``home``."""
    command = serve_command(home)
    with anyio.fail_after(CALL_SECS):
        done = await anyio.run_process(
            [command.command, "-m", "promptline.cli.main", *args], env=command.env, check=False
        )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()
