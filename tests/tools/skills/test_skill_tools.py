"""The skill tools: use_skill gives a skill's instructions, folder and files; read_skill_file
gives one file, refusing any path that leads out of the skill's folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from skills_support import write_skill

from promptline.tools.base import Tool, ToolContext, ToolError, ToolOutput
from promptline.tools.registry import ToolRegistry
from promptline.tools.skills import SkillLibrary, register_skill_tools, skill_tools
from promptline.tools.skills.tools import MAX_SKILL_FILE_BYTES


@pytest.fixture
def library(tmp_path: Path) -> SkillLibrary:
    write_skill(
        tmp_path / "skills",
        "pdf-forms",
        "Fill in PDF forms.",
        version="1.0",
        body="# Forms\n\nRun scripts/fill.py with the data.",
        files={"scripts/fill.py": "print('filled')\n", "reference.md": "line 1\nline 2\n"},
    )
    write_skill(tmp_path / "skills", "off")
    (tmp_path / "secret.txt").write_text("top secret\n")
    return SkillLibrary([tmp_path / "skills"], disabled=["off"])


def tools(library: SkillLibrary) -> dict[str, Tool]:
    return {t.name: t for t in skill_tools(library)}


async def call(tool: Tool, tmp_path: Path, **arguments: Any) -> Any:
    context = ToolContext(call_id="call_1", tool=tool.name, workspace=tmp_path / "workspace")
    return await tool.run(tool.validate(arguments), context)


async def test_use_skill_returns_the_instructions_the_folder_and_the_files(
    library: SkillLibrary, tmp_path: Path
) -> None:
    use_skill = tools(library)["use_skill"]
    assert use_skill.read_only

    output = await call(use_skill, tmp_path, name="pdf-forms")

    assert isinstance(output, ToolOutput)
    folder = tmp_path / "skills" / "pdf-forms"
    assert output.content == (
        "Skill pdf-forms (version 1.0)\n"
        f"Folder: {folder}\n"
        "Files (relative to the folder; read one with read_skill_file, or run a script by its "
        "full path):\n"
        "- reference.md\n"
        "- scripts/fill.py\n"
        "\n"
        "# Forms\n\nRun scripts/fill.py with the data."
    )
    assert output.metadata == {"skill": "pdf-forms", "version": "1.0", "path": str(folder)}


async def test_use_skill_with_an_unknown_name_lists_what_there_is(
    library: SkillLibrary, tmp_path: Path
) -> None:
    with pytest.raises(ToolError) as caught:
        await call(tools(library)["use_skill"], tmp_path, name="pdf-form")
    assert caught.value.message == "there is no skill named 'pdf-form'"
    assert caught.value.hint == "skills you can use: pdf-forms"


async def test_use_skill_refuses_a_disabled_skill_saying_why(
    library: SkillLibrary, tmp_path: Path
) -> None:
    with pytest.raises(ToolError) as caught:
        await call(tools(library)["use_skill"], tmp_path, name="off")
    assert caught.value.message == (
        "the skill 'off' cannot be used: it is disabled "
        "(disabled in the configuration (skills.disabled))"
    )


async def test_read_skill_file_returns_a_file_of_the_skill(
    library: SkillLibrary, tmp_path: Path
) -> None:
    read = tools(library)["read_skill_file"]
    assert read.read_only
    output = await call(read, tmp_path, name="pdf-forms", path="scripts/fill.py")
    assert output.content == "print('filled')\n"
    later = await call(read, tmp_path, name="pdf-forms", path="reference.md", offset=2)
    assert later.content == "line 2\n"


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("../../secret.txt", "'..' may not climb above the skill's folder root"),
        ("/etc/passwd", "is absolute"),
        ("~/x", "uses '~'"),
        ("link/secret.txt", "is a symlink that resolves outside it"),
    ],
)
async def test_read_skill_file_refuses_paths_out_of_the_skill(
    library: SkillLibrary, tmp_path: Path, path: str, words: str
) -> None:
    os.symlink(tmp_path, tmp_path / "skills" / "pdf-forms" / "link")
    with pytest.raises(ToolError) as caught:
        await call(tools(library)["read_skill_file"], tmp_path, name="pdf-forms", path=path)
    assert words in caught.value.message
    assert "workspace" not in caught.value.message


async def test_read_skill_file_refuses_big_binary_and_missing_files(
    library: SkillLibrary, tmp_path: Path
) -> None:
    folder = tmp_path / "skills" / "pdf-forms"
    (folder / "big.txt").write_bytes(b"x" * (MAX_SKILL_FILE_BYTES + 1))
    (folder / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    read = tools(library)["read_skill_file"]
    for path, words in [
        ("big.txt", "more than read_skill_file's limit"),
        ("image.png", "is a binary file"),
        ("nothing.md", "not a file of the skill"),
        ("scripts", "a folder, not a file"),
    ]:
        with pytest.raises(ToolError) as caught:
            await call(read, tmp_path, name="pdf-forms", path=path)
        assert words in caught.value.message


async def test_read_skill_file_on_a_removed_skill_does_not_recreate_its_folder(
    library: SkillLibrary, tmp_path: Path
) -> None:
    import shutil

    library.reload()
    folder = tmp_path / "skills" / "pdf-forms"
    shutil.rmtree(folder)
    with pytest.raises(ToolError) as caught:
        await call(tools(library)["read_skill_file"], tmp_path, name="pdf-forms", path="x.md")
    assert "was removed" in caught.value.message
    assert not folder.exists()


def test_the_tools_register_under_their_names(library: SkillLibrary) -> None:
    registry = ToolRegistry()
    assert register_skill_tools(registry, lambda: library) == ["use_skill", "read_skill_file"]
    assert registry.names() == ["read_skill_file", "use_skill"]
    spec = {s.name: s for s in registry.specs()}["read_skill_file"]
    assert spec.parameters["required"] == ["name", "path"]
