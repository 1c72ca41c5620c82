"""Profiles: an in-file ``profiles.<name>`` block and a ``config.<name>.yaml`` overlay, in order."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from promptline.config import load_settings
from promptline.core.errors import ConfigError

BASE = """
gateway:
  host: 127.0.0.1
  port: 8000
  websocket_port: 8001
models:
  default: base-model
  providers:
    openai:
      models: [a, b]
profiles:
  dev:
    gateway:
      port: 8100
      websocket_port: 8101
    models:
      providers:
        openai:
          models: [c]
"""


def test_no_profile_ignores_profile_blocks(write_config: Callable[..., Path]) -> None:
    settings = load_settings(write_config(BASE), environ={})

    assert settings.gateway.port == 8000
    assert settings.profile is None


def test_in_file_profile_block_deep_merges_over_the_base(write_config: Callable[..., Path]) -> None:
    settings = load_settings(write_config(BASE), environ={}, profile="dev")

    assert settings.profile == "dev"
    assert settings.gateway.port == 8100
    assert settings.gateway.host == "127.0.0.1"  # untouched keys of a merged mapping survive
    assert settings.models.default == "base-model"


def test_lists_in_a_profile_replace_rather_than_extend(write_config: Callable[..., Path]) -> None:
    settings = load_settings(write_config(BASE), environ={}, profile="dev")

    assert settings.models.providers["openai"].models == ["c"]


def test_profile_comes_from_promptline_profile(write_config: Callable[..., Path]) -> None:
    settings = load_settings(write_config(BASE), environ={"PROMPTLINE_PROFILE": "dev"})

    assert settings.gateway.port == 8100


def test_profile_argument_wins_over_promptline_profile(write_config: Callable[..., Path]) -> None:
    path = write_config(BASE + "  staging:\n    gateway:\n      port: 8200\n")

    settings = load_settings(path, environ={"PROMPTLINE_PROFILE": "dev"}, profile="staging")

    assert settings.gateway.port == 8200


def test_overlay_file_applies_after_the_in_file_block(write_config: Callable[..., Path]) -> None:
    path = write_config(BASE)
    overlay = write_config("gateway:\n  websocket_port: 8301\n", name="config.dev.yaml")

    settings = load_settings(path, environ={}, profile="dev")

    assert settings.gateway.port == 8100  # from the block
    assert settings.gateway.websocket_port == 8301  # overlay beats block
    assert settings.sources == (path, overlay)


def test_overlay_alone_defines_a_profile(write_config: Callable[..., Path]) -> None:
    path = write_config("gateway:\n  port: 8000\n")
    write_config("gateway:\n  port: 8400\n", name="config.prod.yaml")

    assert load_settings(path, environ={}, profile="prod").gateway.port == 8400


def test_full_precedence_defaults_file_block_overlay_environment(
    write_config: Callable[..., Path],
) -> None:
    path = write_config(
        """
        gateway: {host: file-host, port: 1001, websocket_port: 1002}
        agent: {max_iterations: 5}
        profiles:
          dev:
            gateway: {port: 2001, websocket_port: 2002}
            agent: {max_iterations: 6}
        """
    )
    write_config("gateway: {websocket_port: 3002}\nagent: {max_iterations: 7}\n", "config.dev.yaml")
    env = {"PROMPTLINE__AGENT__MAX_ITERATIONS": "8"}

    settings = load_settings(path, environ=env, profile="dev")

    assert settings.events.subscriber_queue == 1000  # default
    assert settings.gateway.host == "file-host"  # file
    assert settings.gateway.port == 2001  # profile block
    assert settings.gateway.websocket_port == 3002  # overlay
    assert settings.agent.max_iterations == 8  # environment


def test_unknown_profile_is_an_error_listing_the_defined_ones(
    write_config: Callable[..., Path],
) -> None:
    path = write_config(BASE)
    write_config("{}\n", name="config.test.yaml")

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={"PROMPTLINE_PROFILE": "prdo"})

    message = caught.value.message
    assert "environment variable PROMPTLINE_PROFILE" in message
    assert "profile 'prdo' is not defined" in message
    assert "config.prdo.yaml" in message
    assert "defined profiles: dev, test" in message


def test_profile_name_with_a_path_separator_is_refused(write_config: Callable[..., Path]) -> None:
    with pytest.raises(ConfigError, match=r"profile name '\.\./x' is not valid"):
        load_settings(write_config(BASE), environ={}, profile="../x")


def test_profiles_block_that_is_not_a_mapping_names_file_and_line(
    write_config: Callable[..., Path],
) -> None:
    path = write_config("gateway: {}\nprofiles: [dev]\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})

    assert f"{path}:2: profiles: expected a mapping of profile names" in caught.value.message


def test_error_inside_a_profile_block_names_the_block_path_and_line(
    write_config: Callable[..., Path],
) -> None:
    path = write_config(BASE + "  broken:\n    gateway:\n      prot: 1\n")
    line = path.read_text().splitlines().index("      prot: 1") + 1

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={}, profile="broken")

    assert line == 21
    assert (
        f"{path}:{line}: profiles.broken.gateway.prot: unknown key 'prot' (did you mean 'port'?)"
        in caught.value.message
    )


def test_overlay_may_not_define_profiles(write_config: Callable[..., Path]) -> None:
    path = write_config("{}\n")
    overlay = write_config("profiles:\n  x: {}\n", name="config.dev.yaml")

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={}, profile="dev")

    assert f"{overlay}:1: profiles: unknown key 'profiles'" in caught.value.message


def test_profile_without_any_config_file_says_there_is_none(home: Path) -> None:
    env = {"PROMPTLINE_HOME": str(home), "PROMPTLINE_PROFILE": "dev"}

    with pytest.raises(ConfigError) as caught:
        load_settings(environ=env)

    assert f"there is no config file at {home / 'config.yaml'}" in caught.value.message
    assert "no profiles are defined" in caught.value.message
