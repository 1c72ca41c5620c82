"""Bad configuration is reported with the file, the key path, the line and what is allowed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from promptline.config import load_settings
from promptline.core.errors import ConfigError

Write = Callable[..., Path]


def problems(path: Path, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=environ or {})
    return caught.value


def test_corrupt_yaml_names_file_line_and_column(write_config: Write) -> None:
    path = write_config("gateway:\n  host: a: b\n")

    error = problems(path)

    assert error.message.startswith(f"{path}:2:10: invalid YAML: mapping values are not allowed")
    assert error.details["errors"][0]["line"] == 2
    assert error.details["errors"][0]["column"] == 10


def test_unclosed_bracket_is_reported_where_the_parser_stopped(write_config: Write) -> None:
    path = write_config("models:\n  providers:\n    x:\n      models: [a, b\nagent: {}\n")

    assert f"{path}:5:" in problems(path).message


@pytest.mark.parametrize(("text", "got"), [("- a\n- b\n", "got a list"), ("hello\n", "'hello'")])
def test_top_level_must_be_a_mapping(write_config: Write, text: str, got: str) -> None:
    path = write_config(text)

    error = problems(path)

    assert error.message.startswith(f"{path}:1: the top level must be a mapping of sections")
    assert got in error.message


def test_not_utf8_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"gateway:\n  host: \xff\xfe\n")

    assert problems(path).message.startswith(f"{path}: is not UTF-8 text")


def test_wrong_type_says_what_is_expected_and_what_was_given(write_config: Write) -> None:
    path = write_config("gateway:\n  port: abc\n")

    assert problems(path).message == (
        f"{path}:2: gateway.port: expected an integer between 1 and 65535, got 'abc'"
    )


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("gateway:\n  port: 0\n", "gateway.port: expected an integer between 1 and 65535, got 0"),
        ("gateway:\n  port: true\n", "gateway.port: expected an integer between 1 and 65535"),
        ("gateway:\n  port: 80.5\n", "got 80.5"),
        (
            "gateway: 5\n",
            "gateway: expected a mapping with the keys host, port, websocket_port, auth",
        ),
        ("gateway:\n  host: 5\n", "expected a string, got 5; put quotes around it"),
        ("channels:\n  cli:\n    enabled: maybe\n", "enabled: expected true or false"),
        ("security:\n  resource_limits:\n    cpu_percent: 101\n", "between 1 and 100, got 101"),
        ("sessions:\n  ttl_secs: -1\n", "sessions.ttl_secs: expected a positive integer"),
        ("events:\n  subscriber_queue: 0\n", "expected a positive integer, got 0"),
        ("agent:\n  max_iterations: many\n", "expected a positive integer, got 'many'"),
        ("tools: [file_read]\n", "tools: expected a mapping of names to one of 'allow'"),
        (
            "models:\n  providers:\n    x:\n      models: gpt-4\n",
            "models.providers.x.models: expected a list of strings, got 'gpt-4'",
        ),
        (
            "models:\n  providers:\n    x:\n      base_url: localhost:11434\n",
            "base_url: must be an http:// or https:// URL",
        ),
        (
            "channels:\n  wecom:\n    encoding_aes_key: short\n",
            "channels.wecom.encoding_aes_key: must be exactly 43 characters",
        ),
    ],
)
def test_bad_values_name_the_key_and_the_allowed_values(
    write_config: Write, yaml_text: str, message: str
) -> None:
    path = write_config(yaml_text)

    error = problems(path)

    assert message in error.message
    assert error.message.startswith(f"{path}:")


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (
            "state:\n  backend: postgresql\n",
            "state.backend: expected one of 'file', 'sqlite', 'postgres', 'redis', "
            "got 'postgresql' (did you mean 'postgres'?)",
        ),
        ("tools:\n  shell_execute: allways\n", "got 'allways' (did you mean 'allow'?)"),
        ("agent:\n  default_mode: acting\n", "one of 'plan', 'act', got 'acting'"),
    ],
)
def test_bad_enum_value_lists_the_allowed_ones(
    write_config: Write, yaml_text: str, message: str
) -> None:
    assert message in problems(write_config(yaml_text)).message


def test_unknown_key_suggests_the_closest_one(write_config: Write) -> None:
    path = write_config("gatway:\n  port: 1\n")

    message = problems(path).message

    assert message.startswith(f"{path}:1: gatway: unknown key 'gatway' (did you mean 'gateway'?)")
    assert "allowed here: gateway, models, channels, state, tools" in message


def test_unknown_nested_key_names_the_full_path(write_config: Write) -> None:
    path = write_config("models:\n  providers:\n    openai:\n      apikey: x\n")

    assert problems(path).message.startswith(
        f"{path}:4: models.providers.openai.apikey: unknown key 'apikey' (did you mean 'api_key'?)"
    )


def test_unknown_channel_lists_the_known_channels(write_config: Write) -> None:
    message = problems(write_config("channels:\n  whatsapp:\n    enabled: true\n")).message

    assert "channels.whatsapp: unknown key 'whatsapp'" in message
    assert "allowed here: cli, http, websocket, slack, discord, telegram, wecom" in message


def test_duplicate_key_is_an_error_naming_both_lines(write_config: Write) -> None:
    path = write_config("gateway:\n  port: 1\n  host: x\n  port: 2\n")

    assert problems(path).message == (
        f"{path}:4: gateway.port: duplicate key (first written at line 2); "
        "YAML would silently keep only the last one"
    )


def test_all_problems_are_reported_at_once_in_line_order(write_config: Write) -> None:
    path = write_config(
        """
        gateway:
          port: abc
        agent:
          default_mode: fast
        gatway: {}
        """
    )

    error = problems(path)

    assert error.message.splitlines() == [
        "3 problems in the configuration:",
        f"  - {path}:2: gateway.port: expected an integer between 1 and 65535, got 'abc'",
        f"  - {path}:4: agent.default_mode: expected one of 'plan', 'act', got 'fast'",
        f"  - {path}:5: gatway: unknown key 'gatway' (did you mean 'gateway'?); allowed here: "
        "gateway, models, channels, state, tools, security, quotas, permissions, agent, agents, "
        "sessions, "
        "events, logging, mcp_servers, mcp_server, skills, plugins, catalogue",
    ]
    assert str(path) in (error.hint or "")
    assert [e["key"] for e in error.details["errors"]] == [
        "gateway.port",
        "agent.default_mode",
        "gatway",
    ]


def test_long_lists_of_problems_are_cut_after_ten(write_config: Write) -> None:
    path = write_config("tools:\n" + "".join(f"  t{i}: nope\n" for i in range(14)))

    error = problems(path)

    assert error.message.startswith("14 problems in the configuration:")
    assert "... and 4 more" in error.message
    assert len(error.details["errors"]) == 14


def test_errors_from_file_and_environment_are_reported_together(write_config: Write) -> None:
    path = write_config("gateway:\n  port: abc\n")

    error = problems(path, {"PROMPTLINE__AGENT__MAX_ITERATIONS": "zero"})

    assert error.message.splitlines()[1:] == [
        f"  - {path}:2: gateway.port: expected an integer between 1 and 65535, got 'abc'",
        "  - environment variable PROMPTLINE__AGENT__MAX_ITERATIONS: agent.max_iterations: "
        "expected a positive integer, got 'zero'",
    ]


def test_secret_values_are_never_echoed_in_errors(write_config: Write) -> None:
    path = write_config("channels:\n  slack:\n    bot_token: 123456789\n")

    message = problems(path).message

    assert "channels.slack.bot_token: expected a string, got a value of type int" in message
    assert "123456789" not in message


def test_postgres_backend_needs_a_url(write_config: Write) -> None:
    path = write_config("state:\n  backend: postgres\n")

    assert problems(path).message == (
        f"{path}:2: state.postgres_url: must be set when state.backend is 'postgres' "
        "(or set state.database_url)"
    )


def test_redis_backend_needs_a_url(write_config: Write) -> None:
    message = problems(write_config("state:\n  backend: redis\n")).message

    assert "state.redis_url: must be set when state.backend is 'redis'" in message


def test_a_channel_that_is_off_with_an_unset_variable_still_loads(write_config: Write) -> None:
    path = write_config(
        "channels:\n  slack:\n    enabled: false\n    bot_token: ${SLACK_BOT_TOKEN}\n"
    )

    settings = load_settings(path, environ={})

    assert settings.channels.slack.enabled is False
    assert settings.unresolved == {"channels.slack.bot_token": "SLACK_BOT_TOKEN"}
    with pytest.raises(ConfigError, match="needs environment variable SLACK_BOT_TOKEN"):
        settings.require("channels.slack.bot_token")


def test_unsafe_yaml_tags_are_refused(write_config: Write) -> None:
    path = write_config("gateway:\n  host: !!python/object/apply:os.getcwd []\n")

    assert f"{path}:2: gateway.host: unsupported YAML tag" in problems(path).message


def test_a_failed_load_leaves_the_file_untouched(write_config: Write) -> None:
    text = "gateway:\n  port: abc\n"
    path = write_config(text)

    problems(path)

    assert path.read_text() == text


def test_unsafe_yaml_tags_on_scalars_are_refused(write_config: Write) -> None:
    path = write_config("gateway:\n  host: !!python/name:os.getcwd ''\n")

    assert "invalid YAML: could not determine a constructor" in problems(path).message


def test_a_missing_file_or_profile_is_not_blamed_on_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        load_settings(tmp_path / "nope.yaml", environ={})
    with pytest.raises(ConfigError) as profile:
        load_settings(None, environ={"PROMPTLINE_HOME": str(tmp_path)}, profile="nosuch")

    for error in (missing.value, profile.value):
        assert "keys named above" not in (error.hint or "")
        assert "docs/configuration.md" in (error.hint or "")
