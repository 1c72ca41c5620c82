"""Skills in agent runs, end to end through `build_app` and `start_runtime`: the system prompt
lists the skills, the model loads one with use_skill, and a skill added or removed while the
app runs is in (or out of) the next run's prompt without a restart."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from skills_support import write_skill

from promptline.app import build_app
from promptline.config import load_settings
from promptline.config.home import promptline_home
from promptline.core.events import Event
from promptline.events.content import expand_prompts
from promptline.tools.skills.prompt import SKILLS_HEADER

FORMS_SCRIPT = """\
- expect: fill the form
  tool_calls:
    - name: use_skill
      arguments: {name: pdf-forms}
      id: call_skill
- expect: Run scripts/fill.py
  reply: The form is filled.
"""

PLAIN_SCRIPT = """\
- reply: Noted.
"""


@pytest.fixture
def settings(tmp_path: Path) -> Any:
    home = promptline_home()
    home.mkdir(parents=True, exist_ok=True)
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "forms.yaml").write_text(FORMS_SCRIPT)
    (scripts / "plain.yaml").write_text(PLAIN_SCRIPT)
    (home / "config.yaml").write_text(
        "models:\n"
        "  default: scripted/forms\n"
        f"  providers:\n    scripted:\n      scripts_dir: {scripts}\n"
        "agent:\n"
        "  default_mode: act\n"
        f"  workspace: {tmp_path / 'project'}\n"
        "agents:\n"
        "  assistant: {}\n"
        "  narrow:\n"
        "    tools: [file_read]\n"
    )
    return load_settings(None, environ={"PROMPTLINE_HOME": str(home)})


async def run_events(app: Any, run_id: str) -> list[Event]:
    """A run's events, each ``llm_command`` with its whole prompt (the log keeps it compact)."""
    return await expand_prompts(app.events, await app.events.read_stream(run_id))


def system_prompt(events: list[Event]) -> str:
    command = next(e for e in events if e.type == "llm_command")
    first = command.data.messages[0]  # type: ignore[attr-defined]
    assert first.role == "system"
    return str(first.text)


async def test_a_run_lists_the_skills_and_the_model_loads_one(
    settings: Any, tmp_path: Path
) -> None:
    skills = tmp_path / "project" / "skills"
    write_skill(skills, "pdf-forms", "Fill in PDF forms.", body="# Forms\n\nRun scripts/fill.py.")
    write_skill(promptline_home() / "skills", "notes", "Keep notes.")

    async with build_app(settings) as app:
        runtime = await app.start_runtime()
        result = await runtime.run("please fill the form", agent="assistant")
        assert result.ok, result.error
        assert result.text == "The form is filled."
        events = await run_events(app, result.run_id)

    prompt = system_prompt(events)
    assert f"{SKILLS_HEADER}\n- notes: Keep notes.\n- pdf-forms: Fill in PDF forms." in prompt
    call = next(e for e in events if e.type == "tool_command").data.call  # type: ignore[attr-defined]
    assert (call.name, call.arguments) == ("use_skill", {"name": "pdf-forms"})
    output = next(e for e in events if e.type == "tool_result").data.result  # type: ignore[attr-defined]
    assert not output.is_error
    assert f"Folder: {skills / 'pdf-forms'}" in output.text
    assert "# Forms\n\nRun scripts/fill.py." in output.text
    assert output.metadata["skill"] == "pdf-forms"  # the log says which skill the run loaded


async def test_an_agent_that_cannot_call_use_skill_is_not_shown_the_skills(
    settings: Any, tmp_path: Path
) -> None:
    write_skill(tmp_path / "project" / "skills", "notes", "Keep notes.")
    async with build_app(settings) as app:
        runtime = await app.start_runtime()
        result = await runtime.run("hello", agent="narrow", model="scripted/plain")
        assert result.ok, result.error
        events = await run_events(app, result.run_id)
    assert "use_skill" not in system_prompt(events)
    assert "notes" not in system_prompt(events)


async def test_a_skill_added_while_the_app_runs_is_usable_next_run_and_gone_once_removed(
    settings: Any, tmp_path: Path
) -> None:
    """Acceptance: a skill added to the folder while the gateway runs is usable on the next
    run, without restart; removing it removes it."""
    skills = tmp_path / "project" / "skills"
    write_skill(skills, "notes", "Keep notes.")

    async with build_app(settings) as app:
        runtime = await app.start_runtime()
        assert app.skills.watching

        async def prompt_of_a_run(message: str, model: str = "scripted/plain") -> str:
            result = await runtime.run(message, agent="assistant", model=model)
            assert result.ok, result.error
            return system_prompt(await run_events(app, result.run_id))

        before = await prompt_of_a_run("hello")
        assert "- notes: Keep notes." in before
        assert "pdf-forms" not in before

        version = app.skills.version
        write_skill(skills, "pdf-forms", "Fill in PDF forms.", body="Run scripts/fill.py.")
        async with asyncio.timeout(20):
            while app.skills.get("pdf-forms") is None:
                version = await app.skills.wait_for_change(version)

        # Usable on the next run: listed, and the model can load it.
        result = await runtime.run("please fill the form", agent="assistant")
        assert result.ok, result.error
        assert result.text == "The form is filled."
        events = await run_events(app, result.run_id)
        assert "- pdf-forms: Fill in PDF forms." in system_prompt(events)

        shutil.rmtree(skills / "pdf-forms")
        async with asyncio.timeout(20):
            while app.skills.get("pdf-forms") is not None:
                version = await app.skills.wait_for_change(version)

        after = await prompt_of_a_run("hello again")
        assert "pdf-forms" not in after
        assert "- notes: Keep notes." in after

    assert not app.skills.watching  # closed with the app


async def test_with_skills_off_there_are_no_skill_tools_and_no_list(
    settings: Any, tmp_path: Path
) -> None:
    write_skill(tmp_path / "project" / "skills", "notes", "Keep notes.")
    off = settings.model_copy(
        update={"skills": settings.skills.model_copy(update={"enabled": False})}
    )
    async with build_app(off) as app:
        runtime = await app.start_runtime()
        assert "use_skill" not in app.tools
        assert app._skills is None
        result = await runtime.run("hello", agent="assistant", model="scripted/plain")
        assert result.ok, result.error
        assert "notes" not in system_prompt(await run_events(app, result.run_id))


def offered_tools(events: list[Event]) -> list[str]:
    command = next(e for e in events if e.type == "llm_command")
    return [t["name"] for t in command.data.tools]  # type: ignore[attr-defined]


async def test_the_skill_tools_are_offered_only_while_a_skill_is_available(
    settings: Any, tmp_path: Path
) -> None:
    async with build_app(settings) as app:
        runtime = await app.start_runtime()
        bare = await runtime.run("hello", agent="assistant", model="scripted/plain")
        assert bare.ok, bare.error
        bare_events = await run_events(app, bare.run_id)

        write_skill(tmp_path / "project" / "skills", "notes", "Keep notes.")
        app.skills.reload()
        with_skill = await runtime.run("hello", agent="assistant", model="scripted/plain")
        assert with_skill.ok, with_skill.error
        skill_events = await run_events(app, with_skill.run_id)

    assert "use_skill" in app.tools  # registered all along, but worth nothing without a skill
    assert not {"use_skill", "read_skill_file"} & set(offered_tools(bare_events))
    assert SKILLS_HEADER not in system_prompt(bare_events)
    assert {"use_skill", "read_skill_file"} <= set(offered_tools(skill_events))
    assert f"{SKILLS_HEADER}\n- notes: Keep notes." in system_prompt(skill_events)
