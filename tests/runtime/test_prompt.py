"""System prompts: rendered from the agent's template with its persona and the session's
context; the same inputs give the same prompt (rendered once), different ones do not."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from promptline.core.errors import ConfigError
from promptline.models.types import ToolSpec
from promptline.runtime import Agent
from promptline.runtime.prompt import PLAN_MODE, render_system_prompt, split_reasoning


def test_the_default_prompt_names_the_agent_and_lists_the_context() -> None:
    agent = Agent(name="helper", description="Helps.", persona={"role": "a guide"})

    text = render_system_prompt(agent, context={"project": "apollo"}, mode="act")

    assert text.startswith("You are helper, a guide. Helps.")
    assert "- project: apollo" in text


def test_different_context_renders_differently_and_the_same_renders_the_same() -> None:
    agent = Agent(name="helper", system_prompt="Project {{ context.project }}.")

    first = render_system_prompt(agent, context={"project": "a"})
    again = render_system_prompt(agent, context={"project": "a"})
    other = render_system_prompt(agent, context={"project": "b"})

    assert first == again == "Project a."
    assert other == "Project b."


def test_a_template_using_now_sees_each_time() -> None:
    agent = Agent(name="clock", system_prompt="It is {{ now }}.")

    one = render_system_prompt(agent, now=datetime(2026, 1, 1, tzinfo=UTC))
    two = render_system_prompt(agent, now=datetime(2026, 1, 2, tzinfo=UTC))

    assert one == "It is 2026-01-01T00:00:00+00:00."
    assert two == "It is 2026-01-02T00:00:00+00:00."


def test_tools_and_plan_mode_reach_the_prompt() -> None:
    agent = Agent(
        name="t", system_prompt="{% for t in tools %}{{ t.name }}: {{ t.description }};{% endfor %}"
    )

    text = render_system_prompt(agent, tools=[ToolSpec("add", "Adds.")], mode="plan")

    assert text == "add: Adds.;\n\n" + PLAN_MODE


def test_an_unknown_variable_is_a_config_error_naming_it() -> None:
    agent = Agent(name="typo", system_prompt="Hello {{ persona.nmae }}")

    with pytest.raises(ConfigError, match="nmae"):
        render_system_prompt(agent)


def test_a_template_syntax_error_names_the_line() -> None:
    agent = Agent(name="broken", system_prompt="ok\n{% if %}")

    with pytest.raises(ConfigError, match="line 2"):
        render_system_prompt(agent)


def test_reasoning_is_split_from_the_visible_answer() -> None:
    visible, reasoning = split_reasoning("<thinking>2 and 3 make 5</thinking>It is 5.")

    assert visible == "It is 5."
    assert reasoning == "2 and 3 make 5"
