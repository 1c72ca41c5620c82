"""``@tool``: the JSON schema comes from type hints, descriptions from the docstring; the
executor's context and progress are injected; sync functions run in a worker thread."""

from __future__ import annotations

import asyncio
import contextvars
import enum
import threading
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from promptline.core.errors import InvalidInputError
from promptline.tools import FunctionTool, Progress, Tool, ToolContext, tool
from promptline.tools.base import applies_here
from tools.support import STUCK, context


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(BaseModel):
    x: int
    y: int = 0


EVERY_REQUIRED: dict[str, Any] = {
    "text": "t",
    "count": "3",
    "ratio": 1,
    "flag": True,
    "names": ["a"],
    "scores": {"a": 1},
    "mode": "fast",
    "color": "red",
    "point": {"x": 1},
}


@tool
def everything(
    text: str,
    count: int,
    ratio: float,
    flag: bool,
    names: list[str],
    scores: dict[str, int],
    mode: Literal["fast", "slow"],
    color: Color,
    point: Point,
    maybe: str | None = None,
    level: int = 3,
) -> str:
    """Take one of each kind.

    Args:
        text: Some text.
        count: How many.
    """
    return text


def test_types_become_json_schema_types() -> None:
    props = everything.parameters["properties"]

    assert props["text"]["type"] == "string"
    assert props["count"]["type"] == "integer"
    assert props["ratio"]["type"] == "number"
    assert props["flag"]["type"] == "boolean"
    assert props["names"] == {"type": "array", "items": {"type": "string"}}
    assert props["scores"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert props["mode"]["enum"] == ["fast", "slow"]
    # Optional: not required, which says it may be left out (an explicit null still passes).
    assert props["maybe"] == {"type": "string"}
    assert everything.validate({**EVERY_REQUIRED, "maybe": None})["maybe"] is None
    assert everything.parameters["$defs"]["Color"]["enum"] == ["red", "blue"]
    assert everything.parameters["$defs"]["Point"]["required"] == ["x"]


def test_parameters_without_defaults_are_required_and_defaults_are_shown() -> None:
    schema = everything.parameters

    assert schema["type"] == "object"
    assert schema["required"] == [
        "text", "count", "ratio", "flag", "names", "scores", "mode", "color", "point"
    ]  # fmt: skip
    assert schema["properties"]["level"]["default"] == 3
    assert "default" not in schema["properties"]["maybe"]
    assert schema["additionalProperties"] is False


def test_the_schema_has_no_generated_titles() -> None:
    assert "title" not in str(everything.parameters).replace("'title': {", "")


def test_descriptions_come_from_the_docstring() -> None:
    @tool
    def documented(path: str, depth: int = 1, quiet: bool = False) -> str:
        """List a folder.

        Shows files and folders, one per line.

        Args:
            path: The folder to list,
                relative to the workspace.
            depth (int): How deep to go.

        Returns:
            The listing (not part of the description).
        """
        return path

    props = documented.parameters["properties"]

    assert documented.description == "List a folder.\n\nShows files and folders, one per line."
    assert props["path"]["description"] == "The folder to list, relative to the workspace."
    assert props["depth"]["description"] == "How deep to go."
    assert "description" not in props["quiet"]


def test_name_and_description_can_be_given() -> None:
    @tool(name="fs.list", description="Lists.")
    def whatever() -> str:
        """Ignored."""
        return ""

    assert (whatever.name, whatever.description) == ("fs.list", "Lists.")


def test_annotated_constraints_and_descriptions_are_kept() -> None:
    @tool
    def bounded(
        n: Annotated[int, Field(ge=1, le=10)],
        word: Annotated[str, Field(description="One word.", max_length=5)],
    ) -> str:
        """Bounded.

        Args:
            n: A small number.
        """
        return word * n

    props = bounded.parameters["properties"]

    assert props["n"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 10,
        "description": "A small number.",
    }
    assert props["word"]["description"] == "One word."
    with pytest.raises(InvalidInputError, match="n: Input should be less than or equal to 10"):
        bounded.validate({"n": 11, "word": "a"})


def test_flags_and_timeout_are_kept() -> None:
    @tool(read_only=True, destructive=False, timeout=12.5)
    def careful() -> str:
        """Careful."""
        return ""

    @tool
    def plain() -> str:
        """Plain."""
        return ""

    assert (careful.read_only, careful.destructive, careful.timeout) == (True, False, 12.5)
    assert (plain.read_only, plain.destructive, plain.timeout) == (False, False, None)
    assert isinstance(careful, Tool)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: tool(name="has space")(lambda: None), "is not valid"),
        (lambda: tool(name="ok", timeout=0)(lambda: None), "timeout must be > 0"),
    ],
)
def test_bad_declarations_are_refused(make: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        make()


def test_star_args_cannot_be_described() -> None:
    def spread(*args: int) -> int:
        return sum(args)

    with pytest.raises(InvalidInputError, match=r"\*args and \*\*kwargs"):
        tool(spread)


def test_validation_converts_and_fills_defaults() -> None:
    arguments = everything.validate(EVERY_REQUIRED)

    assert arguments["count"] == 3
    assert arguments["color"] is Color.RED
    assert arguments["point"] == Point(x=1, y=0)
    assert (arguments["maybe"], arguments["level"]) == (None, 3)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"a": "x"}, "a: Input should be a valid integer"),
        ({}, "a: Field required"),
        ({"a": 1, "z": 2}, "z: Extra inputs are not permitted"),
        ([1], "must be a JSON object"),
    ],
)
def test_validation_errors_say_what_is_wrong(arguments: Any, message: str) -> None:
    @tool
    def one(a: int) -> int:
        """One."""
        return a

    with pytest.raises(InvalidInputError, match=message):
        one.validate(arguments)


