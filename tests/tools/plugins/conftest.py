"""Fixtures of the tool package tests: a folder on ``sys.path`` for test modules (with
``sys.path`` and the test modules forgotten afterwards), fake distributions with entry points,
and a manager over a fresh registry."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from package_helpers import ManagerFactory

from promptline.config.plugins import PluginsSettings
from promptline.tools.builtin import builtin_tools
from promptline.tools.plugins import PluginManager
from promptline.tools.registry import ToolRegistry


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    """A folder put on ``sys.path``; afterwards ``sys.path`` is restored and every module
    imported from the temporary folder is forgotten."""
    folder = tmp_path / "site"
    folder.mkdir()
    saved_path = list(sys.path)
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    before = set(sys.modules)
    try:
        yield folder
    finally:
        sys.path[:] = saved_path
        for name in set(sys.modules) - before:
            module = sys.modules.get(name)
            location = str(getattr(module, "__file__", "") or "")
            if location.startswith(str(tmp_path)) or name.startswith("promptline_tool_package_"):
                del sys.modules[name]
        importlib.invalidate_caches()


@pytest.fixture
def make_manager(tmp_path: Path) -> ManagerFactory:
    """``make_manager(modules=[...], entry_points=False, ...)``: a manager over a registry of
    the built-in tools, with its home in the test's folder."""

    def make(**settings: Any) -> PluginManager:
        settings.setdefault("entry_points", False)
        settings.setdefault("dir", tmp_path / "home" / "plugins")
        skill_paths = settings.pop("skill_paths", ())
        return PluginManager(
            ToolRegistry(builtin_tools()),
            plugins=PluginsSettings(**settings),
            home=tmp_path / "home",
            skill_paths=skill_paths,
        )

    return make
