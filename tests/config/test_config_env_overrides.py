"""``PROMPTLINE__SECTION__KEY`` variables: typed values, nested keys, errors naming the variable."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from promptline.config import env_override_name, load_settings
from promptline.core.errors import ConfigError


def test_override_name_joins_upper_cased_keys_with_double_underscores() -> None:
    assert env_override_name(("gateway", "port")) == "PROMPTLINE__GATEWAY__PORT"


def test_values_are_typed_as_yaml_scalars() -> None:
    settings = load_settings(
        environ={
            "PROMPTLINE__GATEWAY__PORT": "9000",
            "PROMPTLINE__SECURITY__AUDIT_LOG": "false",
            "PROMPTLINE__AGENT__STREAM_ENABLED": "false",
            "PROMPTLINE__MODELS__PROVIDERS__OPENAI__MODELS": "[gpt-4o, o3]",
        }
    )

    assert settings.gateway.port == 9000
    assert settings.security.audit_log is False
    assert settings.agent.stream_enabled is False
    assert settings.models.providers["openai"].models == ["gpt-4o", "o3"]


def test_nested_keys_reach_into_mappings_and_keep_sibling_values(
    write_config: Callable[..., Path],
) -> None:
    path = write_config(
        """
        models:
          providers:
            openai:
              api_key: from-file
              models: [gpt-4]
        security:
          resource_limits:
            cpu_percent: 50
        """
    )
    env = {
        "PROMPTLINE__MODELS__PROVIDERS__OPENAI__API_KEY": "from-env",
        "PROMPTLINE__SECURITY__RESOURCE_LIMITS__MEMORY_MB": "2048",
    }

    settings = load_settings(path, environ=env)

    assert settings.models.providers["openai"].api_key == "from-env"
    assert settings.models.providers["openai"].models == ["gpt-4"]
    assert settings.security.resource_limits.memory_mb == 2048
    assert settings.security.resource_limits.cpu_percent == 50


def test_text_keys_keep_the_value_verbatim() -> None:
    # As YAML these would be an int, a bool and null; the keys hold text, so they stay text.
    settings = load_settings(
        environ={
            "PROMPTLINE__MODELS__PROVIDERS__X__API_KEY": "0123",
            "PROMPTLINE__GATEWAY__HOST": "no",
            "PROMPTLINE__MODELS__DEFAULT": "null",
        }
    )

    assert settings.models.providers["x"].api_key == "0123"
    assert settings.gateway.host == "no"
    assert settings.models.default == "null"


def test_override_beats_an_unresolved_file_value(write_config: Callable[..., Path]) -> None:
    path = write_config("state:\n  redis_url: ${REDIS_URL}\n")

    settings = load_settings(path, environ={"PROMPTLINE__STATE__REDIS_URL": "redis://r:6379/1"})

    assert settings.state.redis_url == "redis://r:6379/1"
    assert settings.unresolved == {}


def test_override_values_are_not_interpolated() -> None:
    settings = load_settings(environ={"PROMPTLINE__MODELS__PROVIDERS__X__API_KEY": "pa${ss}"})

    assert settings.models.providers["x"].api_key == "pa${ss}"


def test_tool_permissions_can_be_overridden() -> None:
    settings = load_settings(environ={"PROMPTLINE__TOOLS__SHELL_EXECUTE": "deny"})

    assert settings.tools == {"shell_execute": "deny"}


def test_unknown_key_names_the_variable_and_suggests_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"PROMPTLINE__GATWAY__PORT": "9000"})

    assert caught.value.message.startswith(
        "environment variable PROMPTLINE__GATWAY__PORT: gatway: unknown key 'gatway' "
        "(did you mean 'gateway'?)"
    )


def test_wrong_type_names_the_variable_and_the_allowed_range() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"PROMPTLINE__GATEWAY__PORT": "99999"})

    assert caught.value.message == (
        "environment variable PROMPTLINE__GATEWAY__PORT: gateway.port: expected an integer "
        "between 1 and 65535, got 99999"
    )


def test_empty_level_in_a_variable_name_is_an_error() -> None:
    with pytest.raises(ConfigError, match="PROMPTLINE__GATEWAY____PORT: has an empty key"):
        load_settings(environ={"PROMPTLINE__GATEWAY____PORT": "1"})


def test_two_variables_setting_the_same_place_conflict() -> None:
    env = {"PROMPTLINE__GATEWAY": "{port: 1}", "PROMPTLINE__GATEWAY__PORT": "2"}

    with pytest.raises(ConfigError) as caught:
        load_settings(environ=env)

    assert "PROMPTLINE__GATEWAY__PORT: gateway.port: conflicts with PROMPTLINE__GATEWAY" in str(
        caught.value
    )


def test_whole_section_can_be_given_as_a_yaml_mapping() -> None:
    settings = load_settings(environ={"PROMPTLINE__GATEWAY": "{host: 0.0.0.0, port: 81}"})

    assert (settings.gateway.host, settings.gateway.port) == ("0.0.0.0", 81)


def test_other_promptline_variables_are_not_overrides(home: Path) -> None:
    settings = load_settings(environ={"PROMPTLINE_HOME": str(home), "PROMPTLINE_DEBUG": "1"})

    assert settings.gateway.port == 8080
