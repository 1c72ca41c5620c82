"""``${VAR}``, ``${VAR:-default}`` and ``$$`` in string values, alone and inside longer strings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promptline.config import load_settings
from promptline.config.interpolation import InterpolationSyntaxError, Unresolved, interpolate
from promptline.core.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("${A}", "alpha"),
        ("x-${A}-y", "x-alpha-y"),
        ("${A}${A}", "alphaalpha"),
        ("${UNSET:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${EMPTY}", ""),
        ("${UNSET:-}", ""),
        ("${A:-fallback}", "alpha"),
        ("${UNSET:-${A}}", "alpha"),
        ("$$", "$"),
        ("$${A}", "${A}"),
        ("pa$$word", "pa$word"),
        ("$HOME and 5$", "$HOME and 5$"),
    ],
)
def test_interpolate_substitutes_references(text: str, expected: str) -> None:
    assert interpolate(text, {"A": "alpha", "EMPTY": ""}) == expected


@pytest.mark.parametrize(
    ("text", "var"),
    [("${UNSET}", "UNSET"), ("pre-${UNSET}-post", "UNSET"), ("${X:-${Y}}", "Y")],
)
def test_unset_variable_without_default_is_unresolved(text: str, var: str) -> None:
    assert interpolate(text, {}) == Unresolved(var)


@pytest.mark.parametrize("text", ["${", "${A", "${}", "${1X}", "${A-x}", "${A:-x", "${A B}"])
def test_malformed_reference_is_a_syntax_error(text: str) -> None:
    with pytest.raises(InterpolationSyntaxError):
        interpolate(text, {"A": "alpha"})


def test_file_values_are_interpolated_with_defaults_and_escapes(
    write_config: Callable[..., Path],
) -> None:
    path = write_config(
        """
        gateway:
          host: "${HOST:-0.0.0.0}"
          port: ${PORT:-8181}
        models:
          providers:
            local:
              base_url: "http://${OLLAMA_HOST:-localhost}:11434"
              api_key: "pa$$word-${SUFFIX}"
        """
    )

    settings = load_settings(path, environ={"SUFFIX": "42"})

    assert settings.gateway.host == "0.0.0.0"
    assert settings.gateway.port == 8181
    assert settings.models.providers["local"].base_url == "http://localhost:11434"
    assert settings.models.providers["local"].api_key == "pa$word-42"


def test_unset_variable_inside_a_longer_string_leaves_the_key_empty(
    write_config: Callable[..., Path],
) -> None:
    path = write_config('state:\n  postgres_url: "postgresql://app:${DB_PASSWORD}@db/pl"\n')

    settings = load_settings(path, environ={})

    assert settings.state.postgres_url is None
    assert settings.unresolved == {"state.postgres_url": "DB_PASSWORD"}


def test_unset_variable_in_a_key_that_cannot_be_empty_is_an_error(
    write_config: Callable[..., Path],
) -> None:
    path = write_config("gateway:\n  host: ${BIND_HOST}\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})

    assert (
        f"{path}:2: gateway.host: needs environment variable BIND_HOST, which is not set"
        in caught.value.message
    )


def test_malformed_reference_in_a_file_names_file_line_and_key(
    write_config: Callable[..., Path],
) -> None:
    path = write_config("gateway:\n  host: 'x'\nmodels:\n  default: '${MODEL'\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})

    assert caught.value.message.startswith(f"{path}:4: models.default: unterminated '${{'")


def test_malformed_reference_in_a_secret_does_not_echo_it(
    write_config: Callable[..., Path],
) -> None:
    path = write_config("models:\n  providers:\n    x:\n      api_key: 's3cr${t'\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})

    assert "models.providers.x.api_key" in caught.value.message
    assert "s3cr" not in str(caught.value)


def test_keys_are_not_interpolated(write_config: Callable[..., Path]) -> None:
    path = write_config("tools:\n  ${TOOL}: allow\n")

    settings = load_settings(path, environ={"TOOL": "shell"})

    assert settings.tools == {"${TOOL}": "allow"}


@given(st.text())
def test_escaping_every_dollar_gives_the_text_back(text: str) -> None:
    assert interpolate(text.replace("$", "$$"), {}) == text


@given(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True), st.text())
def test_any_variable_value_is_substituted_verbatim(name: str, value: str) -> None:
    # The value is not interpolated again, whatever it contains.
    assert interpolate(f"<${{{name}}}>", {name: value}) == f"<{value}>"
