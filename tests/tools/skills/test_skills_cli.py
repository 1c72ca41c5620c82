"""`promptline skills list|show|enable|disable` on a temporary home: states and reasons, the
details of one skill, switches written for a running gateway to pick up, unknown names."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from skills_support import write_skill

from promptline.cli.main import app
from promptline.config.home import promptline_home
from promptline.tools.skills import SkillLibrary, SkillSource
from promptline.tools.switches import SWITCHES_FILE, Switches


def cli(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A home whose workspace (``agent.workspace``) holds four skills: available, needing a
    program, broken, and one shadowing a skill of the home."""
    home = promptline_home()
    home.mkdir(parents=True, exist_ok=True)
    workspace = tmp_path / "project"
    (home / "config.yaml").write_text(f"agent:\n  workspace: {workspace}\n")
    skills = workspace / "skills"
    write_skill(
        skills,
        "pdf-forms",
        "Fill in PDF forms.",
        version="1.2",
        body="# Forms\n\nRun scripts/fill.py.",
        requires={"bins": ["sh"], "env": ["NO_SUCH_VAR_XYZ"], "tools": ["file_*"]},
        files={"scripts/fill.py": "print(1)\n"},
    )
    write_skill(skills, "notes", "Keep notes.", requires={"skills": ["pdf-basics"]})
    write_skill(skills, "pdf-basics", "Read PDFs.")
    write_skill(home / "skills", "pdf-basics", "Older copy.")
    (skills / "broken").mkdir()
    (skills / "broken" / "SKILL.md").write_text("---\nname: broken\ndescription: [x\n---\n")
    return skills


def test_list_shows_each_skill_with_its_state_source_and_reason(project: Path) -> None:
    out = cli("skills", "list").output
    rows = {
        tuple(cell.strip() for cell in line.split("│")[1:-1])
        for line in out.splitlines()
        if line.startswith("│")
    }
    workspace = f"{project} (workspace)"
    home = f"{promptline_home() / 'skills'} (home)"
    assert rows == {
        ("broken", "-", "broken", workspace),
        ("notes", "-", "available", workspace),
        ("pdf-basics", "-", "available", workspace),
        ("pdf-basics", "-", "shadowed", home),
        ("pdf-forms", "1.2", "unavailable", workspace),
    }
    lines = out.splitlines()
    assert "pdf-forms is unavailable: needs $NO_SUCH_VAR_XYZ" in lines
    assert f"pdf-basics is shadowed: shadowed by {project / 'pdf-basics'}" in lines
    assert any(
        line.startswith(f"broken is broken: {project / 'broken' / 'SKILL.md'}:3: the front")
        for line in lines
    )


def test_list_json_gives_every_field(project: Path) -> None:
    data = json.loads(cli("skills", "list", "--json").output)
    by_state = {(d["name"], d["state"]) for d in data}
    assert by_state == {
        ("broken", "broken"),
        ("notes", "available"),
        ("pdf-basics", "available"),
        ("pdf-basics", "shadowed"),
        ("pdf-forms", "unavailable"),
    }
    forms = next(d for d in data if d["name"] == "pdf-forms")
    assert forms == {
        "name": "pdf-forms",
        "version": "1.2",
        "state": "unavailable",
        "reason": "needs $NO_SUCH_VAR_XYZ",
        "reasons": ["needs $NO_SUCH_VAR_XYZ"],
        "description": "Fill in PDF forms.",
        "path": str(project / "pdf-forms"),
        "source": str(project),
        "origin": "workspace",
    }


def test_list_with_no_skills_says_where_it_looked() -> None:
    out = cli("skills", "list").output
    assert "No skills found" in out
    assert str(promptline_home() / "skills") in out


def test_show_prints_front_matter_requirements_files_and_instructions(project: Path) -> None:
    out = cli("skills", "show", "pdf-forms").output
    assert "pdf-forms  unavailable (needs $NO_SUCH_VAR_XYZ)" in out
    assert "version: '1.2'" in out
    assert "ok bins: sh" in out
    assert "missing env: NO_SUCH_VAR_XYZ" in out
    assert "ok tools: file_*  built in" in out
    assert "scripts/fill.py" in out
    assert out.rstrip().endswith("# Forms\n\nRun scripts/fill.py.")


def test_show_json_and_a_shadowed_copy(project: Path) -> None:
    data = json.loads(cli("skills", "show", "pdf-basics", "--json").output)
    assert data["state"] == "available"
    assert data["shadows"] == [str(promptline_home() / "skills" / "pdf-basics")]
    assert data["instructions"] == "Follow these steps."
    notes = json.loads(cli("skills", "show", "notes", "--json").output)
    assert notes["requirements"] == [
        {"kind": "skills", "name": "pdf-basics", "met": True, "note": ""}
    ]


def test_show_of_a_broken_skill_gives_its_error(project: Path) -> None:
    out = cli("skills", "show", "broken").output
    assert "broken  broken" in out
    assert "not valid YAML" in out


def test_disable_and_enable_write_the_switches_file(project: Path) -> None:
    out = cli("skills", "disable", "pdf-basics").output
    assert "skill pdf-basics switched off: now disabled" in out
    switches = Switches(promptline_home() / SWITCHES_FILE)
    assert switches.state("skills", "pdf-basics") is False
    # What needs it is unavailable now, and says why.
    notes = json.loads(cli("skills", "show", "notes", "--json").output)
    assert notes["reason"] == "needs skill `pdf-basics`, which is disabled"

    assert "switched on: now available" in cli("skills", "enable", "pdf-basics").output
    assert switches.state("skills", "pdf-basics") is True


def test_enabling_a_skill_the_configuration_disables_warns(project: Path) -> None:
    config = promptline_home() / "config.yaml"
    config.write_text(config.read_text() + "skills:\n  disabled: [notes]\n")
    result = CliRunner().invoke(app, ["skills", "enable", "notes"])
    assert result.exit_code == 0
    assert "now disabled" in result.output
    assert "skills.disabled in the configuration still lists it" in result.output


@pytest.mark.parametrize("command", ["show", "enable", "disable"])
def test_an_unknown_name_fails_with_close_matches(project: Path, command: str) -> None:
    result = CliRunner().invoke(app, ["skills", command, "pdf-form"])
    assert result.exit_code == 1
    assert "there is no skill named 'pdf-form'" in result.output
    assert "did you mean pdf-forms" in result.output
    assert not (promptline_home() / SWITCHES_FILE).exists()


async def test_a_running_watcher_picks_up_a_disable_from_the_command(
    project: Path, tmp_path: Path
) -> None:
    library = SkillLibrary(
        [SkillSource(project, "workspace")],
        switches=Switches(promptline_home() / SWITCHES_FILE),
    )
    library.watch()
    try:
        assert library.require("notes").available
        version = library.version
        command = [sys.executable, "-m", "promptline.cli.main", "skills", "disable", "notes"]
        done = await asyncio.create_subprocess_exec(
            *command,
            env={**os.environ, "PROMPTLINE_HOME": str(promptline_home())},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        output, _ = await done.communicate()
        assert done.returncode == 0, output.decode()
        async with asyncio.timeout(20):
            while library.require("notes").state != "disabled":
                version = await library.wait_for_change(version)
    finally:
        await library.close()
