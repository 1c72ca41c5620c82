"""The client section of docs/mcp.md: its configuration examples load, the commands it shows
exist, and the behaviour it promises is the code's (backoff, attachment size, cache place, the
names and codes of what a server may ask). The behaviour of sampling, elicitation, roots and
task tools is pinned by test_mcp_client_requests.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from promptline.cli.main import app
from promptline.config import load_settings
from promptline.security.approvals import is_question
from promptline.security.policy import PermissionPolicy
from promptline.tools.mcp import connection, elicitation_rule, host, manager, sampling_rule

DOC = Path(__file__).parents[3] / "docs" / "mcp.md"


def client_section() -> str:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("\n## Using MCP servers\n", 1)[1]
    return section.split("\n## PromptLine as an MCP server\n", 1)[0]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", client_section(), re.S)


@pytest.mark.parametrize("index", range(4))
def test_each_yaml_example_is_a_valid_configuration(tmp_path: Path, index: int) -> None:
    yaml_blocks = blocks("yaml")
    assert len(yaml_blocks) == 4
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
        assert settings.security.egress_allow == ["127.0.0.1"]
    if index == 3:
        policy = PermissionPolicy(settings)
        assert policy.decide(sampling_rule("search")).mode == "allow"
        assert policy.decide(sampling_rule("shell")).mode == "deny"
        assert policy.decide("mcp.search.fetch").mode == "allow"


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


def test_the_names_and_codes_the_section_gives_are_the_codes() -> None:
    section = client_section()
    assert sampling_rule("search") == "mcp.search:sampling"
    assert elicitation_rule("search") == "mcp.search:elicitation"
    assert is_question(elicitation_rule("search"))
    assert not is_question(sampling_rule("search"))
    assert "`mcp.<server>:sampling`" in section
    assert "`mcp.<server>:elicitation`" in section
    assert host.SAMPLING_TASK == "mcp_sampling"
    assert "`params.task` is `mcp_sampling`" in section
    assert host.REFUSED == -1
    assert "(code -1)" in section


def test_a_sampling_request_with_no_rule_asks_as_the_section_says(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("tools:\n  mcp.search.*: allow\n", encoding="utf-8")
    settings = load_settings(path, environ={"PROMPTLINE_HOME": str(tmp_path)})
    policy = PermissionPolicy(settings)
    assert policy.decide(sampling_rule("search")).mode == "ask"  # not covered by mcp.search.*
    path.write_text("security:\n  require_approval: false\n", encoding="utf-8")
    relaxed = load_settings(path, environ={"PROMPTLINE_HOME": str(tmp_path)})
    assert PermissionPolicy(relaxed).decide(sampling_rule("search")).mode == "allow"
