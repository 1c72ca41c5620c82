"""`promptline doctor` calls every configured model provider and MCP server: "all good" only
when each one answers; one that is silent, refuses the connection, lacks its key or cannot
start is a failure saying what to fix, and so is a default model whose provider fails."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fakes.openai_server import running_fake_openai
from promptline.cli import doctor
from promptline.cli.main import app

MCP_TEST_SERVER = Path(__file__).parents[1] / "tools" / "mcp" / "mcp_test_server.py"


def run_doctor(config: Path, text: str) -> Result:
    config.write_text(text, encoding="utf-8")
    return CliRunner().invoke(app, ["--config", str(config), "doctor"], catch_exceptions=False)


def lines_of(result: Result, name: str) -> str:
    """The line of check ``name`` and its fix line, if any."""
    lines = result.output.splitlines()
    for i, line in enumerate(lines):
        if line[2:].startswith(f"{name}:"):
            fix = lines[i + 1] if i + 1 < len(lines) and "fix:" in lines[i + 1] else ""
            return f"{line}\n{fix}"
    raise AssertionError(f"no check {name!r} in:\n{result.output}")


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose connections are taken (by the kernel's listen queue) and never answered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_doctor_says_all_good_when_the_configured_provider_answers(tmp_path: Path) -> None:
    with running_fake_openai() as fake:
        base_url = fake.base_url
        result = run_doctor(
            tmp_path / "config.yaml",
            f"""
models:
  default: lab/gpt-4o-mini
  providers:
    lab:
      base_url: "{fake.base_url}"
      api_key: "k"
      models: ["gpt-4o-mini"]
""",
        )
        listed = [r.path for r in fake.requests]

    assert result.exit_code == 0, result.output
    assert "all good" in result.output
    found = lines_of(result, "provider lab")
    assert found.startswith(f"✓ provider lab: {base_url} answered in ")
    assert "(2 models)" in found
    assert "✓ default model: lab/gpt-4o-mini" in lines_of(result, "default model")
    assert listed == ["/v1/models"]  # a listing, which costs no tokens


def test_doctor_fails_a_provider_that_takes_the_connection_and_never_answers(
    tmp_path: Path, silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(doctor, "PROVIDER_ANSWER_SECONDS", 0.2)

    result = run_doctor(
        tmp_path / "config.yaml",
        f"""
models:
  providers:
    lab:
      base_url: "http://127.0.0.1:{silent_port}/v1"
      models: ["m"]
""",
    )

    assert result.exit_code == 1
    assert "all good" not in result.output
    found = lines_of(result, "provider lab")
    assert found.startswith(
        f"✗ provider lab: http://127.0.0.1:{silent_port}/v1/models took the connection but did "
        "not answer within 0.2 s"
    )
    assert "models.providers.lab.base_url" in found


def test_doctor_fails_a_refused_provider_once_naming_its_url(tmp_path: Path) -> None:
    port = free_port()

    result = run_doctor(
        tmp_path / "config.yaml",
        f"""
models:
  providers:
    lab:
      base_url: "http://127.0.0.1:{port}/v1"
      models: ["m"]
""",
    )

    assert result.exit_code == 1
    found = lines_of(result, "provider lab")
    assert f"could not connect to http://127.0.0.1:{port}/v1/models: connection refused" in found
    assert result.output.count("connection refused") == 1


def test_doctor_fails_a_provider_without_its_key_and_the_default_model_it_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCTOR_TEST_OPENAI_KEY", raising=False)

    result = run_doctor(
        tmp_path / "config.yaml",
        """
models:
  default: openai/gpt-4o-mini
  providers:
    openai:
      api_key: "${DOCTOR_TEST_OPENAI_KEY}"
      models: ["gpt-4o-mini"]
""",
    )

    assert result.exit_code == 1
    assert "all good" not in result.output
    assert "DOCTOR_TEST_OPENAI_KEY, which is not set" in lines_of(result, "provider openai")
    default = lines_of(result, "default model")
    assert default.startswith("✗ default model: openai/gpt-4o-mini: its provider openai")
    assert "export DOCTOR_TEST_OPENAI_KEY" in default


@pytest.mark.slow  # it starts a real MCP server (a Python process importing the SDK)
def test_doctor_starts_each_mcp_server_and_fails_one_that_cannot_start(tmp_path: Path) -> None:
    result = run_doctor(
        tmp_path / "config.yaml",
        f"""
mcp_servers:
  test:
    command: "{sys.executable}"
    args: ["{MCP_TEST_SERVER}"]
  broken:
    command: "/nowhere/mcp-server"
""",
    )

    assert result.exit_code == 1
    assert lines_of(result, "mcp server test").startswith("✓ mcp server test: stdio, ")
    broken = lines_of(result, "mcp server broken")
    assert broken.startswith("✗ mcp server broken: cannot start '/nowhere/mcp-server'")
    assert "mcp_servers.broken" in broken


def test_doctor_fails_an_mcp_server_the_egress_policy_refuses_and_names_the_rule(
    tmp_path: Path,
) -> None:
    # Refused before any connection: nothing needs to listen at the address.
    result = run_doctor(
        tmp_path / "config.yaml",
        """
mcp_servers:
  docs:
    url: http://127.0.0.1:9/mcp
""",
    )

    assert result.exit_code == 1
    assert lines_of(result, "mcp server docs").startswith(
        "✗ mcp server docs: mcp_servers.docs: http://127.0.0.1:9/mcp is refused: 127.0.0.1 is a "
        'loopback address (this machine); add "127.0.0.1" to security.egress_allow to allow it'
    )


def test_doctor_on_defaults_names_the_offline_model_it_falls_back_to() -> None:
    result = CliRunner().invoke(app, ["doctor"], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert "✓ default model: scripted/demo, offline" in lines_of(result, "default model")
    assert "provider " not in result.output  # none is configured: none is called


def test_doctor_says_where_the_quotas_count_requests_and_runs(tmp_path: Path) -> None:
    quotas = "quotas:\n  user: {requests_per_minute: 30}\n"
    alone = run_doctor(tmp_path / "config.yaml", quotas)
    assert "✓ quotas: per process: requests per minute and concurrent runs are counted in " in (
        lines_of(alone, "quotas")
    )
    assert "quotas:" not in CliRunner().invoke(app, ["doctor"]).output  # none set: no line


def test_doctor_says_a_fleet_on_postgresql_shares_the_quota_counts(
    tmp_path: Path, postgres_url: str
) -> None:
    result = run_doctor(
        tmp_path / "config.yaml",
        f"state:\n  database_url: {postgres_url}\nquotas:\n  tenant: {{concurrent_runs: 5}}\n",
    )

    assert "✓ quotas: shared: requests per minute and concurrent runs are counted in the " in (
        lines_of(result, "quotas")
    )
