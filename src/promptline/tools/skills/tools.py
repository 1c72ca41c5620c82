"""The two read-only tools through which a model uses skills: ``use_skill`` (a skill's
instructions and the list of its files) and ``read_skill_file`` (one of those files)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from pydantic import Field

from promptline.tools.base import Tool, ToolError, ToolOutput
from promptline.tools.builtin.text_files import read_text_page
from promptline.tools.builtin.workspace import resolve_in_workspace
from promptline.tools.function import FunctionTool
from promptline.tools.registry import ToolRegistry
from promptline.tools.skills.library import READ_SKILL_FILE, USE_SKILL, SkillLibrary
from promptline.tools.skills.parsing import Skill

__all__ = [
    "MAX_SKILL_FILE_BYTES",
    "MAX_SKILL_FILE_CHARS",
    "register_skill_tools",
    "skill_tools",
]

MAX_SKILL_FILE_BYTES = 1024 * 1024
"""Larger files of a skill are refused (a model reads instructions and scripts, not data)."""

MAX_SKILL_FILE_CHARS = 30_000
"""The most text one ``read_skill_file`` call returns (whole lines; the rest by ``offset``)."""

LibrarySource = SkillLibrary | Callable[[], SkillLibrary]


def skill_tools(library: LibrarySource) -> list[Tool]:
    """``use_skill`` and ``read_skill_file`` over ``library`` (or a function returning it,
    looked up at each call, so the tools can be made before the library). They are offered
    to a run only while the library has a skill agents can use."""

    def current() -> SkillLibrary:
        return library if isinstance(library, SkillLibrary) else library()

    def any_skill(workspace: Path) -> bool:
        return bool(current().available())

    def use_skill(name: str) -> ToolOutput:
        """Load a skill: its instructions, its folder and its files.

        Args:
            name: The skill's name, as listed.
        """
        skill = _usable(current(), name)
        return ToolOutput(
            _instructions(skill),
            metadata={"skill": skill.name, "version": skill.version, "path": str(skill.path)},
        )

    def read_skill_file(
        name: str, path: str, offset: Annotated[int, Field(ge=1)] = 1
    ) -> ToolOutput:
        """Read a file of a skill, as use_skill lists them.

        Args:
            name: The skill's name.
            path: Relative to the skill's folder.
            offset: The first line, counting from 1.
        """
        skill = _usable(current(), name)
        text = _read(skill, path, offset)
        return ToolOutput(text, metadata={"skill": skill.name, "file": path})

    return [
        FunctionTool(use_skill, name=USE_SKILL, read_only=True, applies=any_skill),
        FunctionTool(read_skill_file, name=READ_SKILL_FILE, read_only=True, applies=any_skill),
    ]


def register_skill_tools(registry: ToolRegistry, library: LibrarySource) -> list[str]:
    """Register the skill tools in ``registry`` (replacing earlier ones); their names."""
    return [registry.register(t, replace=True) for t in skill_tools(library)]


def _usable(library: SkillLibrary, name: str) -> Skill:
    status = library.get(name)
    if status is None:
        names = [s.name for s in library.available()]
        import difflib

        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        listed = close or names[:30]
        raise ToolError(
            f"there is no skill named {name!r}",
            hint=(
                f"skills you can use: {', '.join(listed)}"
                + (f" (and {len(names) - len(listed)} more)" if len(names) > len(listed) else "")
                if listed
                else "no skill is available"
            ),
        )
    if status.state != "available" or status.skill is None:
        raise ToolError(
            f"the skill {name!r} cannot be used: it is {status.state} ({status.reason})",
            hint="carry on without it, or tell the user what it needs",
        )
    return status.skill


def _instructions(skill: Skill) -> str:
    version = f" (version {skill.version})" if skill.version else ""
    lines = [f"Skill {skill.name}{version}", f"Folder: {skill.path}"]
    if skill.files:
        lines.append(
            f"Files (relative to the folder; read one with {READ_SKILL_FILE}, or run a script "
            "by its full path):"
        )
        lines.extend(f"- {f}" for f in skill.files)
    else:
        lines.append("Files: none besides SKILL.md")
    lines.extend(["", skill.body or "(the skill has no instructions beyond its description)"])
    return "\n".join(lines)


def _read(skill: Skill, path: str, offset: int) -> str:
    if not skill.path.is_dir():
        raise ToolError(
            f"the skill {skill.name!r} was removed while it was in use",
            hint="call use_skill again to see whether it is still there",
        )
    try:
        target = resolve_in_workspace(skill.path, path)
    except ToolError as exc:
        raise ToolError(
            exc.message.replace("the workspace", "the skill's folder").replace(
                "workspace", "skill folder"
            ),
            hint="give a path relative to the skill's folder, as use_skill lists them",
        ) from None
    if not target.is_file():
        what = "a folder, not a file" if target.is_dir() else "not a file of the skill"
        raise ToolError(
            f"{path!r} is {what}",
            hint=f"use_skill {skill.name} lists the skill's files",
        )
    return read_text_page(
        target,
        path,
        tool=READ_SKILL_FILE,
        offset=offset,
        max_bytes=MAX_SKILL_FILE_BYTES,
        max_chars=MAX_SKILL_FILE_CHARS,
        too_big_hint="use the file through the skill's scripts instead of reading it",
        binary_hint="use it by its full path in the skill's folder instead",
    )
