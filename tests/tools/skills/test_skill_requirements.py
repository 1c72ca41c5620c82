"""A skill's requirements: each kind that is not met makes it unavailable with a reason saying
what it needs; skill dependencies are followed, and cycles reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from skills_support import write_skill

from promptline.tools.builtin import builtin_tools
from promptline.tools.registry import ToolRegistry
from promptline.tools.skills import RequirementChecker, Requirements, SkillLibrary


def status_of(library: SkillLibrary, name: str) -> tuple[str, tuple[str, ...]]:
    found = library.get(name)
    assert found is not None
    return found.state, found.reasons


def test_a_missing_environment_variable_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SKILL_TEST_TOKEN", raising=False)
    write_skill(tmp_path, "gh", requires={"env": ["SKILL_TEST_TOKEN"]})
    library = SkillLibrary([tmp_path])
    assert status_of(library, "gh") == ("unavailable", ("needs $SKILL_TEST_TOKEN",))

    monkeypatch.setenv("SKILL_TEST_TOKEN", "secret")
    library.reload()
    assert status_of(library, "gh") == ("available", ())


def test_an_empty_environment_variable_counts_as_missing() -> None:
    checker = RequirementChecker(environ={"TOKEN": ""})
    assert checker.problems(Requirements(env=("TOKEN",))) == ["needs $TOKEN"]


def test_a_program_not_on_path_is_named(tmp_path: Path) -> None:
    write_skill(tmp_path, "pdf", requires={"bins": ["no-such-program-xyz", "sh"]})
    library = SkillLibrary([tmp_path])
    assert status_of(library, "pdf") == (
        "unavailable",
        ("needs the program `no-such-program-xyz` on PATH",),
    )


def test_python_packages_are_checked_by_presence_and_version(tmp_path: Path) -> None:
    write_skill(tmp_path, "ok", requires={"python": ["pydantic>=2", "PyYAML"]})
    write_skill(tmp_path, "absent", requires={"python": ["no-such-dist-xyz>=1"]})
    write_skill(tmp_path, "old", requires={"python": ["pydantic<1"]})
    write_skill(tmp_path, "garbled", requires={"python": ["pydantic >>= 2 !"]})
    library = SkillLibrary([tmp_path])

    assert status_of(library, "ok") == ("available", ())
    assert status_of(library, "absent") == (
        "unavailable",
        ("needs the Python package `no-such-dist-xyz>=1`",),
    )
    state, reasons = status_of(library, "old")
    assert state == "unavailable"
    assert reasons[0].startswith("needs the Python package `pydantic<1` (2.")
    assert status_of(library, "garbled")[1] == (
        "has a Python requirement that cannot be read: `pydantic >>= 2 !`",
    )


def test_tools_are_checked_against_the_registry_and_against_a_runs_tools(tmp_path: Path) -> None:
    write_skill(tmp_path, "committer", requires={"tools": ["git_*"]})
    write_skill(tmp_path, "githubber", requires={"tools": ["mcp.github.*"]})
    library = SkillLibrary([tmp_path], tools=ToolRegistry(builtin_tools()))

    assert status_of(library, "committer") == ("available", ())
    assert status_of(library, "githubber") == ("unavailable", ("needs tool `mcp.github.*`",))
    # A run offered fewer tools sees fewer skills.
    assert status_of(library, "committer") == ("available", ())
    found = library.get("committer", tool_names={"file_read", "use_skill"})
    assert found is not None
    assert found.reasons == ("needs tool `git_*`",)
    assert [s.name for s in library.available({"git_status", "use_skill"})] == ["committer"]


def test_without_a_registry_tool_requirements_wait_for_the_run(tmp_path: Path) -> None:
    write_skill(tmp_path, "githubber", requires={"tools": ["mcp.github.*"]})
    library = SkillLibrary([tmp_path])
    assert status_of(library, "githubber") == ("available", ())


def test_every_unmet_requirement_is_listed(tmp_path: Path) -> None:
    write_skill(
        tmp_path,
        "needy",
        requires={"env": ["NO_SUCH_VAR_XYZ"], "bins": ["no-such-program-xyz"], "skills": ["ghost"]},
    )
    library = SkillLibrary([tmp_path])
    assert status_of(library, "needy") == (
        "unavailable",
        (
            "needs $NO_SUCH_VAR_XYZ",
            "needs the program `no-such-program-xyz` on PATH",
            "needs skill `ghost`",
        ),
    )


def test_a_skill_needing_a_missing_skill_is_unavailable(tmp_path: Path) -> None:
    write_skill(tmp_path, "forms", requires={"skills": ["pdf-basics"]})
    library = SkillLibrary([tmp_path])
    assert status_of(library, "forms") == ("unavailable", ("needs skill `pdf-basics`",))

    write_skill(tmp_path, "pdf-basics")
    library.reload()
    assert status_of(library, "forms") == ("available", ())


def test_a_skill_needing_an_unusable_skill_says_why(tmp_path: Path) -> None:
    write_skill(tmp_path, "forms", requires={"skills": ["pdf-basics", "ocr"]})
    write_skill(tmp_path, "pdf-basics", requires={"bins": ["no-such-program-xyz"]})
    (tmp_path / "ocr").mkdir()
    (tmp_path / "ocr" / "SKILL.md").write_text("no front matter\n")
    library = SkillLibrary([tmp_path], disabled=[])
    assert status_of(library, "forms") == (
        "unavailable",
        ("needs skill `ocr`, which is broken; needs skill `pdf-basics`, which is unavailable",),
    )


def test_a_disabled_dependency_makes_its_dependents_unavailable(tmp_path: Path) -> None:
    write_skill(tmp_path, "forms", requires={"skills": ["pdf-basics"]})
    write_skill(tmp_path, "pdf-basics")
    library = SkillLibrary([tmp_path], disabled=["pdf-basics"])
    assert status_of(library, "forms") == (
        "unavailable",
        ("needs skill `pdf-basics`, which is disabled",),
    )


def test_unavailability_travels_down_a_chain_of_skills(tmp_path: Path) -> None:
    write_skill(tmp_path, "top", requires={"skills": ["middle"]})
    write_skill(tmp_path, "middle", requires={"skills": ["bottom"]})
    write_skill(tmp_path, "bottom", requires={"env": ["NO_SUCH_VAR_XYZ"]})
    library = SkillLibrary([tmp_path])
    assert status_of(library, "middle") == (
        "unavailable",
        ("needs skill `bottom`, which is unavailable",),
    )
    assert status_of(library, "top") == (
        "unavailable",
        ("needs skill `middle`, which is unavailable",),
    )


def test_a_dependency_cycle_is_reported_and_leaves_the_others_alone(tmp_path: Path) -> None:
    write_skill(tmp_path, "alpha", requires={"skills": ["beta"]})
    write_skill(tmp_path, "beta", requires={"skills": ["alpha"]})
    write_skill(tmp_path, "loner", requires={"skills": ["loner"]})
    write_skill(tmp_path, "fine")
    library = SkillLibrary([tmp_path])
    assert status_of(library, "alpha") == (
        "unavailable",
        ("is part of a skill dependency cycle: alpha -> beta -> alpha",),
    )
    assert status_of(library, "beta")[0] == "unavailable"
    assert status_of(library, "loner") == (
        "unavailable",
        ("is part of a skill dependency cycle: loner -> loner",),
    )
    assert status_of(library, "fine") == ("available", ())


def test_a_program_is_found_through_the_checkers_lookup() -> None:
    checker = RequirementChecker(which=lambda name: "/bin/x" if name == "present" else None)
    assert checker.problems(Requirements(bins=("present", "absent"))) == [
        "needs the program `absent` on PATH"
    ]
    assert checker.problems(Requirements(python=("pytest>=1",))) == []
