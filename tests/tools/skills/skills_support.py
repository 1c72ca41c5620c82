"""Writing skill folders for the skills tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def write_skill(
    root: Path,
    name: str,
    description: str = "Does a thing.",
    *,
    body: str = "Follow these steps.",
    version: str | None = None,
    requires: dict[str, Any] | None = None,
    files: dict[str, str] | None = None,
    folder: str | None = None,
) -> Path:
    """A skill folder ``root/<folder or name>`` with a SKILL.md and ``files``; its path."""
    path = root / (folder or name)
    path.mkdir(parents=True, exist_ok=True)
    front: dict[str, Any] = {"name": name, "description": description}
    if version is not None:
        front["version"] = version
    if requires:
        front["requires"] = requires
    text = f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n{body}\n"
    (path / "SKILL.md").write_text(text, encoding="utf-8")
    for relative, content in (files or {}).items():
        target = path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    return path
