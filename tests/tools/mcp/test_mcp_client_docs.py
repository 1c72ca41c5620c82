"""The client section of docs/mcp.md: its configuration examples load, the commands it shows
exist, and the behaviour it promises is the code's (backoff, attachment size, cache place)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from promptline.cli.main import app
from promptline.config import load_settings
from promptline.tools.mcp import connection, manager

DOC = Path(__file__).parents[3] / "docs" / "mcp.md"


def client_section() -> str:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("\n## Using MCP servers\n", 1)[1]
    return section.split("\n## PromptLine as an MCP server\n", 1)[0]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", client_section(), re.S)


@pytest.mark.parametrize("index", range(3))
def test_each_yaml_example_is_a_valid_configuration(tmp_path: Path, index: int) -> None:
    yaml_blocks = blocks("yaml")
    assert len(yaml_blocks) == 3
    path = tmp_path / "config.yaml"
    path.write_text(yaml_blocks[index], encoding="utf-8")
    env = {"PROMPTLINE_HOME": str(tmp_path), "GITHUB_TOKEN": "t", "SEARCH_TOKEN": "s"}

    settings = load_settings(path, environ=env)

    if index == 0:
        github = settings.mcp_servers["github"]
        assert (github.kind, github.env["GITHUB_PERSONAL_ACCESS_TOKEN"]) == ("stdio", "t")
    if index == 1:
        assert settings.mcp_servers["search"].kind == "streamable_http"
        assert settings.mcp_servers["search"].headers == {"Authorization": "Bearer s"}
        assert settings.mcp_servers["legacy"].connect == "first_use"


def test_every_command_shown_exists() -> None:
    commands = {
        line.split()[2] for block in blocks("sh") for line in block.splitlines() if line.strip()
    }
    assert commands == {"list", "tools", "call", "resources", "prompts", "read"}
    for command in commands:
        result = CliRunner().invoke(app, ["mcp", command, "--help"])
        assert result.exit_code == 0, result.output


def test_the_numbers_the_section_gives_are_the_codes() -> None:
    section = client_section()
    assert connection.BACKOFF_FIRST_SECS == 0.5
    assert connection.BACKOFF_MAX_SECS == 30.0
    assert "after 0.5 s, then 1, 2, 4... up to 30 s" in section
    assert manager.MAX_ATTACHMENT_CHARS == 20_000
    assert "20,000 characters" in section
    assert "cache/mcp/<server>.json" in section
    assert "logs/mcp/<server>.log" in section
