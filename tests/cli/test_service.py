"""`promptline service install`: the systemd user unit that runs `promptline serve` for this
home, written (or printed), never installed over a different one without --force."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from promptline.cli.main import app
from promptline.cli.service_cmd import render_unit


def cli(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def unit_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "systemd" / "user" / "promptline.service"


def directives(unit: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_print_shows_the_unit_and_writes_nothing(unit_file: Path, tmp_path: Path) -> None:
    unit = cli("service", "install", "--print").output

    assert not unit_file.exists()
    values = directives(unit)
    assert values["Environment"] == [f"PROMPTLINE_HOME={tmp_path / 'home'}"]
    assert values["Restart"] == ["on-failure"]
    assert values["KillSignal"] == ["SIGTERM"]
    assert values["TimeoutStopSec"] == ["30"]  # 2 x 10 s of agent.shutdown_timeout_secs + 10 s
    assert values["WantedBy"] == ["default.target"]
    command = shlex.split(values["ExecStart"][0])
    assert command[-1] == "serve"
    assert os.access(command[0], os.X_OK)


def test_the_stop_timeout_follows_the_config(unit_file: Path, tmp_path: Path) -> None:
    config = tmp_path / "elsewhere.yaml"
    config.write_text(
        "agent:\n  shutdown_timeout_secs: 20\n"
        "profiles:\n  prod:\n    agent:\n      shutdown_timeout_secs: 45\n"
    )

    values = directives(
        cli("--config", str(config), "-p", "prod", "service", "install", "--print").output
    )

    assert values["TimeoutStopSec"] == ["100"]
    assert shlex.split(values["ExecStart"][0])[-3:] == ["--config", str(config), "serve"]
    assert "PROMPTLINE_PROFILE=prod" in values["Environment"]


def test_install_writes_the_unit_and_prints_the_systemctl_commands(unit_file: Path) -> None:
    result = cli("service", "install")

    assert f"wrote {unit_file}" in result.output
    assert "systemctl --user daemon-reload" in result.output
    assert "systemctl --user enable --now promptline.service" in result.output
    assert unit_file.read_text() == cli("service", "install", "--print").output
    assert "wrote" in cli("service", "install").output  # the same unit again: fine


def test_a_different_unit_is_replaced_only_with_force(unit_file: Path) -> None:
    unit_file.parent.mkdir(parents=True)
    unit_file.write_text("[Service]\nExecStart=/bin/true\n")

    refused = cli("service", "install", code=1)

    assert "differs" in refused.output
    assert unit_file.read_text() == "[Service]\nExecStart=/bin/true\n"
    cli("service", "install", "--force")
    assert "Restart=on-failure" in unit_file.read_text()


def test_paths_with_spaces_and_percent_signs_are_quoted_for_systemd() -> None:
    unit = render_unit(
        command=["/opt/my tools/promptline", "--config", "/etc/100%/c.yaml", "serve"],
        home=Path("/srv/prompt line"),
        profile=None,
        stop_timeout=30,
    )

    values = directives(unit)
    assert values["Environment"] == ['"PROMPTLINE_HOME=/srv/prompt line"']
    assert values["ExecStart"] == ['"/opt/my tools/promptline" --config /etc/100%%/c.yaml serve']
    assert values["WorkingDirectory"] == ["/srv/prompt line"]
