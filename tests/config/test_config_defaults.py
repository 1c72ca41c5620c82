"""Where the config comes from: nothing, a path, PROMPTLINE_CONFIG, or PROMPTLINE_HOME."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from promptline.config import (
    Settings,
    config_file_path,
    load_settings,
    profile_overlay_path,
    promptline_home,
)
from promptline.core.errors import ConfigError


def test_home_is_promptline_home_variable_or_dot_promptline(tmp_path: Path) -> None:
    assert promptline_home({"PROMPTLINE_HOME": str(tmp_path)}) == tmp_path
    assert promptline_home({}) == Path.home() / ".promptline"


def test_home_expands_tilde() -> None:
    assert promptline_home({"PROMPTLINE_HOME": "~/elsewhere"}) == Path.home() / "elsewhere"


def test_config_path_prefers_argument_then_variable_then_home(tmp_path: Path) -> None:
    env = {"PROMPTLINE_HOME": str(tmp_path / "h"), "PROMPTLINE_CONFIG": str(tmp_path / "e.yaml")}

    assert config_file_path(tmp_path / "a.yaml", env) == (tmp_path / "a.yaml", True)
    assert config_file_path(None, env) == (tmp_path / "e.yaml", True)
    assert config_file_path(None, {"PROMPTLINE_HOME": str(tmp_path / "h")}) == (
        tmp_path / "h" / "config.yaml",
        False,
    )


def test_overlay_sits_beside_the_config_file(tmp_path: Path) -> None:
    assert profile_overlay_path(tmp_path / "config.yaml", "dev") == tmp_path / "config.dev.yaml"
    assert profile_overlay_path(tmp_path / "main.yml", "prod") == tmp_path / "main.prod.yml"


def test_no_config_file_means_local_first_defaults(home: Path) -> None:
    settings = load_settings(environ={"PROMPTLINE_HOME": str(home)})

    assert settings.sources == ()
    assert settings.gateway.host == "127.0.0.1"
    assert settings.gateway.port == 8080
    assert settings.state.backend == "sqlite"
    assert settings.state.sqlite_path == home / "state.db"
    assert settings.state.file_dir == home / "state"
    assert settings.state.auto_migrate is True
    assert settings.database_url() == f"sqlite+aiosqlite:///{home / 'state.db'}"
    assert settings.sessions.ttl_secs == 30 * 24 * 3600
    assert settings.events.subscriber_queue == 1000
    assert settings.channels.cli.enabled is True
    assert settings.channels.slack.enabled is False
    assert settings.tools == {}
    assert settings.models.providers == {}


def test_home_config_yaml_is_read_when_present(home: Path) -> None:
    home.mkdir()
    (home / "config.yaml").write_text("gateway:\n  port: 9100\n", encoding="utf-8")

    settings = load_settings(environ={"PROMPTLINE_HOME": str(home)})

    assert settings.gateway.port == 9100
    assert settings.sources == (home / "config.yaml",)


def test_promptline_config_variable_points_at_another_file(
    write_config: Callable[..., Path], home: Path
) -> None:
    path = write_config("gateway:\n  port: 9200\n", name="elsewhere.yaml")

    settings = load_settings(environ={"PROMPTLINE_HOME": str(home), "PROMPTLINE_CONFIG": str(path)})

    assert settings.gateway.port == 9200


def test_explicit_path_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"

    with pytest.raises(ConfigError) as caught:
        load_settings(missing, environ={})

    assert str(missing) in caught.value.message
    assert "not found" in caught.value.message


def test_empty_file_means_defaults(write_config: Callable[..., Path], home: Path) -> None:
    env = {"PROMPTLINE_HOME": str(home)}
    settings = load_settings(write_config("# nothing yet\n"), environ=env)

    assert settings.model_dump() == load_settings(environ=env).model_dump()


def test_empty_section_keeps_its_defaults(write_config: Callable[..., Path]) -> None:
    path = write_config(
        """
        gateway:
        channels:
          slack:
        models:
          providers:
            ollama:
        """
    )

    settings = load_settings(path, environ={})

    assert settings.gateway.port == 8080
    assert settings.channels.slack.enabled is False
    assert settings.models.providers["ollama"].models == []


def test_settings_without_loader_have_the_same_defaults() -> None:
    assert Settings().gateway.port == 8080
    assert Settings().state.sqlite_path.name == "state.db"
