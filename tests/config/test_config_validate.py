"""``validate_config`` for ``promptline config validate``: every problem, in every profile."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from promptline.config import validate_config


def test_valid_config_has_no_problems(seed_config: Path) -> None:
    assert validate_config(seed_config, environ={}) == []


def test_problems_come_back_as_lines_naming_file_line_and_key(
    write_config: Callable[..., Path],
) -> None:
    path = write_config("gateway:\n  port: abc\n")

    assert validate_config(path, environ={}) == [
        f"{path}:2: gateway.port: expected an integer between 1 and 65535, got 'abc'"
    ]


def test_without_a_profile_every_defined_profile_is_checked(
    write_config: Callable[..., Path],
) -> None:
    path = write_config("gateway:\n  port: 1\nprofiles:\n  dev:\n    agent:\n      mode: act\n")
    overlay = write_config("state:\n  backend: mongo\n", name="config.prod.yaml")

    lines = validate_config(path, environ={})

    assert len(lines) == 2
    assert lines[0].startswith(f"{path}:6: profiles.dev.agent.mode: unknown key 'mode'")
    assert lines[1].startswith(f"{overlay}:2: state.backend: expected one of")


def test_with_a_profile_only_that_profile_is_checked(write_config: Callable[..., Path]) -> None:
    path = write_config("profiles:\n  dev: {}\n  bad:\n    nope: 1\n")

    assert validate_config(path, environ={}, profile="dev") == []
    assert validate_config(path, environ={"PROMPTLINE_PROFILE": "dev"}) == []


def test_a_missing_default_file_is_valid(home: Path) -> None:
    assert validate_config(environ={"PROMPTLINE_HOME": str(home)}) == []
