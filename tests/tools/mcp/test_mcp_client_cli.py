"""`promptline mcp list|tools|call|resources|prompts|attach` against a config with the test
server over stdio (and one that cannot start)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from mcp_support import PYTHON, SERVER_SCRIPT

from promptline.app import build_app
from promptline.cli.main import app
from promptline.config import load_settings
from promptline.sessions.models import Principal

CONFIG = f"""\
mcp_servers:
  test:
    command: "{PYTHON}"
    args: ["{SERVER_SCRIPT}"]
  broken:
    command: "/nowhere/mcp-server"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def promptline(config: Path, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(app, ["--config", str(config), "mcp", *args])
    assert result.exit_code == code, (result.output, result.stderr)
    return result


def test_mcp_list_shows_each_server_with_its_state_tools_and_error(config: Path) -> None:
    rows = {r["name"]: r for r in json.loads(promptline(config, "list", "--json").stdout)}

    assert rows["test"]["state"] == "connected"
    assert rows["test"]["transport"] == "stdio"
    assert rows["test"]["tools"] > 5
    assert rows["test"]["skipped"] == ["bad_schema"]
    assert rows["broken"]["state"] == "down"
    assert "no such program" in rows["broken"]["error"]


def test_mcp_tools_lists_names_flags_and_descriptions(config: Path) -> None:
    rows = json.loads(promptline(config, "tools", "test", "--json").stdout)
    tools = {r["name"]: r for r in rows}

    assert tools["mcp.test.echo"]["read_only"] is True
    assert tools["mcp.test.echo"]["description"] == "Send the text back."
    assert tools["mcp.test.hang"]["read_only"] is False
    assert "mcp.test.bad_schema" not in tools


def test_mcp_tools_of_a_server_that_cannot_start_fails_with_the_reason(config: Path) -> None:
    result = promptline(config, "tools", "broken", code=1)

    assert "no such program" in result.stderr


def test_mcp_call_prints_progress_as_it_comes_and_the_result(config: Path) -> None:
    result = promptline(config, "call", "test", "progress", "steps=3")

    assert result.stdout.strip() == "counted to 3"
    assert "progress 33% step 1 of 3" in result.stderr
    assert "progress 100% step 3 of 3" in result.stderr


def test_mcp_call_takes_json_arguments_and_fails_on_an_error_result(config: Path) -> None:
    echoed = promptline(config, "call", "test", "echo", "--args", '{"text": "hi there"}')
    assert echoed.stdout.strip() == "hi there"

    failed = promptline(config, "call", "test", "fail", code=1)
    assert "the tool failed on purpose" in failed.stderr


def test_mcp_resources_and_prompts_are_listed(config: Path) -> None:
    resources = json.loads(promptline(config, "resources", "test", "--json").stdout)
    assert [r["uri"] for r in resources] == ["test://readme"]
    prompts = json.loads(promptline(config, "prompts", "test", "--json").stdout)
    assert prompts == [
        {
            "name": "greet",
            "description": "Greet someone.",
            "arguments": ["name"],
            "required": ["name"],
        }
    ]


def test_mcp_attach_puts_a_resource_and_a_rendered_prompt_in_the_sessions_context(
    config: Path,
) -> None:
    settings = load_settings(config)
    owner = Principal(tenant_id="default", user_id="ada")

    async def new_session() -> str:
        async with build_app(settings) as built:
            return (await built.sessions.create(owner, channel="cli")).id

    async def attachments(session_id: str) -> list[dict[str, str]]:
        async with build_app(settings) as built:
            session = await built.sessions.get(session_id, owner)
            found: list[dict[str, str]] = session.context["attachments"]
            return found

    session_id = asyncio.run(new_session())

    done = promptline(config, "attach", "test", session_id, "--resource", "test://readme")
    assert f"to session {session_id}" in done.stdout
    promptline(config, "attach", "test", session_id, "--prompt", "greet", "-a", "name=Ada")

    found = {a["key"]: a["text"] for a in asyncio.run(attachments(session_id))}
    assert "has tools, one resource and one prompt" in found["mcp:test:resource:test://readme"]
    assert "Ada" in found["mcp:test:prompt:greet"]

    wrong = promptline(config, "attach", "test", session_id, code=1)
    assert "exactly one of --resource URI or --prompt NAME" in wrong.stderr
    unknown = promptline(
        config, "attach", "test", "ses_nope", "--resource", "test://readme", code=1
    )
    assert "ses_nope" in unknown.stderr


def test_no_mcp_module_is_imported_by_the_runtime_and_the_cli() -> None:
    # The SDK costs half a second or more to import, watchfiles and yaml a little: none of
    # them is loaded until a server, a watcher or a file needs it.
    probe = (
        "import sys, promptline.app, promptline.runtime.runtime, promptline.cli.main, "
        "promptline.cli.mcp_cmd, promptline.tools.mcp, promptline.tools.skills, "
        "promptline.tools.plugins; "
        "print(sorted({m.split('.')[0] for m in sys.modules} "
        "& {'mcp', 'mcp_types', 'watchfiles', 'yaml', 'jsonschema'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_mcp_tools_says_which_tools_are_not_offered_and_why(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    server = f'command: "{PYTHON}"\n    args: ["{SERVER_SCRIPT}", "--legacy"]'
    path.write_text(f"mcp_servers:\n  old:\n    {server}\n", encoding="utf-8")

    tools = promptline(path, "tools", "old")

    said = " ".join(tools.stderr.split())
    assert "old: task_only is not offered: it runs only as a task (taskSupport: required)" in said
    assert "old: bad_schema is not offered: the input schema of bad_schema is not" in said
    assert "mcp.old.task_only" not in tools.stdout
    assert "mcp.old.echo" in tools.stdout
