"""Helpers for the configuration tests: write a config file, load it with a private environment."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

WriteConfig = Callable[..., Path]


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    """Write dedented YAML to ``tmp_path/<name>`` (default ``config.yaml``) and return its path."""

    def write(text: str, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A PromptLine home folder of this test's own."""
    return tmp_path / "plhome"


@pytest.fixture
def seed_config() -> Path:
    """The configuration example of the product brief, byte for byte."""
    return Path(__file__).parent.parent / "fixtures" / "seed_config.yaml"
