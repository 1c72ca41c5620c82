"""docs/skills.md stays true: its SKILL.md example parses to what the page says, and its
tables cover every state, requirement kind, tool and command there is."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest

from promptline.cli.skills_cmd import skills_group
from promptline.tools.skills import (
    READ_SKILL_FILE,
    USE_SKILL,
    Requirements,
    SkillLibrary,
    SkillState,
    parse_skill,
)
from promptline.tools.skills.parsing import REQUIREMENT_KINDS
from promptline.tools.skills.prompt import SKILLS_HEADER

DOCS = Path(__file__).parents[3] / "docs"


@pytest.fixture(scope="module")
def doc() -> str:
    return (DOCS / "skills.md").read_text(encoding="utf-8")


def fenced(doc: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", doc, flags=re.S | re.M)


def test_the_example_skill_file_parses_to_what_the_page_describes(doc: str, tmp_path: Path) -> None:
    folder = tmp_path / "pdf-forms"
    folder.mkdir()
    (folder / "SKILL.md").write_text(fenced(doc, "markdown")[0], encoding="utf-8")

    skill = parse_skill(folder)

    assert skill.name == "pdf-forms"
    assert skill.version == "1.2"
    assert skill.summary.startswith("Fill in PDF forms from data the user gives")
    assert skill.requires == Requirements(
        tools=("file_*", "shell_execute"),
        env=("FORMS_SIGNING_KEY",),
        bins=("pdftk",),
        python=("pypdf>=4",),
        skills=("pdf-basics",),
    )
    assert skill.extra == {"license": "MIT"}
    assert skill.body.startswith("# Filling in a PDF form")
    # Without pdftk, the signing key and pdf-basics, the page's reasons are what it gets.
    status = SkillLibrary([tmp_path]).require("pdf-forms")
    assert status.state == "unavailable"
    for reason in status.reasons:
        assert reason.split(" (")[0].split(",")[0].replace("`", "") in doc.replace("`", "")


def test_every_state_and_requirement_kind_has_a_row(doc: str) -> None:
    for state in get_args(SkillState):
        assert re.search(rf"^\| `{state}` \|", doc, flags=re.M), state
    for kind in REQUIREMENT_KINDS:
        assert re.search(rf"^\| `{kind}` \|", doc, flags=re.M), kind


def test_the_prompt_example_starts_with_the_real_header(doc: str) -> None:
    example = fenced(doc, "text")[0]
    assert example.splitlines()[0] == SKILLS_HEADER


def test_the_tools_and_commands_are_documented(doc: str) -> None:
    for name in (USE_SKILL, READ_SKILL_FILE):
        assert re.search(rf"^\| `{name}` \|", doc, flags=re.M), name
    for command in skills_group.commands:
        assert f"`promptline skills {command}" in doc, command


def test_the_tools_page_links_here() -> None:
    assert "[skills](skills.md)" in (DOCS / "tools.md").read_text(encoding="utf-8")
