"""`promptline init`: the config it writes validates, keys are written as ${VAR} references,
each provider is tried once (a failure is reported, the setup goes on), nothing is overwritten
without --force; through flags and through the prompts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from promptline.cli.main import app
from promptline.config import load_settings, validate_config


def cli(*args: str, code: int = 0, prompts: str | None = None) -> Result:
    env = {"OPENAI_API_KEY": None, "MY_KEY": None}
    result = CliRunner().invoke(app, list(args), input=prompts, env=env, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return tmp_path / "home" / "config.yaml"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_non_interactive_init_writes_a_commented_config_that_validates(config: Path) -> None:
    result = cli(
        "init",
        "--non-interactive",
        "--provider",
        "openai",
        "--api-key-env",
        "OPENAI_API_KEY",
        "--model",
        "gpt-4o-mini,gpt-4o",
        "--skip-test",
    )

    assert f"wrote {config}" in result.output
    assert "export OPENAI_API_KEY=" in result.output
    text = config.read_text()
    assert text.startswith("# PromptLine configuration")
    assert 'api_key: "${OPENAI_API_KEY}"' in text
    assert config.stat().st_mode & 0o777 == 0o600
    assert validate_config(config) == []
    settings = load_settings(config)
    assert settings.models.default == "openai/gpt-4o-mini"
    assert settings.models.providers["openai"].models == ["gpt-4o-mini", "gpt-4o"]
    assert settings.unresolved == {"models.providers.openai.api_key": "OPENAI_API_KEY"}
    assert settings.gateway.auth is True
    assert settings.channels.websocket.enabled is True


def test_each_provider_is_tried_once_and_a_failure_does_not_stop_init(config: Path) -> None:
    port = closed_port()

    result = cli(
        "init",
        "--non-interactive",
        "--provider",
        "demo",
        "--provider",
        "ollama",
        "--base-url",
        f"ollama=http://127.0.0.1:{port}",
        "--model",
        "ollama=llama3.1",
        "--channel",
        "http",
    )

    assert "testing scripted/demo ... ok, answered in" in result.output
    assert "testing ollama/llama3.1 ... failed: " in result.output
    assert "the setup goes on" in result.output
    settings = load_settings(config)
    assert settings.models.default == "scripted/demo"
    assert settings.models.providers["ollama"].base_url == f"http://127.0.0.1:{port}"
    assert settings.channels.http.enabled is True
    assert settings.channels.cli.enabled is False
    assert settings.channels.websocket.enabled is False


def test_an_unset_key_variable_is_reported_instead_of_tried(config: Path) -> None:
    result = cli("init", "--non-interactive", "--provider", "openai")

    assert "OPENAI_API_KEY is not set in this shell" in result.output
    assert 'api_key: "${OPENAI_API_KEY}"' in config.read_text()


def test_init_refuses_to_overwrite_a_config_unless_forced(config: Path) -> None:
    config.parent.mkdir(parents=True)
    config.write_text("gateway:\n  port: 9000\n")

    refused = cli("init", "--non-interactive", "--skip-test", code=1)

    assert "exists already" in refused.output
    assert "--force" in refused.output
    assert config.read_text() == "gateway:\n  port: 9000\n"
    cli("init", "--non-interactive", "--skip-test", "--force", "--port", "9100")
    assert load_settings(config).gateway.port == 9100
    assert config.with_name("config.yaml.bak").read_text() == "gateway:\n  port: 9000\n"


def test_a_pasted_key_is_written_only_when_given_as_a_key(config: Path) -> None:
    cli(
        "init",
        "--non-interactive",
        "--skip-test",
        "--provider",
        "compatible",
        "--compatible-name",
        "gpu-box",
        "--base-url",
        "http://10.0.0.5:8000/v1",
        "--model",
        "qwen2.5-7b",
        "--api-key",
        "sk-pasted",
    )

    settings = load_settings(config)
    assert settings.models.providers["gpu-box"].api_key == "sk-pasted"
    assert settings.models.default == "gpu-box/qwen2.5-7b"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--provider", "openai", "--provider", "demo", "--model", "x"], "PROVIDER=VALUE"),
        (["--provider", "compatible", "--model", "m"], "needs its URL"),
        (["--provider", "openai", "--api-key", "k", "--api-key-env", "V"], "not both"),
        (["--provider", "demo", "--default-model", "openai/gpt-4o"], "not one of the models"),
    ],
)
def test_flags_that_do_not_add_up_are_usage_errors(
    config: Path, args: list[str], message: str
) -> None:
    result = cli("init", "--non-interactive", "--skip-test", *args, code=2)

    assert message in result.output
    assert not config.exists()


def test_interactive_init_asks_tests_and_writes(config: Path) -> None:
    port = closed_port()
    answers = [
        "openai, 8, 7",  # providers, by name and by number
        "",  # openai: key from an environment variable (the default)
        "MY_KEY",  # ...named MY_KEY
        "",  # models: the default gpt-4o-mini
        "lab",  # the compatible one's name
        "not a url",  # refused, asked again
        f"http://127.0.0.1:{port}/v1",
        "y",  # it needs a key
        "paste",
        "sk-typed-in",
        "m1, m2",
        "scripted/demo",  # the default model
        "y",  # cli
        "y",  # http
        "n",  # websocket
        "8181",  # the port
    ]

    result = cli("init", prompts="\n".join(answers) + "\n")

    out = result.output
    assert "MY_KEY is not set in this shell" in out
    assert "give an http:// or https:// URL" in out
    assert "testing openai/gpt-4o-mini ... failed: not tested: MY_KEY is not set" in out
    assert "testing scripted/demo ... ok" in out
    assert "testing lab/m1 ... failed" in out
    assert "sk-typed-in" not in out  # typed without echo
    assert validate_config(config) == []
    settings = load_settings(config)
    assert settings.models.default == "scripted/demo"
    assert settings.unresolved["models.providers.openai.api_key"] == "MY_KEY"
    assert settings.models.providers["lab"].api_key == "sk-typed-in"
    assert settings.models.providers["lab"].models == ["m1", "m2"]
    assert settings.channels.websocket.enabled is False
    assert settings.gateway.port == 8181


def test_interactive_init_refuses_before_asking_anything(config: Path) -> None:
    config.parent.mkdir(parents=True)
    config.write_text("{}\n")

    result = cli("init", code=1, prompts="openai\n")

    assert "Model providers" not in result.output
    assert "exists already" in result.output
