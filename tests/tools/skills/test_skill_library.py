"""The skill library: where skills are found and which copy wins, switching them off by
configuration and by the switches file, broken skills kept apart, and the prompt section."""

from __future__ import annotations

from pathlib import Path

import pytest
from skills_support import write_skill

from promptline.config import load_settings
from promptline.config.home import promptline_home
from promptline.core.errors import NotFoundError
from promptline.tools.skills import SkillLibrary, SkillSource, render_skill_list, skill_sources
from promptline.tools.skills.prompt import SKILLS_HEADER
from promptline.tools.switches import SWITCHES_FILE, Switches

ALL_TOOLS = frozenset({"use_skill", "read_skill_file", "file_read"})


def states(library: SkillLibrary) -> list[tuple[str, str, str | None]]:
    return [(s.name, s.state, s.reason) for s in library.statuses()]


def test_the_first_folder_wins_and_later_copies_are_shadowed(tmp_path: Path) -> None:
    first, second, third = tmp_path / "workspace", tmp_path / "home", tmp_path / "extra"
    write_skill(first, "notes", "Workspace notes.")
    write_skill(second, "notes", "Home notes.")
    write_skill(second, "release", "Cut a release.")
    write_skill(third, "release", "Another release.")
    write_skill(third, "review", "Review code.")
    library = SkillLibrary([SkillSource(first, "workspace"), SkillSource(second, "home"), third])

    assert states(library) == [
        ("notes", "available", None),
        ("notes", "shadowed", f"shadowed by {first / 'notes'}"),
        ("release", "available", None),
        ("release", "shadowed", f"shadowed by {second / 'release'}"),
        ("review", "available", None),
    ]
    notes = library.require("notes")
    assert notes.skill is not None
    assert notes.skill.description == "Workspace notes."
    assert notes.source == SkillSource(first, "workspace")
    assert [s.name for s in library.available()] == ["notes", "release", "review"]


def test_a_folder_holding_a_skill_md_is_a_skill_itself(tmp_path: Path) -> None:
    single = write_skill(tmp_path, "solo", "One skill on its own.")
    library = SkillLibrary([single])
    assert [s.name for s in library.available()] == ["solo"]


def test_the_name_in_the_front_matter_decides_shadowing_not_the_folder(tmp_path: Path) -> None:
    write_skill(tmp_path / "a", "writer", folder="writer-v2")
    write_skill(tmp_path / "b", "writer")
    library = SkillLibrary([tmp_path / "a", tmp_path / "b"])
    assert [(s.name, s.state) for s in library.statuses()] == [
        ("writer", "available"),
        ("writer", "shadowed"),
    ]


def test_skills_disabled_in_the_configuration_are_not_offered(tmp_path: Path) -> None:
    write_skill(tmp_path, "risky")
    write_skill(tmp_path, "safe")
    library = SkillLibrary([tmp_path], disabled=["risky"])
    assert states(library) == [
        ("risky", "disabled", "disabled in the configuration (skills.disabled)"),
        ("safe", "available", None),
    ]
    assert library.prompt_section(ALL_TOOLS) == f"{SKILLS_HEADER}\n- safe: Does a thing."


def test_a_switch_set_off_elsewhere_is_respected_and_skills_are_on_by_default(
    tmp_path: Path,
) -> None:
    write_skill(tmp_path / "skills", "installed")
    write_skill(tmp_path / "skills", "local")
    switches_path = tmp_path / "home" / SWITCHES_FILE
    # Another part of PromptLine (a catalogue install) switched the skill off.
    Switches(switches_path).set("skills", "installed", False)
    library = SkillLibrary([tmp_path / "skills"], switches=Switches(switches_path))

    installed = library.require("installed")
    assert installed.state == "disabled"
    assert installed.reason == (
        "switched off (`promptline skills enable installed` switches it on)"
    )
    assert library.require("local").available

    status = library.set_enabled("installed", True)
    assert status.available
    assert Switches(switches_path).state("skills", "installed") is True
    assert library.set_enabled("local", False).state == "disabled"


def test_the_configuration_wins_over_a_switch(tmp_path: Path) -> None:
    write_skill(tmp_path, "risky")
    switches = Switches(tmp_path / SWITCHES_FILE)
    switches.set("skills", "risky", True)
    library = SkillLibrary([tmp_path], disabled=["risky"], switches=switches)
    assert library.require("risky").state == "disabled"


def test_an_unreadable_switches_file_keeps_the_switches_read_before(tmp_path: Path) -> None:
    write_skill(tmp_path / "skills", "quiet")
    path = tmp_path / SWITCHES_FILE
    Switches(path).set("skills", "quiet", False)
    library = SkillLibrary([tmp_path / "skills"], switches=Switches(path))
    assert library.require("quiet").state == "disabled"

    path.write_text("{ half written")
    library.reload()
    assert library.require("quiet").state == "disabled"
    assert any("is not valid JSON" in p for p in library.problems)


