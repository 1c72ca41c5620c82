"""The brief's configuration example loads as written, with and without its variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptline.config import Settings, load_settings, render_settings
from promptline.core.errors import ConfigError
from promptline.runtime import Agent, agents_from_settings

SEED_VARS = {
    "OPENAI_API_KEY": "sk-openai",
    "KIMI_API_KEY": "sk-kimi",
    "DEEPSEEK_API_KEY": "sk-deepseek",
    "SLACK_BOT_TOKEN": "xoxb-slack",
    "DISCORD_BOT_TOKEN": "discord-token",
    "DATABASE_URL": "postgresql://app:pw@db:5432/promptline",
    "REDIS_URL": "redis://cache:6379/0",
}


def test_seed_fixture_is_the_brief_example_ending_with_a_newline(seed_config: Path) -> None:
    text = seed_config.read_bytes()
    assert text.startswith(b"# ~/.promptline/config.yaml\n\ngateway:\n")
    assert text.endswith(b"  stream_enabled: true\n")


def test_seed_loads_with_its_variables_unset_and_names_them(seed_config: Path) -> None:
    settings = load_settings(seed_config, environ={})

    assert dict(settings.unresolved) == {
        "models.providers.openai.api_key": "OPENAI_API_KEY",
        "models.providers.kimi.api_key": "KIMI_API_KEY",
        "models.providers.deepseek.api_key": "DEEPSEEK_API_KEY",
        "channels.slack.bot_token": "SLACK_BOT_TOKEN",
        "channels.discord.bot_token": "DISCORD_BOT_TOKEN",
        "state.postgres_url": "DATABASE_URL",
        "state.redis_url": "REDIS_URL",
    }
    assert settings.models.providers["openai"].api_key is None
    assert settings.state.postgres_url is None
    assert settings.sources == (seed_config.absolute(),)


def test_seed_values_match_the_example(seed_config: Path) -> None:
    settings = load_settings(seed_config, environ={})

    assert settings.gateway.host == "0.0.0.0"
    assert (settings.gateway.port, settings.gateway.websocket_port) == (8080, 8081)
    assert settings.models.default == "gpt-4"
    assert list(settings.models.providers) == ["openai", "kimi", "deepseek", "ollama"]
    assert settings.models.providers["openai"].models == ["gpt-4", "gpt-3.5-turbo"]
    assert settings.models.providers["ollama"].base_url == "http://localhost:11434"
    assert settings.channels.http.port == 8080
    assert settings.channels.websocket.port == 8081
    assert settings.channels.slack.enabled is False
    assert settings.state.backend == "sqlite"
    assert settings.state.sqlite_path == Path("~/.promptline/state.db").expanduser()
    assert settings.tools["file_read"] == "allow"
    assert settings.tools["file_delete"] == "deny"
    assert len(settings.tools) == 8
    assert settings.security.resource_limits.timeout_secs == 300
    assert settings.security.audit_log is True
    assert settings.agent.default_mode == "plan"
    assert settings.agent.max_iterations == 20
    assert settings.agent.use_chain_of_thought is True
    assert settings.agent.stream_enabled is True


def test_the_seed_s_agent_plans_and_reasons_as_the_example_says_though_the_defaults_do_not(
    seed_config: Path,
) -> None:
    seeded = agents_from_settings(load_settings(seed_config, environ={}))["assistant"]
    plain = Agent(name="assistant")

    assert (seeded.mode, seeded.use_chain_of_thought, seeded.stream) == ("plan", True, True)
    assert (plain.mode, plain.use_chain_of_thought, plain.stream) == ("act", False, True)


def test_require_on_an_unresolved_key_names_the_variable(seed_config: Path) -> None:
    settings = load_settings(seed_config, environ={})

    with pytest.raises(ConfigError) as caught:
        settings.require("models.providers.openai.api_key")

    assert caught.value.message == (
        "models.providers.openai.api_key needs environment variable OPENAI_API_KEY, "
        "which is not set"
    )
    assert "OPENAI_API_KEY" in (caught.value.hint or "")
    assert caught.value.details["env_var"] == "OPENAI_API_KEY"


def test_seed_loads_with_its_variables_set_and_substitutes_them(seed_config: Path) -> None:
    settings = load_settings(seed_config, environ=SEED_VARS)

    assert settings.unresolved == {}
    assert settings.models.providers["openai"].api_key == "sk-openai"
    assert settings.models.providers["kimi"].api_key == "sk-kimi"
    assert settings.channels.discord.bot_token == "discord-token"
    assert settings.state.postgres_url == "postgresql://app:pw@db:5432/promptline"
    assert settings.state.redis_url == "redis://cache:6379/0"
    assert settings.require("models.providers.deepseek.api_key") == "sk-deepseek"


def test_seed_renders_and_reloads_to_the_same_settings(seed_config: Path, tmp_path: Path) -> None:
    settings = load_settings(seed_config, environ=SEED_VARS)
    copy = tmp_path / "rendered.yaml"
    copy.write_text(render_settings(settings, show_secrets=True), encoding="utf-8")

    again = load_settings(copy, environ={})

    assert isinstance(again, Settings)
    assert again.model_dump() == settings.model_dump()
