"""Installing from a catalogue: skills and tool packages land switched off and recorded; a
tool package works once enabled; a checksum mismatch installs nothing; dependencies are
reported or installed with ``with_deps``; uninstall removes exactly what install put there."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from catalogue_helpers import catalogue, entry, index, listing, package, skill, tar_folder, write

from promptline.app import build_app
from promptline.config import load_settings
from promptline.config.plugins import PluginsSettings
from promptline.core.errors import ConflictError, InvalidInputError, NotFoundError
from promptline.core.messages import ToolCall
from promptline.events.bus import InProcessEventBus
from promptline.events.memory import InMemoryEventStore
from promptline.tools.builtin import builtin_tools
from promptline.tools.catalogue import Catalogue, ChecksumMismatchError
from promptline.tools.executor import CallScope, ToolExecutor
from promptline.tools.plugins import PluginManager
from promptline.tools.registry import ToolRegistry
from promptline.tools.switches import SWITCHES_FILE, Switches


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "source"
    skill(root / "skills" / "pdf-forms", "pdf-forms")
    package(root / "build" / "greeter", "greeter", "1.0", answer="hello")
    tar_folder(root / "build" / "greeter", root / "dist" / "greeter-1.0.tar.gz", top="greeter")
    skill(root / "skills" / "base-skill", "base-skill")
    package(root / "build" / "middle", "middle", "2.0")
    index(
        root,
        [
            entry(root, "pdf-forms", "skill", "1.0", "skills/pdf-forms"),
            entry(root, "greeter", "tools", "1.0", "dist/greeter-1.0.tar.gz"),
            entry(root, "base-skill", "skill", "1.0", "skills/base-skill"),
            entry(root, "middle", "tools", "2.0", "build/middle", requires=["base-skill"]),
            entry(root, "top-skill", "skill", "1.0", "skills/pdf-forms", requires=["middle"]),
        ],
    )
    return root


@pytest.fixture
def cat(home: Path, source: Path) -> Catalogue:
    return catalogue(home, main={"path": source})


def switches(home: Path) -> Switches:
    return Switches(home / SWITCHES_FILE)


def records(home: Path) -> list[dict[str, object]]:
    items: list[dict[str, object]] = json.loads((home / "installed.json").read_text())["items"]
    return items


def test_an_installed_skill_lands_switched_off_and_recorded(
    cat: Catalogue, home: Path, source: Path
) -> None:
    report = cat.install("pdf-forms")

    (item,) = report.installed
    assert (item.name, item.kind, item.version, item.source) == (
        "pdf-forms",
        "skill",
        "1.0",
        "main",
    )
    assert listing(home / "skills" / "pdf-forms") == listing(source / "skills" / "pdf-forms")
    assert switches(home).state("skills", "pdf-forms") is False
    assert records(home)[0]["sha256"] == item.sha256
    assert records(home)[0]["path"] == str(home / "skills" / "pdf-forms")
    assert [p for p in listing(home / "skills") if p.startswith(".")] == []  # no staging left


async def test_an_installed_tool_package_is_off_until_enabled_then_its_tool_works(
    cat: Catalogue, home: Path, tmp_path: Path, clean_imports: None
) -> None:
    cat.install("greeter")
    assert listing(home / "plugins" / "greeter") == [
        "greeter_tools.py",
        "promptline-plugin.yaml",
    ]  # the archive's top folder is the package folder
    registry = ToolRegistry(builtin_tools())
    manager = PluginManager(
        registry, plugins=PluginsSettings(entry_points=False, dir=home / "plugins"), home=home
    )

    manager.load_all()
    assert manager.status("greeter").state == "disabled"

    assert manager.enable("greeter").tools == ("greeter.greet",)
    bus = InProcessEventBus(InMemoryEventStore())
    try:
        result = await ToolExecutor(registry, bus).execute(
            ToolCall(name="greeter.greet", arguments={"who": "Ada"}),
            CallScope(workspace=tmp_path),
        )
    finally:
        await bus.close()
    assert result.text == "hello Ada"


async def test_a_package_installed_and_enabled_while_the_app_runs_loads_without_a_restart(
    cat: Catalogue, home: Path, source: Path, clean_imports: None
) -> None:
    # The installation starts with no tool package at all, and no plugins folder.
    write(home / "config.yaml", "plugins:\n  entry_points: false\n")
    settings = load_settings(None, environ={"PROMPTLINE_HOME": str(home)})

    async with build_app(settings) as app:
        await app.start_runtime()
        assert app.plugins.statuses() == []

        cat.install("greeter")  # what `promptline tools install` does, from another process
        switches(home).set("plugins", "greeter", True)  # and `promptline tools enable`

        async with asyncio.timeout(20):
            await app.plugins.wait_until(lambda m: "greeter.greet" in app.tools)
        assert app.plugins.status("greeter").state == "loaded"


@pytest.mark.parametrize("entry_path", ["dist/greeter-1.0.tar.gz", "skills/pdf-forms"])
def test_a_checksum_mismatch_installs_nothing(home: Path, source: Path, entry_path: str) -> None:
    kind = "tools" if entry_path.endswith(".tar.gz") else "skill"
    name = "greeter" if kind == "tools" else "pdf-forms"
    index(source, [entry(source, name, kind, "1.0", entry_path)])
    # Changed after the index was written.
    target = source / entry_path
    if target.is_dir():
        write(target / "SKILL.md", "---\nname: pdf-forms\n---\nTampered.\n")
    else:
        target.write_bytes(target.read_bytes() + b"\0")
    cat = catalogue(home, main={"path": source})

    with pytest.raises(ChecksumMismatchError) as error:
        cat.install(name)

    assert "does not match its checksum" in error.value.message
    assert "nothing was installed" in error.value.message
    assert listing(home / "skills") == []
    assert listing(home / "plugins") == []
    assert not (home / "installed.json").exists()
    assert switches(home).all("skills") == {}
    assert switches(home).all("plugins") == {}


def test_missing_requirements_are_reported_and_with_deps_installs_them_first(
    home: Path, source: Path
) -> None:
    cat = catalogue(home, main={"path": source})
    assert cat.missing_requirements(cat.find("top-skill")) == ["middle"]

    alone = cat.install("top-skill")
    assert [i.name for i in alone.installed] == ["top-skill"]
    assert alone.missing == ["middle"]

    cat.uninstall("top-skill")
    report = cat.install("top-skill", with_deps=True)

    assert [i.name for i in report.installed] == ["base-skill", "middle", "top-skill"]
    assert report.missing == []
    assert switches(home).all("plugins") == {"middle": False}
    assert switches(home).all("skills") == {"base-skill": False, "top-skill": False}
    again = cat.install("top-skill", with_deps=True)
    assert again.installed == []
    assert [i.name for i in again.already] == ["top-skill"]


def test_with_deps_refuses_a_dependency_cycle(home: Path, source: Path) -> None:
    index(
        source,
        [
            entry(source, "one", "skill", "1", "skills/pdf-forms", requires=["two"]),
            entry(source, "two", "skill", "1", "skills/base-skill", requires=["one"]),
        ],
    )
    cat = catalogue(home, main={"path": source})

    with pytest.raises(ConflictError) as error:
        cat.install("one", with_deps=True)

    assert "dependency cycle" in error.value.message
    assert listing(home) == []


def test_uninstall_removes_exactly_what_install_put_there(cat: Catalogue, home: Path) -> None:
    cat.install("pdf-forms")
    cat.install("greeter")
    write(home / "skills" / "mine" / "SKILL.md", "---\nname: mine\n---\n")

    removed = cat.uninstall("pdf-forms")

    assert removed.name == "pdf-forms"
    assert listing(home / "skills") == ["mine", "mine/SKILL.md"]
    assert switches(home).state("skills", "pdf-forms") is None
    assert [r["name"] for r in records(home)] == ["greeter"]
    assert (home / "plugins" / "greeter").is_dir()


def test_uninstall_refuses_what_it_did_not_install(cat: Catalogue, home: Path) -> None:
    write(home / "skills" / "mine" / "SKILL.md", "---\nname: mine\n---\n")

    with pytest.raises(NotFoundError) as error:
        cat.uninstall("mine")

    assert error.value.message == "mine was not installed from a catalogue"
    assert (home / "skills" / "mine" / "SKILL.md").is_file()


def test_installing_over_something_already_there_is_refused(cat: Catalogue, home: Path) -> None:
    write(home / "skills" / "pdf-forms" / "SKILL.md", "---\nname: pdf-forms\n---\nMine.\n")

    with pytest.raises(ConflictError) as error:
        cat.install("pdf-forms")

    assert "already exists" in error.value.message
    assert (home / "skills" / "pdf-forms" / "SKILL.md").read_text().endswith("Mine.\n")
    assert switches(home).all("skills") == {}


def test_another_version_of_an_installed_entry_must_be_uninstalled_first(
    home: Path, source: Path
) -> None:
    skill(source / "skills" / "pdf-forms-2", "pdf-forms", body="Version two.")
    index(
        source,
        [
            entry(source, "pdf-forms", "skill", "1.0", "skills/pdf-forms"),
            entry(source, "pdf-forms", "skill", "2.0", "skills/pdf-forms-2"),
        ],
    )
    cat = catalogue(home, main={"path": source})
    cat.install("pdf-forms@1.0")

    with pytest.raises(ConflictError) as error:
        cat.install("pdf-forms")

    assert error.value.message == "pdf-forms 1.0 is installed, not 2.0"


def test_a_package_whose_manifest_disagrees_with_the_index_is_refused(
    home: Path, source: Path
) -> None:
    index(source, [entry(source, "middle", "tools", "9.9", "build/middle")])
    cat = catalogue(home, main={"path": source})

    with pytest.raises(InvalidInputError) as error:
        cat.install("middle")

    assert "its manifest says middle@2.0" in error.value.message
    assert listing(home / "plugins") == []