def test_a_broken_skill_is_listed_with_its_error_and_the_others_work(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_skill(tmp_path, "good", "Works fine.")
    broken = tmp_path / "bad"
    broken.mkdir()
    (broken / "SKILL.md").write_text("---\nname: bad\ndescription: [oops\n---\n")
    misnamed = tmp_path / "lower"
    misnamed.mkdir()
    (misnamed / "skill.md").write_text("---\ndescription: d\n---\n")
    (tmp_path / "not-a-skill").mkdir()  # no SKILL.md: ignored

    library = SkillLibrary([tmp_path])

    found = {s.name: s for s in library.statuses()}
    assert sorted(found) == ["bad", "good", "lower"]
    assert found["bad"].state == "broken"
    assert found["bad"].reason is not None
    assert found["bad"].reason.startswith(f"{broken / 'SKILL.md'}:3: the front matter")
    assert found["lower"].state == "broken"
    assert "must be named SKILL.md" in (found["lower"].reason or "")
    assert found["good"].available
    assert library.prompt_section(ALL_TOOLS) == f"{SKILLS_HEADER}\n- good: Works fine."
    assert "skill not loaded" in caplog.text
    assert "bad/SKILL.md:3" in caplog.text


def test_a_broken_skill_is_logged_once_not_at_every_scan(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "SKILL.md").write_text("nothing\n")
    library = SkillLibrary([tmp_path])
    library.reload()
    library.reload()
    assert caplog.text.count("skill not loaded") == 1


def test_a_broken_skill_fixed_and_broken_again_is_logged_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "flaky").mkdir()
    skill_md = tmp_path / "flaky" / "SKILL.md"
    skill_md.write_text("nothing\n")
    library = SkillLibrary([tmp_path])
    library.reload()
    write_skill(tmp_path, "flaky")
    library.reload()
    assert library.require("flaky").available
    skill_md.write_text("nothing\n")
    library.reload()
    assert caplog.text.count("skill not loaded") == 2


def test_an_unknown_name_is_refused_with_close_matches(tmp_path: Path) -> None:
    write_skill(tmp_path, "pdf-forms")
    library = SkillLibrary([tmp_path])
    with pytest.raises(NotFoundError) as caught:
        library.require("pdf-form")
    assert caught.value.hint == "did you mean pdf-forms?"
    with pytest.raises(NotFoundError):
        library.set_enabled("nothing-like-it", False)


def test_missing_folders_are_no_error(tmp_path: Path) -> None:
    library = SkillLibrary([tmp_path / "absent", tmp_path / "also" / "absent"])
    assert library.statuses() == []
    assert library.prompt_section(ALL_TOOLS) is None
    assert library.problems == []


def test_the_version_grows_only_when_something_changed(tmp_path: Path) -> None:
    library = SkillLibrary([tmp_path])
    assert library.version == 0
    library.reload()
    assert library.version == 1
    assert library.reload() is False
    write_skill(tmp_path, "new")
    assert library.reload() is True
    assert library.version == 2


def test_the_prompt_section_needs_use_skill_among_the_runs_tools(tmp_path: Path) -> None:
    write_skill(tmp_path, "notes", "Take notes.")
    library = SkillLibrary([tmp_path])
    assert library.prompt_section({"file_read"}) is None
    assert library.prompt_section({"use_skill"}) == f"{SKILLS_HEADER}\n- notes: Take notes."


def test_the_prompt_section_is_cached_until_the_library_changes(tmp_path: Path) -> None:
    write_skill(tmp_path, "notes", "Take notes.")
    library = SkillLibrary([tmp_path])
    first = library.prompt_section(ALL_TOOLS)
    assert library.prompt_section(ALL_TOOLS) is first
    write_skill(tmp_path, "notes", "Take better notes.")
    library.reload()
    assert library.prompt_section(ALL_TOOLS) == f"{SKILLS_HEADER}\n- notes: Take better notes."


def test_a_long_list_is_kept_within_the_budget_by_shortening_descriptions() -> None:
    skills = [(f"skill-{i:02d}", "word " * 40) for i in range(10)]
    full = render_skill_list(skills, 100_000)
    assert full is not None
    assert len(full) > 2000

    short = render_skill_list(skills, 1200)
    assert short is not None
    assert len(short) <= 1200
    lines = short.splitlines()
    assert lines[0] == SKILLS_HEADER
    assert [line.split(":")[0] for line in lines[1:]] == [f"- skill-{i:02d}" for i in range(10)]
    assert all(line.endswith("…") for line in lines[1:])


def test_past_the_shortest_descriptions_the_last_skills_are_named_only() -> None:
    skills = [(f"skill-{i:03d}", "A description that goes on for a while.") for i in range(100)]
    text = render_skill_list(skills, 1500)
    assert text is not None
    assert len(text) <= 1500
    last = text.splitlines()[-1]
    assert last.startswith("- also: ")
    assert "more" in last  # not every name fits either
    assert render_skill_list(skills, 50) is None  # not even the header fits


def test_skill_sources_put_the_workspace_first_then_home_then_configured_paths(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        None,
        environ={
            "PROMPTLINE_HOME": str(promptline_home()),
            "PROMPTLINE__SKILLS__PATHS": f'["{tmp_path / "extra"}"]',
        },
    )
    assert skill_sources(settings, cwd=tmp_path / "project") == [
        SkillSource(tmp_path / "project" / "skills", "workspace"),
        SkillSource(promptline_home() / "skills", "home"),
        SkillSource(tmp_path / "extra", "config"),
    ]
    pinned = settings.model_copy(
        update={"agent": settings.agent.model_copy(update={"workspace": tmp_path / "ws"})}
    )
    assert skill_sources(pinned, cwd=tmp_path / "project")[0] == SkillSource(
        tmp_path / "ws" / "skills", "workspace"
    )


def test_from_settings_reads_the_home_and_the_switches_file(tmp_path: Path) -> None:
    write_skill(promptline_home() / "skills", "homely")
    Switches(promptline_home() / SWITCHES_FILE).set("skills", "homely", False)
    settings = load_settings(None, environ={"PROMPTLINE_HOME": str(promptline_home())})
    library = SkillLibrary.from_settings(settings, cwd=tmp_path)
    assert [(s.name, s.state, s.source.origin) for s in library.statuses()] == [
        ("homely", "disabled", "home")
    ]
