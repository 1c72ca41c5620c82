"""`promptline doctor` says which sandbox commands run in and why, per agent that chooses its
own, and fails when a configured bubblewrap cannot run here."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from promptline.cli.main import app
from promptline.security.sandbox import choice

MISSING = "bwrap is not installed (apt-get install bubblewrap)"


def doctor(tmp_path: Path, config: str) -> Result:
    path = tmp_path / "config.yaml"
    path.write_text(config, encoding="utf-8")
    return CliRunner().invoke(app, ["--config", str(path), "doctor"], catch_exceptions=False)


def test_auto_without_bwrap_is_the_process_sandbox_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(choice, "bwrap_problem", lambda: MISSING)

    result = doctor(tmp_path, "agents:\n  strict:\n    sandbox: none\n")

    out = result.output.splitlines()
    assert f"✓ sandbox: process (auto: {MISSING}, so process)" in out
    assert "✓ sandbox (agent strict): none (configured)" in out
    assert result.exit_code == 0


def test_auto_with_a_working_bwrap_is_bubblewrap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(choice, "bwrap_problem", lambda: None)

    result = doctor(tmp_path, "security:\n  sandbox: auto\n")

    assert "✓ sandbox: bubblewrap (auto: bwrap is installed and works)" in result.output


def test_bubblewrap_configured_where_it_cannot_run_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(choice, "bwrap_problem", lambda: MISSING)

    result = doctor(tmp_path, "security:\n  sandbox: bubblewrap\n")

    assert f"✗ sandbox: bubblewrap is configured but cannot run: {MISSING}" in result.output
    assert result.exit_code == 1


def test_docker_configured_without_an_engine_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(choice, "docker_problem", lambda: "the Docker engine does not answer")

    result = doctor(tmp_path, "agents:\n  boxed:\n    sandbox: docker\n")

    assert (
        "✗ sandbox (agent boxed): docker is configured but cannot run: the Docker engine does "
        "not answer" in result.output
    )
    assert result.exit_code == 1


def test_a_host_network_for_sandboxed_commands_is_flagged_unsafe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(choice, "bwrap_problem", lambda: None)

    result = doctor(tmp_path, "security:\n  sandbox: bubblewrap\n  sandbox_network: host\n")

    assert "! sandbox network: security.sandbox_network is host:" in result.output
    assert "169.254.169.254" in result.output
    assert "set security.sandbox_network: proxy" in result.output


def test_the_proxy_network_is_said_and_refused_for_docker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(choice, "bwrap_problem", lambda: None)
    monkeypatch.setattr(choice, "docker_problem", lambda: None)

    result = doctor(
        tmp_path,
        "security:\n  sandbox: bubblewrap\n  sandbox_network: true\n"
        "agents:\n  boxed:\n    sandbox: docker\n",
    )

    out = result.output.splitlines()
    assert "✓ sandbox: bubblewrap (configured)" in out
    assert any(line.startswith("✓ sandbox network: proxy: HTTP and HTTPS") for line in out)
    assert any(
        line.startswith("✗ sandbox (agent boxed): the docker sandbox cannot put its commands")
        for line in out
    )
    assert result.exit_code == 1


def test_a_network_setting_the_process_sandbox_does_not_apply_is_flagged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(choice, "bwrap_problem", lambda: MISSING)

    result = doctor(tmp_path, "security:\n  sandbox_network: proxy\n")

    assert (
        "! sandbox network: security.sandbox_network is proxy, but commands run in the "
        "process sandbox, which does not contain the network" in " ".join(result.output.split())
    )


CHANNELS = "security:\n  sandbox_channels:\n    slack: docker\n    web: process\n"


def test_the_channel_table_is_reported_and_a_docker_channel_without_an_engine_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(choice, "docker_problem", lambda: "the Docker engine does not answer")

    result = doctor(tmp_path, CHANNELS)

    out = result.output.splitlines()
    assert "✓ sandbox (channel web): at least process (configured)" in out
    assert (
        "✗ sandbox (channel slack): docker is configured but cannot run: the Docker engine "
        "does not answer" in out
    )
    assert "the commands of the channel's sessions are refused meanwhile" in result.output
    assert result.exit_code == 1


def test_config_validate_shows_the_channel_table_and_warns_of_a_channel_that_cannot_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(choice, "docker_problem", lambda: "the Docker engine does not answer")
    path = tmp_path / "config.yaml"
    path.write_text(CHANNELS, encoding="utf-8")

    result = CliRunner().invoke(app, ["config", "validate", str(path)], catch_exceptions=False)

    assert result.exit_code == 0  # the file is valid; this machine lacks the engine
    assert "sandbox (channel web): at least process (configured)" in result.output
    assert (
        "warning: sandbox (channel slack): docker is configured but cannot run: the Docker "
        "engine does not answer" in " ".join(result.output.split())
    )


def test_a_channel_table_key_that_is_not_a_channel_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("security:\n  sandbox_channels:\n    'slack team': docker\n")

    result = CliRunner().invoke(app, ["config", "validate", str(path)], catch_exceptions=False)

    assert result.exit_code == 1
    assert "is not a channel name" in " ".join(result.output.split())
