"""Switches of skills and tool packages live in one JSON file that several processes share."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptline.core.errors import ConfigError
from promptline.tools.switches import Switches


def test_a_name_without_a_switch_has_its_default(tmp_path: Path) -> None:
    switches = Switches(tmp_path / "switches.json")

    assert switches.state("skills", "pdf") is None
    assert switches.is_enabled("skills", "pdf", default=True) is True
    assert switches.is_enabled("plugins", "acme", default=False) is False


def test_a_switch_set_by_one_reader_is_seen_by_another(tmp_path: Path) -> None:
    path = tmp_path / "home" / "switches.json"
    Switches(path).set("skills", "pdf", False)
    Switches(path).set("plugins", "acme", True)

    other = Switches(path)
    assert other.is_enabled("skills", "pdf", default=True) is False
    assert other.all("plugins") == {"acme": True}

    other.forget("skills", "pdf")
    assert Switches(path).state("skills", "pdf") is None
    assert not list(path.parent.glob(".*.tmp"))  # no temporary file left behind


def test_a_broken_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "switches.json"
    path.write_text("{not json", encoding="utf-8")

    with pytest.raises(ConfigError, match="not valid JSON"):
        Switches(path).state("skills", "pdf")
