"""The tool registry: names, namespaces, replacement, removal by pattern, selections."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptline.core.errors import ConflictError, InvalidInputError, NotFoundError
from promptline.models.types import ToolSpec
from promptline.tools import FunctionTool, ToolRegistry, tool
from promptline.tools.registry import matches
from tools.support import context


def make(name: str, *, read_only: bool = False, text: str = "") -> FunctionTool:
    @tool(name=name, read_only=read_only, inline=True)
    def fn(x: int = 0) -> str:
        """A test tool."""
        return text or name

    return fn


def test_registered_tools_are_found_by_name_in_order() -> None:
    registry = ToolRegistry([make("b"), make("a")])

    assert registry.names() == ["a", "b"]
    assert [t.name for t in registry] == ["a", "b"]
    assert "a" in registry
    assert "c" not in registry
    assert len(registry) == 2
    assert registry.get("a") is registry.require("a")
    assert registry.get("c") is None


def test_a_second_tool_of_the_same_name_conflicts_unless_replacing() -> None:
    registry = ToolRegistry([make("a", text="first")])

    with pytest.raises(ConflictError, match="already registered"):
        registry.register(make("a"))
    registry.register(make("a", text="second"), replace=True)

    assert registry.require("a").description == "A test tool."
    assert len(registry) == 1


async def test_a_namespace_prefixes_the_name_and_the_tool_keeps_working(tmp_path: Path) -> None:
    registry = ToolRegistry()

    name = registry.register(make("search", read_only=True), namespace="mcp.github")
    kept = registry.register(make("mcp.github.issues"), namespace="mcp.github")

    found = registry.require("mcp.github.search")
    assert (name, kept) == ("mcp.github.search", "mcp.github.issues")
    assert found.name == "mcp.github.search"
    assert found.read_only is True
    assert found.parameters["properties"]["x"]["type"] == "integer"
    assert await found.run(found.validate({}), context(tmp_path)) == "search"


def test_unregister_removes_one_tool_or_every_match_of_a_pattern() -> None:
    registry = ToolRegistry([make("git_status"), make("git_commit"), make("web_get")])

    registry.unregister("git_*")

    assert registry.names() == ["web_get"]
    registry.unregister("web_get")
    assert len(registry) == 0
    with pytest.raises(NotFoundError):
        registry.unregister("web_get")


def test_a_missing_tool_is_reported_with_close_names() -> None:
    registry = ToolRegistry([make("file_read")])

    with pytest.raises(NotFoundError) as caught:
        registry.require("file_raed")

    assert caught.value.hint == "did you mean file_read?"


def test_only_tools_can_be_registered() -> None:
    with pytest.raises(InvalidInputError, match="is not a tool"):
        ToolRegistry().register("file_read")  # type: ignore[arg-type]


def test_select_and_specs_follow_patterns() -> None:
    registry = ToolRegistry([make("git_status"), make("git_commit"), make("web_get")])

    assert [t.name for t in registry.select(["git_*"])] == ["git_commit", "git_status"]
    assert [t.name for t in registry.select(["web_get", "git_status"])] == [
        "git_status",
        "web_get",
    ]
    assert len(registry.select(None)) == 3
    assert registry.select([]) == []
    [spec] = registry.specs(["web_get"])
    assert isinstance(spec, ToolSpec)
    assert spec.name == "web_get"


def test_specs_for_a_workspace_leave_out_the_tools_that_do_not_apply_there(
    tmp_path: Path,
) -> None:
    @tool(name="needs_git", applies=lambda workspace: (workspace / ".git").exists())
    def needs_git() -> str:
        """Only in a repository."""
        return "ok"

    registry = ToolRegistry([make("anywhere"), needs_git])
    registry.register(needs_git, namespace="pkg")

    assert [s.name for s in registry.specs(workspace=tmp_path)] == ["anywhere"]
    assert len(registry.specs()) == 3  # without a workspace: every selected tool
    (tmp_path / ".git").mkdir()
    assert [s.name for s in registry.specs(workspace=tmp_path)] == [
        "anywhere",
        "needs_git",
        "pkg.needs_git",
    ]


def test_every_change_bumps_the_version() -> None:
    registry = ToolRegistry()
    versions = [registry.version]

    registry.register(make("a"))
    versions.append(registry.version)
    registry.register(make("a"), replace=True)
    versions.append(registry.version)
    registry.unregister("a")
    versions.append(registry.version)

    assert versions == sorted(set(versions))


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("git_*", "git_status", True),
        ("git_*", "github", False),
        ("mcp.*", "mcp.github.search", True),
        ("file_read", "file_read", True),
        ("file_read", "file_reader", False),
        ("file_?ead", "file_read", True),
    ],
)
def test_patterns_match_names(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected
