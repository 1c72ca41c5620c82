"""What the default assistant sends before the user says anything (its system prompt and the
tool schemas it offers), measured where it matters: on the first request a fake OpenAI server
receives from ``promptline run``, in cl100k_base tokens."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from fakes.openai_server import FakeOpenAI, running_fake_openai
from fakes.prompt_tokens import (
    FIXED_PROMPT_TARGET,
    count_tokens,
    first_request_of_promptline_run,
    fixed_prompt_tokens,
)
from promptline.cli.main import app
from promptline.runtime.prompt import CHAIN_OF_THOUGHT, PLAN_MODE

EVERYWHERE = (
    "codebase_search",
    "file_delete",
    "file_read",
    "file_write",
    "shell_execute",
    "web_get",
)
"""The built-in tools that apply in any workspace."""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with running_fake_openai() as served:
        yield served


@pytest.fixture
def home() -> Path:
    return Path(os.environ["PROMPTLINE_HOME"])


def test_the_default_assistant_sends_at_most_1000_tokens_before_the_user_speaks(
    fake: FakeOpenAI, home: Path
) -> None:
    body = first_request_of_promptline_run(fake, home)

    fixed = fixed_prompt_tokens(body)
    assert fixed.total <= FIXED_PROMPT_TARGET, fixed
    # Act mode, no chain of thought, no git outside a repository, no skills without a skill.
    assert fixed.tool_names == EVERYWHERE
    assert PLAN_MODE not in fixed.system_text
    assert CHAIN_OF_THOUGHT not in fixed.system_text
    assert body["stream"] is True  # answers are streamed by default
    assert body["messages"][-1] == {"role": "user", "content": "hi"}


def test_in_a_git_workspace_the_git_tools_are_offered_as_well(
    fake: FakeOpenAI, home: Path, tmp_path: Path
) -> None:
    repository = tmp_path / "repository"
    (repository / ".git").mkdir(parents=True)

    body = first_request_of_promptline_run(
        fake, home, config=f"agent:\n  workspace: {repository}\n"
    )

    assert fixed_prompt_tokens(body).tool_names == tuple(
        sorted((*EVERYWHERE, "git_commit", "git_status"))
    )


def test_plan_mode_is_asked_for_and_then_instructed_and_offered_submit_plan(
    fake: FakeOpenAI, home: Path
) -> None:
    body = first_request_of_promptline_run(fake, home, "--mode", "plan")

    fixed = fixed_prompt_tokens(body)
    assert PLAN_MODE in fixed.system_text
    assert fixed.tool_names == (*EVERYWHERE, "submit_plan")


def test_the_demo_model_reports_about_the_tokens_it_is_sent(fake: FakeOpenAI, home: Path) -> None:
    sent = fixed_prompt_tokens(first_request_of_promptline_run(fake, home))

    # The same request, answered by the offline demo model instead.
    result = CliRunner().invoke(
        app, ["run", "hi", "--model", "scripted/demo", "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    reported = json.loads(result.stdout)["usage"]["input_tokens"]

    # Its estimate (about four characters a token) counts the tool schemas too, and lands
    # near the tokenizer's count, neither a tenth of it nor twice it.
    actual = sent.total + count_tokens("hi")
    assert 0.75 * actual <= reported <= 1.5 * actual, (reported, actual)
