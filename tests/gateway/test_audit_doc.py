"""docs/audit.md stays true: its commands run, its config loads, its tables name what the
code has."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from test_audit_report import audit_settings, scenario
from webhook_support import WebhookServer

from promptline.cli.main import app as cli
from promptline.config import load_settings
from promptline.config.settings import DEFAULT_SENSITIVE
from promptline.security.report import SECTIONS

DOC = Path(__file__).parents[2] / "docs" / "audit.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_every_command_of_the_page_runs_on_a_recorded_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    home = Path(str(tmp_path / "home"))
    with WebhookServer() as hook:
        asyncio.run(scenario(audit_settings(home, sqlite_url, hook.url)))
    monkeypatch.chdir(tmp_path)
    commands = [line for block in blocks("bash") for line in block.splitlines() if line]
    assert len(commands) == 3
    for command in commands:
        args = shlex.split(command)
        assert args[:3] == ["promptline", "audit", "report"]
        # The page's example period is January 2026; the scenario ran now.
        args = [a for a in args if not a.startswith("2026-")]
        args = [a for a in args if a not in ("--from", "--to")]
        result = CliRunner().invoke(cli, args[1:], catch_exceptions=False)
        assert result.exit_code == 0, (command, result.output)

    assert "## Approvals (2)" in (tmp_path / "report.md").read_text(encoding="utf-8")
    assert len(json.loads((tmp_path / "audit.json").read_text(encoding="utf-8"))["approvals"]) == 2


def test_the_config_example_loads_with_the_defaults_it_shows(tmp_path: Path) -> None:
    [example] = blocks("yaml")
    config = tmp_path / "config.yaml"
    config.write_text(example, encoding="utf-8")

    settings = load_settings(config, environ={"ALERT_WEBHOOK_URL": "https://hooks.example/x"})

    alerts = settings.security.alerts
    assert alerts.sensitive == DEFAULT_SENSITIVE
    assert alerts.webhook_url == "https://hooks.example/x"
    shown = yaml.safe_load(example)["security"]["alerts"]
    defaults = type(alerts)()
    assert shown["auth_failures_per_minute"] == defaults.auth_failures_per_minute
    assert shown["webhook_timeout_secs"] == defaults.webhook_timeout_secs
    assert shown["webhook_retries"] == defaults.webhook_retries


def test_the_sections_table_names_every_section_and_its_columns() -> None:
    text = DOC.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z_]+)` \| .* \| ([a-z_, ]+) \|$", text, flags=re.M)
    assert {name: cols.split(", ") for name, cols in rows} == {
        name: columns for name, (_, columns, _) in SECTIONS.items()
    }


def test_the_default_sensitive_list_is_the_one_the_page_gives() -> None:
    text = " ".join(DOC.read_text(encoding="utf-8").split())
    named = ", ".join(f"`{n}`" for n in DEFAULT_SENSITIVE[:-1])
    assert f"{named} and `{DEFAULT_SENSITIVE[-1]}`" in text
