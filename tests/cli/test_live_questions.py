"""A question an MCP server asks (an elicitation) at the CLI's inline prompt: shown with its
message, answered field by field (typed, required fields insisted on), declined with no, a
page to visit shown with its URL; an automatic approver declines questions."""

from __future__ import annotations

import io
from typing import Any

from promptline.cli.live import RunView, approve_all, ask_with
from promptline.core.events import PermissionRequest, PermissionRequestEvent

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "Your name."},
        "age": {"type": "integer"},
        "subscribe": {"type": "boolean"},
        "colour": {"type": "string", "enum": ["red", "blue"]},
    },
    "required": ["name"],
}


class Answers:
    """Where the view's answers go (as the permission manager or a gateway would take them)."""

    def __init__(self) -> None:
        self.given: list[dict[str, Any]] = []

    async def respond(self, request_id: str, **kwargs: Any) -> None:
        self.given.append({"request_id": request_id, **kwargs})


class Typed:
    """A user typing ``lines`` at the prompts (None: Ctrl-D)."""

    def __init__(self, *lines: str | None) -> None:
        self.lines = list(lines)
        self.prompts: list[str] = []

    async def __call__(self, prompt: str) -> str | None:
        self.prompts.append(prompt)
        return self.lines.pop(0)


def question(arguments: dict[str, Any]) -> PermissionRequestEvent:
    return PermissionRequestEvent(
        session_id="ses_1",
        run_id="run_1",
        data=PermissionRequest(
            request_id="perm_1",
            tool="mcp.docs:elicitation",
            arguments=arguments,
            reason=f"MCP server 'docs' asks: {arguments['message']}",
        ),
    )


def never_cancelled(reason: str) -> None:
    raise AssertionError(f"the run was cancelled: {reason}")


async def test_a_question_is_answered_field_by_field_with_typed_values() -> None:
    answers, notes, out = Answers(), [], io.StringIO()
    typed = Typed("y", "", "Ann", "thirty", "30", "maybe", "yes", "green", "blue")
    view = RunView(permissions=answers, out=out, approver=ask_with(typed, notes.append))

    await view.show(
        question({"message": "Who are you?", "requested_schema": SCHEMA}), never_cancelled
    )

    assert "? MCP server 'docs' asks: Who are you?" in out.getvalue()
    assert answers.given == [
        {
            "request_id": "perm_1",
            "approve": True,
            "scope": "once",
            "decided_by": "local",
            "reason": None,
            "content": {"name": "Ann", "age": 30, "subscribe": True, "colour": "blue"},
        }
    ]
    assert typed.prompts[1] == "  name (string, required) - Your name.: "
    assert typed.prompts[3] == "  age (integer): "
    assert notes == [
        "name is required",
        "please give a whole number",
        "please answer yes or no",
        "please give one of red, blue",
    ]


async def test_an_optional_field_left_empty_is_left_out_and_no_declines() -> None:
    answers = Answers()
    view = RunView(
        permissions=answers,
        out=io.StringIO(),
        approver=ask_with(Typed("y", "Bo", "", "", ""), print),
    )
    await view.show(question({"message": "Who?", "requested_schema": SCHEMA}), never_cancelled)
    view.approver = ask_with(Typed("n"), print)
    await view.show(question({"message": "Who?", "requested_schema": SCHEMA}), never_cancelled)

    assert answers.given[0]["content"] == {"name": "Bo"}
    assert answers.given[1]["approve"] is False
    assert "content" not in answers.given[1]


async def test_a_page_to_visit_is_shown_with_its_url_and_yes_accepts_it() -> None:
    answers, out = Answers(), io.StringIO()
    view = RunView(permissions=answers, out=out, approver=ask_with(Typed("y"), print))

    await view.show(
        question({"message": "Sign in.", "url": "https://example.com/in"}), never_cancelled
    )

    assert "open https://example.com/in" in out.getvalue()
    assert (answers.given[0]["approve"], answers.given[0]["content"]) == (True, None)


async def test_giving_up_at_a_question_cancels_the_run() -> None:
    cancelled: list[str] = []
    view = RunView(
        permissions=Answers(), out=io.StringIO(), approver=ask_with(Typed("y", None), print)
    )

    await view.show(question({"message": "Who?", "requested_schema": SCHEMA}), cancelled.append)

    assert cancelled == ["cancelled at the approval prompt"]


async def test_an_automatic_approver_declines_questions_and_still_approves_tools() -> None:
    notes: list[str] = []
    approver = approve_all(notes.append, by_whom="--yes")

    asked = await approver(question({"message": "Who?", "requested_schema": SCHEMA}).data, True)
    tool = await approver(PermissionRequest(request_id="perm_2", tool="file_write"), True)

    assert (asked.approve, asked.reason) == (False, "questions are not answered automatically")
    assert tool.approve is True
    assert notes[0] == "declining: questions are not answered automatically (--yes)"
