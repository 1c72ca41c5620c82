"""Helpers of the tool package tests: writing modules, tool modules and fake distributions."""

from __future__ import annotations

import importlib
import textwrap
from collections.abc import Callable
from pathlib import Path

from promptline.tools.plugins import PluginManager

ManagerFactory = Callable[..., PluginManager]
"""``make_manager(**plugins_settings)`` (the fixture)."""

STUCK = 10.0
"""Bounds a wait that should end at once; only reached if the code under test is broken."""


def write(path: Path, source: str) -> Path:
    """Write dedented ``source`` to ``path`` (making its folders)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source).lstrip())
    return path


def tool_module(
    *, tool: str = "hello", answer: str = "hi", version: str = "0.1.0", extra: str = ""
) -> str:
    """Source of a module with one ``@tool`` (a read-only greeting) in a ``tools`` list;
    ``extra`` is one more module-level line (``requires = [...]``, ``namespace = ""``)."""
    return f"""
        from promptline.tools import tool

        __version__ = "{version}"
        {extra}

        @tool(read_only=True, inline=True)
        def {tool}(who: str = "you") -> str:
            \"\"\"Greet someone.\"\"\"
            return f"{answer} {{who}}"

        tools = [{tool}]
        """


def distribution(site: Path, dist: str, version: str, entry_points: dict[str, str]) -> Path:
    """A fake installed distribution: ``<dist>-<version>.dist-info`` with ``METADATA`` and an
    ``entry_points.txt`` declaring ``entry_points`` (name -> target) in the tools group."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[promptline.tools]\n{lines}")
    importlib.invalidate_caches()
    return info
