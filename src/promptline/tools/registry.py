"""The tools an installation knows, by name; namespaces (``mcp.github.search``), run-time
registration and per-agent selections by name or pattern."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from promptline.core.errors import ConflictError, InvalidInputError, NotFoundError
from promptline.core.names import matches
from promptline.models.types import ToolSpec
from promptline.tools.base import Tool, ToolContext, applies_here

__all__ = ["ToolRegistry", "matches", "qualified_name"]


def qualified_name(name: str, namespace: str | None) -> str:
    """``namespace.name``; ``name`` alone without a namespace or when it already starts with
    the namespace."""
    if namespace and not name.startswith(f"{namespace}."):
        return f"{namespace}.{name}"
    return name


class ToolRegistry:
    """Tools by their full name. Changes take effect on the next lookup, so tools can be
    registered and unregistered while runs are going on.

    A tool registered under a ``namespace`` is named ``namespace.tool`` (its own name is kept
    when it already starts with the namespace).
    """

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self._version = 0
        for item in tools:
            self.register(item)

    @property
    def version(self) -> int:
        """Grows with every change (lets callers cache derived views)."""
        return self._version

    def register(self, tool: Tool, *, namespace: str | None = None, replace: bool = False) -> str:
        """Add ``tool``; returns the name it is registered under.

        A second tool of the same name is a `ConflictError` unless ``replace``.
        """
        if not isinstance(tool, Tool):
            raise InvalidInputError(
                f"{tool!r} is not a tool", hint="decorate a function with @tool, or implement Tool"
            )
        name = qualified_name(tool.name, namespace)
        if name in self._tools and not replace:
            raise ConflictError(
                f"a tool named {name!r} is already registered",
                hint="unregister it first, pass replace=True, or use a namespace",
                tool=name,
            )
        if name != tool.name:
            tool = _Renamed(tool, name)
        self._tools[name] = tool
        self._version += 1
        return name

    def unregister(self, name: str) -> Tool:
        """Remove the tool ``name`` (or every tool matching a pattern such as ``mcp.gh.*``);
        returns the (last) removed tool. `NotFoundError` when nothing matches."""
        removed = [n for n in self._tools if matches(name, n)]
        if not removed:
            raise NotFoundError(f"no tool {name!r} is registered", tool=name)
        tool = self._tools[removed[-1]]
        for n in removed:
            del self._tools[n]
        self._version += 1
        return tool

    def get(self, name: str) -> Tool | None:
        """The tool registered as ``name``, or None."""
        return self._tools.get(name)

    def require(self, name: str) -> Tool:
        """The tool ``name``; `NotFoundError` listing close names when there is none."""
        found = self._tools.get(name)
        if found is None:
            import difflib

            close = difflib.get_close_matches(name, list(self._tools), n=3)
            raise NotFoundError(
                f"no tool {name!r}",
                hint=f"did you mean {', '.join(close)}?" if close else "list tools with /tools",
                tool=name,
            )
        return found

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._tools)

    def select(self, patterns: Iterable[str] | None) -> list[Tool]:
        """The tools matching any of ``patterns`` (all tools for None), in name order."""
        if patterns is None:
            return [self._tools[n] for n in sorted(self._tools)]
        wanted = list(patterns)
        return [self._tools[n] for n in sorted(self._tools) if any(matches(p, n) for p in wanted)]

    def specs(
        self, patterns: Iterable[str] | None = None, *, workspace: Path | None = None
    ) -> list[ToolSpec]:
        """What the model is told about the selected tools; with ``workspace``, only about
        those that apply to a run working there (`applies_here`)."""
        return [
            ToolSpec(t.name, t.description, t.parameters)
            for t in self.select(patterns)
            if workspace is None or applies_here(t, workspace)
        ]

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter([self._tools[n] for n in sorted(self._tools)])

    def __len__(self) -> int:
        return len(self._tools)


class _Renamed:
    """A tool shown under another (namespaced) name."""

    def __init__(self, inner: Tool, name: str) -> None:
        self._inner = inner
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def description(self) -> str:
        return self._inner.description

    @property
    def parameters(self) -> dict[str, Any]:
        return self._inner.parameters

    @property
    def read_only(self) -> bool:
        return self._inner.read_only

    @property
    def destructive(self) -> bool:
        return self._inner.destructive

    @property
    def timeout(self) -> float | None:
        return self._inner.timeout

    def applies_to(self, workspace: Path) -> bool:
        return applies_here(self._inner, workspace)

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return self._inner.validate(arguments)

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> Any:
        return await self._inner.run(arguments, context)
