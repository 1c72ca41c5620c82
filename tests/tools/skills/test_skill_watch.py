"""Skills picked up while PromptLine runs: with a real watcher on real folders, a skill added,
changed, broken and removed shows in the library without a restart, and so does a switch."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from skills_support import write_skill

from promptline.tools.skills import SkillLibrary, SkillSource
from promptline.tools.switches import SWITCHES_FILE, Switches

LIMIT = 20.0
"""Seconds to wait for the watcher to notice a change (it is usually well under one)."""


async def until(library: SkillLibrary, check: Callable[[], bool]) -> None:
    """Wait for changes of the library until ``check()`` holds."""
    async with asyncio.timeout(LIMIT):
        while not check():
            await library.wait_for_change(library.version)


def state_of(library: SkillLibrary, name: str) -> str | None:
    found = library.get(name)
    return found.state if found else None


@pytest.fixture
async def watched(tmp_path: Path) -> AsyncIterator[tuple[SkillLibrary, Path]]:
    folder = tmp_path / "skills"
    folder.mkdir()
    library = SkillLibrary(
        [SkillSource(folder, "workspace")], switches=Switches(tmp_path / "home" / SWITCHES_FILE)
    )
    library.reload()
    library.watch()
    yield library, folder
    await library.close()
    assert not library.watching


async def test_a_skill_added_changed_broken_and_removed_is_seen_while_watching(
    watched: tuple[SkillLibrary, Path],
) -> None:
    library, folder = watched
    write_skill(folder, "steady", "Always there.")
    await until(library, lambda: state_of(library, "steady") == "available")

    write_skill(folder, "fresh", "First words.")
    await until(library, lambda: state_of(library, "fresh") == "available")

    write_skill(folder, "fresh", "Second words.")
    await until(
        library,
        lambda: (
            (s := library.get("fresh")) is not None
            and s.skill is not None
            and s.skill.description == "Second words."
        ),
    )

    (folder / "fresh" / "SKILL.md").write_text("---\nname: fresh\ndescription: [broken\n---\n")
    await until(library, lambda: state_of(library, "fresh") == "broken")
    assert state_of(library, "steady") == "available"
    assert "- steady: Always there." in (library.prompt_section({"use_skill"}) or "")
    assert "fresh" not in (library.prompt_section({"use_skill"}) or "")

    shutil.rmtree(folder / "fresh")
    await until(library, lambda: library.get("fresh") is None)
    assert [s.name for s in library.available()] == ["steady"]


async def test_a_file_added_to_a_skill_shows_in_its_file_list(
    watched: tuple[SkillLibrary, Path],
) -> None:
    library, folder = watched
    write_skill(folder, "tools")
    await until(library, lambda: state_of(library, "tools") == "available")
    (folder / "tools" / "run.sh").write_text("echo hi\n")
    await until(
        library,
        lambda: (
            (s := library.get("tools")) is not None
            and s.skill is not None
            and s.skill.files == ("run.sh",)
        ),
    )


async def test_a_switch_written_by_another_process_is_picked_up(
    watched: tuple[SkillLibrary, Path], tmp_path: Path
) -> None:
    library, folder = watched
    write_skill(folder, "toggled")
    await until(library, lambda: state_of(library, "toggled") == "available")

    Switches(tmp_path / "home" / SWITCHES_FILE).set("skills", "toggled", False)
    await until(library, lambda: state_of(library, "toggled") == "disabled")

    Switches(tmp_path / "home" / SWITCHES_FILE).forget("skills", "toggled")
    await until(library, lambda: state_of(library, "toggled") == "available")


async def test_a_folder_that_does_not_exist_yet_is_watched_once_it_appears(
    tmp_path: Path,
) -> None:
    later = tmp_path / "not" / "yet" / "skills"
    library = SkillLibrary([SkillSource(later, "config")])
    library.watch()
    try:
        assert library.statuses() == []
        write_skill(later, "late", "Came later.")
        await until(library, lambda: state_of(library, "late") == "available")

        write_skill(later, "later", "Came even later.")
        await until(library, lambda: state_of(library, "later") == "available")

        shutil.rmtree(tmp_path / "not")
        await until(library, lambda: library.statuses() == [])

        write_skill(later, "again")
        await until(library, lambda: state_of(library, "again") == "available")
    finally:
        await library.close()


async def test_watching_makes_the_home_skills_folder(tmp_path: Path) -> None:
    home_skills = tmp_path / "home" / "skills"
    library = SkillLibrary([SkillSource(home_skills, "home")])
    library.watch()
    try:
        write_skill(home_skills, "homely")
        await until(library, lambda: state_of(library, "homely") == "available")
    finally:
        await library.close()
    assert home_skills.is_dir()


async def test_close_stops_the_watcher_and_later_changes_are_not_seen(tmp_path: Path) -> None:
    library = SkillLibrary([tmp_path])
    library.watch()
    library.watch()  # a second call does not start a second watcher
    await library.close()
    assert not library.watching
    version = library.version
    write_skill(tmp_path, "unseen")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await library.wait_for_change(version)
    await library.close()  # closing twice is fine
