"""An MCP server's tool as a PromptLine `Tool` (``mcp.<server>.<tool>``): its JSON schema
checked before the call, its annotations as flags, its result as text and images."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import orjson

from promptline.core.errors import InvalidInputError
from promptline.core.messages import ContentPart, FilePart, ImagePart, TextPart
from promptline.tools.base import ToolContext, ToolOutput
from promptline.tools.mcp.connection import McpConnection, RemoteTool
from promptline.tools.mcp.host import CallOrigin

if TYPE_CHECKING:
    import mcp_types
    from jsonschema.protocols import Validator  # type: ignore[import-untyped]

__all__ = ["McpTool", "registry_name", "to_output"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")
_MAX_ERRORS = 3


def registry_name(server: str, tool: str) -> str:
    """``mcp.<server>.<tool>``, the tool's name with characters other than letters, digits,
    ``_`` and ``-`` replaced by ``_`` (model APIs accept little else)."""
    return f"mcp.{server}.{_UNSAFE.sub('_', tool)}"


class McpTool:
    """One tool of an MCP server, called through its `McpConnection`.

    ``read_only`` is the tool's ``readOnlyHint``; ``destructive`` its ``destructiveHint``,
    which MCP says defaults to true for a tool that is not read-only; ``idempotent`` its
    ``idempotentHint``. Build it with
    `McpTool.build`, which refuses a tool whose input schema is not a valid JSON schema of an
    object.
    """

    def __init__(self, connection: McpConnection, remote: RemoteTool, validator: Validator) -> None:
        self.connection = connection
        self.remote = remote
        self._validator = validator
        self._name = registry_name(connection.name, remote.name)
        self._read_only = remote.read_only_hint is True
        if self._read_only:
            self._destructive = False
        else:
            self._destructive = (
                True if remote.destructive_hint is None else bool(remote.destructive_hint)
            )
        description = remote.description or remote.title or remote.name
        self._description = f"{description} (from MCP server {connection.name})"

    @classmethod
    def build(cls, connection: McpConnection, remote: RemoteTool) -> McpTool:
        """The tool, or `InvalidInputError` saying why its input schema is not usable."""
        from jsonschema import (  # type: ignore[import-untyped]
            Draft202012Validator,
            SchemaError,
        )
        from jsonschema.validators import validator_for  # type: ignore[import-untyped]

        schema = dict(remote.input_schema)
        if "type" not in schema:
            schema["type"] = "object"
        if schema.get("type") != "object":
            raise InvalidInputError(
                f"the input schema of {remote.name} is of type {schema.get('type')!r}, "
                "not an object",
                hint="MCP tools take an object of arguments",
            )
        try:
            kind = validator_for(schema, default=Draft202012Validator)
            kind.check_schema(schema)
        except SchemaError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
            raise InvalidInputError(
                f"the input schema of {remote.name} is not a valid JSON schema "
                f"(at {where}: {exc.message})",
                hint="fix the tool's inputSchema in the MCP server",
            ) from None
        tool = cls(
            connection, RemoteTool(**{**remote.to_dict(), "input_schema": schema}), kind(schema)
        )
        return tool

    @property
    def name(self) -> str:
        """``mcp.<server>.<tool>``."""
        return self._name

    @property
    def description(self) -> str:
        """The server's description of the tool."""
        return self._description

    @property
    def parameters(self) -> dict[str, Any]:
        """The tool's input schema."""
        return self.remote.input_schema

    @property
    def read_only(self) -> bool:
        """The tool's ``readOnlyHint``."""
        return self._read_only

    @property
    def destructive(self) -> bool:
        """The tool's ``destructiveHint`` (true when unset and not read-only)."""
        return self._destructive

    @property
    def idempotent(self) -> bool:
        """The tool's ``idempotentHint`` (a read-only tool is idempotent whatever it says)."""
        return self._read_only or self.remote.idempotent_hint is True

    @property
    def timeout(self) -> float | None:
        """The server's ``timeout_secs`` (the executor caps it)."""
        limit = self.connection.settings.timeout_secs
        return None if limit is None else float(limit)

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """``arguments`` checked against the input schema; `InvalidInputError` otherwise."""
        if not isinstance(arguments, dict):
            raise InvalidInputError(
                f"arguments of {self._name} must be a JSON object, not {type(arguments).__name__}"
            )
        errors = sorted(self._validator.iter_errors(arguments), key=lambda e: list(e.path))
        if errors:
            problems = []
            for error in errors[:_MAX_ERRORS]:
                where = ".".join(str(p) for p in error.absolute_path)
                problems.append(f"{where}: {error.message}" if where else error.message)
            more = f" (and {len(errors) - _MAX_ERRORS} more)" if len(errors) > _MAX_ERRORS else ""
            raise InvalidInputError(
                f"invalid arguments for {self._name}: {'; '.join(problems)}{more}",
                hint=f"arguments must match the schema of {self._name}",
            )
        return dict(arguments)

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolOutput:
        """Call the tool on the server; its progress notifications become ``tool_progress``,
        and what it asks of PromptLine meanwhile is answered for this call's run."""

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            percent = progress * 100.0 / total if total else None
            context.report_progress(
                percent=percent, message=message or (None if total else f"{progress:g}")
            )

        origin = CallOrigin(
            call_id=context.call_id,
            tool=self._name,
            workspace=context.workspace,
            session_id=context.session_id,
            run_id=context.run_id,
            user_id=context.user_id,
            tenant_id=context.tenant_id,
            agent=context.agent,
        )
        result = await self.connection.call_tool(self.remote.name, arguments, on_progress, origin)
        return to_output(result)

    def __repr__(self) -> str:
        return f"McpTool({self._name!r})"


def to_output(result: mcp_types.CallToolResult) -> ToolOutput:
    """An MCP tool result as a `ToolOutput`: text content as text, images as `ImagePart`,
    embedded resources as text or files, ``isError`` as an error, structured content kept in
    the metadata (and as JSON text when there is no other content)."""
    parts = [part for item in result.content for part in _parts(item)]
    metadata: dict[str, Any] = {}
    if result.structured_content is not None:
        metadata["structured_content"] = result.structured_content
        if not parts:
            parts = [TextPart(text=orjson.dumps(result.structured_content).decode())]
    if all(isinstance(p, TextPart) for p in parts):
        text = "\n".join(p.text for p in parts if isinstance(p, TextPart))
        return ToolOutput(content=text, is_error=bool(result.is_error), metadata=metadata)
    return ToolOutput(content=parts, is_error=bool(result.is_error), metadata=metadata)


def _parts(item: Any) -> list[ContentPart]:
    import mcp_types as types

    if isinstance(item, types.TextContent):
        return [TextPart(text=item.text)]
    if isinstance(item, types.ImageContent):
        return [ImagePart(data=item.data, media_type=item.mime_type)]
    if isinstance(item, types.AudioContent):
        return [FilePart(name="audio", data=item.data, media_type=item.mime_type)]
    if isinstance(item, types.EmbeddedResource):
        resource = item.resource
        if isinstance(resource, types.TextResourceContents):
            return [TextPart(text=f"[resource {resource.uri}]\n{resource.text}")]
        return [FilePart(name=str(resource.uri), data=resource.blob, media_type=resource.mime_type)]
    if isinstance(item, types.ResourceLink):
        about = f": {item.description}" if item.description else ""
        return [TextPart(text=f"[resource link {item.name} {item.uri}{about}]")]
    return [TextPart(text=f"[{getattr(item, 'type', 'unknown')} content]")]
