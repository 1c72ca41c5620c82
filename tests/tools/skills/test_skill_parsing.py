"""Reading SKILL.md: the front matter and instructions of a good file, and a clear error naming
the file and the line for each kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
from skills_support import write_skill

from promptline.tools.skills import Requirements, SkillFormatError, parse_skill, parse_skill_text

GOOD = """\
---
name: pdf-forms
description: >
  Fill in PDF forms from data
  the user gives.
version: "1.2"
license: MIT
requires:
  bins: [pdftotext]
  env: GITHUB_TOKEN
  python: ["pypdf>=4"]
  tools: ["file_*"]
  skills: [pdf-basics]
---
# Filling a form

1. Read the form with `scripts/fields.py`.
"""


def parse(text: str, folder: str = "pdf-forms") -> object:
    return parse_skill_text(text, Path("/skills") / folder / "SKILL.md")


def error_of(text: str, folder: str = "pdf-forms") -> SkillFormatError:
    with pytest.raises(SkillFormatError) as caught:
        parse(text, folder)
    return caught.value


def test_a_good_skill_file_gives_its_front_matter_instructions_and_files(tmp_path: Path) -> None:
    folder = tmp_path / "pdf-forms"
    folder.mkdir()
    (folder / "SKILL.md").write_text(GOOD)
    (folder / "scripts").mkdir()
    (folder / "scripts" / "fields.py").write_text("print('fields')\n")
    (folder / "reference.md").write_text("# ref\n")
    (folder / ".hidden").write_text("x")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "x.pyc").write_bytes(b"\0")

    skill = parse_skill(folder)

    assert skill.name == "pdf-forms"
    assert skill.description == "Fill in PDF forms from data the user gives."
    assert skill.summary == "Fill in PDF forms from data the user gives."
    assert skill.version == "1.2"
    assert skill.path == folder
    assert skill.body == "# Filling a form\n\n1. Read the form with `scripts/fields.py`."
    assert skill.files == ("reference.md", "scripts/fields.py")
    assert skill.requires == Requirements(
        tools=("file_*",),
        env=("GITHUB_TOKEN",),
        bins=("pdftotext",),
        python=("pypdf>=4",),
        skills=("pdf-basics",),
    )
    assert skill.extra == {"license": "MIT"}
    assert skill.front_matter()["license"] == "MIT"


def test_the_folder_name_is_the_name_when_the_front_matter_has_none() -> None:
    skill = parse("---\ndescription: Say hello.\n---\nHello.\n", folder="greeter")
    assert skill.name == "greeter"  # type: ignore[attr-defined]


def test_a_whole_number_version_is_read_as_text() -> None:
    skill = parse("---\ndescription: d\nversion: 2\n---\n")
    assert skill.version == "2"  # type: ignore[attr-defined]


def test_a_file_without_front_matter_is_refused_at_line_one() -> None:
    error = error_of("# Just markdown\n\nNo front matter here.\n")
    assert error.line == 1
    assert error.message.startswith("/skills/pdf-forms/SKILL.md:1: has no front matter")


def test_front_matter_that_is_never_closed_is_refused() -> None:
    error = error_of("---\nname: x\ndescription: y\n")
    assert "not closed" in error.message
    assert error.message.startswith("/skills/pdf-forms/SKILL.md:3:")


def test_broken_yaml_names_the_file_and_the_line() -> None:
    error = error_of("---\nname: pdf-forms\ndescription: fine\nrequires: [unclosed\n---\nbody\n")
    assert error.path == Path("/skills/pdf-forms/SKILL.md")
    assert error.line == 4
    assert error.message.startswith("/skills/pdf-forms/SKILL.md:4: the front matter is not valid")


def test_a_bad_indentation_is_reported_on_its_line() -> None:
    error = error_of("---\nname: pdf-forms\n  oops: 1\ndescription: y\n---\n")
    assert error.line == 3
    assert "not valid YAML" in error.message


@pytest.mark.parametrize(
    ("front", "line", "words"),
    [
        ("name: pdf-forms\ndescription: 5", 3, "description must be text, not a number"),
        ("name: [a]\ndescription: d", 2, "name must be text, not a list"),
        ("description: d\nversion: 1.10", 3, "version must be text"),
        ("description: d\nrequires: [bins]", 3, "requires must be a mapping"),
        ("description: d\nrequires:\n  bins: 3", 4, "requires.bins must be a list of names"),
        ("description: d\nrequires:\n  bin: [x]", 4, "requires.bin is not a kind of requirement"),
        ("description: d\nrequires:\n  skills: [Not A Name]", 4, "is not a skill name"),
        ("name: pdf-forms", 1, "has no description"),
        ("description: '   '", 2, "description is empty"),
        ("- a\n- b", 2, "must be a mapping of keys, not a list"),
    ],
)
def test_wrong_types_are_refused_with_the_line_of_the_key(
    front: str, line: int, words: str
) -> None:
    error = error_of(f"---\n{front}\n---\nbody\n")
    assert words in error.message
    assert error.line == line


@pytest.mark.parametrize("name", ["PDF", "pdf forms", "-lead", "trail-", "a" * 65, "ünï"])
def test_a_name_that_is_not_a_slug_is_refused(name: str) -> None:
    error = error_of(f"---\nname: '{name}'\ndescription: d\n---\n")
    assert "is not valid" in error.message
    assert error.line == 2


def test_a_folder_name_that_is_not_a_slug_needs_a_name_in_the_front_matter() -> None:
    error = error_of("---\ndescription: d\n---\n", folder="My Skill")
    assert "folder name 'My Skill' is not a valid skill name" in error.message


def test_a_file_that_is_not_utf8_is_refused_with_its_line(tmp_path: Path) -> None:
    folder = tmp_path / "latin"
    folder.mkdir()
    (folder / "SKILL.md").write_bytes(b"---\ndescription: caf\xe9\n---\n")
    with pytest.raises(SkillFormatError) as caught:
        parse_skill(folder)
    assert caught.value.line == 2
    assert "not UTF-8" in caught.value.message


def test_the_written_helper_round_trips(tmp_path: Path) -> None:
    folder = write_skill(tmp_path, "helper", "Helps.", files={"a/b.txt": "x"}, version="3")
    skill = parse_skill(folder)
    assert (skill.name, skill.description, skill.version, skill.files) == (
        "helper",
        "Helps.",
        "3",
        ("a/b.txt",),
    )