async def test_sync_functions_run_in_a_worker_thread(tmp_path: Path) -> None:
    @tool
    def where() -> int:
        """Where it runs."""
        return threading.get_ident()

    @tool(inline=True)
    def here() -> int:
        """Inline."""
        return threading.get_ident()

    ctx = context(tmp_path)

    assert await where.run({}, ctx) != threading.get_ident()
    assert await here.run({}, ctx) == threading.get_ident()


async def test_a_sync_function_does_not_block_the_event_loop(tmp_path: Path) -> None:
    release = threading.Event()

    @tool
    def wait_for_release() -> str:
        """Blocks its thread until released."""
        return "released" if release.wait(STUCK) else "the loop was blocked"

    running = asyncio.ensure_future(wait_for_release.run({}, context(tmp_path)))
    await asyncio.sleep(0)
    release.set()  # only possible because the loop is free while the tool blocks

    assert await running == "released"


async def test_context_variables_reach_the_worker_thread(tmp_path: Path) -> None:
    current: contextvars.ContextVar[str] = contextvars.ContextVar("current", default="unset")
    current.set("request-7")

    @tool
    def read_var() -> str:
        """Reads a context variable."""
        return current.get()

    assert await read_var.run({}, context(tmp_path)) == "request-7"


async def test_async_functions_are_awaited(tmp_path: Path) -> None:
    @tool
    async def later(n: int) -> int:
        """Async."""
        await asyncio.sleep(0)
        return n * 2

    assert await later.run(later.validate({"n": 4}), context(tmp_path)) == 8


async def test_context_and_progress_are_injected_and_not_in_the_schema(tmp_path: Path) -> None:
    @tool
    async def aware(name: str, ctx: ToolContext, progress: Progress) -> str:
        """Knows its call."""
        progress(50, "halfway", "partial")
        return f"{name}@{ctx.call_id}:{ctx.workspace.name}"

    reports: list[dict[str, Any]] = []

    result = await aware.run({"name": "n"}, context(tmp_path, progress=reports))

    assert set(aware.parameters["properties"]) == {"name"}
    assert aware.parameters["required"] == ["name"]
    assert result == f"n@call_test:{tmp_path.name}"
    assert reports == [{"percent": 50, "message": "halfway", "output": "partial"}]


def test_the_decorated_function_stays_callable() -> None:
    @tool
    def double(n: int) -> int:
        """Double."""
        return n * 2

    assert isinstance(double, FunctionTool)
    assert double(21) == 42
    assert double.__name__ == "double"  # type: ignore[attr-defined]
    assert double.__doc__ == "Double."


def test_unresolvable_hints_are_reported() -> None:
    def broken(a: NotDefined) -> None:  # type: ignore[name-defined]  # noqa: F821
        """Broken."""

    with pytest.raises(InvalidInputError, match="cannot resolve its type hints"):
        tool(broken)


def test_a_tool_applies_everywhere_unless_its_applies_check_says_otherwise(tmp_path: Path) -> None:
    @tool(applies=lambda workspace: (workspace / "marker").exists())
    def picky() -> str:
        """Only where a marker is."""
        return "ok"

    assert applies_here(everything, tmp_path)
    assert not applies_here(picky, tmp_path)
    (tmp_path / "marker").touch()
    assert applies_here(picky, tmp_path)
