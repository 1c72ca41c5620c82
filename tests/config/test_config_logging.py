"""The ``logging:`` section: the gateway log's level and format, with refused values named."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from promptline.config import load_settings
from promptline.core.errors import ConfigError

WriteConfig = Callable[..., Path]


def test_the_gateway_log_defaults_to_info_as_text() -> None:
    settings = load_settings(environ={})

    assert (settings.logging.level, settings.logging.format) == ("info", "text")


def test_level_and_format_are_read_in_any_case_and_from_the_environment(
    write_config: WriteConfig,
) -> None:
    path = write_config("logging:\n  level: DEBUG\n  format: Json\n")

    assert load_settings(path, environ={}).logging.model_dump() == {
        "level": "debug",
        "format": "json",
    }
    overridden = load_settings(path, environ={"PROMPTLINE__LOGGING__LEVEL": "warning"})
    assert overridden.logging.level == "warning"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "logging:\n  level: verbose\n",
            "logging.level: expected one of 'debug', 'info', 'warning', 'error', got 'verbose'",
        ),
        ("logging:\n  format: xml\n", "logging.format: expected one of 'text', 'json', got 'xml'"),
        ("logging:\n  colour: true\n", "logging.colour: unknown key 'colour'"),
    ],
)
def test_a_refused_value_names_the_key_its_line_and_what_is_allowed(
    write_config: WriteConfig, text: str, message: str
) -> None:
    path = write_config(text)

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})

    assert caught.value.message.startswith(f"{path}:2: {message}")
